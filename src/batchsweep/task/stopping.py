"""Early stopping (the spec's `stop:`): should this running task stop now, given every series of its run?

The decision is Optuna's: the run becomes an in-memory study, one trial per task in index order (trial number
= task index), each with its series of `stop.metric` as intermediate values — succeeded tasks COMPLETE, pruned
ones PRUNED, failed ones FAIL, the others RUNNING — and the rule's pruner (MedianPruner, PercentilePruner,
SuccessiveHalvingPruner, HyperbandPruner, ThresholdPruner) is asked about the task's trial. `decide` is a pure
function of that data: the same series and states give the same decision on every engine.

Successive halving and Hyperband also read the rungs each trial recorded when it asked `should_prune`. Those
are written in Optuna's own (private) format, in linear time (`_with_records`); if an Optuna release renames
what that needs, the run is instead replayed through Optuna's public trial API (`_replay`: same decisions,
quadratic time). A test compares both with a live Optuna study at every step and fails when the format moves.

Who decides: the worker running the task, after each read of its log that added steps (docs/design.md,
"Series and early stopping"). It reads the other tasks' series and statuses from the store (`RunView`), so no
driver has to stay online — on AWS Batch the containers read each other's series from S3.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal

from batchsweep.model import State, TaskStatus
from batchsweep.task.runview import LIST_PAGE, MAX_BACKOFF, RunView, shared_view
from batchsweep.task.series import values_by_step

if TYPE_CHECKING:
    import optuna

    from batchsweep.store.core import Store

__all__ = ["LIST_PAGE", "MAX_BACKOFF", "Decision", "RunView", "Stopper", "decide", "shared_view"]

MAX_STEPS_PER_CHECK = 50
OPTUNA_STATES = {State.SUCCEEDED: "COMPLETE", State.PRUNED: "PRUNED", State.FAILED: "FAIL",
                 State.TIMEOUT: "FAIL", State.LOST: "FAIL", State.CANCELLED: "FAIL"}


@dataclass(frozen=True)
class Decision:
    step: int
    value: float
    reason: str


STUDY_PREFIX = "batchsweep-stop-"


class _OurStudies(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return STUDY_PREFIX not in record.getMessage()


@functools.cache
def _quiet_study_creation() -> None:
    """Every decision builds a study in memory; Optuna would announce each one. Only those announcements are
    dropped: Optuna's own log level stays the CLI's to set."""
    logging.getLogger("optuna.storages._in_memory").addFilter(_OurStudies())


@functools.cache
def warm_up() -> None:
    """Import Optuna and take one throwaway decision before the first task with `stop:` starts in this process
    (an AWS container, a Dask worker): done in the middle of the task's first decision instead (the import a
    second or more on a loaded machine, the first study and prune call 15-30x a later one), the task would run
    on meanwhile and be stopped steps later than the rule said."""
    import optuna  # noqa: F401

    done = {i: {1: 1.0 + i} for i in range(2)}
    decide({"metric": "m", "rule": "median", "min_trials": 1}, "warm-up", 2, {**done, 2: {1: 9.0}},
           dict.fromkeys(done, State.SUCCEEDED))


def pruner(stop: dict[str, Any]) -> optuna.pruners.BasePruner:
    import optuna

    rule = stop.get("rule", "median")
    warmup, interval = int(stop.get("min_steps") or 0), int(stop.get("interval") or 1)
    startup = int(stop.get("min_trials", 5))
    if rule == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=startup, n_warmup_steps=warmup, interval_steps=interval
        )
    if rule == "percentile":
        return optuna.pruners.PercentilePruner(float(stop.get("percentile", 25.0)), n_startup_trials=startup,
                                               n_warmup_steps=warmup, interval_steps=interval)
    if rule == "threshold":
        return optuna.pruners.ThresholdPruner(lower=stop.get("lower"), upper=stop.get("upper"),
                                              n_warmup_steps=warmup, interval_steps=interval)
    rf = int(stop.get("reduction_factor") or 3)
    if rule == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, warmup), reduction_factor=rf)
    if rule == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=max(1, warmup), max_resource=int(stop["max_steps"]), reduction_factor=rf
        )
    raise ValueError(f"unknown stop rule {rule!r}")


def _rung_steps(steps: list[int], *, min_resource: int, rf: int) -> set[int]:
    """The steps at which a successive-halving pruner records a rung, whatever its bracket: the first step at
    or past min_resource * rf**k for each k (a bracket's rungs start at k = its early-stopping rate)."""
    marks, k = set(), 0
    while steps:
        at = min_resource * rf**k
        reached = next((s for s in steps if s >= at), None)
        if reached is None:
            break
        marks.add(reached)
        k += 1
    return marks


class _Replaying(logging.Filter):
    """Drops Optuna's "Trial N finished/pruned" lines while this thread replays a run into a study."""

    local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.local, "on", False)


