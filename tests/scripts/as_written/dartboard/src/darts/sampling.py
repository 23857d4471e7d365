"""Random points in the unit square."""

import random
from collections.abc import Iterator


def throw(n: int, seed: int | None) -> Iterator[tuple[float, float]]:
    """n points drawn uniformly from [0, 1) x [0, 1), the same ones for the same seed."""
    rng = random.Random(seed)
    for _ in range(n):
        yield rng.random(), rng.random()
