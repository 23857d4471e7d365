"""Adaptive search (the spec's `search:` block): batch-parallel Bayesian optimisation with Optuna, on any
engine.

A search runs in rounds. Each round asks the study for `batch` trials, appends one task per trial to the run
(params: the trial's values, `params.fixed`, `trial`, `round`), runs them as ONE submission (one array job on
AWS Batch), and tells each trial its result; failed, timed-out and metric-less trials are told FAIL, not
dropped. The rounds themselves (samplers, ask, tell, the loop) are `batchsweep.planning.optuna_rounds`, which
knows no engine or store; this module gives them the run's tasks, engine and journal.

The study is an Optuna journal in the run's directory (for an S3 store, a local copy uploaded after every ask
and tell). The journal is written before the tasks, and task statuses are the truth about what finished, so a
driver killed at any point resumes without losing or repeating a trial:
    asked, its task has a result   → told
    asked, its task has no result  → the same task runs again
    asked, no task written yet     → its task is appended, then runs
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchsweep.errors import SpecError
from batchsweep.model import SEARCH_PARAMS, State, Task
from batchsweep.planning import space as space_mod
from batchsweep.planning.optuna_rounds import (
    Evaluate,
    Proposal,
    Pruned,
    as_value,
    ask_round,
    check_sampler,
    next_round,
    optimize,
    tell,
    told,
)
from batchsweep.spec import distributions
from batchsweep.spec.schema import Search, Spec
from batchsweep.store.core import SEARCH_JOURNAL

if TYPE_CHECKING:
    import optuna

    from batchsweep.runs.run import Run
    from batchsweep.store.record import SearchRecord

log = logging.getLogger(__name__)
JOURNAL = SEARCH_JOURNAL  # new runs record it in run.json (search.journal)
# a cancelled or missing one runs again
RESULT_STATES = (State.SUCCEEDED, State.FAILED, State.TIMEOUT, State.PRUNED)


class Interrupted(Exception):
    """A round ended with tasks that have no result (cancelled, lost, runner killed): `resume` reruns them."""


# -- before a run exists ------------------------------------------------------------------------
def check(spec: Spec) -> tuple[list[Task], dict[str, Any]]:
    """Raise SpecError for a search this installation cannot run. Returns example tasks (to check the script's
    flags and the inputs against) and the fields the search adds to run.json."""
    search = spec.search
    assert search is not None
    if importlib.util.find_spec("optuna") is None:
        raise SpecError("search: needs Optuna, which is not installed; pip install 'batchsweep[search]'")
    check_sampler(search.sampler)
    params = spec.params
    if params is not None and (
        params.grid or params.list_ or params.zip or params.random or params.repeat > 1
    ):
        raise SpecError(
            "params: with `search:`, params may only hold `fixed` (the search proposes the rest); "
            "move the other parameters into search.space"
        )
    fixed = dict(params.fixed) if params else {}
    for name in search.space:
        if name in SEARCH_PARAMS:
            raise SpecError(
                f"search.space.{name}: `{name}` is set by batchsweep itself; rename the parameter"
            )
        if name in fixed:
            raise SpecError(f"search.space.{name}: also set in params.fixed; keep it in one place")
    batch = min(search.batch or spec.max_parallel or os.cpu_count() or 1, search.trials)
    fields = {
        "param_names": [*spec.param_names, *SEARCH_PARAMS],
        "search": {"batch": batch, "journal": JOURNAL},
    }
    return _example_tasks(spec, fixed), fields


def _example_tasks(spec: Spec, fixed: dict[str, Any]) -> list[Task]:
    """One task at the low end of every range, plus one per other choice: enough to check flags and
    choices."""
    assert spec.search is not None
    dists = {n: distributions.parse(t, where=f"search.space.{n}") for n, t in spec.search.space.items()}
    base = {n: d.args[0] if d.kind in ("choice", "randint") else float(d.args[0]) for n, d in dists.items()}
    rows = [base] + [{**base, n: v} for n, d in dists.items() if d.kind == "choice" for v in d.args[1:]]
    out = []
    for i, row in enumerate(rows):
        params, inputs = space_mod.resolve({**row, **fixed, "trial": 0, "round": 0}, spec.inputs)
        out.append(Task(index=i, params=params, inputs=inputs))
    return out


# -- the study in the run's store -----------------------------------------------------------------
class StudyFile:
    """The run's journal: in the run directory on a local store; a local copy synced to S3 otherwise."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.key = run.store.search_journal_key(run.id, _recorded(run).journal)
        if run.store.is_local:
            self.path = run.store.local_path(self.key)
        else:
            self.path = Path(tempfile.mkdtemp(prefix="batchsweep-study-")) / JOURNAL
            if run.store.backend.exists(self.key):
                run.store.backend.download(self.key, self.path)

    def open(self, *, create: bool = False) -> optuna.Study:
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        self._repair()
        storage = JournalStorage(JournalFileBackend(str(self.path)))
        if create:
            return optuna.create_study(
                storage=storage, study_name=self.run.id, direction=_search(self.run).direction
            )
        return optuna.load_study(storage=storage, study_name=self.run.id)

    def _repair(self) -> None:
        """A driver killed with -9 may leave the lock behind or half a line; only one driver writes at a
        time."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        Path(f"{self.path}.lock").unlink(missing_ok=True)
        if self.path.exists():
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):
                self.path.write_bytes(data[: data.rfind(b"\n") + 1])

    def save(self) -> None:
        if not self.run.store.is_local:
            self.run.store.backend.write_bytes(self.key, self.path.read_bytes())


# -- a run ------------------------------------------------------------------------------------------
def _search(run: Run) -> Search:
    """The run's `search:` block, as recorded."""
    search = run.record.spec.search
    if search is None:
        raise SpecError(f"run {run.id} is not a search (its spec has no `search:`)")
    return search


