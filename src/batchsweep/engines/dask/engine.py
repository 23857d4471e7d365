"""The Dask engine: one Dask future per task, on an existing scheduler, a LocalCluster, or any cluster class
(dask-jobqueue's SLURMCluster, Coiled, dask-kubernetes...).

On a Dask worker a task runs `run_dask_task` (`batchsweep.engines.dask.worker`), which calls the local engine's `execute_task`: the script runs as
a subprocess in its own process group, with timeout and retries, and the status is written last into the store.
The store directory and the run's code_dir must be on a filesystem every worker sees: only the store path, the
run id and the task's JSON travel to the worker, never the user's code.

Cancel sets a Dask `Event` named after the run: every running task watches it and kills its process group,
tasks that have not started yet see it and return without a status (so `resume` runs them).
Detached runs (`--detach`, only with `dask.scheduler`) are fire-and-forget; `status`, `wait` and `cancel`
reconnect to the scheduler named in engine.json and ask it about the run's keys.
"""

from __future__ import annotations

import importlib
import os
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from batchsweep.engines.base import (
    Engine,
    EngineRecord,
    EngineSettings,
    Progress,
    RunHandle,
    read_engine_record,
    write_engine_record,
)
from batchsweep.engines.dask import summary as dask_summary
from batchsweep.engines.dask.settings import DaskClusterSettings, DaskEngineSettings
from batchsweep.engines.dask.worker import busy_keys, cancel_event_name, index_of, run_dask_task, task_key
from batchsweep.errors import SpecError
from batchsweep.model import State, Task, TaskStatus
from batchsweep.store.runlock import pid_alive, start_time

if TYPE_CHECKING:
    from distributed import Client

    from batchsweep.report.cost import RightSize
    from batchsweep.spec.schema import Spec
    from batchsweep.store.core import Store

INSTALL = "pip install 'batchsweep[dask]'"
# Scheduler task states that mean "not finished yet" (None: the scheduler has forgotten the key).
ACTIVE_STATES = frozenset({"released", "waiting", "queued", "processing", "no-worker"})
CONNECT_TIMEOUT_S = 5
REMOTE_POLL_EVERY_S = 1.0
CANCEL_WAIT_S = 30.0


# -- settings ---------------------------------------------------------------------------------------
def _import_distributed() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise SpecError(f"backend: dask needs the `distributed` package, which is not installed; {INSTALL}") from None


def _scheduler(client: Client) -> Any:
    """The client's connection to its scheduler: there from the moment the client has connected, as ours have."""
    if client.scheduler is None:
        raise RuntimeError("the Dask client is not connected to a scheduler")
    return client.scheduler


def _import_class(path: str) -> type:
    module, sep, attr = path.partition(":")
    if not sep:
        module, _, attr = path.rpartition(".")
    fix = f"pip install {module.split('.')[0].replace('_', '-')} or fix the name (e.g. dask_jobqueue.SLURMCluster)"
    try:
        cls = getattr(importlib.import_module(module), attr) if module and attr else None
    except ImportError as e:
        raise SpecError(f"dask.cluster.class: cannot import {path!r} ({e}); {fix}") from None
    except AttributeError:
        cls = None
    if not isinstance(cls, type):
        raise SpecError(f"dask.cluster.class: {path!r} is not a class; {fix}")
    return cls


class DaskCluster(BaseModel):
    """`cluster: {class: dask_jobqueue.SLURMCluster, kwargs: {...}, scale: N}`: a cluster batchsweep starts."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    class_: str = Field(alias="class")
    kwargs: dict[str, Any] = {}
    scale: int | None = Field(default=None, ge=1)


class DaskSettings(BaseModel):
    """The spec's `dask:` block: an existing scheduler, or a cluster batchsweep starts (`local` by default)."""

    model_config = ConfigDict(extra="forbid")
    scheduler: str | None = None
    cluster: Literal["local"] | DaskCluster | None = None

    @field_validator("scheduler")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("not an address; give e.g. tcp://127.0.0.1:8786")
        return v.strip() if v is not None else None

    @field_validator("cluster", mode="before")
    @classmethod
    def _cluster_shape(cls, v: Any) -> Any:
        if v is not None and v != "local" and not isinstance(v, dict):
            raise ValueError(f"{v!r} is not understood; give `local` or "
                             "{class: dask_jobqueue.SLURMCluster, kwargs: {...}, scale: N}")
        return v

    @model_validator(mode="after")
    def _one_of(self) -> DaskSettings:
        if self.scheduler is not None and self.cluster is not None:
            raise ValueError("give either `scheduler: tcp://HOST:PORT` or `cluster: ...`, not both "
                             "(drop one, e.g. --set dask.cluster=null)")
        return self


