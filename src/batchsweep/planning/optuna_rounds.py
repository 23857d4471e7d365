"""A search's rounds in Optuna, with no engine and no store: a sampler per round, asking a round of trials,
telling each its result (a value, FAIL, or PRUNED with its series), and `optimize`, the loop of rounds.

`batchsweep.planning.search` drives these rounds through a run's engine and store; the benchmarks drive them
in-process through `optimize`.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batchsweep.errors import SpecError
from batchsweep.spec import distributions
from batchsweep.spec.schema import Search

if TYPE_CHECKING:
    import optuna

SAMPLER_NEEDS = {"cmaes": ("cmaes",), "gp": ("torch", "scipy")}


@dataclass(frozen=True)
class Proposal:
    """One asked trial: what a task (or an in-process evaluator) gets to run."""

    trial: int
    round: int
    values: dict[str, Any]


@dataclass(frozen=True)
class Pruned:
    """A trial whose task the `stop:` rule stopped: told to Optuna as PRUNED, with its series as intermediate
    values (when the stop metric is the search's metric)."""

    series: dict[int, float]


Evaluate = Callable[[list[Proposal]], Sequence["float | Pruned | None"]]


def check_sampler(name: str) -> None:
    """Raise SpecError for a sampler this installation cannot build (an old Optuna, a missing package)."""
    import optuna

    if name == "gp" and not hasattr(optuna.samplers, "GPSampler"):
        raise SpecError(f"search.sampler: 'gp' needs Optuna >= 3.6 (installed: {optuna.__version__}); "
                        "pip install -U optuna, or choose tpe")
    missing = [m for m in SAMPLER_NEEDS.get(name, ()) if importlib.util.find_spec(m) is None]
    if missing:
        raise SpecError(f"search.sampler: {name!r} needs {', '.join(missing)}, which is not installed; "
                        f"pip install {' '.join(missing)}, or choose tpe")


def make_sampler(search: Search, round_: int, *, batch: int) -> optuna.samplers.BaseSampler:
    """A fresh sampler per round, seeded by (seed, round): a resumed driver must not replay round 0's
    draws."""
    import optuna

    seed = search.seed * 100_003 + round_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if search.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if search.sampler == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=batch)
        if search.sampler == "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=batch)
        # Only the first round is random; constant_liar keeps a round's trials apart from one another.
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                          n_startup_trials=batch)


def ask_round(study: optuna.Study, search: Search, n: int, *, batch: int) -> list[Proposal]:
    round_ = next_round(study)
    study.sampler = make_sampler(search, round_, batch=batch)
    dists = {name: distributions.parse(t, where=name).to_optuna() for name, t in search.space.items()}
    proposals = []
    for _ in range(n):
        trial = study.ask(dists)
        trial.set_user_attr("round", round_)
        proposals.append(Proposal(trial.number, round_, dict(trial.params)))
    return proposals


def tell(study: optuna.Study, trial: int, value: float | Pruned | None) -> None:
    from optuna.trial import TrialState

    if isinstance(value, Pruned):
        frozen = study.get_trials(deepcopy=False)[trial]
        for step, v in sorted(value.series.items()):
            study._storage.set_trial_intermediate_value(frozen._trial_id, step, v)
        study.tell(trial, state=TrialState.PRUNED)
    elif value is None:
        study.tell(trial, state=TrialState.FAIL)
    else:
        study.tell(trial, value)


def next_round(study: optuna.Study) -> int:
    return max((int(t.user_attrs.get("round", -1)) for t in study.get_trials(deepcopy=False)), default=-1) + 1


def told(study: optuna.Study) -> int:
    from optuna.trial import TrialState

    return len(
        study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED))
    )


def optimize(study: optuna.Study, search: Search, evaluate: Evaluate, *, batch: int,
             checkpoint: Callable[[], None] = lambda: None) -> None:
    """Ask `batch` trials, evaluate them together, tell every result; until `search.trials` are told."""
    while (n := min(batch, search.trials - told(study))) > 0:
        proposals = ask_round(study, search, n, batch=batch)
        checkpoint()  # the asked trials are saved before any task names them
        for proposal, value in zip(proposals, evaluate(proposals)):
            tell(study, proposal.trial, value)
        checkpoint()


def as_value(metrics: dict[str, Any] | None, metric: str) -> float | None:
    value = (metrics or {}).get(metric)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)
