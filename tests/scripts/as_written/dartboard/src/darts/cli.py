"""Command line of darts: `python src/darts/cli.py pi --n 100000 --seed 1 --json`."""

import json
from typing import Annotated, Optional

import typer

from darts import Estimate, mean_of, throw

app = typer.Typer(help="Monte Carlo estimates from random darts.")

N = Annotated[int, typer.Option("--n", "-n", help="darts thrown")]
# Optional, not `int | None`: typer 0.12.0 (the floor the lowest-versions test runs) cannot read a `|` union
MAYBE_INT = Optional[int]  # noqa: UP045
SEED = Annotated[MAYBE_INT, typer.Option("--seed", "-s", help="random seed (default: a fresh one)")]
JSON = Annotated[bool, typer.Option("--json", help="print one JSON object instead of text")]


def report(name: str, estimate: Estimate, exact: float, seed: int | None, json_output: bool) -> None:
    if json_output:
        print(json.dumps({name: estimate.value, "se": estimate.se, "n": estimate.n, "seed": seed}))
    else:
        print(f"{name} = {estimate.value:.6f} +- {estimate.se:.6f} (exact: {exact:.6f}, {estimate.n} darts)")


@app.command()
def pi(n: N = 100_000, seed: SEED = None, json_output: JSON = False) -> None:
    """Estimate pi from the share of darts inside the quarter circle."""
    inside = (float(x * x + y * y <= 1) for x, y in throw(n, seed))
    report("pi_estimate", mean_of(inside).scaled(4), 3.141592653589793, seed, json_output)


@app.command()
def power(p: Annotated[float, typer.Option(help="the exponent")] = 2.0, n: N = 100_000, seed: SEED = None,
          json_output: JSON = False) -> None:
    """Estimate the integral of x**p over [0, 1] (exactly 1 / (p + 1))."""
    report("integral", mean_of(x**p for x, _ in throw(n, seed)), 1 / (p + 1), seed, json_output)


if __name__ == "__main__":
    app()
