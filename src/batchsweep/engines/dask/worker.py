"""The Dask engine's side on a worker: `run_dask_task` runs one task there as the local engine does (its own
process group, timeout, retries, status written last), with one warm fork server, one code watch and one read
of run.json per run and worker process, and one watcher of the run's cancel for all its tasks there;
`cancel_here` stops them at the driver's word; `busy_keys` answers the driver's question of what still runs
there. `batchsweep.engines.dask.engine` is the driver's side; both name a run's Dask keys and cancel event the
same way here.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchsweep.engines.dask import summary as dask_summary
from batchsweep.model import Task, TaskStatus
from batchsweep.store.record import RunRecord
from batchsweep.task import reaper
from batchsweep.task.worker import Launcher, ProcessRegistry, context_from_run, execute_task

if TYPE_CHECKING:
    from batchsweep.planning.keys import CodeWatch
    from batchsweep.store.core import Store


def cancel_event_name(run_id: str) -> str:
    return f"batchsweep-cancel-{run_id}"


def task_key(run_id: str, index: int) -> str:
    return f"{run_id}-{index}"


class _Cancel:
    """One submission of a run in this worker process: the registry of its running tasks and one watcher of
    the run's cancel Event for all of them (a round trip to the scheduler per task cost a short task more
    than its script). The driver's cancel also reaches it at once through `cancel_here`."""

    def __init__(self, run_id: str) -> None:
        from distributed import Event, get_client

        self.registry = ProcessRegistry()
        self.event = Event(cancel_event_name(run_id), client=get_client())
        self.running = 0
        self.last = time.monotonic()
        self.watcher: threading.Thread | None = None
        if self.event.is_set():  # a worker that joined after the cancel
            self.registry.cancelled.set()

    def started(self) -> None:
        """A task of it starts here (under _CANCELS_LOCK): watch the Event while any runs."""
        self.running += 1
        if self.watcher is None:
            self.watcher = threading.Thread(target=self._watch, name="batchsweep-cancel", daemon=True)
            self.watcher.start()

    def ended(self) -> None:
        with _CANCELS_LOCK:
            self.running -= 1
            self.last = time.monotonic()

    def _watch(self) -> None:
        # Asked, never waited on: a wait is a call the scheduler holds open, and one still open when a cluster
        # the run started shuts down is logged there as an ERROR with a traceback (after every clean run).
        while not self.registry.cancelled.wait(timeout=CANCEL_POLL_S):
            with _CANCELS_LOCK:
                if not self.running and time.monotonic() - self.last >= WATCH_IDLE_S:
                    self.watcher = None  # the next task starts another
                    return
            try:
                if self.event.is_set():
                    self.registry.cancel_all()
                    return
            except Exception:  # the worker is shutting down: its task dies with it
                return


_CANCELS: dict[tuple[str, str], _Cancel] = {}  # in a worker process: (run id, submission) -> its cancel
_CANCELS_LOCK = threading.Lock()
CANCEL_POLL_S = 0.5
WATCH_IDLE_S = 10.0


def _cancel_of(run_id: str, submission: str) -> _Cancel:
    with _CANCELS_LOCK:
        cancel = _CANCELS.get((run_id, submission))
        if cancel is None:
            for key in [k for k, c in _CANCELS.items() if not c.running and c.watcher is None]:
                del _CANCELS[key]  # ended submissions: a long-lived worker serves many runs
            cancel = _CANCELS[(run_id, submission)] = _Cancel(run_id)
        cancel.started()
    return cancel


def cancel_here(run_id: str) -> int:
    """Run on each worker by the driver's cancel (`Client.run`): every task of the run here is killed and no
    other starts. Returns how many submissions it reached. The kills run in a thread of their own:
    `Client.run` calls this on the worker's event loop, which must not wait out a task's grace period."""
    with _CANCELS_LOCK:
        cancels = [c for (run, _), c in _CANCELS.items() if run == run_id]
    for c in cancels:
        c.registry.cancelled.set()  # at once: a task that starts now skips
        threading.Thread(target=c.registry.cancel_all, name="batchsweep-cancel", daemon=True).start()
    return len(cancels)


