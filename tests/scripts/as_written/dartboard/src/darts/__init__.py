"""Monte Carlo estimates by throwing random darts at the unit square."""

from darts.sampling import throw
from darts.stats import Estimate, mean_of

__all__ = ["Estimate", "mean_of", "throw"]
