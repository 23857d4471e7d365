"""The distribution syntax shared by `params.random` and `search.space`: `uniform(a, b)`, `loguniform(a, b)`,
`randint(a, b)` (both ends included), `choice(x, y, ...)`, or a YAML list (a choice).
"""

from __future__ import annotations

import ast
import math
import random
import re
from dataclasses import dataclass
from typing import Any

_CALL = re.compile(r"^\s*(\w+)\s*\((.*)\)\s*$", re.S)
KINDS = ("uniform", "loguniform", "randint", "choice")


@dataclass(frozen=True)
class Distribution:
    kind: str
    args: tuple[Any, ...]

    @property
    def bounds(self) -> tuple[Any, Any]:
        return self.args[0], self.args[1]

    def sample(self, rng: random.Random) -> Any:
        if self.kind == "uniform":
            return rng.uniform(*self.args)
        if self.kind == "loguniform":
            lo, hi = self.bounds
            return math.exp(rng.uniform(math.log(lo), math.log(hi)))
        if self.kind == "randint":
            return rng.randint(*self.bounds)
        return rng.choice(self.args)

    def to_optuna(self) -> Any:
        import optuna.distributions as od

        if self.kind == "choice":
            return od.CategoricalDistribution(self.args)
        lo, hi = self.bounds
        if self.kind == "uniform":
            return od.FloatDistribution(lo, hi)
        if self.kind == "loguniform":
            return od.FloatDistribution(lo, hi, log=True)
        if self.kind == "randint":
            return od.IntDistribution(lo, hi)


def parse(text: str | list[Any], *, where: str) -> Distribution:
    """Raise ValueError with a message that names `where` and shows valid syntax."""
    if isinstance(text, list):
        if not text:
            raise ValueError(f"{where}: empty choice list")
        return Distribution("choice", tuple(text))
    m = _CALL.match(str(text))
    hint = "write uniform(0, 1), loguniform(1e-4, 1e-1), randint(2, 8) or choice(a, b)"
    if not m:
        raise ValueError(f"{where}: bad distribution {text!r}; {hint}")
    kind, body = m.group(1), m.group(2)
    if kind not in KINDS:
        raise ValueError(f"{where}: unknown distribution {kind!r}; {hint}")
    args: tuple[Any, ...]
    try:
        args = ast.literal_eval(f"({body},)") if body.strip() else ()
    except (ValueError, SyntaxError):
        if kind != "choice":
            raise ValueError(f"{where}: bad arguments in {text!r}; {hint}") from None
        args = tuple(a.strip() for a in body.split(","))  # bare words: choice(rf, svc)
    if kind == "choice":
        if len(args) == 1 and isinstance(args[0], (list, tuple)):
            args = tuple(args[0])
        if not args:
            raise ValueError(f"{where}: choice() needs at least one value")
        return Distribution(kind, tuple(args))
    if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
        raise ValueError(f"{where}: {kind}() takes two numbers (low, high), got {text!r}")
    lo, hi = args
    if lo >= hi:
        raise ValueError(f"{where}: {kind}() needs low < high, got {text!r}")
    if kind == "loguniform" and lo <= 0:
        raise ValueError(f"{where}: loguniform() needs low > 0, got {text!r}")
    if kind == "randint" and not (isinstance(lo, int) and isinstance(hi, int)):
        raise ValueError(f"{where}: randint() takes integers, got {text!r}")
    return Distribution(kind, (lo, hi))
