"""The engine interface. An engine runs tasks somewhere and reports on them; it does nothing else.

Expanding the space, the store layout, results and the DataFrame live outside engines. Adding an engine is one
module with a subclass of `Engine`, registered in `batchsweep.registry.ENGINES` or through the
`batchsweep.engines` entry point group.
"""

from __future__ import annotations

import abc
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError

from batchsweep.clock import SYSTEM, Clock
from batchsweep.model import State

# engine.json's models and its one way in and out live with run.json's (`batchsweep.store.record`), below the
# engines: what reads a run without its engine (the AWS emulator's player) reads it through the same models.
# Named here too, where an engine (one from outside the package too) has always found them.
from batchsweep.store.record import EngineRecord as EngineRecord
from batchsweep.store.record import EngineSettings as EngineSettings
from batchsweep.store.record import read_engine_record as read_engine_record
from batchsweep.store.record import write_engine_record as write_engine_record

if TYPE_CHECKING:
    from batchsweep.model import Task, TaskStatus
    from batchsweep.report.cost import Durations, Estimate, RightSize
    from batchsweep.spec.schema import Spec
    from batchsweep.store.core import Store
    from batchsweep.store.record import RunRecord
    from batchsweep.store.runlock import RunLock

log = logging.getLogger(__name__)


def keep_code_package(spec: Spec, store: Store, code_dir: Path) -> dict[str, Any]:
    """The run's code package (`batchsweep.aws.codepkg`: the code directory less .gitignore, `code.exclude`,
    secrets, links leaving it and any store inside it) in the store at `code/<sha256>.tar.gz`, written only
    when no run has it yet: run.json `code_sha256`. Over `code.max_mib` it is not kept (`code_package` says
    why) and the run goes on: a local run needs no package to run."""
    from batchsweep.aws import codepkg
    from batchsweep.errors import SpecError

    store.mark()  # before packing: a store inside the code directory is never packed, even on its first run
    scratch = store.local_path("") if store.is_local else None
    with tempfile.TemporaryDirectory(prefix=".pack-", dir=scratch) as tmp:
        packed = Path(tmp) / "code.tar.gz"
        try:
            sha, _ = codepkg.pack_to_file(
                code_dir,
                packed,
                exclude=spec.code.exclude,
                include=spec.code.include,
                max_mib=spec.code.max_mib,
            )
        except SpecError as e:
            log.warning(
                "code: not kept for `batchsweep rerun` (it replays with the code directory as it is then): "
                "%s",
                e,
            )
            return {"code_package": f"not kept: {e}"}
        key = store.code_key(sha)
        if not store.backend.exists(key):
            if store.is_local:
                target = store.local_path(key)
                target.parent.mkdir(parents=True, exist_ok=True)
                # whole or not at all: a concurrent run writing the same bytes is harmless
                os.replace(packed, target)
            else:
                store.backend.upload_file(packed, key)  # type: ignore[attr-defined]
    return {"code_sha256": sha}


def ship_inputs(spec: Spec, store: Store) -> dict[str, dict[str, Any]]:
    """The tasks' local inputs in an S3 store, content-addressed (`inputs/<sha256>/<name>`, a directory as one
    tar.gz), uploaded only when the store has no such object yet: run.json `inputs_map` (input as written ->
    its key, and whether it is a directory). Streamed from disk with the transfer manager: no input is held in
    memory. `s3://` inputs are fetched by the worker from where they are."""
    from batchsweep.aws import codepkg
    from batchsweep.model import input_parts
    from batchsweep.planning import space

    if spec.search:  # a search's trials are not known yet: its inputs may name `fixed` params only
        expanded = [space.resolve(dict(spec.params.fixed if spec.params else {}), spec.inputs)[1]]
    else:
        expanded = [space.resolve(raw, spec.inputs)[1] for raw in space.iter_params(spec)]
    refs = sorted({src for t in expanded for src, _ in map(input_parts, t) if not src.startswith("s3://")})
    backend: Any = store.backend
    inputs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="batchsweep-pack-") as tmp:
        for n, ref in enumerate(refs):
            path = spec.base_dir / ref
            if path.is_dir():
                archive = Path(tmp) / f"input-{n}.tar.gz"
                digest, _ = codepkg.pack_to_file(path, archive, max_mib=10_000_000)
                key = store.input_key(digest, path.name + ".tar.gz")
                if not backend.exists(key):
                    backend.upload_file(archive, key)
                archive.unlink()
                inputs[ref] = {"key": key, "dir": True}
            else:
                key = store.input_key(codepkg.file_sha256(path), path.name)
                if not backend.exists(key):
                    backend.upload_file(path, key)
                inputs[ref] = {"key": key}
    return inputs


