"""In a Dask worker process: the statuses and metrics of the tasks it ran, written as one pack (a summary) per
batch, so `results`, `status` and `report` read a request per batch instead of two files per task.

A batch is written when it holds BATCH_TASKS tasks, when no task of its run has run in the worker process for
IDLE_FLUSH_S (tasks longer than that do not make a batch of one each), and when the driver asks every worker
for its batches at the end of the run (`flush` through `Client.run`). Every task still writes its own
status.json first: a batch lost with its worker (killed before writing it) leaves those tasks to their own
files. A batch only keeps the tasks whose status.json still holds the status it saw, so a late batch never
covers a task that `resume` deleted and ran again.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from batchsweep.model import State, TaskStatus
from batchsweep.store.core import PackEntry, Store

BATCH_TASKS = 500
IDLE_FLUSH_S = 2.0

_LOCK = threading.Lock()
# (store url, run id) -> the tasks this process ran, not yet written
_BATCHES: dict[tuple[str, str], _Batch] = {}
_RUNNING: dict[tuple[str, str], int] = {}  # (store url, run id) -> its tasks executing in this process now
_FLUSHER: list[threading.Thread] = []


class _Batch:
    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.statuses: dict[int, TaskStatus] = {}
        self.last = time.monotonic()


def pack_name() -> str:
    """Unique, and later by name than any batch this process wrote before (a task in two packs: the later
    wins)."""
    where = re.sub(r"[^A-Za-z0-9.-]", "-", f"{socket.gethostname()}-{os.getpid()}")
    return f"dask-{time.time_ns():020d}-{where}"


@contextmanager
def running(store: Store, run_id: str) -> Iterator[None]:
    """Around a task of the run executing in this process: its batch is not idle meanwhile."""
    key = (store.url, run_id)
    with _LOCK:
        _RUNNING[key] = _RUNNING.get(key, 0) + 1
    try:
        yield
    finally:
        with _LOCK:
            _RUNNING[key] -= 1
            if not _RUNNING[key]:
                del _RUNNING[key]


def add(store: Store, run_id: str, status: TaskStatus) -> None:
    """A task this worker process ran: into its run's batch, which is written when full."""
    full = None
    with _LOCK:
        batch = _BATCHES.setdefault((store.url, run_id), _Batch(store, run_id))
        batch.statuses[status.index] = status
        batch.last = time.monotonic()
        if len(batch.statuses) >= BATCH_TASKS:
            full = _BATCHES.pop((store.url, run_id))
        if not _FLUSHER:
            _FLUSHER.append(threading.Thread(target=_flush_idle, name="batchsweep-summaries", daemon=True))
            _FLUSHER[0].start()
    if full is not None:
        _write(full)


def flush(run_id: str, dask_worker: Any = None) -> int:
    """Write this process's batch of `run_id` now (the driver calls it on every worker at the end of a run).
    Returns how many tasks it held."""
    with _LOCK:
        batches = [_BATCHES.pop(key) for key in list(_BATCHES) if key[1] == run_id]
    for batch in batches:
        _write(batch)
    return sum(len(b.statuses) for b in batches)


def _flush_idle() -> None:
    while True:
        time.sleep(IDLE_FLUSH_S / 2)
        now = time.monotonic()
        with _LOCK:
            idle = [_BATCHES.pop(key) for key, b in list(_BATCHES.items())
                    if key not in _RUNNING and now - b.last >= IDLE_FLUSH_S]
        for batch in idle:
            _write(batch)


def _write(batch: _Batch) -> None:
    """The batch as one pack, after checking each task's own status.json still holds what the batch saw."""
    store, run_id = batch.store, batch.run_id
    current = [store.read_status(run_id, i, packs=False) for i in batch.statuses]
    kept = {i: s for (i, s), now in zip(batch.statuses.items(), current) if now == s}
    if not kept:
        return
    try:
        metrics = store.read_metrics(run_id, [i for i, s in kept.items() if s.state is not State.CANCELLED],
                                     packs=False)
        store.write_pack(run_id, pack_name(), (PackEntry(s, metrics.get(i)) for i, s in sorted(kept.items())))
    except OSError:
        pass  # the store went away with the run (deleted): its tasks' own files, if any, are the truth
