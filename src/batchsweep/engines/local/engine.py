"""The local engine: a pool of threads on this machine, each running one task's process at a time.

Attached (`batchsweep run`), the pool lives in the calling process. Detached (`--detach`), a runner process
(`python -m batchsweep.engines.local.engine STORE RUN_ID`) runs every task that has no status yet; its pid is
in engine.json so `status`, `wait` and `cancel` find it. A runner killed with -9 leaves tasks without a
status, which `resume` runs again (first killing the task processes it left running: see
`reaper.kill_run_tasks`).
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from batchsweep.clock import Clock
from batchsweep.engines.base import (
    Engine,
    EngineRecord,
    Progress,
    RunHandle,
    read_engine_record,
    write_engine_record,
)
from batchsweep.engines.local.leases import Leases, available_memory_mib
from batchsweep.engines.local.settings import LocalEngineSettings
from batchsweep.errors import SpecError
from batchsweep.model import State, Task, TaskStatus
from batchsweep.planning import keys
from batchsweep.store import runlock
from batchsweep.store.core import TaskDir
from batchsweep.store.runlock import start_time as _start_time
from batchsweep.task import reaper
from batchsweep.task.launch import ExecServer, ServerClient, cold_because
from batchsweep.task.worker import (
    Launcher,
    ProcessRegistry,
    RunContext,
    context_from_run,
    execute_task,
)

if TYPE_CHECKING:
    from batchsweep.engines.base import EngineSettings
    from batchsweep.report.cost import RightSize
    from batchsweep.spec.schema import Spec
    from batchsweep.store.record import RunRecord
    from batchsweep.task.warm import WarmServer


log = logging.getLogger(__name__)
class LocalRecord(EngineRecord):
    """engine.json of a local run: the process running its tasks (this one, or a detached runner)."""

    pid: int
    pid_started: str | None = None  # the process's start time (`runlock.start_time`): tells a reused pid
    host: str
    submitted_at: float | None = None
    finished: bool = False
    finished_at: float | None = None
    failure: str | None = None  # the runner's own failure (disk full, read-only store)


def _alive(record: LocalRecord, run: RunHandle, clock: Clock) -> bool:
    if record.finished:
        return False
    if record.host != socket.gethostname():
        # Another machine's (or container's) runner: alive while it holds the run with a fresh heartbeat.
        return runlock.holder(run.store, run.id, clock) is not None
    return runlock.pid_alive(record.pid, record.pid_started)


class TaskLines:
    """A run's tasks by index, held as compact JSON lines in one buffer and parsed one at a time when a task
    starts: 100,000 Task objects with their params dicts held ~30 MB of a runner's memory, their lines ~10
    MB."""

    def __init__(self, tasks: Iterable[Task]) -> None:
        self._text = bytearray()
        self._indices = array("q")  # ascending
        self._starts = array("q")  # where each task's line starts in _text; one more: the end
        for task in sorted(tasks, key=lambda t: t.index):
            self._indices.append(task.index)
            self._starts.append(len(self._text))
            self._text += task.to_json().encode()
        self._starts.append(len(self._text))

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, index: int) -> Task:
        at = bisect.bisect_left(self._indices, index)
        if at == len(self._indices) or self._indices[at] != index:
            raise KeyError(index)
        return Task.from_json(self._text[self._starts[at]:self._starts[at + 1]].decode())


_STATES = tuple(State)  # a written status's state by its code in LocalEngine._states (0: none written)


CANCEL_WAIT_S = 30.0  # how long `cancel` waits for the runner to confirm


class LocalEngine(Engine):
    name = "local"
    record_model: ClassVar[type[LocalRecord]] = LocalRecord
    engine_settings_model: ClassVar[type[LocalEngineSettings]] = LocalEngineSettings
    gpus = True
    per_task_gpus = True

    def __init__(self, run: RunHandle) -> None:
        super().__init__(run)
        self._registry = ProcessRegistry()
        self._thread: threading.Thread | None = None
        self._running: set[int] = set()  # tasks started whose slot has not let go of them yet
        self._lock = threading.Lock()
        # The state of each status written (its code in _STATES, by task index), not the status itself: the
        # store has the statuses; a runner that kept 100,000 of them held ~50 MB for nothing.
        self._states = bytearray()
        self._counts: Counter[str] = Counter()  # the written statuses by state, kept as they are written
        self._others: Counter[str] | None = None  # statuses of the tasks this runner does not run, by state
        self._lock_release: Callable[[], None] | None = None  # a detached runner lets go of the run first
        self.failure: str | None = None  # the runner's own failure (not a task's): disk full, read-only store

    @classmethod
    def check(cls, spec: Spec, tasks: Sequence[Task]) -> LocalEngineSettings:
        """GPUs and memory this machine can lease; a request it can never meet is bad input."""
        r = spec.resources
        # the AWS default is no local limit
        limit = r.memory_mib if "memory_mib" in r.model_fields_set else None
        # (a search's trials are not known yet: their GPUs are checked as each one takes its lease)
        gpus = max((r.of_task(t.params) for t in tasks), default=r.gpus) if r.gpus_param else r.gpus
        leases = Leases.for_spec(gpus=gpus or r.gpus, memory_mib=limit)
        return LocalEngineSettings(gpus=leases.gpu_ids, memory_limit_mib=limit)

    @classmethod
    def memory_limit_mib(cls, record: RunRecord) -> int | None:
        """The memory the engine reserved per task (only when the spec set it), as the run recorded it."""
        return record.engine_as(LocalEngineSettings).memory_limit_mib

    @classmethod
    def right_size(cls, spec: Spec, usage: Sequence[tuple[float, float, float]],
                   settings: EngineSettings | None = None) -> RightSize | None:
        """A smaller reservation: the vCPU slots each task takes, and the memory limit it ran under (the
        spec's, when the run is still to come: none is reserved unless it sets one)."""
        from batchsweep.report.cost import right_size_reserved

        r = spec.resources
        if isinstance(settings, LocalEngineSettings):
            memory = settings.memory_limit_mib
        else:
            memory = r.memory_mib if "memory_mib" in r.model_fields_set else None
        return right_size_reserved(
            usage,
            vcpus=float(r.vcpus or 1),
            memory_mib=float(memory) if memory else None,
            where="on this machine",
        )

    def _leases(self, smallest_gpus: float | None = None) -> tuple[Leases, int]:
        """The run's leases and how many tasks may run at once: max_parallel, vCPU slots and GPUs allowing
        (the smallest request's, when tasks ask for different GPUs)."""
        record = self.run.record
        settings = record.engine_as(LocalEngineSettings)
        resources = record.spec.resources
        gpus = float(resources.gpus) if smallest_gpus is None else smallest_gpus
        leases = Leases(gpus_per_task=gpus, gpu_ids=list(settings.gpus),
                        memory_mib=settings.memory_limit_mib,
                        available_mib=available_memory_mib() if settings.memory_limit_mib else None,
                        holder=self.run.id)
        cpus = os.cpu_count() or 1
        limits = [max(1, int(cpus / float(resources.vcpus) + 1e-9))]
        if record.max_parallel:
            limits.append(record.max_parallel)
        if leases.parallel() is not None:
            limits.append(max(1, leases.parallel() or 0))
        return leases, min(limits)

    # -- submit -------------------------------------------------------------------------------
    def submit(self, indices: Sequence[int], *, detach: bool) -> None:
        if detach:
            lock = self.run.hold()
            proc = subprocess.Popen(
                [sys.executable, "-m", "batchsweep.engines.local.engine", self.run.store.url, self.run.id,
                 lock.record.token if lock is not None else ""],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            if lock is not None:
                lock.hand_over(proc.pid)  # the runner adopts the hold: a second resume is refused meanwhile
            self._record(proc.pid)
            return
        self._record(os.getpid())
        self._states = bytearray(max(indices, default=-1) + 1)
        # a resume, or reuse copied some in: their statuses are in the store
        if len(indices) < self.run.n_tasks:
            mine = set(indices)
            self._others = Counter(
                s.state.value
                for i, s in self.run.store.statuses(self.run.id, self.run.n_tasks).items()
                if i not in mine
            )
        else:
            self._others = Counter()
        self._thread = threading.Thread(
            target=self._execute_or_fail, args=(list(indices),), name="batchsweep-local", daemon=True
        )
        self._thread.start()

    def _record(self, pid: int) -> None:
        write_engine_record(self.run, LocalRecord(engine=self.name, pid=pid, pid_started=_start_time(pid),
                                                  host=socket.gethostname(), submitted_at=time.time()))

    def _read_record(self) -> LocalRecord | None:
        return read_engine_record(self.run, self.record_model)

    def execute(self, indices: list[int]) -> None:
        """Run these tasks with at most max_parallel at once; each writes its status when it ends."""
        with reaper.subreaper():  # a task's setsid descendants come back to this process to be killed
            self._execute(indices)
            # Every task has ended: whatever still carries one of the run's task tokens is an orphan the
            # search after its task missed (/proc's lists of children are not reliable while processes come
            # and go).
            reaper.kill_run_tasks(self.run.id)

    def _execute(self, indices: list[int]) -> None:
        run, store = self.run, self.run.store
        ctx = context_from_run(run.record, memory_limit_mib=self.memory_limit_mib(run.record))
        tasks = TaskLines(run.store.iter_tasks(run.id))
        base_dir = Path(run.record.base_dir)
        watch = keys.CodeWatch(run.record.code_spec(), run.record.keyed_code)
        warm = self._warm_server(ctx, len(indices))
        server: ServerClient | str = warm
        if isinstance(warm, str):
            launcher: Launcher = cold_because(warm)
            server = _exec_server()
            if isinstance(server, ExecServer):
                launcher = server.cold_launcher(warm)
        else:
            launcher = warm.launcher
        resources = run.record.spec.resources
        leases, workers = self._leases(
            min((resources.of_task(tasks[i].params) for i in indices), default=None)
            if resources.gpus_param
            else None
        )

        def one(index: int) -> None:
            if self.failure is not None:
                return  # the runner failed: never started, no status, so `resume` runs it
            task = tasks[index]
            try:
                lease = leases.acquire(self._registry.cancelled, gpus=resources.of_task(task.params))
            except SpecError as e:  # a search trial asking for more GPUs than the run has
                self._fail(e)
                return
            if lease is None:
                return  # never started: no status, so `resume` runs it
            with self._lock:
                self._running.add(index)
            try:
                if self.failure is not None:
                    return
                slot = threading.current_thread().name.rsplit("_", 1)[-1]
                if task.cache_key and not watch.fresh():  # the script was edited since the run started
                    task = dataclasses.replace(task, cache_key="")
                status = execute_task(ctx, task, store, worker=f"local-{slot}", registry=self._registry,
                                      resolve_input=lambda ref: base_dir / ref, launcher=launcher,
                                      gpus=lease.gpus)
                self._wrote(status)
            # BLE001: the store or this machine failed (disk full, read-only, memory)
            except Exception as e:  # noqa: BLE001
                self._fail(e)
            finally:
                leases.release(lease)
                with self._lock:
                    self._running.discard(index)

        todo = iter(indices)
        take = threading.Lock()

        def slot() -> None:
            """Run the next task whenever this slot is free: no future per task is queued up front (100,000 of
            them held ~100 MB of the runner's memory)."""
            while True:
                with take:
                    index = next(todo, None)
                if index is None:
                    return
                one(index)

        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="slot") as pool:
                for future in [pool.submit(slot) for _ in range(workers)]:
                    future.result()
        finally:
            if not isinstance(server, str):
                server.close()
            store.flush_writes()  # the statuses on disk before the run is recorded finished
        self._finish()

    def _wrote(self, status: TaskStatus) -> None:
        """Count a status execute_task has written to the store."""
        with self._lock:
            if status.index >= len(self._states):
                self._states.extend(bytes(status.index + 1 - len(self._states)))
            before = self._states[status.index]
            if before:
                self._counts[_STATES[before - 1].value] -= 1
            self._states[status.index] = _STATES.index(status.state) + 1
            self._counts[status.state.value] += 1

    def _execute_or_fail(self, indices: list[int]) -> None:
        try:
            self.execute(indices)
        except Exception as e:  # noqa: BLE001 - reported by Run.wait in one line; the run stays resumable
            self._fail(e)

    def _fail(self, e: BaseException) -> None:
        """Remember the first failure of the runner itself; no task starts after it."""
        with self._lock:
            if self.failure is None:
                where = f" ({e.filename})" if isinstance(e, OSError) and e.filename else ""
                text = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
                self.failure = f"{type(e).__name__}: {text}{where}"

    def _warm_server(self, ctx: RunContext, n_tasks: int) -> WarmServer | str:
        """The run's fork server, or why its tasks run cold: the spec says `warm: false` or the script does
        not allow it (a warning when `warm: true` asked for it, a debug line for the default `auto`)."""
        from batchsweep.task import warm

        mode = warm.mode(self.run.spec.warm)
        if mode == "off":
            return "the spec says warm: false"
        started = warm.server_for(ctx, warm=mode, n_tasks=n_tasks)
        if isinstance(started, str):
            log.log(
                logging.WARNING if mode == "on" else logging.DEBUG, "warm start: %s; running cold", started
            )
        return started

    def _finish(self) -> None:
        if self._lock_release is not None:
            self._lock_release()
        try:
            record = self._read_record()
            if record is not None:
                write_engine_record(self.run, record.model_copy(update={
                    "finished": True, "finished_at": time.time(), "failure": self.failure or record.failure}))
        except Exception as e:  # noqa: BLE001 - a store that cannot take this record failed the run already
            self._fail(e)

    def runner_failure(self) -> str | None:
        if self._thread is not None:
            return self.failure
        record = self._read_record()
        return record.failure if record else None

    # -- watch --------------------------------------------------------------------------------
    def poll(self) -> Progress:
        if self._thread is not None:
            with self._lock:
                counts, running = self._counts + (self._others or Counter()), frozenset(self._running)
            active = self._thread.is_alive()
            # Counts kept as statuses are written spare the watcher a pass over every task per poll (at
            # 100,000 tasks that pass was the runner's biggest cost); the statuses themselves are read from
            # the store by whoever needs them (`results`, `status`). Those of the tasks this runner does not
            # run (a resume) were counted once when it started. A task without a status is pending, or running
            # in one of the slots.
            left = max(0, self.run.n_tasks - sum(counts.values()))
            counts.update(running=min(len(running), left), pending=left - min(len(running), left))
            return Progress(active=active, running=running, counts=counts)
        record = self._read_record()
        if record is None:  # never submitted, or a damaged record: the run's lock still tells a live runner,
            # unless it is this process's own
            holder = runlock.holder(self.run.store, self.run.id, self.clock)
            mine = holder is not None and holder.host == socket.gethostname() and holder.pid == os.getpid()
            return Progress(active=holder is not None and not mine)
        active = _alive(record, self.run, self.clock)
        workers = self._leases()[1]
        started = _started(self.run, workers) if active and self.run.store.is_local else []
        return Progress(active=active, running=frozenset(started))

    def cancel(self) -> str | None:
        if self._thread is not None:
            self._registry.cancel_all()
            self._thread.join()
            return None
        record = self._read_record()
        if record is None or not _alive(record, self.run, self.clock):
            return None
        here = record.host == socket.gethostname()
        if here and record.pid == os.getpid():  # this process is the runner, its thread not started yet: what
            self._registry.cancel_all()  # it starts now takes no lease (never a SIGTERM to ourselves)
            return None
        if here:
            os.kill(record.pid, signal.SIGTERM)
        # else: Run.cancel left a cancel request the runner sees with its next heartbeat
        deadline = self.clock.monotonic() + CANCEL_WAIT_S + (0 if here else runlock.HEARTBEAT_S)
        pause = 0.05  # a runner here stops within a fraction of a second; one elsewhere at its next heartbeat
        while self.poll().active and self.clock.monotonic() < deadline:
            self.clock.sleep(pause)
            pause = min(1.0, pause * 1.5)
        if not self.poll().active:
            return None
        holder = runlock.holder(self.run.store, self.run.id, self.clock)
        who = holder.describe(self.clock.time()) if holder else f"pid {record.pid} on {record.host}"
        return f"the runner {who} has not stopped yet; it stops at its next heartbeat if it is alive"

    def logs(self, index: int, *, stderr: bool = False) -> Iterator[str] | None:
        return None  # a running task's log file is already in the store, where `logs` reads it

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join()


def _exec_server() -> ExecServer | str:
    """What starts the run's cold tasks: an exec server (`launch.ExecServer`: a fork of one small process per
    task, its reaper included), or why `launch_cold` does (a `python _reap.py` reaper per task)."""
    if not reaper.can_supervise():
        return "no reaper here"
    return ExecServer.start_exec()


def _started(run: RunHandle, workers: int) -> list[int]:
    """The tasks a detached runner is running: a log file and no status yet (at most one per worker, the
    newest: a task left from an earlier attempt has an older log)."""
    tasks = run.store.local_path(run.store.tasks_prefix(run.id))
    found = []
    try:
        entries = list(os.scandir(tasks))
    except FileNotFoundError:
        return []
    # finished tasks of a compacted run keep their logs, not their status.json
    packed = run.store.packed(run.id)
    for entry in entries:
        if entry.name.isdigit() and int(entry.name) not in packed \
                and not os.path.exists(os.path.join(entry.path, TaskDir.STATUS)):
            try:
                found.append((os.stat(os.path.join(entry.path, TaskDir.STDOUT)).st_mtime, int(entry.name)))
            except FileNotFoundError:
                continue
    return [i for _, i in sorted(found, reverse=True)[:workers]]


def _serve(store_url: str, run_id: str, token: str) -> None:
    """The detached runner: run every task that has no status yet, holding the run (see
    `batchsweep.store.runlock`)."""
    from batchsweep.store.core import Store

    run = RunHandle.load(Store.open(store_url), run_id)
    lock = runlock.RunLock.adopt(run.store, run.id, token, command="batchsweep runner")
    engine = LocalEngine(run)
    signal.signal(signal.SIGTERM, lambda *_: engine._registry.cancel_all())
    lock.start_heartbeat(on_cancel=engine._registry.cancel_all)
    engine._lock_release = lock.release
    try:
        engine._record(os.getpid())
        done = set(run.store.statuses(run.id))
        engine._execute_or_fail([t.index for t in run.store.iter_tasks(run.id) if t.index not in done])
    finally:
        lock.release()


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2], sys.argv[3])