@functools.cache
def _quiet_replay() -> None:
    logging.getLogger("optuna.study._tell").addFilter(_Replaying())


def decide(stop: dict[str, Any], study_name: str, index: int, series: dict[int, dict[int, float]],
           states: dict[int, State]) -> Decision | None:
    """Should task `index` stop at the last step of its series? `series` holds every task's {step: value} of
    `stop.metric`; `states` the tasks that ended (any other task is running or pending)."""
    import optuna

    own = series.get(index) or {}
    if not own:
        return None
    direction: Literal["minimize", "maximize"] = (
        "maximize" if stop.get("direction") == "maximize" else "minimize"
    )
    _quiet_study_creation()
    rule = pruner(stop)
    study = optuna.create_study(study_name=STUDY_PREFIX + study_name, direction=direction, pruner=rule,
                                sampler=optuna.samplers.RandomSampler(seed=0),
                                storage=optuna.storages.InMemoryStorage())
    last = max(own)
    n = max([index, *series, *states]) + 1
    if isinstance(rule, (optuna.pruners.SuccessiveHalvingPruner, optuna.pruners.HyperbandPruner)):
        fast = _records_hooks() is not None
        prune = (_with_records if fast else _replay)(study, stop, index, series, states, n)
    else:
        prune = _ask_once(study, rule, index, series, states, n)
    if not prune:
        return None
    metric = stop.get("metric")
    return Decision(
        step=last,
        value=own[last],
        reason=f"pruned at step {last} by the {stop.get('rule', 'median')} rule ({metric}={own[last]:.6g})",
    )


def _state(i: int, index: int, values: dict[int, float], states: dict[int, State]) -> Any:
    from optuna.trial import TrialState

    if i == index or i not in states:
        return TrialState.RUNNING
    state = TrialState[OPTUNA_STATES.get(states[i], "RUNNING")]
    if state is TrialState.COMPLETE and not values:
        return TrialState.FAIL  # finished without a series: nothing to compare with
    return state


def _ask_once(study: optuna.Study, rule: optuna.pruners.BasePruner, index: int,
              series: dict[int, dict[int, float]], states: dict[int, State], n: int) -> bool:
    """Median, percentile and threshold read only the trials' values and states: the run's trials are added as
    they stand (trial number = task index) and the pruner is asked once about the task's trial."""
    from optuna.trial import TrialState, create_trial

    trials = []
    for i in range(n):
        values = series.get(i) or {}
        state = _state(i, index, values, states)
        value = values[max(values)] if state is TrialState.COMPLETE else None
        trials.append(create_trial(state=state, value=value, intermediate_values=values))
    study.add_trials(trials)
    return rule.prune(study, study.get_trials(deepcopy=False)[index])


