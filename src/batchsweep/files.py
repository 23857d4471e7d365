"""Files on this machine as the store backends see them: regular files only, never through a symlink."""

from __future__ import annotations

import os
import stat
from pathlib import Path


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
