"""Which metric a report ranks its tasks by (`choose_metric`: given, or picked by name), and a results column
read as numbers (bools and text as NaN).
"""

from __future__ import annotations

import math
import re

import pandas as pd

from batchsweep.errors import SweepError
from batchsweep.metrics import MAXIMIZE_NAMES, MINIMIZE_NAMES, direction_from_name
from batchsweep.report.svgplot import finite

# A metric picked by default is a quality one: never a time or a cost, even though those have a direction.
DEFAULT_PICK = tuple(n for n in MAXIMIZE_NAMES + MINIMIZE_NAMES
                     if n not in ("time", "duration", "latency", "cost", "drawdown"))


def choose_metric(df: pd.DataFrame, metrics: list[str], metric: str | None,
                  maximize: bool | None) -> tuple[str, bool, str]:
    """The metric to rank by, its direction, and a sentence saying why."""
    numeric = [m for m in metrics if is_numeric(df[m])]
    if metric is not None:
        if metric not in metrics:
            # only the ones it could rank by: a text metric named here would be refused next
            known = ", ".join(numeric) or "none"
            raise SweepError(f"unknown metric {metric!r}: the results have these numeric metrics: {known}")
        if metric not in numeric:
            raise SweepError(f"metric {metric!r} is not numeric; pick one of: {', '.join(numeric) or 'none'}")
        why = "chosen with --metric"
    else:
        metric, why = default_metric(numeric)
        if not metric:
            return "", True if maximize is None else maximize, why
    if maximize is not None:
        return metric, maximize, f"{why}; direction given ({'maximize' if maximize else 'minimize'})"
    guess = direction_from_name(metric, df[metric].tolist())
    if guess is None:
        return metric, True, f"{why}; maximized because its name does not say (use --minimize to flip)"
    return metric, guess, f"{why}; {'maximized' if guess else 'minimized'} because of its name"


def default_metric(numeric: list[str]) -> tuple[str, str]:
    if not numeric:
        return "", "no numeric metric in the results"
    for key in DEFAULT_PICK:
        for m in sorted(numeric, key=lambda m: m.lower() != key):  # an exact name beats a token match
            if key in re.split(r"[^a-z0-9]+", m.lower()):
                return m, f"picked by default: its name contains '{key}'"
    return numeric[0], "picked by default: the first numeric metric"


def numeric_values(s: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(s):
        return pd.Series(math.nan, index=s.index)
    return pd.Series([float(v) if finite(v) else math.nan for v in s.tolist()], index=s.index)


def is_numeric(s: pd.Series) -> bool:
    """Every present value is a number (not a bool); an all-missing column counts as numeric."""
    if pd.api.types.is_bool_dtype(s):
        return False
    present = [
        v
        for v in s.tolist()
        if v is not None and v is not pd.NA and not (isinstance(v, float) and math.isnan(v))
    ]
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)


def numeric_column(df: pd.DataFrame, name: str) -> pd.Series:
    return numeric_values(df[name]) if name in df.columns else pd.Series(math.nan, index=df.index)
