"""What the runner keeps of a task once it ended (docs/design.md §2): its metrics moved beside its working
directory, the files it made kept in outputs/, its working directory removed.

Another task of the run, or whatever the task left running, may swap any of these directories for a symlink at
any moment. So nothing here is reached by its path: everything goes through the descriptor of the task's
directory the runner opened before the task ran (`confine.Anchor.fd`), each directory below it opened without
following a symlink and each file moved or removed relative to its own directory's descriptor. What was
swapped in is removed, never followed, and the task fails saying so."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from batchsweep import metrics as metrics_mod
from batchsweep import text
from batchsweep.files import open_below, open_dir, open_regular, remove_at, write_at
from batchsweep.model import load_json
from batchsweep.store.core import FILE_MODE, TaskDir
from batchsweep.task import series as series_mod
from batchsweep.task.confine import Anchor, replaced
from batchsweep.task.context import RunContext

AFTER = " after the task ended"


@dataclass
class TaskPaths:
    """Where a task's files go on this machine: the store's task dir (local) or a scratch dir (remote)."""

    task_dir: Path
    real: str | None = None  # where task_dir must lead, its store's root resolved once (confine.Anchor)
    work: Path = field(init=False)
    staged: dict[str, Path] = field(default_factory=dict)  # where each input sits in `work` -> its source

    def __post_init__(self) -> None:
        self.files = TaskDir(self.task_dir)  # the names of the task's files (the store's layout)
        self.work = self.files.work
        self.anchor: Anchor | None = None  # the task directory as it was made, set once it exists

    @property
    def fd(self) -> int:
        """The task's directory as the runner made it, open."""
        assert self.anchor is not None, "the task's directory is not made yet"
        return self.anchor.fd


@dataclass
class Collected:
    outputs: tuple[str, ...] = ()
    unsafe: str | None = None  # something hostile or swapped in: the task fails with it
    problem: str | None = None  # the metrics the task wrote cannot be used (not JSON, not an object)
    found: bool = False  # any metrics found


class _Swapped(Exception):
    """A directory the runner was reading or filling was replaced meanwhile: the task's error in words."""


def collect(ctx: RunContext, paths: TaskPaths, *, metrics: bool = True) -> Collected:
    """Read the task's metrics (unless `metrics` is False: a cancelled task's) and keep its outputs, then
    remove its working directory."""
    got = Collected()
    try:
        work_fd: int | None = open_dir(TaskDir.WORK, paths.fd)
    except FileNotFoundError:
        work_fd = None
    except OSError:
        return Collected(unsafe=replaced(TaskDir.WORK, paths.fd, after=AFTER))
    try:
        if metrics:
            try:
                got.problem, got.found = collect_metrics(ctx, paths, work_fd)
            except metrics_mod.UnsafeMetricsFile as e:
                got.unsafe, got.found = str(e), True
            except _Swapped as e:
                got.unsafe, got.found = str(e), True
        try:
            got.outputs = collect_outputs(ctx, paths, work_fd)
        except _Swapped as e:
            got.unsafe = got.unsafe or str(e)
    finally:
        if work_fd is not None:
            os.close(work_fd)
    try:
        _remove_work(paths.fd)
    except OSError as e:
        if e.errno != errno.EBUSY:  # (a full disk and the like stop the run, as anywhere)
            raise
        got.unsafe = got.unsafe or f"{TaskDir.WORK} was replaced again each time it was removed; not followed"
    return got


def _remove_work(task_fd: int) -> None:
    """Remove the working directory: one rmdir when the task left it empty (its files were moved to outputs/),
    else everything below it through descriptors (`remove_at`)."""
    try:
        os.rmdir(TaskDir.WORK, dir_fd=task_fd)  # (a symlink there: ENOTDIR, never followed)
    except OSError:
        remove_at(TaskDir.WORK, task_fd)


