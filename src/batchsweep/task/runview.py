"""A worker's view of its run for early stopping (`batchsweep.task.stopping`): the other tasks' series and
statuses as the store holds them, re-read only where they changed, listings of a remote store spaced."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from batchsweep.model import State, TaskStatus
from batchsweep.store.core import TaskDir, _parse_status
from batchsweep.task.series import parse, values_by_step

if TYPE_CHECKING:
    from batchsweep.store.core import Store


@dataclass
class _Seen:
    status: TaskStatus | None = None
    series: dict[int, float] = field(default_factory=dict)
    tag: Any = None


LIST_PAGE = 1000  # keys per S3 listing request
MAX_BACKOFF = 6  # listing intervals (`every`) between listings at most, while listings bring nothing new
FRESH_READS = 1.5  # a listing younger than this many reads (`soon`) per page is fresh for a first decision


class RunView:
    """The run's series and statuses as the store holds them, re-read only where they changed.

    On S3 one listing of `runs/<id>/tasks/` (a LIST request per 1,000 keys) says which tasks finished and
    which series changed (their size); only those are read. Listings are spaced: never more than one LIST page
    per `every` seconds on average (a 10,000-task run, ~50 pages, is listed every ~50 × 5 s), and, while a
    listing brings nothing new, twice as far apart each time up to MAX_BACKOFF × `every`. In between,
    decisions use what the last listing saw, with two exceptions. While the view holds fewer finished tasks
    than the rule needs to decide at all (`need`, median and percentile's min_trials), a refresh lists again
    once `soon` seconds per page have passed. And a task's first decision (`fresh`) lists again unless the
    last listing is at most FRESH_READS reads (`soon`) per page old: that decision sees the tasks finished
    before it, as the local engine's does, where a view `every` seconds old would hold fewer the more load
    slows the run (a listing per task, not per read).

    A worker process shares one view per run (`shared_view`): the tasks a container runs one after another
    do not read the finished tasks again, a task it finished is in its view at once (`saw`), and its view
    lists in a thread of its own (`background`): when a task starts and at the step before its first decision
    (`prefetch`), and whenever a spaced listing is due, so a decision does not wait for S3 while its task runs
    on (on a loaded machine a listing took up to a second: that many more steps before the stop)."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        metric: str,
        *,
        running_too: bool = True,
        every: float = 0.0,
        soon: float = 0.0,
        background: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.run_id, self.metric = store, run_id, metric
        # halving/hyperband compare with running tasks; median only finished ones
        self.running_too = running_too
        self.every = every  # listings are spaced in multiples of it (0: every refresh)
        self.soon = soon  # ...and of this while the rule cannot decide yet
        self.clock = clock
        # spaced listings and prefetches made in a thread of their own: a decision never waits on them
        self.background = background
        self._seen: dict[int, _Seen] = {}
        self._lock = threading.Lock()  # _seen and the listing times
        self._listing = threading.Lock()
        self._behind: threading.Thread | None = None
        self._next_listing = self._soon_listing = self._fresh_until = -math.inf
        self._quiet = 0  # listings in a row that brought nothing new
        self.listings = 0

    def refresh(self, *, own: int, need: int = 0,
                fresh: bool = False) -> tuple[dict[int, dict[int, float]], dict[int, State]]:
        """The other tasks' series and states; `need`: finished tasks the rule needs before it can decide;
        `fresh`: the task's first decision."""
        if self.store.is_local:
            with self._lock:
                self._refresh_local(own)
        else:
            with self._lock:
                now = self.clock()
                first = fresh and now >= self._fresh_until
                due = now >= self._next_listing or (now >= self._soon_listing and self._finished(own) < need)
                behind = self._behind
            if first and behind is not None:
                # A listing under way (the prefetch) is as fresh: its answer, not another LIST. Asked again
                # even when it has just ended: `first` above may predate its answer.
                behind.join()
                with self._lock:
                    first = self.clock() >= self._fresh_until
            if first or (due and not self.background):
                self._refresh_remote(own)
            elif due:
                self._list_behind(own)
        with self._lock:
            series = {i: s.series for i, s in self._seen.items() if s.series and i != own}
            states = {i: s.status.state for i, s in self._seen.items() if s.status is not None and i != own}
        return series, states

    def prefetch(self, *, own: int) -> None:
        """A task's first decision is near (it starts, or reached the step before): list in the background
        unless the last listing is fresh enough for that decision."""
        if self.background and not self.store.is_local:
            with self._lock:
                stale = self.clock() >= self._fresh_until
            if stale:
                self._list_behind(own)

    def _list_behind(self, own: int) -> None:
        with self._lock:
            if self._behind is not None and self._behind.is_alive():
                return
            self._behind = threading.Thread(target=self._refresh_quietly, args=(own,), daemon=True,
                                            name="batchsweep-runview")
            self._behind.start()

    def _refresh_quietly(self, own: int) -> None:
        try:
            self._refresh_remote(own)
        # BLE001: S3 hiccuped (throttling, a dropped connection): a later refresh lists again
        except Exception:  # noqa: BLE001
            pass

    def _refresh_local(self, own: int) -> None:
        root = self.store.local_path(self.store.tasks_prefix(self.run_id))
        try:
            entries = [e for e in os.scandir(root) if e.name.isdigit()]
        except FileNotFoundError:
            return
        packed = self.store.packed(self.run_id)  # a compacted run's statuses (`batchsweep.store.compact`)
        for entry in entries:
            index = int(entry.name)
            if index == own:
                continue
            seen = self._seen.setdefault(index, _Seen())
            try:
                st = os.stat(os.path.join(entry.path, TaskDir.STATUS))
                status_tag: Any = (st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                status_tag = None
            try:
                st = os.stat(os.path.join(entry.path, TaskDir.SERIES))
                series_tag: Any = (st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                series_tag = None
            tag = (status_tag, series_tag)
            if tag == seen.tag:
                continue
            seen.tag = tag
            seen.status = self.store.read_status(self.run_id, index) if status_tag else \
                packed[index].status if index in packed else None
            seen.series = self._series(index) if series_tag else {}

    def _refresh_remote(self, own: int) -> None:
        with self._listing:  # one listing at a time; decisions read what the last one saw meanwhile
            prefix = self.store.tasks_prefix(self.run_id)
            backend = self.store.backend
            listed: dict[str, Any] = (backend.list_sizes(prefix) if hasattr(backend, "list_sizes")
                                      else dict.fromkeys(backend.list_files(prefix)))
            sizes: dict[tuple[int, str], Any] = {}
            for key, size in listed.items():
                found = self.store.task_file_of(key)
                if found is not None and found[1] in (TaskDir.STATUS, TaskDir.SERIES):
                    sizes[found] = size
            with self._lock:
                self.listings += 1
                wanted = self._wanted(own, sizes)
            raws = self.store._read_many([self.store.task_file_key(self.run_id, i, n) for i, n in wanted])
            with self._lock:
                for (index, name), raw in zip(wanted, raws):
                    seen = self._seen.setdefault(index, _Seen())
                    if raw is None:
                        continue
                    if name == TaskDir.SERIES:
                        seen.series = values_by_step(parse(raw), self.metric)
                        seen.tag = sizes.get((index, TaskDir.SERIES))
                    else:
                        seen.status = _parse_status(raw)
                self._quiet = 0 if wanted else self._quiet + 1
                pages = max(1, math.ceil(len(listed) / LIST_PAGE))
                now = self.clock()
                self._next_listing = now + self.every * max(pages, min(2 ** self._quiet, MAX_BACKOFF))
                self._soon_listing = now + self.soon * pages
                # A listing of the previous read of the task's log is fresh enough for its first decision.
                self._fresh_until = now + FRESH_READS * self.soon * pages

    def _wanted(self, own: int, sizes: dict[tuple[int, str], Any]) -> list[tuple[int, str]]:
        """The files a listing's `sizes` say to read: finished tasks' status and series, once; with
        `running_too`, running tasks' series when their size changed."""
        wanted: list[tuple[int, str]] = []
        for index in sorted({i for i, _ in sizes}):
            seen = self._seen.get(index)
            if index == own or (seen is not None and seen.status is not None):
                continue  # finished: its series does not change any more
            finished = (index, TaskDir.STATUS) in sizes
            if finished:
                wanted.append((index, TaskDir.STATUS))
            size = sizes.get((index, TaskDir.SERIES), False)
            if size is not False and (finished or self.running_too):
                if finished or size is None or seen is None or seen.tag != size:
                    # a running task's series only when its size changed
                    wanted.append((index, TaskDir.SERIES))
        return wanted

    def saw(self, index: int, status: TaskStatus, series: dict[int, float]) -> None:
        """A task this process ran and finished, with its series: no listing or read needed to know it."""
        if self.store.is_local:
            return  # the next refresh reads it from disk
        with self._lock:
            self._seen[index] = _Seen(status=status, series=dict(series))

    def _finished(self, own: int) -> int:
        """Tasks seen succeeded with a series: what Optuna counts as completed trials."""
        return sum(1 for i, s in self._seen.items()
                   if i != own and s.series and s.status is not None and s.status.state is State.SUCCEEDED)

    def _series(self, index: int) -> dict[int, float]:
        try:
            data = self.store.backend.read_bytes(self.store.task_series_key(self.run_id, index))
        except FileNotFoundError:
            return {}
        return values_by_step(parse(data), self.metric)


_VIEWS: dict[tuple[str, str, str, bool], RunView] = {}  # the newest last
_VIEWS_KEPT = 4
_VIEWS_LOCK = threading.Lock()


def shared_view(store: Store, run_id: str, metric: str, *, running_too: bool, every: float,
                soon: float = 0.0) -> RunView:
    """This process's view of a run: shared by the tasks it runs, at once (local threads) or one after another
    (an AWS container's packed tasks). The views of the last few runs are kept."""
    key = (store.url, run_id, metric, running_too)
    with _VIEWS_LOCK:
        view = _VIEWS.pop(key, None) or RunView(store, run_id, metric, running_too=running_too, every=every,
                                                soon=soon, background=True)
        _VIEWS[key] = view
        while len(_VIEWS) > _VIEWS_KEPT:
            del _VIEWS[next(iter(_VIEWS))]
        return view