SettingsModel = TypeVar("SettingsModel", bound="BaseModel")


@dataclass(frozen=True)
class RunHandle:
    """What an engine is given of a run: who it is, where its store is, what was recorded when it was planned.
    Built by `Run.handle()`; an engine never sees the `Run` (nor reaches back into it)."""

    id: str
    name: str
    store: Store
    info: Mapping[str, Any]  # run.json as it was when the engine was made (read-only)
    n_tasks: int
    # the driving process's hold on the run (a detached runner adopts it)
    hold: Callable[[], RunLock | None] = lambda: None

    @classmethod
    def load(cls, store: Store, run_id: str) -> RunHandle:
        """The handle of a run from its store alone (a detached runner, a remote worker)."""
        info = store.run_info(run_id)
        return cls(id=run_id, name=str(info["name"]), store=store, info=MappingProxyType(info),
                   n_tasks=int(info["n_tasks"]))

    @cached_property
    def record(self) -> RunRecord:
        """run.json, typed."""
        from batchsweep.store.record import RunRecord

        return RunRecord.of(self.info)

    @property
    def spec(self) -> Spec:
        """The spec as recorded in run.json (the script by its name in `record.code_dir`)."""
        return self.record.spec

    @property
    def settings(self) -> Mapping[str, Any]:
        """This engine's resolved settings as JSON, read-only: for engines written before they were typed. An
        engine reads them through its model: `run.record.engine_as(MySettings)`."""
        return MappingProxyType(self.record.engine.model_dump(mode="json"))

    def tasks(self) -> list[Task]:
        return self.store.tasks(self.id)


@dataclass(frozen=True)
class Progress:
    """What an engine knows right now (`Engine.poll`). `status`, the progress bar, `wait` and `results` all
    read it through `states` and `tally`, so they never disagree about a task.

    A task's state is, in this order: its status (the store's, or one handed over in `statuses`); RUNNING when
    it is in `running`; PENDING while the run is `active`; once it is not, `missing` (CANCELLED when the run
    was cancelled)."""

    active: bool
    """The engine (or the process driving the run) may still start or finish tasks."""
    running: frozenset[int] = frozenset()
    """Tasks without a status that the engine knows are executing now. An engine that can only count them
    gives `counts` instead: a state is never guessed for a task."""
    queues: tuple[tuple[int, ...], ...] = ()
    """Units that run now, each running its tasks one after another in this order (an AWS child of packed
    tasks): the first of each without a status is executing. Readers resolve it with the statuses they hold,
    so the engine names the task without reading the store."""
    counts: Mapping[str, int] | None = None
    """The whole run's tasks by state name, when the engine can tell them cheaper than reading every status (a
    long local run, AWS child jobs). Their sum is the run's task count; `tally` uses them as they are while
    the run is active and turns their pending and running into `missing` once it is not."""
    missing: State = State.PENDING
    """What a task without a status is once the run is no longer active: it never ran (PENDING), or the engine
    saw it end without writing one (LOST)."""
    statuses: Mapping[int, TaskStatus] | None = None
    """Statuses the engine wrote itself, handed over so a poll spares a full read of the store (`covers`: the
    tasks they stand for; the store has the rest)."""
    covers: frozenset[int] = frozenset()
    notes: tuple[str, ...] = ()
    """Sentences for the user (why tasks wait), repeated by each poll until they change."""
    units: Mapping[str, int] = field(default_factory=dict)
    """The engine's own work units by its own state names, for `status` (`unit_name` says what they are)."""
    unit_name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.running, frozenset):
            raise TypeError(f"Progress.running takes the indices of the running tasks (a frozenset), not "
                            f"{self.running!r}: an engine that can only count them gives `counts`")

    def ended_as(self, cancelled: bool) -> State:
        """The state of a task without a status (`cancelled`: run.json says the run was cancelled)."""
        if self.active:
            return State.PENDING
        return State.CANCELLED if cancelled else self.missing

    def states(self, n_tasks: int, written: Mapping[int, State], cancelled: bool) -> list[State]:
        """Every task's state, from the states of the statuses `written` (by task index)."""
        missing = self.ended_as(cancelled)
        running = self.now_running(written) if self.active else frozenset()
        return [
            written[i] if i in written else State.RUNNING if i in running else missing for i in range(n_tasks)
        ]

    def now_running(self, written: Mapping[int, object]) -> frozenset[int]:
        """`running` and, of each of `queues`, the first task without a status in `written`."""
        ahead = (next((i for i in queue if i not in written), None) for queue in self.queues)
        return self.running | {i for i in ahead if i is not None}

    def tally(self, n_tasks: int, written: Mapping[int, State], cancelled: bool) -> Counter[str]:
        """The run's tasks by state name, as `states` would count them (or as the engine's `counts` say)."""
        if self.counts is None:
            return Counter(state.value for state in self.states(n_tasks, written, cancelled))
        counts = Counter({state: n for state, n in self.counts.items() if n})
        if not self.active:
            left = counts.pop(State.PENDING.value, 0) + counts.pop(State.RUNNING.value, 0)
            if left:
                counts[self.ended_as(cancelled).value] += left
        return counts