def _recorded(run: Run) -> SearchRecord:
    """What the search added to its run's record (rounds of `batch` trials, the journal's name)."""
    recorded = run.record.search
    if recorded is None:
        raise SpecError(f"run {run.id} is not a search (its run.json has no `search` fields)")
    return recorded


def start(run: Run, *, detach: bool) -> None:
    """Create the run's study. Rounds are driven by `Run.wait` in this process."""
    no_detach(detach)
    study_file = StudyFile(run)
    study_file.open(create=True)
    study_file.save()


def no_detach(detach: bool) -> None:
    """A search cannot be left to run on its own: its sampler runs in the waiting process, on this machine."""
    if detach:
        raise SpecError(
            "search: --detach is not supported: each round's trials are proposed by the sampler in the "
            "process that waits, from the results of the rounds before (the backend only runs the tasks); "
            "run without --detach, e.g. `nohup batchsweep run SPEC &` or in tmux, and if that process "
            "stops, `batchsweep resume RUN` goes on from the finished rounds"
        )


def resume_todo(run: Run, *, detach: bool) -> list[int]:
    """Tell what finished; the tasks to run next: asked trials without a result, else the next round's
    trials."""
    no_detach(detach)
    study_file = StudyFile(run)
    study = study_file.open()
    left = _settle(run, study)
    study_file.save()
    if not left:
        batch = _recorded(run).batch
        n = min(batch, _search(run).trials - told(study))
        if n <= 0:
            return []
        left = ask_round(study, _search(run), n, batch=batch)
        study_file.save()
    index_of = _task_indices(run, left)
    return [index_of[p.trial] for p in left]


def drive(run: Run, *, progress: bool, interval: float) -> None:
    """Run rounds until the search has all its trials (or a round is interrupted: `resume` continues it)."""
    search = _search(run)
    study_file = StudyFile(run)
    study = study_file.open()
    evaluate = _engine_evaluator(run, search, study, progress=progress, interval=interval)
    try:
        left = _settle(run, study)
        study_file.save()
        if left:
            for proposal, value in zip(left, evaluate(left)):
                tell(study, proposal.trial, value)
            study_file.save()
        optimize(study, search, evaluate, batch=_recorded(run).batch, checkpoint=study_file.save)
    except Interrupted:
        return
    if progress:
        for line in status_lines(run):
            log.info(line)


