"""Putting a task's inputs in its working directory before it runs: copies made through the directory's
descriptor, one component at a time, never through a symlink (another task of the run may plant one there)."""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from batchsweep.files import open_below, open_dir
from batchsweep.model import Task, input_parts

COPY_LIMIT = 256 << 20  # inputs up to this size are copied, so a task cannot change the user's own files
NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def stage(task: Task, work_fd: int, resolve_input: Callable[[str], Path]) -> dict[str, Path]:
    """Put each input at its place in the working directory `work_fd`: a copy (so what the task writes there
    lands in its own directory and is collected), or for an input over COPY_LIMIT a link to it (read-only by
    convention). Returns each place's source. A symlink or file standing where a directory of the place should
    be is an OSError (the task fails), never followed."""
    staged = {}
    for ref in task.inputs:
        src, dst = input_parts(ref)
        source = resolve_input(src).resolve()
        *parents, name = [part for part in dst.rstrip("/").split("/") if part not in ("", ".")]
        parent = open_below(work_fd, parents, make=True)
        try:
            if not _lexists(name, parent):
                if _size_up_to(str(source), source.stat().st_mtime_ns) <= COPY_LIMIT:
                    _copy(source, name, parent)
                else:
                    os.symlink(source, name, dir_fd=parent)
        finally:
            if parent != work_fd:
                os.close(parent)
        staged[dst.rstrip("/")] = source
    return staged


def _lexists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _copy(source: Path, name: str, dir_fd: int) -> None:
    """Copy the file or tree source to name in dir_fd (symlinks inside a tree copied as symlinks), every file
    created new (O_EXCL, O_NOFOLLOW) and every directory entered by descriptor."""
    if source.is_symlink():
        os.symlink(os.readlink(source), name, dir_fd=dir_fd)
    elif source.is_dir():
        os.mkdir(name, dir_fd=dir_fd)
        below = open_dir(name, dir_fd)
        try:
            for entry in os.scandir(source):
                _copy(Path(entry.path), entry.name, below)
            _same_times_and_mode(os.stat(source), below)
        finally:
            os.close(below)
    else:
        fd = os.open(name, NEW_FILE, 0o666, dir_fd=dir_fd)
        with open(source, "rb") as src, os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            _same_times_and_mode(os.fstat(src.fileno()), out.fileno())


def _same_times_and_mode(of: os.stat_result, fd: int) -> None:
    """What copy2 keeps of a file besides its bytes: its times and mode (set through the copy's
    descriptor)."""
    os.utime(fd, ns=(of.st_atime_ns, of.st_mtime_ns))
    os.chmod(fd, of.st_mode & 0o7777)


@functools.lru_cache(maxsize=256)
def _size_up_to(path: str, mtime_ns: int, limit: int = COPY_LIMIT) -> int:
    """Bytes under path, counting only until the limit is passed (mtime_ns keys the cache)."""
    if not os.path.isdir(path):
        return os.path.getsize(path)
    total = 0
    for parent, _dirs, names in os.walk(path):
        for name in names:
            total += os.lstat(os.path.join(parent, name)).st_size
            if total > limit:
                return total
    return total