def _replay(study: optuna.Study, stop: dict[str, Any], index: int, series: dict[int, dict[int, float]],
            states: dict[int, State], n: int) -> bool:
    """Successive halving and Hyperband keep their own record of each trial's rungs, written when a trial asks
    `should_prune` at a rung's step. So the run is replayed through Optuna's public trial API: each task's
    trial (number = task index) reports its value and asks at every step where a rung may be recorded (its
    verdicts are ignored: what happened to it is in `states`; the steps between rungs are not read by these
    pruners, so not replayed), then the task's own trial reports its last step and asks. The bracket, the rung
    values and the decision are all Optuna's."""
    from optuna.trial import TrialState

    min_resource = max(1, int(stop.get("min_steps") or 1))
    rf = int(stop.get("reduction_factor") or 3)
    own = series[index]
    last = max(own)
    _quiet_replay()
    _Replaying.local.on = True
    try:
        mine = None
        for i in range(n):
            trial = study.ask()
            values = own if i == index else series.get(i) or {}
            steps = sorted(s for s in values if i != index or s < last)
            for step in sorted(_rung_steps(steps, min_resource=min_resource, rf=rf)):
                trial.report(values[step], step)  # the pruners read nothing but the value at a rung's step
                trial.should_prune()
            state = _state(i, index, values, states)
            if i == index:
                mine = trial
            elif state is TrialState.COMPLETE:
                study.tell(trial, values[max(values)])
            elif state is not TrialState.RUNNING:
                study.tell(trial, state=state)
        assert mine is not None and mine.number == index
        mine.report(own[last], last)
        return mine.should_prune()
    finally:
        _Replaying.local.on = False


@functools.cache
def _records_hooks() -> Callable[[int], str] | None:
    """Optuna's private pieces the fast path writes to: the name of a rung's record (`completed_rung_N`) and
    HyperbandPruner's bracket methods. None when a release renamed them: the replay (public API) then decides
    alone. tests/test_early_stop.py checks both paths against a live Optuna study and fails when these are
    gone."""
    try:
        from optuna.pruners import HyperbandPruner
        from optuna.pruners._successive_halving import _completed_rung_key
    except ImportError:
        return None
    if not all(
        callable(getattr(HyperbandPruner, m, None)) for m in ("_try_initialization", "_get_bracket_id")
    ):
        return None
    return _completed_rung_key


def _with_records(study: optuna.Study, stop: dict[str, Any], index: int, series: dict[int, dict[int, float]],
                  states: dict[int, State], n: int) -> bool:
    """What `_replay` decides, in linear time: the rungs each trial would have recorded are written as Optuna
    writes them (a system attribute per rung: its value at the first step at or past the rung's step, in the
    trial's bracket) and the pruner is asked once. Uses Optuna's private record format (`_records_hooks`)."""
    import optuna
    from optuna.trial import TrialState, create_trial

    rung_key = _records_hooks()
    assert rung_key is not None
    rule = study.pruner
    min_resource = max(1, int(stop.get("min_steps") or 1))
    rf = int(stop.get("reduction_factor") or 3)
    own = series[index]
    last = max(own)
    bracket = None
    if isinstance(rule, optuna.pruners.HyperbandPruner):
        rule._try_initialization(study)  # max_resource is given: the brackets do not depend on the data
        bracket = rule._get_bracket_id
    trials = []
    for i in range(n):
        values = own if i == index else series.get(i) or {}
        state = _state(i, index, values, states)
        attrs: dict[str, Any] = {}
        if values:
            # arg-type: a stand-in for Optuna's FrozenTrial, which the bracket reads only `number` of
            trial = SimpleNamespace(number=i)
            rate = bracket(study, trial) if bracket is not None else 0  # type: ignore[arg-type]
            steps = sorted(s for s in values if i != index or s < last)
            rung = 0
            while steps:
                reached = next((s for s in steps if s >= min_resource * rf ** (rate + rung)), None)
                if reached is None:
                    break
                attrs[rung_key(rung)] = values[reached]
                rung += 1
        value = values[max(values)] if state is TrialState.COMPLETE else None
        trials.append(create_trial(state=state, value=value, intermediate_values=values, system_attrs=attrs))
    study.add_trials(trials)
    return rule.prune(study, study.get_trials(deepcopy=False)[index])