def _settle(run: Run, study: optuna.Study) -> list[Proposal]:
    """Tell each asked trial whose task has a result; return the asked trials that still need one."""
    from optuna.trial import TrialState

    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return []
    by_trial = {t.params["trial"]: t.index for t in run.tasks() if "trial" in t.params}
    metric = _search(run).metric
    left = []
    for trial in running:
        index = by_trial.get(trial.number)
        status = run.store.read_status(run.id, index) if index is not None else None
        if index is not None and status is not None and status.state is State.PRUNED:
            tell(study, trial.number, _pruned(run, index))
        elif index is not None and status is not None and status.state in RESULT_STATES:
            metrics = (
                run.store.read_metrics(run.id, [index]).get(index)
                if status.state is State.SUCCEEDED
                else None
            )
            tell(study, trial.number, as_value(metrics, metric))
        else:
            round_ = int(trial.user_attrs.get("round", max(next_round(study) - 1, 0)))
            left.append(Proposal(trial.number, round_, dict(trial.params)))
    return left


def _task_indices(run: Run, proposals: list[Proposal]) -> dict[int, int]:
    """The task of each proposal: the one already written for its trial, or a new one appended to the run."""
    tasks = run.tasks()
    index_of = {t.params["trial"]: t.index for t in tasks if "trial" in t.params}
    spec = run.record.spec
    fixed = dict(spec.params.fixed if spec.params else {})
    keyer = trial_keyer(run)
    new: list[Task] = []
    for p in proposals:
        if p.trial in index_of:
            continue
        params, inputs = space_mod.resolve({**p.values, **fixed, "trial": p.trial, "round": p.round},
                                           list(spec.inputs), task=f"trial {p.trial}")
        task = Task(
            index=len(tasks) + len(new), params=params, inputs=inputs, cache_key=keyer(params, inputs)
        )
        index_of[p.trial] = task.index
        new.append(task)
    if new:
        run.store.write_tasks(run.id, [*tasks, *new])
        run.info = run.store.update_run_info(run.id, n_tasks=len(tasks) + len(new))
    return index_of


def trial_keyer(run: Run) -> Callable[[dict[str, Any], tuple[str, ...]], str]:
    """A trial's content key (`batchsweep.planning.keys`): the one a grid task with the same params gets, so a
    trial can take any earlier result. `trial` and `round` are left out when the task never sees them (a
    script whose flags are known and do not declare them); else, and for runs from before `key_common`, they
    stay in, so the key is the trial's own."""
    from batchsweep.planning import keys
    from batchsweep.scripts.options import flags_from_json

    record = run.record
    common = record.key_common
    if not common:
        return lambda params, inputs: keys.sha256_text(keys.canonical([record.code_hash, params, inputs]))
    aws = record.spec.aws
    stamps = keys.InputStamps(Path(record.base_dir), keys.HashCache(),
                              s3_head=keys.s3_head(profile=aws.profile, region=aws.region))
    keyer = keys.Keyer.from_common(common, stamps)
    flags = flags_from_json(record.flags) if record.flags and not record.spec.function else None
    hidden = {p for p in SEARCH_PARAMS if flags is not None and flags.known and flags.lookup(p) is None}

    def key(params: dict[str, Any], inputs: tuple[str, ...]) -> str:
        return keyer({k: v for k, v in params.items() if k not in hidden}, inputs)

    return key


def _reuse_round(run: Run, indices: list[int]) -> set[int]:
    """The round's tasks whose content key already succeeded in this store (this search's earlier trials,
    other runs, a grid over the same space): their results are copied in, not run. Only when the run has reuse
    on."""
    from batchsweep.planning.reuse import copy_results, lookup, rule_of

    if not run.record.reuse:
        return set()
    wanted = set(indices)
    done = {i for i in indices if run.store.read_status(run.id, i) is not None}
    tasks = [t for t in run.tasks() if t.index in wanted and t.index not in done]
    rule = rule_of(run.record.spec_json())
    found = lookup(run.store, tasks, metrics_rule=rule, keeps_everything=not run.record.spec.outputs)
    if found.found:
        copy_results(run.store, run.id, tasks, found, metrics_rule=rule)
        log.info("round: %s", found.line().replace("to run", "trials to run"))
    return set(found.found)


