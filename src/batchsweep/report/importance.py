"""Which params move the metric: each param's share of the metric's variance on its own (η²) for a grid, where
it is what fANOVA's first-order importance measures, exactly; for fewer than FANOVA_MIN tasks, where a forest
fits noise; and from FANOVA_MAX tasks on, where every bin of a param holds hundreds of tasks, so the mean per
bin is the main effect the forest would approximate (the forest and scikit-learn's import cost seconds there
for the same ranking). Between them Optuna's fANOVA where Optuna and scikit-learn are installed (importing
scikit-learn alone takes seconds: a small or a large run's report never pays it), else η². The report draws
the result; nothing here reads files."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from batchsweep.report.svgplot import Dim, finite


def param_importance(varying: list[str], dims: dict[str, Dim], values: list[float],
                     maximize: bool) -> tuple[dict[str, float], str]:
    """How much each param moves the metric, and how that was measured: the share of the metric's variance
    each param explains alone (η²) for a grid, fewer than FANOVA_MIN or at least FANOVA_MAX tasks, else
    Optuna's fANOVA where Optuna and scikit-learn are installed, else η²."""
    ok = [i for i, v in enumerate(values) if math.isfinite(v)]
    if len(varying) < 2 or len(ok) < 8:
        return {}, ""
    if not FANOVA_MIN <= len(ok) < FANOVA_MAX or _is_grid(varying, dims, ok):
        return _eta_squared(varying, dims, values, ok), "η²"
    ok = ok[:: max(1, math.ceil(len(ok) / 500))]  # a forest on 500 tasks says what one on 1,999 would
    try:
        return _fanova(varying, dims, values, ok, maximize), "fANOVA"
    # BLE001: Optuna or scikit-learn missing, or a degenerate fit: the simple measure
    except Exception:  # noqa: BLE001
        return _eta_squared(varying, dims, values, ok), "η²"


FANOVA_MIN = 50  # below it, η²: a random forest on a few dozen noisy tasks ranks no better
# from it on, η²: 10 bins of 200 tasks or more give each param's main effect without the forest
FANOVA_MAX = 2000


def _is_grid(varying: list[str], dims: dict[str, Dim], rows: list[int]) -> bool:
    """Whether the rows are a full factorial of few levels per param (a grid sweep, repeats allowed): there
    the mean per level is the forest's marginal, so η² is fANOVA's first-order importance without the
    forest."""
    levels = [{_key(dims[p].values[i]) for i in rows} for p in varying]
    if any(len(lv) > 10 for lv in levels):
        return False
    cells = {tuple(_key(dims[p].values[i]) for p in varying) for i in rows}
    return len(cells) == math.prod(len(lv) for lv in levels)


def _key(value: Any) -> Any:
    return "nan" if isinstance(value, float) and math.isnan(value) else value


def _fanova(varying: list[str], dims: dict[str, Dim], values: list[float], rows: list[int],
            maximize: bool) -> dict[str, float]:
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    dists: dict[str, Any] = {}
    for p in varying:
        d = dims[p]
        levels = d.levels()
        dists[p] = (CategoricalDistribution(list(levels)) if d.categories is not None
                    else FloatDistribution(float(levels[0]), float(levels[-1]), log=d.log))
    trials = [
        optuna.trial.create_trial(
            params={p: dims[p].values[i] for p in varying}, distributions=dists, value=values[i]
        )
        for i in rows
        if all(dims[p].categories is not None or finite(dims[p].values[i]) for p in varying)
    ]
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(direction="maximize" if maximize else "minimize")
        study.add_trials(trials)
        # A small forest: 64 deep trees on thousands of noisy trials take a minute for the same ranking.
        evaluator = FanovaImportanceEvaluator(n_trees=32, max_depth=8, seed=0)
        scores = get_param_importances(study, evaluator=evaluator, params=varying)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return {p: float(scores.get(p, 0.0)) for p in varying}


def _eta_squared(
    varying: list[str], dims: dict[str, Dim], values: list[float], rows: list[int]
) -> dict[str, float]:
    y = pd.Series([values[i] for i in rows])
    total = float(((y - y.mean()) ** 2).sum()) or 1.0
    out = {}
    for p in varying:
        x = pd.Series([dims[p].values[i] for i in rows])
        if dims[p].categories is None and len(dims[p].levels()) > 10:
            x = pd.qcut(x.astype(float), 10, duplicates="drop").astype(str)
        means = y.groupby(x.astype(str)).transform("mean")
        out[p] = float(((means - y.mean()) ** 2).sum()) / total
    norm = sum(out.values()) or 1.0
    return {p: v / norm for p, v in out.items()}
