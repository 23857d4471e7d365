"""A Run: watch, cancel, resume and read the results of a run in the store. A Run is rebuilt from the store
alone (`batchsweep.runs.catalog` finds runs); `batchsweep.runs.start` makes one of a Plan, and planning lives
in `batchsweep.planning.plan`.

(Named `runs` and `planning`, not `run` and `plan`: a submodule would shadow the functions `batchsweep.run`
and `batchsweep.plan` of the package namespace once imported.)
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from batchsweep.engines.base import RunHandle
from batchsweep.errors import RunStateError, SpecError
from batchsweep.model import OK_STATE_NAMES, State, Task, TaskStatus
from batchsweep.planning.plan import keyed_as_now
from batchsweep.registry import get_engine
from batchsweep.store import runlock
from batchsweep.store.core import Store
from batchsweep.store.record import RunRecord
from batchsweep.task import reaper

if TYPE_CHECKING:
    import pandas as pd

    from batchsweep.engines.base import Engine, Progress
    from batchsweep.planning.reuse import Reuse
    from batchsweep.report.serve import ReportServer
    from batchsweep.report.study import Exported


class Run:
    """What happened to a sweep. Built from the store alone."""

    def __init__(self, store: Store, run_id: str, info: dict[str, Any] | None = None) -> None:
        self.store = store
        self.id = run_id
        self.info = info if info is not None else store.run_info(run_id)
        self._baseline: dict[int, TaskStatus] | None = None  # statuses of tasks the engine is not running
        # the local store whose pointer names this run, when its store is remote
        self.home: Store | None = None
        self._lock: runlock.RunLock | None = None  # held while this process drives the run
        self._record: RunRecord | None = None
        self._record_of: dict[str, Any] | None = None  # the info the record was parsed from
        self.resume_reused: Reuse | None = None  # what the last `resume` copied in instead of running
        self._cancel_wanted = threading.Event()  # a cancel request reached the hold (maybe before the submit)

    # -- the one runner per run -----------------------------------------------------------------
    def _hold(self, command: str) -> None:
        """Become the run's only driver, or raise RunBusy naming the live one."""
        if self._lock is None or self._lock.lost:
            self._hold_with(runlock.RunLock.acquire(self.store, self.id, command=command))

    def _hold_with(self, lock: runlock.RunLock) -> None:
        self._lock = lock
        lock.start_heartbeat(on_cancel=self._cancel_requested)

    def _let_go(self) -> None:
        """Release the hold (unless a detached runner took it over)."""
        if self._lock is not None:
            if not self._lock.handed_over:
                self._lock.release()
            self._lock = None

    def _cancel_requested(self) -> None:
        """`batchsweep cancel` from another process or host reached this driver."""
        self._cancel_wanted.set()
        self.info = self.store.update_run_info(self.id, cancelled=True)
        self.engine.cancel()

    def _submit(self, indices: list[int], *, detach: bool) -> None:
        self.engine.submit(indices, detach=detach)
        # the request came while the run was still being set up: the engine's
        if self._cancel_wanted.is_set():
            self.engine.cancel()  # cancel then had nothing to stop yet

    def __repr__(self) -> str:
        return f"Run({self.id!r}, store={self.store.url!r})"

    def _repr_html_(self) -> str:
        """A notebook cell that ends in a run shows its counts by state (and, while it runs, each running
        task's series)."""
        from html import escape

        live = ""
        try:
            counts, progress = self.counts()
            states = ", ".join(f"{n} {state}" for state, n in sorted(counts.items(), key=lambda kv: -kv[1]))
            if progress.active:
                from batchsweep.report.progress import live_html

                live = live_html(self)  # each running task's series: latest step, value, best, a sparkline
        except Exception as e:  # noqa: BLE001 - a display hook must not raise; say what went wrong instead
            states = f"unreadable: {e}"
        rows = [("run", self.id), ("sweep", self.name), ("backend", self.record.backend),
                ("tasks", self.n_tasks), ("states", states)]
        cells = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th><td style='text-align:left'>"
                        f"{escape(str(v))}</td></tr>" for k, v in rows)
        return (
            f"<table>{cells}</table>{live}<p><code>.results()</code> for the table, <code>.report()</code> "
            "for plots</p>"
        )

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def n_tasks(self) -> int:
        return self.record.n_tasks

    @property
    def record(self) -> RunRecord:
        """run.json, typed (RunDamaged when it does not hold a run's fields)."""
        if self._record is None or self._record_of is not self.info:
            self._record, self._record_of = RunRecord.of_run(self.id, self.info), self.info
        return self._record

    def handle(self) -> RunHandle:
        """What an engine is given of this run (never the Run itself)."""
        return RunHandle(id=self.id, name=self.name, store=self.store, info=MappingProxyType(dict(self.info)),
                         n_tasks=self.n_tasks, hold=lambda: self._lock)

    @cached_property
    def engine(self) -> Engine:
        return get_engine(self.record.backend)(self.handle())

    def renew_engine(self) -> None:
        """Close the engine and make a new one on next use (after run.json changed; a search's next round)."""
        old = self.__dict__.pop("engine", None)
        if old is not None:
            old.close()
        self._baseline = None  # the statuses of tasks the old engine was not running are stale too

    def tasks(self) -> list[Task]:
        return self.store.tasks(self.id)

    def statuses(self) -> dict[int, TaskStatus]:
        return self.store.statuses(self.id, self.n_tasks)

    # -- state --------------------------------------------------------------------------------
    def poll(self) -> Progress:
        """The engine's progress. A run driven by another process is active while that process holds it, even
        when the engine cannot tell from here (an engine whose tasks run in its driver's threads)."""
        progress = self.engine.poll()
        if not progress.active and self._lock is None:
            holder = runlock.holder(self.store, self.id)
            if holder is not None and not (holder.host == socket.gethostname() and holder.pid == os.getpid()):
                return dataclasses.replace(progress, active=True)
        return progress

    def snapshot(self, progress: Progress | None = None) -> tuple[dict[int, TaskStatus], Progress]:
        progress = progress or self.poll()  # first: a status written after this poll is still counted
        if progress.statuses is None:
            return self.statuses(), progress
        if self._baseline is None:
            self._baseline = {i: s for i, s in self.statuses().items() if i not in progress.covers}
        return {**self._baseline, **progress.statuses}, progress

    def states(self) -> dict[int, State]:
        statuses, progress = self.snapshot()
        return self.states_from(statuses, progress)

    def states_from(self, statuses: dict[int, TaskStatus], progress: Progress) -> dict[int, State]:
        written = {i: s.state for i, s in statuses.items()}
        return dict(enumerate(progress.states(self.n_tasks, written, self.record.cancelled)))

    def counts(self) -> tuple[Counter[str], Progress]:
        """The run's tasks by state name, read as `states` reads them (`Progress.tally`)."""
        progress = self.poll()
        if progress.counts is not None:
            return progress.tally(self.n_tasks, {}, self.record.cancelled), progress
        statuses, progress = self.snapshot(progress)
        written = {i: s.state for i, s in statuses.items()}
        return progress.tally(self.n_tasks, written, self.record.cancelled), progress

    @property
    def exit_code(self) -> int:
        counts, _ = self.counts()
        return 0 if sum(counts[name] for name in OK_STATE_NAMES) == self.n_tasks else 1

    # -- actions ------------------------------------------------------------------------------
    def wait(self, *, progress: bool = True, interval: float = 0.25) -> int:
        from batchsweep.report.progress import watch

        try:
            if self.record.search:
                from batchsweep.planning import search

                self._hold("batchsweep wait")  # the waiting process drives a search's rounds
                search.drive(self, progress=progress, interval=interval)
            else:
                watch(self, show=progress, interval=interval)
            self.engine.close()
            self._compact_if_big()
        finally:
            self._let_go()
        failure = self.engine.runner_failure()
        if failure:
            from batchsweep.errors import RunnerError

            raise RunnerError(f"run {self.id} stopped: {failure}; tasks without a status did not run; "
                              f"fix that, then `batchsweep resume {self.id}`")
        return self.exit_code

    def _compact_if_big(self) -> None:
        """A finished local run of more than AUTO_COMPACT_TASKS tasks is compacted
        (`batchsweep.store.compact`)."""
        from batchsweep.store.compact import AUTO_COMPACT_TASKS, _compact

        if self.store.is_local and self.n_tasks > AUTO_COMPACT_TASKS and not self.poll().active:
            _compact(self)  # under this process's hold of the run

    def cancel(self) -> str | None:
        """Stop the run. Returns a sentence when its runner did not confirm the stop (None: it stopped)."""
        self.store.update_run_info(self.id, cancelled=True)
        self.info = {**self.info, "cancelled": True}
        if self._lock is None:
            runlock.request_cancel(self.store, self.id)  # the driver may be another process, on another host
        return self.engine.cancel()

    def resume(self, *, detach: bool = False) -> list[int]:
        """Run again every task that did not succeed. Returns their indices."""
        script = Path(self.record.code_dir) / self.record.script_name if self.record.script_name else None
        if self._live_code and script is not None and not script.is_file():
            raise SpecError(
                f"run {self.id}: its script {script} is not there any more; put it back to resume "
                f"(`batchsweep rerun {self.id} TASK` replays a task with the code the run kept)"
            )
        self._hold("batchsweep resume")
        try:
            todo = self._resume(detach=detach)
        except BaseException:
            self._let_go()
            raise
        if detach or not todo:
            self._let_go()
        return todo

    def _resume(self, *, detach: bool) -> list[int]:
        if self.poll().active:
            raise RunStateError(
                f"run {self.id} is still running; wait for it or `batchsweep cancel {self.id}` first"
            )
        left = reaper.kill_run_tasks(self.id)  # a runner killed with -9 leaves its running tasks behind
        if left:
            logging.getLogger("batchsweep").warning(
                "killed %d process(es) of run %s left running by its stopped runner", left, self.id
            )
        if self.record.search:
            from batchsweep.planning import search

            todo = search.resume_todo(self, detach=detach)  # Run.wait submits them, then the next rounds
        else:
            statuses = self.statuses()
            todo = [t.index for t in self.tasks() if not (t.index in statuses and statuses[t.index].state.ok)]
        self.store.drop_from_packs(self.id, todo)
        for i in todo:
            self.store.backend.delete_prefix(self.store.task_prefix(self.id, i))
        self.store.backend.delete_prefix(self.store.results_cache_key(self.id))
        self.store.remove_stale_temp(self.id)
        if todo and not self.record.search:
            if self._live_code:
                self._key_as_now(todo)
            elif warning := shipped_code_warning(self.record):
                logging.getLogger("batchsweep").warning("%s", warning)
            self.resume_reused = self.reuse_finished(todo)
            todo = [i for i in todo if i not in self.resume_reused.found]
        self.info = self.store.update_run_info(self.id, cancelled=False, resumed_at=time.time())
        self.renew_engine()
        if todo and not self.record.search:
            self._submit(todo, detach=detach)
        return todo

    @property
    def _live_code(self) -> bool:
        """Whether this run's tasks run its code directory as it is (`Engine.live_code`)."""
        return get_engine(self.record.backend).live_code

    def _key_as_now(self, indices: Sequence[int]) -> None:
        """Give the tasks about to run again the content keys of the code and inputs as they are now
        (tasks.jsonl rewritten only when one changed), so what they produce is recorded, and looked up, under
        its own key."""
        wanted = set(indices)
        tasks = self.tasks()
        keyed, warning, code_now = keyed_as_now(self.record, [t for t in tasks if t.index in wanted])
        if warning:
            logging.getLogger("batchsweep").warning("%s", warning)
        # what the engine's CodeWatch compares to
        if code_now is not None and code_now != self.record.keyed_code:
            # kept like the start's package, so `rerun` can replay what these tasks ran after the code moves
            # on
            from batchsweep.engines.base import keep_code_package
            from batchsweep.store.record import CodeChange

            kept = keep_code_package(self.record.spec, self.store, Path(self.record.code_dir))
            change = CodeChange(at=time.time(), code_hash=code_now, code_sha256=kept.get("code_sha256"))
            self.info = self.store.update_run_info(self.id, resumed_code_hash=code_now, code_changes=[
                c.model_dump(mode="json") for c in [*self.record.code_changes, change]])
        now = {t.index: t for t in keyed}
        if any(now[t.index].cache_key != t.cache_key for t in tasks if t.index in now):
            self.store.write_tasks(self.id, [now.get(t.index, t) for t in tasks])

    def reuse_finished(self, indices: Sequence[int]) -> Reuse:
        """Copy in the earlier success of each of these tasks (none has a status) whose content key succeeded
        in this store since (any run), when the run was started with reuse on (run.json `reuse`); what is left
        runs."""
        from batchsweep.planning.reuse import Reuse, copy_results, lookup, rule_of

        wanted = set(indices)
        tasks = [t for t in self.tasks() if t.index in wanted]
        if not self.record.reuse or not tasks:
            return Reuse(len(tasks))
        rule = rule_of(self.record.spec_json())
        found = lookup(self.store, tasks, metrics_rule=rule, keeps_everything=not self.record.spec.outputs)
        if found.found:
            copy_results(self.store, self.id, tasks, found, metrics_rule=rule)
        return found

    def logs(self, index: int, *, stderr: bool = False) -> str:
        return b"".join(self.log_chunks(index, stderr=stderr)).decode("utf-8", errors="replace")

    def log_chunks(self, index: int, *, stderr: bool = False, start: int = 0) -> Iterator[bytes]:
        """A task's output from byte `start` on, in chunks: `logs` of a 1 GB log streams it in constant
        memory."""
        if not 0 <= index < self.n_tasks:
            raise SpecError(f"task {index} does not exist in run {self.id} (tasks 0..{self.n_tasks - 1})")
        key = self.store.task_log_key(self.id, index, stderr=stderr)
        try:
            return self.store.backend.iter_bytes(key, start)
        except IsADirectoryError:
            raise SpecError(
                f"task {index} of run {self.id}: {key} is a directory, not a log (the store is damaged)"
            ) from None
        except FileNotFoundError:
            packed = self.store.read_packed_log(self.id, index, stderr=stderr)  # a compacted run's log pack
            if packed is not None:
                return iter((packed[start:],)) if start < len(packed) else iter(())
            if self.store.read_status(self.id, index) is not None:
                return iter(())  # finished with no output: empty logs are not stored
            live = self.engine.logs(index, stderr=stderr)
            return _skip((line.encode() for line in live), start) if live is not None else iter(())

    def results(self, *, refresh: bool = False) -> pd.DataFrame:
        from batchsweep.report.results import gather

        return gather(self, refresh=refresh)

    def report(self, path: str | os.PathLike[str] | None = None, **kwargs: Any) -> Any:
        from batchsweep.report.page import write_report

        return write_report(self, path, **kwargs)

    def export_study(self, to: str, *, study_name: str | None = None, metric: str | None = None,
                     maximize: bool | None = None) -> Exported:
        """Write the run into the Optuna storage `to` (`sqlite:///study.db`, any database URL, or a journal
        file `study.log`) as a study named `study_name` (default: the run id): every task a trial with its
        params, distributions, state, value and series as intermediate values, so `optuna.load_study` and
        `optuna-dashboard` open it. See `batchsweep.report.study`."""
        from batchsweep.report.study import export_study

        return export_study(self, to, study_name=study_name, metric=metric, maximize=maximize)

    def serve(self, *, host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> ReportServer:
        """Serve the report on http://HOST:PORT/ (port 0: a free one; `.url` says which) from a thread,
        re-read from the store at each refresh; while the run goes the page refreshes itself. `kwargs` as
        `report` (`metric`, `maximize`). `.stop()` on the returned server ends it."""
        from batchsweep.report.page import render_report
        from batchsweep.report.serve import serve

        def render(refresh_s: float) -> tuple[str, bool]:
            run = Run(self.store, self.id)  # afresh: a search's new trials, a resumed run's new engine
            active = run.poll().active  # first: a run that ends during the render is rendered once more
            html, _, _ = render_report(run, live={"active": active, "refresh_s": refresh_s}, **kwargs)
            return html, active

        return serve(render, host=host, port=port)


def _skip(chunks: Iterator[bytes], start: int) -> Iterator[bytes]:
    """The chunks after their first `start` bytes."""
    for chunk in chunks:
        if start >= len(chunk):
            start -= len(chunk)
            continue
        yield chunk[start:]
        start = 0


def shipped_code_warning(record: RunRecord) -> str | None:
    """For a resume on an engine that runs the code package shipped when the run started: a warning when the
    code directory has changed since, since the resumed tasks run the code as it was (a script fixed after
    its tasks failed fails the same way again). None when it has not changed or cannot be read."""
    from batchsweep.planning.keys import HashCache, code_hash

    try:
        code_now = code_hash(record.code_spec(), cache=HashCache())
    except (SpecError, OSError):
        return None
    if code_now == record.code_hash:
        return None
    return (f"the code in {record.code_dir} has changed since run {record.run_id} started "
            f"({record.code_hash[:12]} then, {code_now[:12]} now), but backend {record.backend} runs the "
            "code package the run shipped: the resumed tasks run it as it was; to run the changed code, "
            "start a new run (`batchsweep run SPEC`: its succeeded tasks are reused)")