def resolve_settings(raw: dict[str, Any], *, max_parallel: int) -> DaskEngineSettings:
    """The spec's `dask:` block, validated by DaskSettings; returns the settings kept in run.json as `engine`."""
    try:
        settings = DaskEngine.settings_of(raw)
    except ValueError as e:
        raise SpecError(str(e)) from None
    assert isinstance(settings, DaskSettings)
    if settings.scheduler is not None:
        address = settings.scheduler
        return DaskEngineSettings(scheduler=address if "://" in address else f"tcp://{address}")
    cluster = settings.cluster or "local"
    if cluster == "local":
        return DaskEngineSettings(cluster="local", n_workers=max_parallel or os.cpu_count() or 1)
    assert isinstance(cluster, DaskCluster)
    _import_class(cluster.class_)
    return DaskEngineSettings(cluster=DaskClusterSettings.model_validate(
        {"class": cluster.class_, "kwargs": cluster.kwargs, "scale": cluster.scale}))


# -- on the Dask worker -----------------------------------------------------------------------------
def worker_resources(spec: Spec, *, gpus: float | None = None) -> dict[str, float]:
    """`resources:` as Dask worker resources: GPUs when asked for (`gpus`: a task's own), memory (bytes) when
    set explicitly."""
    r = spec.resources
    out: dict[str, float] = {}
    if gpus if gpus is not None else r.gpus:
        out["GPU"] = gpus if gpus is not None else r.gpus
    if "memory_mib" in r.model_fields_set:
        out["MEMORY"] = r.memory_mib * 2**20
    return out


def _check_workers_declare(client: Client, resources: dict[str, float]) -> None:
    """A task no worker can take would wait for ever: say so before submitting."""
    workers = client.scheduler_info().get("workers", {}).values()
    if any(all(w.get("resources", {}).get(k, 0) >= v for k, v in resources.items()) for w in workers):
        return
    wanted = ",".join(f"{k}={v:.15g}" for k, v in resources.items())
    field = "resources.gpus" if "GPU" in resources else "resources.memory_mib"
    raise SpecError(f"{field}: no Dask worker declares {wanted}; start workers with "
                    f"`dask worker SCHEDULER --resources {wanted}` (or lower `resources:`)")


def _describe_failure(result: Any) -> str:
    # An erred future's result without raising is (type, exception, traceback).
    exc = result[1] if isinstance(result, tuple) and len(result) == 3 else result
    return f"{type(exc).__name__}: {exc} (on the Dask worker)"[:500]


# -- asking the scheduler ---------------------------------------------------------------------------
def _running(client: Client, run_id: str) -> frozenset[int]:
    """This run's tasks on workers: each worker's first tasks by index, as many as it has threads (the scheduler
    queues the rest and a worker runs what it holds in submission order)."""
    processing = client.processing()
    nthreads = client.nthreads()
    running: set[int] = set()
    for worker, keys in processing.items():
        indices = sorted(i for i in (index_of(run_id, k) for k in keys) if i is not None)
        running.update(indices[:nthreads.get(worker, 0)])
    return frozenset(running)


def _lost_workers(client: Client, run_id: str, since: float) -> int:
    """Workers that left unexpectedly while processing this run's tasks (Dask reschedules those tasks)."""
    lost = 0
    for stamp, event in client.get_events("all"):
        if (stamp >= since and isinstance(event, dict) and event.get("action") == "remove-worker"
                and not event.get("expected")
                and any(index_of(run_id, k) is not None for k in event.get("processing-tasks") or ())):
            lost += 1
    return lost


def _lost_note(n: int) -> str:
    return f"{n} Dask worker{'s' if n != 1 else ''} lost mid-run; Dask ran their tasks again elsewhere"