def _engine_evaluator(run: Run, search: Search, study: optuna.Study, *, progress: bool,
                      interval: float) -> Evaluate:
    from batchsweep.report.progress import watch

    def evaluate(proposals: list[Proposal]) -> list[float | Pruned | None]:
        index_of = _task_indices(run, proposals)
        indices = [index_of[p.trial] for p in proposals]
        if progress:
            log.info(
                "round %s: %d trials (%d of %d told so far)",
                proposals[0].round,
                len(indices),
                told(study),
                search.trials,
            )
        reused = _reuse_round(run, indices)
        to_run = [i for i in indices if i not in reused]
        # A fresh engine per round: its own thread, its own poll backoff. Renewed when the round runs nothing
        # too, so the last engine that ran tasks is closed knowing the run moved on (a Dask engine hands its
        # cluster to the next round's).
        run.renew_engine()
        if to_run:
            run.engine.submit(to_run, detach=False)
            watch(run, show=progress, interval=interval)
        statuses = {i: run.store.read_status(run.id, i) for i in indices}
        if any(s is None or s.state not in RESULT_STATES for s in statuses.values()):
            raise Interrupted
        metrics = run.store.read_metrics(
            run.id, [i for i, s in statuses.items() if s and s.state is State.SUCCEEDED]
        )
        values = [as_value(metrics.get(i), search.metric) for i in indices]
        _check_metric(search, study, metrics, values)
        return [_pruned(run, i) if (s := statuses[i]) is not None and s.state is State.PRUNED else v
                for i, v in zip(indices, values)]

    return evaluate


def _pruned(run: Run, index: int) -> Pruned:
    """A pruned trial's series of the search's metric (empty when the stop rule watched another metric)."""
    from batchsweep.task.series import parse, values_by_step

    try:
        data = run.store.backend.read_bytes(run.store.task_series_key(run.id, index))
    except FileNotFoundError:
        data = b""
    return Pruned(values_by_step(parse(data), _search(run).metric))


def _check_metric(search: Search, study: optuna.Study, metrics: dict[int, dict[str, Any]],
                  values: list[float | None]) -> None:
    """Tasks succeed but none reports the metric, and none ever has: stop before the whole budget is spent."""
    from optuna.trial import TrialState

    if not metrics or any(v is not None for v in values) or study.get_trials(states=(TrialState.COMPLETE,)):
        return
    seen = sorted({k for m in metrics.values() for k in m})
    raise SpecError(f"search.metric: no task reported {search.metric!r} as a number (they reported: "
                    f"{', '.join(seen) or 'nothing'}); fix search.metric or what the script writes")


# -- what `status` shows ---------------------------------------------------------------------------
def best(run: Run) -> tuple[Task, float] | None:
    """The best trial so far, read from the store (no Optuna needed)."""
    search = _search(run)
    statuses = run.statuses()
    ok = [i for i, s in statuses.items() if s.state is State.SUCCEEDED]
    metrics = run.store.read_metrics(run.id, ok)
    scored = [(v, i) for i in ok if (v := as_value(metrics.get(i), search.metric)) is not None]
    if not scored:
        return None
    value, index = (max if search.direction == "maximize" else min)(scored)
    task = next(t for t in run.tasks() if t.index == index)
    return task, value


def status_lines(run: Run) -> list[str]:
    search = _search(run)
    done = sum(1 for s in run.statuses().values() if s.state in RESULT_STATES)
    lines = [f"search   {search.sampler} · {done} of {search.trials} trials done · rounds of "
             f"{_recorded(run).batch} · {search.direction} {search.metric}"]
    found = best(run)
    if found is None:
        lines.append(f"best     no trial has reported {search.metric!r} yet")
    else:
        task, value = found
        shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in task.params.items() if k in search.space)
        lines.append(f"best     {search.metric}={value:.6g} · trial {task.params.get('trial')} "
                     f"(task {task.index}, round {task.params.get('round')}) · {shown}")
    return lines
