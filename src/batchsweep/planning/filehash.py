"""sha256 of local files and directories, and the cache that spares hashing a file again.

A file's sha256 is remembered in a cache (`~/.cache/batchsweep/file-sha256.json`, or `$BATCHSWEEP_CACHE_DIR`)
by (path, size, mtime, ctime, inode): a big unchanged file is not read again, and a file rewritten with the
same size and its old mtime restored is read again (restoring the mtime changes the ctime).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_CACHE_FILE = "file-sha256.json"


def cache_dir() -> Path:
    explicit = os.environ.get("BATCHSWEEP_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "batchsweep"


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class HashCache:
    """sha256 of local files, remembered across runs by (path, size, mtime, ctime, inode)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else cache_dir() / _CACHE_FILE
        self._entries: dict[str, list[Any]] = {}
        self._dirty = False
        self.read_bytes = 0  # bytes hashed by this object: what a warm cache spares
        try:
            loaded = json.loads(self.path.read_bytes())
            if isinstance(loaded, dict):
                self._entries = loaded
        except (OSError, ValueError):
            pass  # no cache yet, or a damaged one: every file is hashed again

    def file(self, path: Path, st: os.stat_result | None = None) -> str:
        st = st or os.stat(path)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        name = os.path.abspath(path)
        entry = self._entries.get(name)
        if entry is not None and entry[:4] == stamp:
            return str(entry[4])
        from batchsweep.aws.codepkg import file_sha256

        digest = file_sha256(path, st.st_size)
        self.read_bytes += st.st_size
        self._entries[name] = [*stamp, digest]
        self._dirty = True
        return digest

    def tree(self, root: Path, files: Iterable[str], links: dict[str, str] | None = None) -> str:
        """One sha256 over regular files (relative posix paths under root, with their executable bit) and
        links."""
        h = hashlib.sha256()
        for rel in sorted(files):
            path = root / rel
            st = os.stat(path)
            h.update(f"f {rel} {'x' if st.st_mode & stat.S_IXUSR else '-'} {self.file(path, st)}\n".encode())
        for rel, target in sorted((links or {}).items()):
            h.update(f"l {rel} {target}\n".encode())
        return h.hexdigest()

    def directory(self, root: Path) -> str:
        """A staged input directory: every regular file under it, symlinks by their target."""
        files, links = [], {}
        for parent, dirs, names in os.walk(root):
            for name in [*names, *[d for d in dirs if os.path.islink(os.path.join(parent, d))]]:
                full = os.path.join(parent, name)
                rel = os.path.relpath(full, root).replace(os.sep, "/")
                if os.path.islink(full):
                    links[rel] = os.readlink(full)
                elif os.path.isfile(full):
                    files.append(rel)
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(parent, d))]
        return self.tree(root, files, links)

    def save(self) -> None:
        if not self._dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".file-sha256.", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(self._entries, f, separators=(",", ":"))
            os.replace(tmp, self.path)
            self._dirty = False
        except OSError:
            pass  # a cache that cannot be written only costs a re-read next time

