"""The Dask engine: one Dask future per task, on an existing scheduler, a LocalCluster, or any cluster class
(dask-jobqueue's SLURMCluster, Coiled, dask-kubernetes...).

On a Dask worker a task runs `run_dask_task` (`batchsweep.engines.dask.worker`), which calls the local
engine's `execute_task`: the script runs as a subprocess in its own process group, with timeout and retries,
and the status is written last into the store. On a store directory (a filesystem every worker sees) only the
store path, the run id and the task's JSON travel to the worker, never the user's code; on an S3 store the
code package and inputs are shipped there and each worker process fetches them once.

Cancel sets a Dask `Event` named after the run and tells every worker at once (`cancel_here`): running tasks
are killed, tasks that have not started yet return without a status (so `resume` runs them); a worker process
watches the Event for all of a run's tasks there. Detached runs (`--detach`, only with `dask.scheduler`) are
fire-and-forget; `status`, `wait` and `cancel` reconnect to the scheduler named in engine.json and ask it
about the run's keys. The settings live in `settings`, the scheduler's side (connecting, the cluster
batchsweep starts and keeps between a search's rounds) in `scheduler`.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from batchsweep.engines.base import (
    Engine,
    EngineRecord,
    EngineSettings,
    Progress,
    RunHandle,
    read_engine_record,
    write_engine_record,
)
from batchsweep.engines.dask import scheduler as sched
from batchsweep.engines.dask.scheduler import Connection
from batchsweep.engines.dask.settings import DaskEngineSettings, DaskSettings, resolve_settings
from batchsweep.engines.dask.worker import (
    busy_keys,
    cancel_event_name,
    cancel_here,
    finish_run,
    index_of,
    run_dask_task,
    task_key,
)
from batchsweep.errors import SpecError
from batchsweep.model import State, Task, TaskStatus
from batchsweep.store.runlock import pid_alive, start_time

if TYPE_CHECKING:
    from distributed import Client

    from batchsweep.report.cost import RightSize
    from batchsweep.spec.schema import Spec
    from batchsweep.store.core import Store

INSTALL = "pip install 'batchsweep[dask]'"
REMOTE_POLL_EVERY_S = 1.0
CANCEL_WAIT_S = 30.0


def _import_distributed() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise SpecError("backend: dask needs the `distributed` package, which is not installed; "
                        f"{INSTALL}") from None


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
        self._conn: Connection | None = None
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
        self._cancelled = False

    @property
    def _client(self) -> Client | None:
        return self._conn.client if self._conn is not None else None

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
        """A smaller `MEMORY` worker resource (Dask reserves no vCPUs): the one the run recorded, or the
        spec's memory when the run is still to come (none is reserved unless it sets one)."""
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
        """On a store directory (a filesystem every worker sees) the tasks run the code directory itself; on
        an S3 store, whose workers may see none of this machine's files, the code package and the local
        inputs are shipped there as for AWS Batch, and each worker fetches them once."""
        from batchsweep.engines.base import keep_code_package, ship_inputs

        kept = keep_code_package(spec, store, Path(info["code_dir"]))
        if store.is_local:
            return kept
        if not kept.get("code_sha256"):
            raise SpecError(f"backend dask with an S3 store: the code package was {kept.get('code_package')}"
                            "; the workers run it, so raise code.max_mib or leave big files out with "
                            "code.exclude")
        return {**kept, "inputs_map": ship_inputs(spec, store)}

    # -- submit -------------------------------------------------------------------------------
    def submit(self, indices: Sequence[int], *, detach: bool) -> None:
        from distributed import Event, as_completed, fire_and_forget

        if detach and self.settings.scheduler is None:
            raise SpecError("--detach: with dask.cluster the cluster lives in this process and would stop "
                            "with it; start a scheduler (`dask scheduler`) and "
                            "--set dask.scheduler=tcp://HOST:PORT, "
                            "or run without --detach")
        self._conn = conn = sched.open_connection(self.run.id, self.settings)
        client = conn.client
        try:
            if not conn.kept:  # (a kept one: a round of this search, which no cancel has reached)
                Event(cancel_event_name(self.run.id), client=client).clear()  # a resume after a cancel
            indices, futures = self._map(client, indices)
            keys = [task_key(self.run.id, i) for i in indices]
            self._submitted_at = time.time()
            write_engine_record(self.run, DaskRecord(
                engine=self.name, scheduler=sched.scheduler_of(client).address, keys=keys, detached=detach,
                owns_cluster=conn.cluster is not None, pid=os.getpid(), pid_started=start_time(os.getpid()),
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

    def _map(self, client: Client, indices: Sequence[int]) -> tuple[list[int], list[Any]]:
        """One `client.map` per GPU count (`gpus: "{param}"`); the tasks in the order of their futures."""
        tasks = {t.index: t for t in self.run.tasks()}
        spec_resources = self.run.record.spec.resources
        groups: dict[float | None, list[int]] = {}
        for i in indices:
            gpus = spec_resources.of_task(tasks[i].params) if spec_resources.gpus_param else None
            groups.setdefault(gpus, []).append(i)
        submission = secrets.token_hex(4)  # the workers' cancel state of this submission, not an earlier's
        ordered, futures = [], []
        for gpus, group in groups.items():
            resources = dict(self.settings.resources or {})
            if gpus:
                resources["GPU"] = gpus
            if resources:
                sched.check_workers_declare(client, resources)
            n = len(group)
            futures += client.map(run_dask_task, [self.run.store.url] * n, [self.run.id] * n,
                                  [tasks[i].to_json() for i in group], [submission] * n,
                                  key=[task_key(self.run.id, i) for i in group],
                                  pure=False, retries=0, resources=resources or None)
            ordered += group
        return ordered, futures

    def _collect(self, completed: Any) -> None:
        from concurrent.futures import CancelledError

        for future, result in completed:
            index = index_of(self.run.id, future.key)
            assert index is not None
            with self._lock:
                self._futures.pop(index, None)
                if isinstance(result, TaskStatus):
                    self._written[index] = result
                elif isinstance(result, CancelledError):
                    # `batchsweep cancel` from another shell cancelled the run's keys: what did not write a
                    # status was cancelled, not lost
                    self._cancelled = True
                elif result is not None:
                    # The task function itself failed (store not visible, worker lost too often): no status.
                    self._errors[index] = sched.describe_failure(result)
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
                self._running = sched.running(self._client, self.run.id)
                self._lost = sched.lost_workers(self._client, self.run.id, self._submitted_at)
            except Exception:
                pass  # a progress figure is not worth failing the run for
        with self._lock:
            written = dict(self._written)
        notes: tuple[str, ...] = ()
        if self._lost != self._reported_lost:
            self._reported_lost = self._lost
            notes = (sched.lost_note(self._lost),)
        missing = State.PENDING
        if not active:  # the futures all ended: a task without a status is lost, unless the run was cancelled
            missing = State.CANCELLED if self._cancelled else State.LOST
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
        notes = (sched.lost_note(lost),) if lost else ()
        owner_gone = record.owns_cluster and (
            record.host == socket.gethostname() and not pid_alive(record.pid, record.pid_started))
        if record.finished:
            return Progress(active=False, notes=notes, missing=State.LOST)
        if owner_gone:
            return Progress(active=False, notes=notes)
        try:
            client = self._remote_client(record.scheduler)
            states = client.sync(sched.scheduler_of(client).get_task_status, keys=record.keys)
            active = any(s in sched.ACTIVE_STATES for s in states.values())
            running = sched.running(client, self.run.id) if active else frozenset()
            lost = max(lost, sched.lost_workers(client, self.run.id, record.submitted_at))
        except (SpecError, OSError, TimeoutError) as e:
            if len(self.run.store.statuses(self.run.id)) >= self.run.n_tasks:
                return Progress(active=False, notes=notes)  # done: nothing to say
            note = (f"the Dask scheduler {record.scheduler} is unreachable ({e}); tasks without a status did "
                    "not finish")
            return Progress(active=False, notes=(*notes, note))
        progress = Progress(active=active, running=running, notes=(sched.lost_note(lost),) if lost else ())
        self._remote = (self.clock.monotonic(), progress)
        return progress

    def _remote_client(self, address: str) -> Client:
        if self._conn is None:
            self._conn = Connection(sched.connect(address))
        return self._conn.client

    def failure_reasons(self) -> dict[int, str]:
        if self._collector is not None:
            with self._lock:
                return dict(self._errors)
        record = self._record()
        return dict(record.errors) if record else {}

    # -- stop ---------------------------------------------------------------------------------
    def cancel(self) -> None:
        from distributed import Event, Future

        self._cancelled = True
        record = self._record()
        if self._conn is None and record is None:
            return
        try:
            client = self._client or self._remote_client(record.scheduler if record else "")
        except SpecError:
            return  # the scheduler is gone, and its tasks with it
        self._remote = None
        Event(cancel_event_name(self.run.id), client=client).set()  # first: a worker that joins later skips
        try:
            client.run(cancel_here, self.run.id)  # at once on every worker: no task starts, running ones die
        except Exception:  # noqa: BLE001 - an unanswering worker still sees the Event within a second
            pass
        with self._lock:
            futures = list(self._futures.values())
        if not futures and record:
            futures = [Future(key, client) for key in record.keys]
        client.cancel(futures, force=True)  # force: a detached run's keys are wanted by "fire-and-forget"
        del futures
        deadline = self.clock.monotonic() + CANCEL_WAIT_S
        # Running tasks kill their process group and write "cancelled".
        while self.clock.monotonic() < deadline:
            try:
                if not any(client.run(busy_keys, self.run.id).values()):
                    break
            except Exception:
                break
            self.clock.sleep(0.1)
        if self._collector is not None:
            self._collector.join(timeout=CANCEL_WAIT_S)
        self.close()

    def _next_round_follows(self) -> bool:
        """Whether a search's next round will take this engine's connection: a search with trials still to
        ask, whose round ended with a result for every task (a cancelled or lost one ends the driving)."""
        search = self.run.record.spec.search
        if self._cancelled or search is None or self.run.n_tasks >= search.trials:
            return False
        with self._lock:
            written, errors = dict(self._written), bool(self._errors)
        return not errors and set(written) == self._covers and all(
            s.state is not State.CANCELLED for s in written.values())

    def close(self) -> None:
        if self._collector is not None and self._client is not None and not self._closed:
            self._closed = True
            keep = self._next_round_follows()
            if not keep:
                try:  # the workers' last summaries, before the run counts as finished
                    self._client.run(finish_run, self.run.id)
                except Exception:  # noqa: BLE001 - a worker gone took its batch along; its tasks' files stay
                    pass
            try:
                self._lost = sched.lost_workers(self._client, self.run.id, self._submitted_at)
            except Exception:
                pass
            record = self._record()
            with self._lock:
                errors = dict(self._errors)
            if record is not None:  # (none: a damaged one was warned about; the statuses tell the rest)
                write_engine_record(self.run, record.model_copy(update={
                    "finished": True, "finished_at": time.time(), "lost_workers": self._lost,
                    "errors": errors}))
            if keep and self._conn is not None:
                sched.keep(self.run.id, self._conn)
                self._conn = None
                return
        # Not handed on: a connection an earlier round kept is not wanted any more (the rounds after it had
        # every trial reused, so no engine took it).
        sched.drop(self.run.id)
        self._release()

    def _release(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
