"""The mean of Monte Carlo samples and its standard error."""

import math
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Estimate:
    value: float
    se: float
    n: int

    def scaled(self, factor: float) -> "Estimate":
        return Estimate(self.value * factor, self.se * abs(factor), self.n)


def mean_of(samples: Iterable[float]) -> Estimate:
    total = square = 0.0
    n = 0
    for x in samples:
        total, square, n = total + x, square + x * x, n + 1
    if n < 2:
        raise ValueError("need at least two samples")
    mean = total / n
    variance = max(square / n - mean * mean, 0.0) * n / (n - 1)
    return Estimate(mean, math.sqrt(variance / n), n)