_WARM: dict[str, Any] = {}  # in a worker process: run id -> its fork server, or why its tasks run cold
_WARM_LOCK = threading.Lock()


def _launcher(record: RunRecord, ctx: Any) -> Launcher:
    """Unless `warm: false`, one fork server per worker process and run (started by the run's first task
    there, shared by the worker's threads); a server of an earlier run is closed once none of its tasks
    runs."""
    from batchsweep.task.warm import WarmServer, cold_because, mode, server_for

    warm = mode(record.spec.warm)
    if warm == "off":
        return cold_because("the spec says warm: false")  # type: ignore[no-any-return]

    run_id = record.run_id
    with _WARM_LOCK:
        server = _WARM.get(run_id)
        if server is None or (isinstance(server, WarmServer) and not server.alive):
            for other, old in list(_WARM.items()):
                if other != run_id and (not isinstance(old, WarmServer) or not old.busy):
                    if isinstance(old, WarmServer):
                        old.close()
                    del _WARM[other]
            server = _WARM[run_id] = server_for(ctx, warm=warm, n_tasks=record.n_tasks)
            if isinstance(server, str):
                logging.getLogger(__name__).log(logging.WARNING if warm == "on" else logging.DEBUG,
                                                "warm start: %s; running cold", server)
    return server.launcher if isinstance(server, WarmServer) else cold_because(server)


_WATCHES: dict[str, CodeWatch] = {}  # in a worker process: run id -> whether its code is still as it was


def _code_is_fresh(record: RunRecord) -> bool:
    """Whether the run's code directory still holds the code its tasks were keyed by (one watch per run and
    worker process, looked at once a second at most: `keys.CodeWatch`)."""
    from batchsweep.planning.keys import CodeWatch

    run_id = record.run_id
    with _WARM_LOCK:
        watch = _WATCHES.get(run_id)
        if watch is None:
            if len(_WATCHES) >= 8:  # a long-lived worker serves many runs: forget the oldest
                del _WATCHES[next(iter(_WATCHES))]
            watch = _WATCHES[run_id] = CodeWatch(record.code_spec(), record.keyed_code)
    return watch.fresh()


# In a worker process: run id -> run.json's mtime or ETag, its record.
_RECORDS: dict[str, tuple[int | str, RunRecord]] = {}


def _record_of(store: Store, run_id: str) -> RunRecord:
    """The run's record, read once per worker process while run.json is unchanged (a spec of 100,000 `list:`
    rows takes seconds to read, and every task of the run needs it). On S3 its ETag says whether it
    changed."""
    if store.is_local:
        mtime: int | str = store.local_path(store.run_record_key(run_id)).stat().st_mtime_ns
    else:
        mtime = store.backend.read_tagged(store.run_record_key(run_id))[1]
    cached = _RECORDS.get(run_id)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    record = RunRecord.of_run(run_id, store.run_info(run_id))
    if len(_RECORDS) >= 8:
        _RECORDS.clear()
    _RECORDS[run_id] = (mtime, record)
    return record


_STORES: dict[str, Store] = {}  # in a worker process: store URL -> the store its tasks write through


def _store(url: str) -> Store:
    """One store object per URL and worker process: its statuses are fsynced by one background thread in
    batches (a store per task started a thread per task, and fsyncs that held up the next task's directories);
    an S3 store's client is made once."""
    from batchsweep.store.core import Store

    with _WARM_LOCK:
        store = _STORES.get(url)
        if store is None:
            if len(_STORES) >= 8:
                del _STORES[next(iter(_STORES))]
            store = _STORES[url] = Store.open(url)
    return store


def finish_run(run_id: str, dask_worker: Any = None) -> int:
    """Run on each worker by the driver at the end of a run (`Client.run`): the run's batch of summaries
    written, and the statuses written here on disk. Returns how many tasks the batch held."""
    held = dask_summary.flush(run_id)
    with _WARM_LOCK:
        stores = list(_STORES.values())
    for store in stores:
        store.flush_writes()
    return held