def first_step(stop: dict[str, Any]) -> int:
    """The first step at which the rule can stop a task: Optuna's pruners never prune before n_warmup_steps
    (median, percentile, threshold) or min_resource (halving, hyperband)."""
    warmup = int(stop.get("min_steps") or 0)
    return max(1, warmup) if stop.get("rule") in ("halving", "hyperband") else warmup


def reads_running(stop: dict[str, Any]) -> bool:
    """Whether the rule compares a task with the running ones (halving, hyperband): then every worker pushes
    its task's series as soon as it reads a step. Median and percentile compare with finished tasks only."""
    return stop.get("rule") in ("halving", "hyperband")


class Stopper:
    """The worker's side of `stop:` for one task: asked after each read of its log that added steps. `every`
    spaces the listings of a remote store (`RunView`), `soon` while the rule cannot decide yet."""

    def __init__(self, stop: dict[str, Any], store: Store, run_id: str, index: int, *, every: float = 0.0,
                 soon: float = 0.0, view: RunView | None = None) -> None:
        self.stop, self.run_id, self.index = stop, run_id, index
        self.metric = str(stop["metric"])
        self.view = view or shared_view(store, run_id, self.metric, every=every, soon=soon,
                                        running_too=reads_running(stop))
        self.alone = stop.get("rule") == "threshold"  # its bounds need no other task: nothing to read
        # Median and percentile decide nothing before min_trials tasks finished (Optuna's n_startup_trials).
        counted = stop.get("rule", "median") in ("median", "percentile")
        self.need = int(stop.get("min_trials", 5)) if counted else 0
        self._checked: int | None = None
        self._fresh = True  # until the task's first decision has read the run
        if not self.alone:
            self.view.prefetch(own=index)

    def check(self, records: list[dict[str, Any]]) -> Decision | None:
        """Ask the rule at each step the series reached since the last check, in order (as Optuna asks a
        pruner at every report): the step a task is stopped at does not depend on how often its log was
        read."""
        own = values_by_step(records, self.metric)
        new = [s for s in sorted(own) if self._checked is None or s > self._checked][-MAX_STEPS_PER_CHECK:]
        if not new:
            return None
        self._checked = new[-1]
        first = first_step(self.stop)
        if new[-1] < first:
            if self._fresh and new[-1] + 1 == first and not self.alone:
                self.view.prefetch(own=self.index)  # the first decision is a read away
            return None  # the rule cannot stop it yet
        new = [s for s in new if s >= first]
        series, states = ({}, {}) if self.alone else self.view.refresh(own=self.index, need=self.need,
                                                                         fresh=self._fresh)
        self._fresh = False
        for step in new:
            series[self.index] = {s: v for s, v in own.items() if s <= step}
            decision = decide(self.stop, self.run_id, self.index, series, states)
            if decision is not None:
                return decision
        return None

    def finished(self, status: TaskStatus, records: list[dict[str, Any]]) -> None:
        """The task ended (its status stored): the next task this process runs knows it without a read."""
        self.view.saw(self.index, status, values_by_step(records, self.metric))


def saved_seconds(statuses: dict[int, TaskStatus]) -> tuple[float, int] | None:
    """Task time stopping saved, estimated, and the number of pruned tasks: each pruned task would have run
    about as long as the median task that ran to the end. None without a pruned task or a task that ran to the
    end."""
    import statistics

    full = [
        s.duration_s for s in statuses.values() if s.state is State.SUCCEEDED and s.duration_s is not None
    ]
    pruned = [s.duration_s for s in statuses.values() if s.state is State.PRUNED and s.duration_s is not None]
    if not pruned or not full:
        return None
    median = statistics.median(full)
    return sum(max(0.0, median - d) for d in pruned), len(pruned)
