"""The reuse index in the store (docs/design.md §4.1): which run and task succeeded with each content key.
A local store keeps it in append-only files (`batchsweep.store.index`), an S3 store as an empty object per
entry; a local store written before the index files is moved into them when next read."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from batchsweep.store import index as indexfile
from batchsweep.store.backend import StoreBase
from batchsweep.store.layout import valid_run_id
from batchsweep.store.local import FILE_MODE


def _index_entry(name: str) -> tuple[str, int] | None:
    run_id, sep, index = name.rpartition("~")
    return (run_id, int(index)) if sep and index.isdigit() and valid_run_id(run_id) else None


class ReuseIndex(StoreBase):
    """Recording, looking up and forgetting succeeded tasks by content key."""

    def record_success(self, cache_key: str, run_id: str, index: int) -> None:
        """Index one succeeded task under its content key (`record_successes`)."""
        self.record_successes([(cache_key, run_id, index)])

    def record_successes(self, found: Iterable[tuple[str, str, int]]) -> None:
        """Index entries (content key, run id, task index) of succeeded tasks. Local: a line each, appended to
        the key prefix's index file under its lock (one write per file). S3: an empty object each."""
        entries = [e for e in found if e[0]]
        if self.is_local:
            shards: dict[str, list[bytes]] = {}
            for key, run_id, index in entries:
                shards.setdefault(self.index_file_key(key), []).append(indexfile.line(key, run_id, index))
            for shard, lines in shards.items():
                indexfile.append(self.local_path(shard), lines, FILE_MODE)
            return
        with ThreadPoolExecutor(max_workers=min(32, max(1, len(entries)))) as pool:
            list(pool.map(lambda e: self.backend.write_bytes(self.index_key(*e), b""), entries))

    def forget_successes(self, run_id: str, found: Iterable[tuple[str, int]]) -> None:
        """Drop a deleted run's index entries, given its tasks' (content key, task index)."""
        entries = [(k, i) for k, i in found if k]
        if self.is_local:
            mine = run_id.encode()
            for prefix in sorted({k[:2] for k, _ in entries}):
                self._migrate_index(prefix)
                indexfile.rewrite(self.local_path(self.index_file_key(prefix)),
                                  lambda text: indexfile.run_of(text) != mine, FILE_MODE)
            return
        for key, index in entries:
            self.backend.delete_prefix(self.index_key(key, run_id, index))

    def index_entries(self, cache_keys: Iterable[str]) -> dict[str, list[tuple[str, int]]]:
        """(run id, task) of every recorded success of each key. Local: the index files of the keys' prefixes,
        read whole (at most 256 files, however many keys). S3: one LIST per key for a few keys, else the
        index's shards (`index/00/` ... `index/ff/`) listed in parallel, so 100,000 keys cost about 256 +
        (index size / 1000) requests, never a listing of every run."""
        wanted = sorted({k for k in cache_keys if k})
        found: dict[str, list[tuple[str, int]]] = {}
        if self.is_local:
            by_prefix: dict[str, set[bytes]] = {}
            for key in wanted:
                by_prefix.setdefault(key[:2], set()).add(key.encode())
            for prefix, keys_ in by_prefix.items():
                raw = self._migrate_index(prefix)
                try:
                    with open(self.local_path(self.index_file_key(prefix)), "rb") as f:
                        raw += f.read()
                except FileNotFoundError:
                    pass
                for key, run_id, index in indexfile.entries(raw, keys_):
                    if valid_run_id(run_id):
                        found.setdefault(key, []).append((run_id, index))
            return {key: list(dict.fromkeys(entries)) for key, entries in found.items()}
        prefixes = [self.index_key(k) for k in wanted] if len(wanted) <= 256 else \
            sorted({self.index_shard_prefix(k[:2]) for k in wanted})
        with ThreadPoolExecutor(max_workers=32) as pool:
            listings = list(pool.map(self.backend.list_files, prefixes))
        keys = set(wanted)
        for listing in listings:
            for name in listing:
                parts = name.split("/")
                entry = _index_entry(parts[-1]) if len(parts) == 4 else None
                if entry is not None and parts[2] in keys:
                    found.setdefault(parts[2], []).append(entry)
        return found

    def _migrate_index(self, prefix: str) -> bytes:
        """A local store written before the index files has an empty file per entry (`index_key`): move one
        key prefix's entries into its index file, under the file's lock. Returns the lines it could not write
        (a store this user may only read), for the caller to read as if they were in the file."""
        old = self.local_path(self.index_shard_prefix(prefix))
        if not old.is_dir():
            return b""
        lines = []
        try:
            with indexfile.locked(self.local_path(self.index_file_key(prefix)), FILE_MODE) as fd:
                if old.is_dir():  # not moved by another process while this one waited
                    lines = self._old_index_lines(old)
                    indexfile.append_locked(fd, b"".join(lines))
                    shutil.rmtree(old, ignore_errors=True)
            return b""
        except OSError:  # a store this user may only read
            try:
                return b"".join(lines or self._old_index_lines(old))
            except OSError:
                return b""

    @staticmethod
    def _old_index_lines(old: Path) -> list[bytes]:
        lines = []
        for key_dir in os.scandir(old):
            if key_dir.is_dir(follow_symlinks=False):
                for name in os.listdir(key_dir.path):
                    entry = _index_entry(name)
                    if entry is not None:
                        lines.append(indexfile.line(key_dir.name, *entry))
        return lines