def _connect(address: str) -> Client:
    from distributed import Client

    try:
        return Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as e:
        raise SpecError(f"dask.scheduler: cannot reach {address} ({e.__class__.__name__}); "
                        "start one with `dask scheduler` or fix the address") from None


# -- the engine -------------------------------------------------------------------------------------
class DaskRecord(EngineRecord):
    """engine.json of a Dask run: the scheduler and the task keys it was given, and who submitted them."""

    scheduler: str
    keys: list[str]
    detached: bool = False
    owns_cluster: bool = False  # the submitting process started the cluster (it ends with that process)
    pid: int = 0
    pid_started: str | None = None
    host: str = ""
    submitted_at: float = 0.0
    finished: bool = False
    finished_at: float | None = None
    lost_workers: int = 0
    errors: dict[int, str] = {}  # tasks whose task function itself failed (no status): why


class DaskEngine(Engine):
    name = "dask"
    block = "dask"
    settings_model = DaskSettings
    record_model: ClassVar[type[DaskRecord]] = DaskRecord
    engine_settings_model: ClassVar[type[DaskEngineSettings]] = DaskEngineSettings
    gpus = True
    per_task_gpus = True

    def __init__(self, run: RunHandle) -> None:
        super().__init__(run)
        self._client: Client | None = None
        self._cluster: Any = None
        self._lock = threading.Lock()
        self._futures: dict[int, Any] = {}  # index -> Future, until its result is in
        self._written: dict[int, TaskStatus] = {}
        self._errors: dict[int, str] = {}  # tasks whose Dask future failed, so they have no status
        self._covers: frozenset[int] = frozenset()
        self._collector: threading.Thread | None = None
        self._submitted_at = 0.0
        self._lost = 0
        self._reported_lost = 0
        self._next_check = 0.0
        self._running: frozenset[int] = frozenset()
        self._remote: tuple[float, Progress] | None = None
        self._closed = False

    @classmethod
    def check(cls, spec: Spec, tasks: Sequence[Task]) -> DaskEngineSettings:
        _import_distributed()
        settings = resolve_settings(spec.dask, max_parallel=spec.max_parallel)
        resources = worker_resources(spec, gpus=0 if spec.resources.gpus_param else None)  # (then per task)
        if resources:
            settings = settings.model_copy(update={"resources": resources})
        return settings

    @classmethod
    def right_size(cls, spec: Spec, usage: Sequence[tuple[float, float, float]],
                   settings: EngineSettings | None = None) -> RightSize | None:
        """A smaller `MEMORY` worker resource (Dask reserves no vCPUs): the one the run recorded, or the spec's
        memory when the run is still to come (none is reserved unless it sets one)."""
        from batchsweep.report.cost import right_size_reserved

        r = spec.resources
        memory: float | None
        if isinstance(settings, DaskEngineSettings):
            reserved = (settings.resources or {}).get("MEMORY")
            memory = reserved / 2**20 if reserved else None
        else:
            memory = float(r.memory_mib) if "memory_mib" in r.model_fields_set and r.memory_mib else None
        return right_size_reserved(usage, vcpus=None, memory_mib=memory, where="on the Dask workers")

    @property
    def settings(self) -> DaskEngineSettings:
        """The run's resolved settings (run.json `engine`)."""
        return self.run.record.engine_as(DaskEngineSettings)

    @classmethod
    def prepare(cls, spec: Spec, store: Store, info: dict[str, Any]) -> dict[str, Any]:
        """On a store directory (a filesystem every worker sees) the tasks run the code directory itself; on an
        S3 store, whose workers may see none of this machine's files, the code package and the local inputs are
        shipped there as for AWS Batch, and each worker fetches them once."""
        from batchsweep.engines.base import keep_code_package, ship_inputs

        kept = keep_code_package(spec, store, Path(info["code_dir"]))
        if store.is_local:
            return kept
        if not kept.get("code_sha256"):
            raise SpecError(f"backend dask with an S3 store: the code package was {kept.get('code_package')}; "
                            "the workers run it, so raise code.max_mib or leave big files out with code.exclude")
        return {**kept, "inputs_map": ship_inputs(spec, store)}

    # -- submit -------------------------------------------------------------------------------
    def _open(self) -> Client:
        """A client for this engine: connect to the scheduler, or start the cluster batchsweep owns."""
        if self._client is not None:
            return self._client
        from distributed import Client, LocalCluster

        settings = self.settings
        if settings.scheduler is not None:
            self._client = _connect(settings.scheduler)
            return self._client
        cluster = settings.cluster
        if cluster == "local" or cluster is None:
            import logging

            self._cluster = LocalCluster(n_workers=settings.n_workers or os.cpu_count() or 1, threads_per_worker=1,
                                         processes=True, dashboard_address=":0", silence_logs=logging.ERROR)
        else:
            self._cluster = _import_class(cluster.class_)(**cluster.kwargs)
            if cluster.scale:
                self._cluster.scale(cluster.scale)
        self._client = Client(self._cluster, set_as_default=False)
        return self._client

    def submit(self, indices: Sequence[int], *, detach: bool) -> None:
        from distributed import Event, as_completed, fire_and_forget

        if detach and self.settings.scheduler is None:
            raise SpecError("--detach: with dask.cluster the cluster lives in this process and would stop with it; "
                            "start a scheduler (`dask scheduler`) and --set dask.scheduler=tcp://HOST:PORT, "
                            "or run without --detach")
        client = self._open()
        try:
            Event(cancel_event_name(self.run.id), client=client).clear()  # a resume after a cancel
            tasks = {t.index: t for t in self.run.tasks()}
            spec_resources = self.run.record.spec.resources
            groups: dict[float | None, list[int]] = {}  # by the task's own GPUs (`gpus: "{param}"`)
            for i in indices:
                gpus = spec_resources.of_task(tasks[i].params) if spec_resources.gpus_param else None
                groups.setdefault(gpus, []).append(i)
            indices, futures = [], []
            for gpus, group in groups.items():
                resources = dict(self.settings.resources or {})
                if gpus:
                    resources["GPU"] = gpus
                if resources:
                    _check_workers_declare(client, resources)
                n = len(group)
                futures += client.map(run_dask_task, [self.run.store.url] * n, [self.run.id] * n,
                                      [tasks[i].to_json() for i in group], key=[task_key(self.run.id, i) for i in group],
                                      pure=False, retries=0, resources=resources or None)
                indices += group
            keys = [task_key(self.run.id, i) for i in indices]
            self._submitted_at = time.time()
            write_engine_record(self.run, DaskRecord(
                engine=self.name, scheduler=_scheduler(client).address, keys=keys, detached=detach,
                owns_cluster=self._cluster is not None, pid=os.getpid(), pid_started=start_time(os.getpid()),
                host=socket.gethostname(), submitted_at=self._submitted_at,
            ))
        except BaseException:
            self._release()  # the run is deleted; a cluster started for it must not outlive it
            raise
        if detach:
            fire_and_forget(futures)
            del futures
            self._release()
            return
        self._futures = dict(zip(indices, futures))
        self._covers = frozenset(indices)
        completed = as_completed(futures, with_results=True, raise_errors=False, loop=client.loop)
        del futures  # as_completed and self._futures hold them; a finished one is released at once
        self._collector = threading.Thread(target=self._collect, args=(completed,), name="batchsweep-dask",
                                           daemon=True)
        self._collector.start()

    def _collect(self, completed: Any) -> None:
        from concurrent.futures import CancelledError

        for future, result in completed:
            index = index_of(self.run.id, future.key)
            assert index is not None
            with self._lock:
                self._futures.pop(index, None)
                if isinstance(result, TaskStatus):
                    self._written[index] = result
                elif result is not None and not isinstance(result, CancelledError):
                    # The task function itself failed (store not visible, worker lost too often): no status.
                    self._errors[index] = _describe_failure(result)
            del future, result

    # -- watch --------------------------------------------------------------------------------
    def poll(self) -> Progress:
        if self._collector is None:
            return self._poll_remote()
        active = self._collector.is_alive()
        now = self.clock.monotonic()
        if active and now >= self._next_check and self._client is not None:
            self._next_check = now + REMOTE_POLL_EVERY_S
            try:
                self._running = _running(self._client, self.run.id)
                self._lost = _lost_workers(self._client, self.run.id, self._submitted_at)
            except Exception:
                pass  # a progress figure is not worth failing the run for
        with self._lock:
            written = dict(self._written)
        notes: tuple[str, ...] = ()
        if self._lost != self._reported_lost:
            self._reported_lost = self._lost
            notes = (_lost_note(self._lost),)
        missing = State.PENDING
        if not active:
            missing = State.LOST  # the futures all ended: a task without a status is lost
        return Progress(active=active, running=self._running if active else frozenset(), statuses=written,
                        covers=self._covers, notes=notes, missing=missing)

    def _record(self) -> DaskRecord | None:
        return read_engine_record(self.run, self.record_model)

    def _poll_remote(self) -> Progress:
        """Another process submitted this run: ask the scheduler named in engine.json about its keys."""
        if self._remote is not None and self.clock.monotonic() - self._remote[0] < REMOTE_POLL_EVERY_S:
            return self._remote[1]
        record = self._record()
        if record is None:
            return Progress(active=False)
        lost = record.lost_workers
        notes = (_lost_note(lost),) if lost else ()
        owner_gone = record.owns_cluster and (
            record.host == socket.gethostname() and not pid_alive(record.pid, record.pid_started))
        if record.finished:
            return Progress(active=False, notes=notes, missing=State.LOST)
        if owner_gone:
            return Progress(active=False, notes=notes)
        try:
            client = self._client or _connect(record.scheduler)
            self._client = client
            states = client.sync(_scheduler(client).get_task_status, keys=record.keys)
            active = any(s in ACTIVE_STATES for s in states.values())
            running = _running(client, self.run.id) if active else frozenset()
            lost = max(lost, _lost_workers(client, self.run.id, record.submitted_at))
        except (SpecError, OSError, TimeoutError) as e:
            if len(self.run.store.statuses(self.run.id)) >= self.run.n_tasks:
                return Progress(active=False, notes=notes)  # done: nothing to say
            note = f"the Dask scheduler {record.scheduler} is unreachable ({e}); tasks without a status did not finish"
            return Progress(active=False, notes=(*notes, note))
        progress = Progress(active=active, running=running, notes=(_lost_note(lost),) if lost else ())
        self._remote = (self.clock.monotonic(), progress)
        return progress

    def failure_reasons(self) -> dict[int, str]:
        if self._collector is not None:
            with self._lock:
                return dict(self._errors)
        record = self._record()
        return dict(record.errors) if record else {}

    # -- stop ---------------------------------------------------------------------------------
    def cancel(self) -> None:
        from distributed import Event, Future

        record = self._record()
        try:
            client = self._client or (_connect(record.scheduler) if record else None)
        except SpecError:
            return  # the scheduler is gone, and its tasks with it
        if client is None:
            return
        self._client, self._remote = client, None
        Event(cancel_event_name(self.run.id), client=client).set()  # first: a task that starts now skips
        with self._lock:
            futures = list(self._futures.values())
        if not futures and record:
            futures = [Future(key, client) for key in record.keys]
        client.cancel(futures, force=True)  # force: a detached run's keys are wanted by "fire-and-forget"
        del futures
        deadline = self.clock.monotonic() + CANCEL_WAIT_S
        while self.clock.monotonic() < deadline:  # running tasks kill their process group and write "cancelled"
            try:
                if not any(client.run(busy_keys, self.run.id).values()):
                    break
            except Exception:
                break
            self.clock.sleep(0.1)
        if self._collector is not None:
            self._collector.join(timeout=CANCEL_WAIT_S)
        self.close()

    def close(self) -> None:
        if self._collector is not None and self._client is not None and not self._closed:
            self._closed = True
            try:  # the workers' last summaries, before the run counts as finished
                self._client.run(dask_summary.flush, self.run.id)
            except Exception:  # noqa: BLE001 - a worker that is gone took its batch along; its tasks' files remain
                pass
            try:
                self._lost = _lost_workers(self._client, self.run.id, self._submitted_at)
            except Exception:
                pass
            record = self._record()
            with self._lock:
                errors = dict(self._errors)
            if record is not None:  # (none: a damaged one was warned about; the statuses tell the rest)
                write_engine_record(self.run, record.model_copy(update={
                    "finished": True, "finished_at": time.time(), "lost_workers": self._lost, "errors": errors}))
        self._release()

    def _release(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
