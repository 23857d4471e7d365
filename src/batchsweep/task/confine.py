"""What a task may have done to the files the runner keeps beside it (docs/design.md §2): a task can write
into its own directory (its working directory's parent), so before the runner opens anything there it checks
that each of its files and directories is still what it made, never following a symlink the task put in its
place. A task that did so fails with that reason; nothing outside its directory is read, written, moved or
deleted."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

from batchsweep.files import open_dir, remove_at
from batchsweep.store.core import FILE_MODE, TaskDir

OWNED_FILES = (
    TaskDir.STATUS,
    TaskDir.METRICS,
    TaskDir.SERIES,
    TaskDir.STDOUT,
    TaskDir.STDERR,
    TaskDir.PARAMS,
)
OWNED_DIRS = (TaskDir.OUTPUTS, TaskDir.WORK)
_KINDS = ((stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a directory"), (stat.S_ISREG, "a file"),
          (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "a device")


def _link_target(name: str, dir_fd: int | None = None) -> str:
    try:
        return f" (to {os.readlink(name, dir_fd=dir_fd)!r})"
    except OSError:
        return ""


def replaced(name: str, dir_fd: int, *, after: str = "") -> str:
    """Remove what stands at name in the directory dir_fd in place of the runner's own (never following it)
    and say what it was, as a task's error."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return f"{name} was removed{after}; nothing was collected from it"
    detail = _link_target(name, dir_fd) if stat.S_ISLNK(st.st_mode) else ""
    remove_at(name, dir_fd)
    return f"{name} was replaced by {_kind(st.st_mode)}{detail}{after}; it was removed, not followed"


def reclaim(files: TaskDir, dir_fd: int | None = None) -> str | None:
    """Remove whatever stands where the runner keeps a file or a directory of the task but is not one (a
    symlink is unlinked, never followed). Returns the task's error in words; None when all is in order.
    `dir_fd`: the task's directory as the runner made it (`Anchor.fd`), else it is found by its path."""
    own = dir_fd if dir_fd is not None else open_dir(str(files.root))
    try:
        return _reclaim(own)
    finally:
        if dir_fd is None:
            os.close(own)


def _reclaim(dir_fd: int) -> str | None:
    problems = []
    for name in (*OWNED_FILES, *OWNED_DIRS):
        try:
            st = os.lstat(name, dir_fd=dir_fd)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode) if name in OWNED_DIRS else stat.S_ISREG(st.st_mode):
            continue
        detail = _link_target(name, dir_fd) if stat.S_ISLNK(st.st_mode) else ""
        remove_at(name, dir_fd)  # a real directory: never through the symlinks inside it
        problems.append(
            f"the task replaced {name} by {_kind(st.st_mode)}{detail}; it was removed, not followed"
        )
    return "; ".join(problems) or None


class TaskDirMoved(OSError):
    """A directory above a task's own was moved or replaced while it ran: the runner writes nothing more
    there."""


class Anchor:
    """A task's directory as it was before the task ran, held open (`fd`): everything the runner reads or
    writes there after the task ran goes through this descriptor, never through a name a task could swap
    meanwhile."""

    def __init__(self, root: Path, real: str | None = None) -> None:
        """Make root a directory of the runner's own before the task runs. Another task of the run may have
        put a symlink (or anything else) where it goes: that is removed, never followed, and said in
        `planted`. `real` is where root must lead (the store's root resolved when the run started):
        TaskDirMoved when a directory above it leads elsewhere."""
        self.root = root
        self.planted: str | None = None
        try:  # made first, looked at after: one mkdir where the task's directory is new, as it mostly is
            os.mkdir(root)
        except FileNotFoundError:
            root.parent.mkdir(parents=True, exist_ok=True)
            os.mkdir(root)
        except FileExistsError:  # a previous attempt's, or whatever another task put there
            pass
        st = os.lstat(root)
        if not stat.S_ISDIR(st.st_mode):
            self.planted = (
                f"{root} was "
                f"{_kind(st.st_mode)}{_link_target(str(root)) if stat.S_ISLNK(st.st_mode) else ''} before "
                "the task started (another task of the run put it there); it was removed, not followed"
            )
            os.unlink(root)
            os.mkdir(root)
        self.fd = open_dir(str(root))
        self._id = _identity(self.fd)
        here = _fd_path(self.fd)
        self._real = here if here is not None and here == real else os.path.realpath(root)
        # The kernel's path of the directory held open: with root still leading to it, root leads where it
        # did (a directory has one path), told by one readlink instead of an lstat per component.
        self._by_fd = here == self._real
        if real is not None and self._real != real:
            self.close()
            raise TaskDirMoved(
                f"{root} leads to {self._real}, not into the store: a directory above it was moved "
                "or replaced by a symlink; nothing is written there"
            )

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def check(self) -> str | None:
        """None when the directory is where it was. When the task removed, moved or replaced it, a fresh empty
        one takes its place (and `fd`'s) and the task's error in words is returned; TaskDirMoved when a
        directory above it no longer leads where it did."""
        try:
            st = os.lstat(self.root)
        except FileNotFoundError:
            st = None
        if st is not None and (st.st_dev, st.st_ino) == self._id and self._leads_here():
            return None
        if st is None:
            problem = "the task removed or moved its own directory"
        elif stat.S_ISLNK(st.st_mode):
            problem = f"the task replaced its own directory by a symlink{_link_target(str(self.root))}"
            os.unlink(self.root)
        elif stat.S_ISDIR(st.st_mode) and os.path.realpath(self.root) == self._real:
            problem = "the task replaced its own directory by another"
            shutil.rmtree(self.root)
        elif stat.S_ISDIR(st.st_mode):
            raise TaskDirMoved(
                f"a directory above {self.root} was moved or replaced by a symlink while the task "
                "ran; nothing more is written there"
            )
        else:
            problem = f"the task replaced its own directory by {_kind(st.st_mode)}"
            os.unlink(self.root)
        try:
            os.mkdir(self.root)
        except FileNotFoundError as e:
            raise TaskDirMoved(
                f"the directory above {self.root} was moved or removed while the task ran"
            ) from e
        if os.path.realpath(self.root) != self._real:
            raise TaskDirMoved(
                f"a directory above {self.root} was moved or replaced by a symlink while the task ran"
            )
        self.close()
        self.fd = open_dir(str(self.root))
        self._id = _identity(self.fd)
        return f"{problem}; nothing was collected from it, not followed"


    def _leads_here(self) -> bool:
        """Whether the directory root names (the one held open) is still at the path it had."""
        if self._by_fd and _fd_path(self.fd) == self._real:
            return True
        return os.path.realpath(self.root) == self._real


def _fd_path(fd: int) -> str | None:
    """Where the directory fd holds is now, as the kernel names it (Linux); None where it cannot tell."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def _identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def write_file(path: Path, data: bytes) -> None:
    """Put data at path as a new file renamed over whatever is there: a symlink there is replaced, not
    followed."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # O_EXCL: a new file
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