def run_dask_task(store_url: str, run_id: str, task_json: str, submission: str = "") -> TaskStatus | None:
    """The Dask task: run one task like the local engine does and write its status last.
    Returns None for a task cancelled before it started (no status: `resume` runs it)."""
    from distributed import get_worker

    worker = get_worker()
    store = _store(store_url)
    try:
        record = _record_of(store, run_id)
    except Exception as e:
        raise RuntimeError(f"the store {store_url} is not readable on Dask worker {worker.address} ({e}); "
                           "the store and the code must be on a filesystem every worker sees") from None
    cancel = _cancel_of(run_id, submission)
    try:
        if cancel.registry.cancelled.is_set():
            return None
        status = _execute(store, record, Task.from_json(task_json), cancel.registry, str(worker.address))
    finally:
        cancel.ended()
    dask_summary.add(store, run_id, status)  # after its own status.json: the worker's next summary has it
    return status


def _execute(store: Store, record: RunRecord, task: Task, registry: ProcessRegistry,
             worker: str) -> TaskStatus:
    shipped = _shipped(store, record)
    if task.cache_key and shipped is None and not _code_is_fresh(record):  # edited since the run started
        task = dataclasses.replace(task, cache_key="")
    base_dir = Path(record.base_dir)
    # Status last; a task started twice (its worker was lost mid-run) writes it twice: the last write wins.
    ctx = context_from_run(record, code_dir=shipped.code_dir if shipped is not None else None)
    resolve: Callable[[str], Path] = shipped.input if shipped is not None else lambda ref: base_dir / ref
    # A subreaper while it runs, as the local runner is: what the task leaves behind is found among this
    # process's children, not by reading every process's environment.
    with dask_summary.running(store, record.run_id), reaper.subreaper():
        return execute_task(ctx, task, store, worker=worker, registry=registry,
                            scratch=shipped.scratch / "tasks" if shipped is not None else None,
                            resolve_input=resolve, launcher=_launcher(record, ctx))


class Shipped:
    """A run's code package and inputs on this worker, fetched from the S3 store once per worker process (into
    a directory of its own, removed when the process ends) and shared by its threads."""

    def __init__(self, store: Store, record: RunRecord) -> None:
        import atexit
        import shutil
        import tempfile

        from batchsweep.task.remote import InputCache, code_dir

        self.scratch = Path(tempfile.mkdtemp(prefix="batchsweep-dask-"))
        atexit.register(shutil.rmtree, self.scratch, ignore_errors=True)
        self.code_dir = code_dir(store, record, self.scratch)
        self._inputs = InputCache(store, record, self.scratch)
        self._lock = threading.Lock()

    def input(self, ref: str) -> Path:
        with self._lock:  # one download of each input, whichever thread asks first
            return self._inputs(ref)


_SHIPPED: dict[str, Shipped] = {}  # in a worker process: run id -> its fetched code and inputs


def _shipped(store: Store, record: RunRecord) -> Shipped | None:
    """The run's shipped code and inputs here, or None for a run on a shared filesystem (a store
    directory)."""
    if store.is_local:
        return None
    with _WARM_LOCK:
        shipped = _SHIPPED.get(record.run_id)
        if shipped is None:
            if len(_SHIPPED) >= 8:  # a long-lived worker serves many runs: forget the oldest (its files stay
                del _SHIPPED[next(iter(_SHIPPED))]  # until the process ends)
            shipped = _SHIPPED[record.run_id] = Shipped(store, record)
    return shipped


def busy_keys(run_id: str, dask_worker: Any = None) -> list[str]:
    """Run on each worker by `Client.run`: this run's tasks still executing there (cancelled ones
    included)."""
    state = dask_worker.state
    return [str(ts.key) for ts in state.executing | state.long_running
            if index_of(run_id, ts.key) is not None]


def index_of(run_id: str, key: Any) -> int | None:
    """The task index of one of this run's Dask keys (`task_key`), or None for any other key."""
    prefix, _, index = str(key).rpartition("-")
    return int(index) if prefix == run_id and index.isdigit() else None
