"""Files on this machine as the store backends see them: regular files only, never through a symlink; and which
files `code.exclude` leaves out of a code package (read as .gitignore lines)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec


def open_regular(path: Path, flags: int) -> int:
    """A descriptor of path, a regular file, opened without following a symlink and without waiting: a symlink
    is OSError (ELOOP); a FIFO someone put there (opening one waits for its other end, for ever) or a device is
    OSError (EINVAL)."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)  # O_NONBLOCK: nothing to a regular file
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return fd


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
    """`code.exclude` read as lines of one more .gitignore at the code directory's root, so a pattern means what
    it would mean there: `data` or `data/` leaves out the directory and everything below it, `*.csv` a CSV file
    at any depth, `/notes.md` or `data/*.csv` only below the root as written (`*` never crosses a `/`), `!keep.csv`
    takes back a file an earlier line of the list left out (not one a .gitignore did). Raises ValueError for a
    pattern git could not read either."""
    if not patterns:
        return None
    import pathspec

    try:
        return pathspec.GitIgnoreSpec.from_lines(list(patterns))
    except Exception as e:  # pathspec's own error types differ between its versions
        raise ValueError(str(e)) from None
