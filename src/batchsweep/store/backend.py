"""What every part of the store stands on: the `Backend` protocol (a handful of blob operations that
`LocalBackend`, store/local.py, and `S3Backend`, `batchsweep.aws.s3store`, implement) and `StoreBase`, the
reads of one or many keys, JSON files, warnings about damaged files and the listing of a run's task files that
the store's parts (store/runfiles.py, reuse.py, packs.py, logpacks.py, taskfiles.py) share."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from batchsweep.model import load_json
from batchsweep.store.layout import Layout, TaskDir
from batchsweep.store.local import LocalBackend

log = logging.getLogger("batchsweep.store.core")
PARALLEL_READS = 32  # S3 requests in flight when many small objects are read (the client's pool has as many)


class Backend(Protocol):
    """The blob operations a store needs, by key (`runs/<id>/...`): a directory on this machine
    (`LocalBackend`) or an S3 prefix (`S3Backend`)."""

    url: str

    def read_bytes(self, key: str) -> bytes:
        """A whole object. FileNotFoundError when missing."""
        ...

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write an object whole or not at all (local: a temp file renamed; S3: one PUT)."""
        ...

    def exists(self, key: str) -> bool:
        """Whether the object exists."""
        ...

    def list_dirs(self, prefix: str) -> list[str]:
        """Names of the "directories" right under prefix (S3: one LIST with a delimiter per 1,000)."""
        ...

    def list_files(self, prefix: str) -> list[str]:
        """Keys of every file under prefix, recursively (S3: one LIST per 1,000 keys)."""
        ...

    def upload_dir(self, local: Path, key: str) -> None:
        """Copy a local directory's regular files under key (symlinks are never followed)."""
        ...

    def download(self, key: str, local: Path) -> None:
        """Copy an object to a local file."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Delete the object `prefix` and everything under it (local: never through a symlink)."""
        ...

    def iter_bytes(self, key: str, start: int = 0) -> Iterator[bytes]:
        """An object in chunks from byte `start` (S3: one ranged GET). FileNotFoundError when missing."""
        ...

    def copy(self, source: str, target: str) -> None:
        """Copy an object within the store (S3: server-side, no download)."""
        ...

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Create an object only if none exists (for the run lock, `batchsweep.store.runlock`); False when
        the key exists."""
        ...

    def read_tagged(self, key: str) -> tuple[bytes, str]:
        """(data, a tag that changes with every write) of an object: the run lock's compare-and-swap."""
        ...

    def replace_if(self, key: str, data: bytes, tag: str) -> str | None:
        """Replace an object only if its tag is still `tag`: the new tag, or None when it is stale."""
        ...


def _why(e: Exception) -> str:
    return "empty" if isinstance(e, json.JSONDecodeError) and not e.doc else "not valid JSON"