def unchanged_input(rel: str, st: os.stat_result, staged: dict[str, Path]) -> bool:
    """Whether a file in the task's directory (`st`, its lstat) is a staged input as it was copied (not
    written by the task)."""
    for dst, source in staged.items():
        if rel == dst or rel.startswith(dst + "/"):
            original = source if rel == dst else source / rel[len(dst) + 1:]
            try:
                a = os.stat(original)
            except OSError:
                return False  # a file the task added inside a staged directory
            return (a.st_size, a.st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    return False


def _tail(name: str, dir_fd: int, size: int) -> str:
    """The last `size` bytes of a log in the task's directory, as text ("" when it is not a regular file)."""
    try:
        with os.fdopen(open_regular(name, os.O_RDONLY, dir_fd=dir_fd), "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - size))
            return f.read(size).decode(errors="replace")
    except OSError:
        return ""


def last_line(name: str, dir_fd: int, *, limit: int = 200) -> str:
    """The last line a task wrote to a log (a traceback's last line says what went wrong)."""
    return text.last_line(_tail(name, dir_fd, 8192), limit=limit)


def _open_parent(work_fd: int, rel: str) -> int:
    """The directory (below the working directory) that holds rel, reached without following a symlink."""
    try:
        return open_below(work_fd, [p for p in rel.split("/")[:-1] if p not in ("", ".")])
    except FileNotFoundError:
        raise
    except OSError as e:
        raise metrics_mod.UnsafeMetricsFile(
            f"{rel.rsplit('/', 1)[-1]} is in a directory that is a symlink out "
            "of the task's working directory; metrics were not read"
        ) from e


def _read_metrics_file(rel: str, work_fd: int) -> Any:
    """The task's metrics file as JSON, then removed; FileNotFoundError when it wrote none."""
    parent = _open_parent(work_fd, rel)
    name = rel.rsplit("/", 1)[-1]
    try:
        # UnsafeMetricsFile: a FIFO, a symlink, huge
        value = load_json(metrics_mod.read_file(name, dir_fd=parent))
        os.unlink(name, dir_fd=parent)
        return value
    finally:
        if parent != work_fd:
            os.close(parent)


def collect_metrics(ctx: RunContext, paths: TaskPaths, work_fd: int | None) -> tuple[str | None, bool]:
    """Move the task's metrics into task_dir/metrics.json. Returns (a problem to report, whether any was
    found)."""
    rule = ctx.metrics_rule
    found: dict[str, Any] | None = None
    rel = rule if isinstance(rule, str) else metrics_mod.METRICS_FILE
    name = rel.rsplit("/", 1)[-1]
    try:
        if work_fd is None:
            raise FileNotFoundError(rel)
        value = _read_metrics_file(rel, work_fd)
    except FileNotFoundError:
        pass
    except ValueError:
        return f"{name} is not valid JSON", False
    else:
        if not isinstance(value, dict):
            return f"{name} is not a JSON object", False
        found = metrics_mod.clean(value)
    if metrics_mod.is_mlflow(rule):
        from batchsweep.task.mlflowmetrics import MlflowReadError, Reader

        if work_fd is None:
            return None, bool(found)
        try:
            logged = Reader(paths.work, work_fd).final()
        except MlflowReadError as e:
            return str(e), bool(found)
        if logged:
            found = {**(found or {}), **logged}
    elif isinstance(rule, dict):
        found = _printed(rule, paths.fd, found)
    if found:
        write_at(TaskDir.METRICS, json.dumps(found).encode(), paths.fd, mode=FILE_MODE)
    return None, bool(found)


def _printed(rule: dict[str, Any], task_fd: int, found: dict[str, Any] | None) -> dict[str, Any] | None:
    """found with the metrics a stream rule reads in the task's logs added."""
    stream, pattern = metrics_mod.rule_stream(rule)
    names = [TaskDir.log_name(stderr=s == "stderr") for s in (("stdout", "stderr") if stream == "output"
                                                               else (stream,))]
    with contextlib.ExitStack() as stack:  # streams: a 1 GB log costs no memory
        opened = []
        for name in names:
            try:
                opened.append(
                    stack.enter_context(os.fdopen(open_regular(name, os.O_RDONLY, dir_fd=task_fd), "rb"))
                )
            except FileNotFoundError:
                continue
            except OSError as e:
                raise _Swapped(replaced(name, task_fd, after=AFTER)) from e
        printed = metrics_mod.from_streams(opened, pattern, match=rule.get("match") or "last")
    if printed:
        found = {**(found or {}), **printed}
        if series_mod.rule_source(rule) is not None:
            found.pop("step", None)  # the step reached is the status's last_step
    return found


def other_stream(ctx: RunContext, paths: TaskPaths) -> str:
    """The log a stream rule did not read (its tail), to tell the user when the numbers went there."""
    rule = ctx.metrics_rule
    if not isinstance(rule, dict) or rule.get("output") is not None or metrics_mod.is_mlflow(rule):
        return ""
    return _tail(TaskDir.log_name(stderr=rule.get("stdout") is not None), paths.fd, 1 << 20)


class _Outputs:
    """task_dir/outputs made afresh and held open once a file is kept (a task that keeps none costs no
    directory made and removed), with each directory below it made as a file needs it."""

    def __init__(self, task_fd: int) -> None:
        self._fds: dict[str, int] = {}
        self._task_fd = task_fd
        try:
            st = os.lstat(TaskDir.OUTPUTS, dir_fd=task_fd)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISDIR(st.st_mode):
                raise _Swapped(replaced(TaskDir.OUTPUTS, task_fd, after=AFTER))
            remove_at(TaskDir.OUTPUTS, task_fd)  # a previous attempt's

    def _make(self, name: str, parent_fd: int, shown: str) -> int:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, dir_fd=parent_fd)
        try:
            return open_dir(name, parent_fd)
        except OSError as e:
            raise _Swapped(replaced(name, parent_fd, after=AFTER).replace(name, shown, 1)) from e

    def dir(self, rel: str) -> int:
        """The descriptor of outputs/<rel>, made when it is not there."""
        if not self._fds:
            self._fds[""] = self._make(TaskDir.OUTPUTS, self._task_fd, TaskDir.OUTPUTS)
        if rel not in self._fds:
            parent, _, name = rel.rpartition("/")
            self._fds[rel] = self._make(name, self.dir(parent), f"{TaskDir.OUTPUTS}/{rel}")
        return self._fds[rel]

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)


