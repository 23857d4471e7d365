"""Adaptive search against random search on the Branin function, at the same budget.

Both run through `batchsweep.planning.optuna_rounds.optimize`, the round loop a run uses (ask `batch` trials,
evaluate them together, tell), with the objective evaluated in-process instead of through an engine. Prints
the median (over seeds) best value after each round, and its gap to the known optimum 0.397887.

    python bench/adaptive.py [--trials 64] [--batch 8] [--seeds 5]
"""

from __future__ import annotations

import argparse
import math
import statistics

import optuna

from batchsweep.planning import optuna_rounds
from batchsweep.spec.schema import Search

OPTIMUM = 0.397887
SPACE = {"x1": "uniform(-5, 10)", "x2": "uniform(0, 15)"}


def branin(x1: float, x2: float) -> float:
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def best_per_round(sampler: str, *, trials: int, batch: int, seed: int) -> list[float]:
    spec = Search(sampler=sampler, trials=trials, batch=batch, metric="value", seed=seed, space=SPACE)  # type: ignore[arg-type]
    study = optuna.create_study(direction="minimize")
    best: list[float] = []

    def evaluate(proposals: list[optuna_rounds.Proposal]) -> list[float | None]:
        values = [branin(**p.values) for p in proposals]
        best.append(min([*values, *best[-1:]]))
        return list(values)

    optuna_rounds.optimize(study, spec, evaluate, batch=batch)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    curves = {
        name: [best_per_round(name, trials=args.trials, batch=args.batch, seed=s) for s in range(args.seeds)]
        for name in ("tpe", "random")
    }
    medians = {
        name: [statistics.median(c[r] for c in runs) for r in range(len(runs[0]))]
        for name, runs in curves.items()
    }
    print(f"Branin, {args.trials} trials in rounds of {args.batch}, median over {args.seeds} seeds "
          f"(optimum {OPTIMUM}); gap = median best - optimum")
    print(
        f"{'round':>5} {'trials':>6} {'tpe best':>10} {'tpe gap':>10} {'random best':>12} {'random gap':>11}"
    )
    for r, (tpe, rnd) in enumerate(zip(medians["tpe"], medians["random"])):
        n = min((r + 1) * args.batch, args.trials)
        print(f"{r:>5} {n:>6} {tpe:>10.4f} {tpe - OPTIMUM:>10.4f} {rnd:>12.4f} {rnd - OPTIMUM:>11.4f}")
    tpe_end, rnd_end = medians["tpe"][-1], medians["random"][-1]
    verdict = "TPE beats random" if tpe_end < rnd_end else "TPE does NOT beat random"
    print(f"final median best: tpe {tpe_end:.4f}, random {rnd_end:.4f}: {verdict}")
    wins = sum(t[-1] < r[-1] for t, r in zip(curves["tpe"], curves["random"]))
    print(f"per seed, TPE ends lower in {wins} of {args.seeds}")


if __name__ == "__main__":
    main()
