"""Each task's status and metrics: written by the worker, read by `status`, `results`, `resume` and reuse,
from the task's own files or from the packs that cover it (store/packs.py)."""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator, Sequence
from typing import Any

from batchsweep.model import TaskStatus, load_json
from batchsweep.store.layout import TaskDir
from batchsweep.store.local import LocalBackend, _lines
from batchsweep.store.packs import PackEntry, Packs, current_packs

# Tasks that no pack covers are read one by one up to this many; beyond it the run's tasks/ prefix is listed
# (1 LIST per 1,000 keys on S3) and only the status files found are read.
PACK_GAP_GETS = 2000
STATUS_CHUNK = 5000  # status files read at a time by `Store.iter_statuses`
PACKS_LISTED_WITHIN_S = 2.0  # a task's status looked up alone reuses a listing of the packs this recent
_WITHOUT_STATUS = "counted as without status, so `resume` runs them again"


def _parse_status(raw: bytes) -> TaskStatus | None:
    try:
        return TaskStatus.from_json(raw)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


class TaskFiles(Packs):
    """Tasks' statuses and metrics, wherever they are."""

    def write_status(self, run_id: str, status: TaskStatus, *, dir_fd: int | None = None) -> None:
        """Write a task's status.json, atomically: a task's status is the last thing written for it. On a
        local store its fsync is batched in the background (`LocalBackend.write_soon`; `flush_writes` waits
        for it): the task's slot does not wait for the disk, and a status a power cut loses only runs the task
        again. `dir_fd` (a local store): the task's directory as its runner holds it open, written into
        without resolving its path again (a symlink another task swapped in is never written through)."""
        key, data = self.task_status_key(run_id, status.index), status.to_json().encode()
        if isinstance(self.backend, LocalBackend) and dir_fd is not None:
            self.backend.write_soon_at(key, data, dir_fd)
        elif isinstance(self.backend, LocalBackend):
            self.backend.write_soon(key, data)
        else:
            self.backend.write_bytes(key, data)

    def flush_writes(self) -> None:
        """Wait until every status this store wrote is on disk (a local store; elsewhere nothing waits)."""
        if isinstance(self.backend, LocalBackend):
            self.backend.flush()

    def read_status(self, run_id: str, index: int, *, packs: bool = True) -> TaskStatus | None:
        """A task's status; None when it has none or it is damaged (then the task counts as not finished).
        `packs=False`: its own status file only (an AWS child about to run it: packs never hold a task that is
        submitted again, see `drop_from_packs`)."""
        raw = self._try_read(self.task_status_key(run_id, index))
        if raw is None and not packs:
            return None
        if raw is None:
            entry = self.packed(run_id, listed_within=PACKS_LISTED_WITHIN_S).get(index)
            return entry.status if entry is not None else None
        status = _parse_status(raw)
        if status is None:
            self._warn_damaged(run_id, TaskDir.STATUS, [index], _WITHOUT_STATUS)
        return status

    def statuses(self, run_id: str, n_tasks: int | None = None) -> dict[int, TaskStatus]:
        """Every readable status written so far: the truth about which tasks finished. Packs (an AWS child's
        summary, a compacted run) are read first; tasks they do not cover are read from their own status files
        (one by one when few, else through a listing of the run's tasks). `n_tasks` says which tasks exist."""
        packed = self.packed(run_id)
        found: dict[int, TaskStatus] = {i: e.status for i, e in packed.items()}
        found.update(self.unpacked_statuses(run_id, packed, n_tasks))
        return found

    def unpacked_statuses(self, run_id: str, packed: Container[int],
                          n_tasks: int | None) -> dict[int, TaskStatus]:
        """The statuses of the tasks not in `packed`, from their own status files: one by one when few of the
        run's `n_tasks` are left, else through a listing of the run's tasks."""
        found: dict[int, TaskStatus] = {}
        gaps = [i for i in range(n_tasks) if i not in packed] if n_tasks is not None else None
        # Some tasks packed and few not: those few read one by one.
        if gaps is not None and len(gaps) <= PACK_GAP_GETS and len(gaps) < (n_tasks or 0):
            for i, raw in zip(gaps, self._read_many([self.task_status_key(run_id, i) for i in gaps])):
                status = _parse_status(raw) if raw is not None else None
                if status is not None:
                    found[i] = status
                elif raw is not None:
                    self._warn_damaged(run_id, TaskDir.STATUS, [i], _WITHOUT_STATUS)
            return found
        listed = {i: key for i, key in self.task_files(run_id, TaskDir.STATUS).items() if i not in packed}
        bad = []
        for index, raw in zip(listed, self._read_many(list(listed.values()))):
            if raw is None:
                continue
            status = _parse_status(raw)
            if status is None:
                bad.append(index)
            else:
                found[status.index] = status
        if bad:
            self._warn_damaged(run_id, f"{TaskDir.STATUS} files", bad, _WITHOUT_STATUS)
        return found

    def iter_statuses(self, run_id: str, n_tasks: int) -> Iterator[TaskStatus]:
        """The statuses `statuses` finds for tasks 0..n_tasks-1, one at a time, in memory that does not grow
        with the run (`statuses` holds them all, and caches its packs' entries): packs read line by line, the
        later one first (a task in two packs: the later one is the truth), nothing of them kept but a byte per
        task saying it was seen; then the other tasks' status files STATUS_CHUNK at a time."""
        seen = bytearray(n_tasks)
        for name in reversed(current_packs(self.pack_names(run_id))):
            try:
                lines = _lines(self.backend.iter_bytes(self.pack_key(run_id, name)))
                for number, line in enumerate(lines):
                    if not line.strip():
                        continue
                    entry = PackEntry.parse(line)
                    if entry is None:
                        self.warn(f"run {run_id}: line {number + 1} of pack {name} is damaged; its task "
                                  "counts as "
                                  "without status")
                    elif 0 <= entry.status.index < n_tasks and not seen[entry.status.index]:
                        seen[entry.status.index] = 1
                        yield entry.status
            except FileNotFoundError:  # deleted since it was listed (a resume rewrote it): read below
                continue
        gaps = [i for i in range(n_tasks) if not seen[i]]
        if not self.is_local and len(gaps) > PACK_GAP_GETS:  # a listing, not a request per task that has none
            listed = self.task_files(run_id, TaskDir.STATUS)
            gaps = [i for i in gaps if i in listed]
            del listed
        for start in range(0, len(gaps), STATUS_CHUNK):
            chunk = gaps[start:start + STATUS_CHUNK]
            bad = []
            for index, raw in zip(chunk, self._read_many([self.task_status_key(run_id, i) for i in chunk])):
                status = _parse_status(raw) if raw is not None else None
                if status is not None:
                    yield status
                elif raw is not None:
                    bad.append(index)
            if bad:
                self._warn_damaged(run_id, f"{TaskDir.STATUS} files", bad, _WITHOUT_STATUS)

    def read_task_statuses(self, where: list[tuple[str, int]]) -> list[TaskStatus | None]:
        """Statuses of tasks of any runs, (run id, index) each; None for a missing or damaged one."""
        raws = self._read_many([self.task_status_key(run_id, index) for run_id, index in where])
        out = [_parse_status(raw) if raw is not None else None for raw in raws]
        for n, ((run_id, index), raw) in enumerate(zip(where, raws)):
            if raw is not None and out[n] is None:
                self._warn_damaged(run_id, TaskDir.STATUS, [index], "that task is not taken as a success")
            if raw is None:
                entry = self.packed(run_id, listed_within=PACKS_LISTED_WITHIN_S).get(index)
                out[n] = entry.status if entry is not None else None
        return out

    def iter_metrics(self, run_id: str, indices: Sequence[int], *,
                     chunk: int = 64) -> Iterator[dict[str, Any]]:
        """These tasks' metrics, one at a time, in memory that does not grow with the run (`read_metrics`
        caches every pack entry): packs read line by line, the later one first, then the other tasks' metrics
        files `chunk` at a time; a caller may stop early."""
        wanted = set(indices)
        seen: set[int] = set()
        for name in reversed(self.pack_names(run_id)):
            try:
                for line in _lines(self.backend.iter_bytes(self.pack_key(run_id, name))):
                    entry = PackEntry.parse(line) if line.strip() else None
                    if entry is None or entry.status.index not in wanted or entry.status.index in seen:
                        continue
                    seen.add(entry.status.index)
                    if entry.metrics is not None:
                        yield entry.metrics
            except FileNotFoundError:
                continue
        rest = [i for i in indices if i not in seen]
        for start in range(0, len(rest), chunk):
            yield from self.read_metrics(run_id, rest[start:start + chunk], packs=False).values()

    def read_metrics(self, run_id: str, indices: Iterable[int], *,
                     packs: bool = True) -> dict[int, dict[str, Any]]:
        """Each task's metrics: from a pack that covers it, else from its metrics.json (`packs=False`: from
        its metrics.json only)."""
        packed = self.packed(run_id) if packs else {}
        out: dict[int, dict[str, Any]] = {}
        wanted = []
        for i in indices:
            entry = packed.get(i)
            if entry is None:
                wanted.append(i)
            elif entry.metrics is not None:
                out[i] = entry.metrics
        raws = self._read_many([self.task_metrics_key(run_id, i) for i in wanted])
        bad = []
        for i, raw in zip(wanted, raws):
            if raw is None:
                continue
            try:
                value = load_json(raw)
            except ValueError:
                value = None
            if isinstance(value, dict):
                out[i] = value
            else:
                bad.append(i)
        if bad:
            self._warn_damaged(run_id, "metrics.json files", bad, "those tasks show no metrics")
        return out

    def running_with_series(self, run_id: str) -> list[int]:
        """Tasks with a series and no status, in their own files or a pack (running, or cut off): one listing.
        """
        packed = self.packed(run_id)  # a compacted run's statuses live in its pack
        return sorted(i for i, names in self.list_task_files(run_id).items()
                      if TaskDir.SERIES in names and TaskDir.STATUS not in names and i not in packed)
