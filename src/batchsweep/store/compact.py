"""Compacting a finished run (`batchsweep runs compact RUN`): every task's status.json and metrics.json packed
into one object of the run (`packs/compact~<time>.jsonl`, see `batchsweep.store.packs`), their logs into one
log pack (`packs/logs~<time>.log` and its index `.idx`: `logs RUN TASK` reads that task's bytes alone), the
per-task files then removed. Series, outputs, logs over `LOG_PACK_MAX` and anything damaged stay where they
are; `results`, `status`, `report`, `logs`, `resume` and reuse read the packs the way they read the files they
replaced. Each pack is whole on disk before a file it replaces is removed: a compaction killed half-way loses
nothing."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from batchsweep.errors import RunStateError, SweepError
from batchsweep.store.core import PackEntry

if TYPE_CHECKING:
    from batchsweep.runs.run import Run

AUTO_COMPACT_TASKS = 1_000  # a local run of more tasks is compacted when it finishes
_CHUNK = 5000  # tasks read at a time


@dataclass(frozen=True)
class Compacted:
    tasks: int  # tasks in the pack
    logs: int  # log files packed
    files_removed: int
    dirs_removed: int

    def line(self, run_id: str) -> str:
        return (
            f"run {run_id}: {self.tasks:,} tasks' statuses and metrics packed into one file, {self.logs:,} "
            f"logs into another; {self.files_removed:,} files and {self.dirs_removed:,} empty directories "
            "removed (series and outputs kept)"
        )


def compact(run: Run) -> Compacted:
    """Pack a finished local run's statuses and metrics. SweepError (exit 2) for a run still going."""
    store = run.store
    if not store.is_local:
        raise SweepError(f"runs compact: {run.id} is in {store.url}; only a local store's runs are compacted "
                         "(an AWS run's results are read from its children's summaries)")
    if run.poll().active:
        raise RunStateError(f"runs compact: run {run.id} is still running; compact it once it has finished")
    run._hold("batchsweep runs compact")  # no resume or runner may write task files meanwhile
    try:
        return _compact(run)
    finally:
        run._let_go()


def _compact(run: Run) -> Compacted:
    store = run.store
    old_packs = store.pack_names(run.id)
    # per task: 0 not packed, 1 packed, 2 packed with its metrics (not a set of ints)
    packed = bytearray(run.n_tasks)

    def entries() -> Iterator[PackEntry]:
        """The tasks' statuses and metrics, read _CHUNK tasks at a time as the pack is written: a 100,000-task
        run is compacted as it finishes, in the runner, whose memory must not hold every status twice."""
        for start in range(0, run.n_tasks, _CHUNK):
            chunk = range(start, min(start + _CHUNK, run.n_tasks))
            found = [(i, s) for i, s in zip(chunk, store.read_task_statuses([(run.id, i) for i in chunk]))
                     if s is not None]  # none yet, or damaged: left where it is
            metrics = store.read_metrics(run.id, [i for i, _ in found])
            for i, status in found:
                packed[i] = 2 if i in metrics else 1
                yield PackEntry(status, metrics.get(i))

    store.write_pack(run.id, f"compact~{time.time_ns()}", entries())
    logs = store.write_log_pack(run.id, (i for i in range(run.n_tasks) if packed[i]))
    for name in old_packs:
        store.delete_pack(run.id, name)

    def remove(index: int) -> tuple[int, int]:
        task_dir = store.local_task_dir(run.id, index)
        removed = 0
        paths = [task_dir.status, *([task_dir.metrics] if packed[index] == 2 else []),
                 *(task_dir.log(stderr) for k, stderr in enumerate((False, True))
                   if index < len(logs) and logs[index] & 1 << k)]
        for path in paths:  # a damaged one stays
            try:
                os.unlink(path)
                removed += 1
            except FileNotFoundError:
                pass
        try:
            os.rmdir(task_dir.root)  # only when nothing else (logs, series, outputs) is left
            return removed, 1
        except OSError:
            return removed, 0

    def remove_all(indices: range) -> tuple[int, int]:
        removed = dirs = 0
        for i in indices:
            if packed[i]:
                r, d = remove(i)
                removed, dirs = removed + r, dirs + d
        return removed, dirs

    # Threads: each unlink is a wait on the file system, not on Python. Eight slices, not a future per task
    # (100,000 futures would hold ~100 MB of the runner's memory as it finishes a big run).
    with ThreadPoolExecutor(max_workers=8) as pool:
        done = list(pool.map(remove_all, [range(k, run.n_tasks, 8) for k in range(8)]))
    removed, dirs = sum(r for r, _ in done), sum(d for _, d in done)
    try:
        os.rmdir(store.local_path(store.tasks_prefix(run.id)))  # when no task kept a file
        dirs += 1
    except OSError:
        pass
    store.update_run_info(run.id, compacted_at=time.time())
    return Compacted(len(packed) - packed.count(0), sum(bin(b).count("1") for b in logs), removed, dirs)