class StoreBase(Layout):
    """A store's backend and the reads every part of the store shares."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._warned: set[str] = set()

    def warn(self, message: str) -> None:
        """Say once (per store object) that something in the store is damaged; the command goes on without it.
        """
        if message not in self._warned:
            self._warned.add(message)
            log.warning(message)

    def _warn_damaged(self, run_id: str, name: str, indices: list[int], consequence: str) -> None:
        shown = ", ".join(map(str, sorted(indices)[:10])) + (" ..." if len(indices) > 10 else "")
        tasks = "tasks" if len(indices) > 1 else "task"
        self.warn(f"run {run_id}: {len(indices)} damaged {name} ({tasks} {shown}); {consequence}")

    @property
    def url(self) -> str:
        """Where the store is, as a user would name it (a path, or s3://bucket/prefix)."""
        return self.backend.url

    @property
    def is_local(self) -> bool:
        """Whether the store is on this machine's disk (its task directories can be written in place)."""
        return isinstance(self.backend, LocalBackend)

    def task_files(self, run_id: str, name: str) -> dict[int, str]:
        """task index -> key of every task of the run that has the file `name` (a `TaskDir` name): one
        listing."""
        found = {}
        for key in self.backend.list_files(self.tasks_prefix(run_id)):
            index = self.task_index_of(key)
            if index is not None and key == self.task_file_key(run_id, index, name):
                found[index] = key
        return found

    def list_task_files(self, run_id: str) -> dict[int, set[str]]:
        """task index -> the names (`TaskDir`) of the files in its directory, kept outputs as `outputs`: one
        listing."""
        found: dict[int, set[str]] = {}
        for key in self.backend.list_files(self.tasks_prefix(run_id)):
            index = self.task_index_of(key)
            if index is not None:
                found.setdefault(index, set()).add(key.split("/", 5)[4])
        return found

    def local_task_dir(self, run_id: str, index: int) -> TaskDir:
        """Local stores only: a task's directory on this machine (the worker writes there directly)."""
        return TaskDir(self.local_path(self.task_prefix(run_id, index)))

    def local_path(self, key: str) -> Path:
        """Local stores only: the path of a key (the worker writes task files there directly)."""
        assert isinstance(self.backend, LocalBackend), "local_path() on a remote store"
        return self.backend.path(key)

    def local_real_path(self, key: str) -> str:
        """Local stores only: where a key must lead, the store's root resolved once (not through a symlink a
        task later put in the way)."""
        assert isinstance(self.backend, LocalBackend), "local_real_path() on a remote store"
        return self.backend.real_path(key)

    # -- reads --------------------------------------------------------------------------------
    def _try_read(self, key: str) -> bytes | None:
        try:
            return self.backend.read_bytes(key)
        except (FileNotFoundError, NotADirectoryError):  # a file where the task's directory is: no status
            return None
        except IsADirectoryError:  # a directory where the file should be: read as damaged (not JSON)
            return b""

    def _try_read_one_of_many(self, key: str) -> bytes | None:
        read: Callable[[str], bytes] = getattr(self.backend, "read_one_of_many", self.backend.read_bytes)
        try:
            return read(key)
        except FileNotFoundError:
            return None

    def _read_many(self, keys: list[str]) -> list[bytes | None]:
        """Read many small objects; concurrently on S3, where each read is a round trip (and a lighter one
        than a single `read_bytes`, see `S3Backend.read_one_of_many`)."""
        if self.is_local or len(keys) < 8:
            return [self._try_read(k) for k in keys]
        with ThreadPoolExecutor(max_workers=PARALLEL_READS) as pool:
            return list(pool.map(self._try_read_one_of_many, keys))

    def _read_stream(self, keys: list[str]) -> Iterator[bytes | None]:
        """`_read_many`, handed out in order as each arrives (S3: PARALLEL_READS requests in flight)."""
        if self.is_local or len(keys) < 8:
            yield from map(self._try_read, keys)
            return
        with ThreadPoolExecutor(max_workers=PARALLEL_READS) as pool:
            yield from pool.map(self._try_read_one_of_many, keys)

    def read_text(self, key: str) -> str:
        """A file of the store as text (undecodable bytes replaced). FileNotFoundError when missing."""
        return self.backend.read_bytes(key).decode("utf-8", errors="replace")

    # -- json helpers -------------------------------------------------------------------------
    def read_json(self, key: str) -> Any:
        """A JSON file of the store. FileNotFoundError when missing, ValueError when it is not JSON (or a
        directory stands where it should be)."""
        try:
            data = self.backend.read_bytes(key)
        except IsADirectoryError:
            raise ValueError("a directory, not a file") from None
        return load_json(data)

    def read_record(self, key: str) -> dict[str, Any] | None:
        """A JSON object the store keeps for itself (engine.json): None when missing, or damaged (with a
        warning)."""
        try:
            value = self.read_json(key)
        except FileNotFoundError:
            return None
        except ValueError as e:
            self.warn(f"{key} in {self.url} is damaged ({_why(e)}); going on without it")
            return None
        if not isinstance(value, dict):
            self.warn(f"{key} in {self.url} is damaged (not a JSON object); going on without it")
            return None
        return value

    def write_json(self, key: str, value: Any) -> None:
        """Write a JSON file of the store, whole or not at all."""
        self.backend.write_bytes(key, json.dumps(value, indent=1, default=str).encode())
