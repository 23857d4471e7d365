"""Files on this machine as the store backends see them: regular files only, never through a symlink; a
directory's files reached from its descriptor (`dir_fd`), so no name is resolved twice; and which files
`code.exclude` leaves out of a code package (read as .gitignore lines)."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec


DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_regular(path: Path | str, flags: int, *, dir_fd: int | None = None) -> int:
    """A descriptor of path, a regular file, opened without following a symlink and without waiting: a symlink
    is OSError (ELOOP); a FIFO someone put there (opening one waits for its other end, for ever) or a device
    is OSError (EINVAL). With `dir_fd`, path is relative to that directory."""
    # O_NONBLOCK: nothing to a regular file
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o666, dir_fd=dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return fd


def open_dir(name: str, dir_fd: int | None = None) -> int:
    """A descriptor of the directory name (in dir_fd), never through a symlink: OSError (ELOOP or ENOTDIR)
    when a symlink or anything but a directory stands there."""
    return os.open(name, DIR_FLAGS, dir_fd=dir_fd)


def held_dir(fd: int, path: Path) -> Path:
    """Where the directory fd holds is now (the kernel's name for it, Linux), for what must open it by name
    (another library's client): a directory swapped in for `path` is not what it names, one moved is followed.
    Not /proc/self/fd/N itself: that name passes to the next directory held under the same number, and a
    client that caches by name (MLflow's store registry) would read the earlier task's store. Elsewhere path
    itself."""
    try:
        where = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return path
    return Path(where) if where.startswith("/") and os.path.isdir(where) else path


def open_below(dir_fd: int, names: Sequence[str], *, make: bool = False) -> int:
    """A descriptor of the directory names[-1] below dir_fd, each one entered without following a symlink (and
    made first when `make`); dir_fd itself when names is empty. The caller closes what is not dir_fd."""
    current = dir_fd
    for name in names:
        if make:
            try:
                os.mkdir(name, dir_fd=current)
            except FileExistsError:
                pass
        try:
            below = open_dir(name, current)
        finally:
            if current != dir_fd:
                os.close(current)
        current = below
    return current


def remove_at(name: str, dir_fd: int) -> None:
    """Remove name from the directory dir_fd, whatever it is: a directory with everything below it, reached
    by descriptors (a symlink swapped in anywhere below is unlinked, never followed). Nothing there: no error.
    What someone keeps swapping in meanwhile is tried again a few times, then OSError."""
    for _ in range(3):
        try:
            os.unlink(name, dir_fd=dir_fd)
            return
        except FileNotFoundError:
            return
        except IsADirectoryError:
            pass
        except PermissionError:  # what Linux answers for unlink() of a directory
            if not stat.S_ISDIR(os.lstat(name, dir_fd=dir_fd).st_mode):
                raise
        try:
            fd = open_dir(name, dir_fd)
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):  # no longer a directory: unlinked next time round
                continue
            raise
        try:
            _empty(fd)
        finally:
            os.close(fd)
        try:
            os.rmdir(name, dir_fd=dir_fd)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno not in (errno.ENOTDIR, errno.ENOTEMPTY, errno.EEXIST):
                raise
    raise OSError(errno.EBUSY, "replaced again each time it was removed", name)


def _empty(fd: int) -> None:
    """Remove everything in the directory fd holds, bottom up; what vanishes meanwhile is no error."""
    for _root, dirs, names, root_fd in os.fwalk(".", dir_fd=fd, topdown=False):
        for entry in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry, dir_fd=root_fd)
        for entry in dirs:  # fwalk lists a symlink to a directory here too, and never enters it
            try:
                os.rmdir(entry, dir_fd=root_fd)
            except NotADirectoryError:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry, dir_fd=root_fd)
            except (FileNotFoundError, OSError) as e:
                if not isinstance(e, FileNotFoundError) and e.errno != errno.ENOTEMPTY:
                    raise


def write_at(name: str, data: bytes, dir_fd: int, *, mode: int = 0o644) -> None:
    """Put data at name in the directory dir_fd as a new file renamed over whatever is there (a symlink there
    is replaced, not followed)."""
    tmp = f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    fd = os.open(
        tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd
    )
    try:
        try:
            os.fchmod(fd, mode)  # the umask does not take from what the store's files are given
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        os.unlink(tmp, dir_fd=dir_fd)
        raise


def regular_files(root: Path) -> list[str]:
    """Posix paths (relative to root) of the regular files under root. Symlinks, to files or to directories,
    are never followed: a task cannot make an upload read a file outside its directory."""
    found = []
    for parent, dirs, names in os.walk(root):  # os.walk does not descend into symlinked directories
        rel_parent = os.path.relpath(parent, root).replace(os.sep, "/")
        for name in names:
            try:
                st = os.lstat(os.path.join(parent, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                found.append(name if rel_parent == "." else f"{rel_parent}/{name}")
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(parent, d))]
    return sorted(found)


def exclude_spec(patterns: list[str] | tuple[str, ...]) -> GitIgnoreSpec | None:
    """`code.exclude` read as lines of one more .gitignore at the code directory's root, so a pattern means
    what it would mean there: `data` or `data/` leaves out the directory and everything below it, `*.csv` a
    CSV file at any depth, `/notes.md` or `data/*.csv` only below the root as written (`*` never crosses a
    `/`), `!keep.csv` takes back a file an earlier line of the list left out (not one a .gitignore did).
    Raises ValueError for a pattern git could not read either."""
    if not patterns:
        return None
    import pathspec

    try:
        return pathspec.GitIgnoreSpec.from_lines(list(patterns))
    except Exception as e:  # pathspec's own error types differ between its versions
        raise ValueError(str(e)) from None
