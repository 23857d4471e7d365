# Vendored unmodified below this header for tests/test_public_scripts.py.
# Source: github.com/DatOneOPGuy/MonteCarlo, src/montecarlo/__init__.py, commit 5ddf7469c268bbca8cfcd6733fccf335d92b4e2f.
# License: MIT (Copyright (c) 2025 Drake Lesher).
"""
Monte Carlo simulation toolkit.

A minimal, fast framework for propagating uncertainty from input distributions
through user-defined models using vectorized NumPy operations.
"""

from __future__ import annotations

from montecarlo.core import Simulation, monte_carlo_se, quantiles
from montecarlo.distributions import (
    bernoulli,
    binomial,
    lognormal,
    normal,
    uniform,
)

__version__ = "0.1.0"
__all__ = [
    "Simulation",
    "monte_carlo_se",
    "quantiles",
    "normal",
    "lognormal",
    "uniform",
    "bernoulli",
    "binomial",
]