def parse_settings(model: type[SettingsModel], block: str, raw: Mapping[str, Any] | None) -> SettingsModel:
    """An engine's block of the spec (`dask:`, `k8s:`), validated by the engine's own pydantic model. Raises
    ValueError with one line naming the key and the fix: `dask.schedular: unknown key; did you mean ...`."""
    from pydantic import ValidationError

    from batchsweep.spec.schema import describe_error

    try:
        return model.model_validate(dict(raw or {}))
    except ValidationError as e:
        raise ValueError(describe_error(e, root=model, prefix=block)) from None


class Engine(abc.ABC):
    name: ClassVar[str]
    # The engine's own block of the spec (its key, and the pydantic model that validates it): `dask: {...}`.
    # The spec and `--set` pass the block to it untouched; an engine without settings refuses a block.
    block: ClassVar[str | None] = None
    settings_model: ClassVar[type[BaseModel] | None] = None
    # Whether tasks run the code directory as it is when each starts (local, Dask), so a resume after the code
    # changed runs the new code and keys it so; False when they run the package `prepare()` shipped at the
    # start.
    live_code: ClassVar[bool] = True
    # What the engine keeps in the run's engine.json (`read_engine_record` / `write_engine_record`); None:
    # nothing.
    record_model: ClassVar[type[EngineRecord] | None] = None
    # The model of its resolved settings (what `check` returns, run.json `engine`; read through
    # `RunRecord.engine_as`). The base model keeps whatever fields it is given.
    engine_settings_model: ClassVar[type[EngineSettings]] = EngineSettings

    @classmethod
    def settings_of(cls, raw: Mapping[str, Any] | None) -> BaseModel | None:
        """The spec's block for this engine, validated (ValueError naming the key and the fix when it is
        bad)."""
        if cls.settings_model is None:
            if raw:
                raise ValueError(
                    f"{cls.block or cls.name}: the {cls.name} engine takes no settings; remove the block"
                )
            return None
        return parse_settings(cls.settings_model, cls.block or cls.name, raw)

    def __init__(self, run: RunHandle) -> None:
        self.run = run
        # the time its polls and waits read and sleep on (a test passes a fake one)
        self.clock: Clock = SYSTEM

    # -- before a run exists -----------------------------------------------------------------
    @classmethod
    def check(cls, spec: Spec, tasks: Sequence[Task]) -> EngineSettings | Mapping[str, Any]:
        """Raise SweepError for anything this engine cannot run; called before anything is written.
        Returns the engine's resolved settings, kept in run.json as `engine`: an `engine_settings_model` (a
        mapping is read through that model)."""
        return cls.engine_settings_model()

    @classmethod
    def resolved(cls, settings: EngineSettings | Mapping[str, Any]) -> EngineSettings:
        """`check`'s result as the engine's settings model (SpecError naming the field when it does not
        fit)."""
        if isinstance(settings, cls.engine_settings_model):
            return settings
        from batchsweep.errors import SpecError

        raw = settings.model_dump(mode="json") if isinstance(settings, BaseModel) else dict(settings)
        try:
            return cls.engine_settings_model.model_validate(raw)
        except ValidationError as e:
            error = e.errors()[0]
            where = ".".join(str(p) for p in error["loc"])
            raise SpecError(f"the {cls.name} engine's settings: {where}: {error['msg']}") from None

    @classmethod
    def key_environment(cls, spec: Spec, settings: EngineSettings) -> dict[str, Any]:
        """What the tasks run on, as far as their results can tell: part of every content key
        (`batchsweep.planning.keys`). Here: this machine's interpreter; remote engines name their image and
        requirements instead."""
        from batchsweep.planning.keys import local_environment

        return local_environment()

    @classmethod
    def run_store(cls, settings: EngineSettings, default: Store) -> Store:
        """Where this engine's runs live (the local store; the S3 store for remote engines)."""
        return default

    @classmethod
    def prepare(cls, spec: Spec, store: Store, info: dict[str, Any]) -> dict[str, Any]:
        """Ship what tasks need (code, inputs) before submit; returns fields to add to run.json. Here (tasks
        run from the code directory itself): keep the code package in the store, so `rerun` replays the code
        as it was."""
        return keep_code_package(spec, store, Path(info["code_dir"]))

    # Whether `batchsweep run` returns once the tasks are submitted (`--detach` without asking): the engine's
    # scheduler runs them and nothing of batchsweep needs to stay alive (`wait` follows from any later shell).
    detaches: ClassVar[bool] = False

    @classmethod
    def preview(cls, spec: Spec, tasks: Sequence[Task], *, store: Store) -> str | None:
        """What a submit of these tasks to `store` would hand the engine's scheduler (a batch script), for
        `run --dry-run`, calling nothing remote. Here: None, nothing to show."""
        return None

    # -- what differs between engines: price, size, where tasks run (optional; the defaults price nothing)
    # ---- Whether `estimate_cost` prices the tasks: a dry run then shows the estimate without being asked for
    # it.
    priced: ClassVar[bool] = False
    # Whether tasks get the GPUs `resources.gpus` asks for (a lease of their own); planning refuses GPUs
    # otherwise.
    gpus: ClassVar[bool] = False
    # Whether tasks of one run may ask for different GPUs (`resources.gpus: "{param}"`).
    per_task_gpus: ClassVar[bool] = False
    # Whether tasks run on a Python of this machine: `python:` applies, and MLflow's client must be installed
    # here.
    local_python: ClassVar[bool] = True
    # Whether a submit packs tasks into children by an earlier run's task time (run.json's `median_task_s`,
    # which `runs.start.start` fills from the same figure `estimate` and a dry run read:
    # `runs.estimate.packing_durations`).
    packs_by_duration: ClassVar[bool] = False

    @classmethod
    def check_resources(cls, spec: Spec) -> None:
        """Refuse `resources:` this engine can never run, calling nothing remote (`estimate`, a dry run).
        Here: every size is fine."""
        return None

    @classmethod
    def memory_limit_mib(cls, record: RunRecord) -> int | None:
        """The memory each task of this run may use (MiB), which the worker enforces wherever the task runs
        (`execute_task`, `batchsweep rerun`). Here: None, no limit, or the engine's machines enforce one."""
        return None

    @classmethod
    def estimate_cost(cls, spec: Spec, n_tasks: int, durations: Durations) -> Estimate | str:
        """What `n_tasks` tasks of `durations.task_s` seconds each will cost on this engine: an Estimate, or a
        sentence saying why there is none. Here: none, the tasks run on machines the user already has."""
        return f"not estimated: backend {cls.name} runs on machines you already have"

    @classmethod
    def run_cost(cls, record: RunRecord, durations_s: Sequence[float],
                 containers_s: Sequence[float] | None = None) -> Estimate | None:
        """What a finished run cost, from its tasks' durations (or, `containers_s`, how long each container
        that ran several of them took). Here: None, nothing is priced."""
        return None

    @classmethod
    def right_size(cls, spec: Spec, usage: Sequence[tuple[float, float, float]],
                   settings: EngineSettings | None = None) -> RightSize | None:
        """A smaller `resources:` that still fits what the tasks used, when the saving is worth a line.
        `usage`: (peak_rss_mib, cpu_s, duration_s) of succeeded tasks; `settings`: this engine's resolved
        settings as the measured run recorded them (None: judge from the spec alone). Here: None."""
        return None

    # -- a run --------------------------------------------------------------------------------
    @abc.abstractmethod
    def submit(self, indices: Sequence[int], *, detach: bool) -> None:
        """Start these tasks. Records in the run's engine.json whatever poll/cancel need later."""

    @abc.abstractmethod
    def poll(self) -> Progress:
        """Is anything still queued or running? The store's status files stay the truth about results."""

    @abc.abstractmethod
    def cancel(self) -> str | None:
        """Stop queued and running tasks. Returns a sentence when the stop could not be confirmed."""

    def failure_reasons(self) -> dict[int, str]:
        """The engine's own reason for tasks that ended without a status (e.g. a container that never
        started)."""
        return {}

    def runner_failure(self) -> str | None:
        """Why the process running the tasks stopped by itself (disk full, read-only store), if it did."""
        return None

    def logs(self, index: int, *, stderr: bool = False) -> Iterator[str] | None:
        """Live output of a task that has not finished yet (None: not available from this engine)."""
        return None

    def last_output(self, index: int) -> str | None:
        """The last line a task without a status printed, if the engine kept its output elsewhere
        (`status`)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the engine holds (threads, clients, clusters)."""