def collect_outputs(ctx: RunContext, paths: TaskPaths, work_fd: int | None) -> tuple[str, ...]:
    """Keep what `outputs:` names (or, without it, every file the task created) in task_dir/outputs."""
    outputs = _Outputs(paths.fd)
    kept = []
    try:
        if work_fd is None:
            return ()
        # fwalk: each directory below opened from its parent's descriptor, a symlink never entered
        for parent, _dirs, names, parent_fd in os.fwalk(".", dir_fd=work_fd):
            rel_parent = os.path.normpath(parent).replace(os.sep, "/")
            rel_parent = "" if rel_parent == "." else rel_parent
            for name in names:
                rel = f"{rel_parent}/{name}" if rel_parent else name
                try:
                    st = os.lstat(name, dir_fd=parent_fd)
                except OSError:
                    continue
                if stat.S_ISLNK(st.st_mode) or unchanged_input(rel, st, paths.staged):
                    continue  # an input as staged; one the task changed is kept, like any file it wrote
                if ctx.outputs and not any(fnmatch(rel, g) or fnmatch(name, g) for g in ctx.outputs):
                    continue
                os.replace(name, name, src_dir_fd=parent_fd, dst_dir_fd=outputs.dir(rel_parent))
                kept.append(rel)
    finally:
        outputs.close()
    return tuple(sorted(kept, key=lambda r: r.split("/")))


def drop_empty(task_fd: int) -> None:
    """A lean store: empty logs and an empty outputs directory are not kept (a missing log reads as empty)."""
    for name in (TaskDir.STDOUT, TaskDir.STDERR):
        try:
            st = os.lstat(name, dir_fd=task_fd)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_size == 0:
            os.unlink(name, dir_fd=task_fd)
    with contextlib.suppress(OSError):
        os.rmdir(TaskDir.OUTPUTS, dir_fd=task_fd)  # only when empty
