"""A run as an Optuna study in an Optuna storage (`batchsweep study RUN --to sqlite:///study.db`), so Optuna's
own tools open it: `optuna.load_study`, `optuna-dashboard`, `optuna.visualization`.

Each task is a trial, in trial order for a search (task order otherwise): its params with their distributions
(a search's or `params.random`'s space as declared; a grid param as the choice of its values), its state
(succeeded with the metric COMPLETE, pruned PRUNED, running RUNNING, the rest FAIL), its value of the metric,
and its series of the metric as intermediate values; user attributes name the task, its round, its status and
why it stopped. Built from the store alone (results and series), so it works for every engine and for a run
still going.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchsweep.errors import SpecError
from batchsweep.model import SEARCH_PARAMS

if TYPE_CHECKING:
    import optuna

    from batchsweep.runs.run import Run

JOURNAL_SUFFIXES = (".log", ".jsonl", ".journal")


@dataclass(frozen=True)
class Exported:
    study_name: str
    storage: str
    metric: str
    direction: str
    states: dict[str, int]  # trials by Optuna state name


def open_storage(url: str) -> Any:
    """An Optuna storage from what the user wrote: a database URL (`sqlite:///study.db`, `postgresql://…`) or
    a journal file path (`study.log`: no database library needed)."""
    import optuna

    if "://" in url:
        if url.rstrip("/") in ("sqlite:", "sqlite://") or url.endswith(":memory:"):
            raise SpecError(
                f"--to {url}: an in-memory database is gone when batchsweep exits; name a file, e.g. "
                "sqlite:///study.db"
            )
        try:
            return optuna.storages.RDBStorage(url)
        except ImportError as e:
            raise SpecError(
                f"--to {url}: a database storage needs SQLAlchemy ({e}); pip install sqlalchemy, or "
                "write an Optuna journal file instead: --to study.log"
            ) from None
        # BLE001: SQLAlchemy's errors (no such directory, a directory, no server)
        except Exception as e:  # noqa: BLE001
            first = str(getattr(e, "orig", None) or e).splitlines()[0]
            raise SpecError(f"--to {url}: cannot open that database ({first})") from None
    if not url.endswith(JOURNAL_SUFFIXES):
        raise SpecError(
            f"--to {url}: give an Optuna storage URL (sqlite:///study.db) or a journal file ending in "
            f"{', '.join(JOURNAL_SUFFIXES)}"
        )
    if os.path.exists(url) and not os.path.isfile(url):
        raise SpecError(f"--to {url}: is not a regular file (a directory or a device); name a journal file")
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    Path(url).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(url))


def export_study(run: Run, to: str, *, study_name: str | None = None, metric: str | None = None,
                 maximize: bool | None = None) -> Exported:
    """Write the run as a new study named `study_name` (default: the run id) into the Optuna storage `to`; a
    search's metric and direction are its own, another run's are picked as its report picks them (or given).
    SpecError when Optuna is missing, the storage cannot be opened, or it already holds that study."""
    try:
        import optuna
    except ImportError:
        raise SpecError(
            "study: needs Optuna, which is not installed; pip install 'batchsweep[search]'"
        ) from None
    from batchsweep.report.page import read_series
    from batchsweep.report.ranking import choose_metric
    from batchsweep.report.results import metric_columns
    from batchsweep.task.series import values_by_step

    df = run.results()
    search = run.record.spec.search
    if search is not None and metric is None:
        metric, maximize = search.metric, search.direction == "maximize"
    chosen, up, _ = choose_metric(df, metric_columns(run, df), metric, maximize)
    if not chosen:
        raise SpecError(f"study: run {run.id} has no numeric metric to make trial values of")
    distributions = _distributions(run, df)
    storage = open_storage(to)
    name = study_name or run.id
    if name in {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}:
        raise SpecError(f"--to {to}: the storage already holds a study named {name!r}; give --study-name, or "
                        "delete it (optuna delete-study)")
    series = read_series(run)
    trials = []
    order = df.sort_values("trial", kind="stable") if "trial" in df.columns else df
    for _, row in order.iterrows():
        trials.append(
            _trial(
                row, distributions, chosen, values_by_step(series.get(int(row["task"]), []), chosen), run.id
            )
        )
    verbosity = optuna.logging.get_verbosity()
    # no "[I ...] A new study created" among batchsweep's lines
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            storage=storage, study_name=name, direction="maximize" if up else "minimize"
        )
    finally:
        optuna.logging.set_verbosity(verbosity)
    with warnings.catch_warnings():  # metric names are experimental in Optuna 3.2+, and harmless
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([chosen])
    study.set_user_attr("batchsweep_run", run.id)
    study.add_trials(trials)
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    return Exported(name, to, chosen, "maximize" if up else "minimize", states)


def _distributions(run: Run, df: Any) -> dict[str, optuna.distributions.BaseDistribution]:
    """Each param's distribution: as declared for a sampled one, the choice of its values for a gridded
    one."""
    import optuna.distributions as od

    from batchsweep.report.results import derived_params
    from batchsweep.spec.distributions import parse

    spec = run.record.spec
    space = {**(spec.search.space if spec.search else {}),
             **(spec.params.random.space if spec.params and spec.params.random else {})}
    out: dict[str, od.BaseDistribution] = {n: parse(t, where=n).to_optuna() for n, t in space.items()}
    derived = set(derived_params(run))
    for p in run.record.param_names:
        if p in out or p in derived or p in SEARCH_PARAMS or p not in df.columns:
            continue
        values = sorted({_plain(v) for v in df[p].tolist()}, key=lambda v: (str(type(v)), v))
        if len(values) > 1:  # a param fixed for every task is no dimension of the study
            out[p] = od.CategoricalDistribution(values)
    return out


def _plain(v: Any) -> Any:
    """A value as a CategoricalDistribution holds it: None, bool, int, float or str."""
    if hasattr(v, "item") and not hasattr(v, "__len__"):
        v = v.item()
    if v is None or isinstance(v, (bool, int, float, str)):
        return None if isinstance(v, float) and math.isnan(v) else v
    return str(v)


def _trial(row: Any, distributions: dict[str, Any], metric: str, steps: dict[int, float],
           run_id: str) -> optuna.trial.FrozenTrial:
    from optuna.trial import TrialState, create_trial

    status = str(row.get("status", ""))
    value = row.get(metric)
    value = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) else None
    state = (TrialState.COMPLETE if status == "succeeded" and value is not None else
             TrialState.PRUNED if status == "pruned" else
             TrialState.RUNNING if status in ("running", "pending") else TrialState.FAIL)
    params = {p: _param(row.get(p), d) for p, d in distributions.items()}
    attrs: dict[str, Any] = {"task": int(row["task"]), "status": status, "batchsweep_run": run_id}
    if "round" in row and isinstance(row["round"], (int, float)) and math.isfinite(row["round"]):
        attrs["round"] = int(row["round"])
    error = row.get("error")
    if isinstance(error, str) and error and status != "succeeded":
        attrs["why"] = error
    return create_trial(params=params, distributions=distributions,
                        value=value if state is TrialState.COMPLETE else None, state=state,
                        intermediate_values=steps, user_attrs=attrs)


def _param(value: Any, dist: Any) -> Any:
    import optuna.distributions as od

    value = _plain(value)
    if isinstance(dist, od.IntDistribution) and isinstance(value, float) and value == int(value):
        return int(value)
    if isinstance(dist, od.FloatDistribution) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value
