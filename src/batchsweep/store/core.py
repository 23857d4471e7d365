"""The store (docs/design.md §4): every path of a run, on a local directory or an S3 prefix.

    <store>/runs/<run_id>/run.json          written after tasks.jsonl: a run exists iff it has run.json
    <store>/runs/<run_id>/tasks.jsonl
    <store>/runs/<run_id>/runner.json       the run's one driver (`batchsweep.store.runlock`)
    <store>/runs/<run_id>/cancel.json       a cancel request for that driver
    <store>/runs/<run_id>/engine.json       what the engine needs to poll/cancel later (pid, job ids)
    <store>/runs/<run_id>/submissions/<n>.json  an array engine's n-th submission: its task indices, tasks per child
    <store>/runs/<run_id>/<journal>         a search's Optuna journal (its name is in run.json)
    <store>/runs/<run_id>/tasks/<i>/status.json   written last and atomically
    <store>/runs/<run_id>/tasks/<i>/{metrics.json,metrics.jsonl,stdout.log,stderr.log,outputs/}  (`TaskDir`)
    <store>/runs/<run_id>/results.parquet
    <store>/runs/<run_id>/packs/<name>.jsonl    statuses + metrics of many tasks in one object, a line per task
                                                ({"i": index, "s": status, "m": metrics or null}): an AWS child's
                                                summary (s<submission>-c<child>-a<attempt>) or a compacted run's
    <store>/code/<sha256>.tar.gz             content-addressed code package (remote engines)
    <store>/inputs/<sha256>/<name>           content-addressed local inputs (remote engines)
    <store>/sweeps/<name>.json               per-sweep stats (median task time) that size the next submit
    <store>/index/<k[:2]>.tsv                the reuse index of a local store: a line per succeeded task, its content
                                             key, run and task index (`batchsweep.store.index`, appended under a lock)
    <store>/index/<k[:2]>/<key>/<run_id>~<i>  the same on S3: an empty object per succeeded task (a local store
                                             written before 0.x had these too: moved into the .tsv when next read)

No other module assembles these paths: each has a named method in `Layout` (store/layout.py: `runner_key`,
`task_log_key`, ...), which `Store` is, and tests/test_store_layout.py fails when a store file name appears as
a literal anywhere else in the package. Two backends implement a handful of blob operations (`Backend`):
`LocalBackend` (store/local.py: temp file + rename) and `S3Backend` (`batchsweep.aws.s3store`).
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
import shutil
import stat
import struct
import time
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from batchsweep.errors import RunDamaged, RunNotFound, SweepError
from batchsweep.files import open_regular
from batchsweep.model import State, Task, TaskStatus, load_json, wrong_status_fields
from batchsweep.store import index as indexfile
from batchsweep.store.layout import CODE_PREFIX as CODE_PREFIX
from batchsweep.store.layout import INPUTS_PREFIX as INPUTS_PREFIX
from batchsweep.store.layout import LOG_PACK_DATA, LOG_PACK_INDEX, Layout
from batchsweep.store.layout import PACKS as PACKS
from batchsweep.store.layout import SEARCH_JOURNAL as SEARCH_JOURNAL
from batchsweep.store.layout import TASK_FILES as TASK_FILES
from batchsweep.store.layout import TaskDir as TaskDir
from batchsweep.store.layout import valid_run_id as valid_run_id
from batchsweep.store.local import FILE_MODE as FILE_MODE
from batchsweep.store.local import LocalBackend as LocalBackend
from batchsweep.store.local import OutsideStore as OutsideStore
from batchsweep.store.local import _lines, _write_temp

log = logging.getLogger(__name__)
DEFAULT_STORE = ".batchsweep"
STORE_MARKER = ".batchsweep-store"  # at a local store's root: a code directory that holds a store leaves it out


# Tasks that no pack covers are read one by one up to this many; beyond it the run's tasks/ prefix is listed
# (1 LIST per 1,000 keys on S3) and only the status files found are read.
PACK_GAP_GETS = 2000
STATUS_CHUNK = 5000  # status files read at a time by `Store.iter_statuses`
PACKS_LISTED_WITHIN_S = 2.0  # a task's status looked up alone reuses a listing of the packs this recent
LOG_PACK_MAX = 1 << 20  # a task's log larger than this keeps its own file when its run is compacted
_LOG_ENTRY = struct.Struct("<QQQQ")  # a log pack's index entry per task: stdout offset, length, stderr offset, length
_HALF_ENTRY = struct.Struct("<QQ")
PARALLEL_READS = 32  # S3 requests in flight when many small objects are read (the client's pool holds as many)


class Backend(Protocol):
    url: str

    def read_bytes(self, key: str) -> bytes: ...  # FileNotFoundError when missing
    def write_bytes(self, key: str, data: bytes) -> None: ...  # atomic
    def exists(self, key: str) -> bool: ...
    def list_dirs(self, prefix: str) -> list[str]: ...  # names of the "directories" right under prefix
    def list_files(self, prefix: str) -> list[str]: ...  # keys of every file under prefix, recursively
    def upload_dir(self, local: Path, key: str) -> None: ...  # regular files only: symlinks are never followed
    def download(self, key: str, local: Path) -> None: ...
    def delete_prefix(self, prefix: str) -> None: ...
    def iter_bytes(self, key: str, start: int = 0) -> Iterator[bytes]: ...  # chunks from `start`; FileNotFoundError
    def copy(self, source: str, target: str) -> None: ...  # within the store (S3: server-side, no download)
    # Conditional writes, for the run lock (`batchsweep.store.runlock`): exclusive create and compare-and-swap.
    def create_exclusive(self, key: str, data: bytes) -> bool: ...  # False when the key exists
    def read_tagged(self, key: str) -> tuple[bytes, str]: ...  # (data, a tag that changes with every write)
    def replace_if(self, key: str, data: bytes, tag: str) -> str | None: ...  # the new tag; None: tag is stale


_WITHOUT_STATUS = "counted as without status, so `resume` runs them again"


def _why(e: Exception) -> str:
    return "empty" if isinstance(e, json.JSONDecodeError) and not e.doc else "not valid JSON"


def _parse_status(raw: bytes) -> TaskStatus | None:
    try:
        return TaskStatus.from_json(raw)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def _index_entry(name: str) -> tuple[str, int] | None:
    run_id, sep, index = name.rpartition("~")
    return (run_id, int(index)) if sep and index.isdigit() and valid_run_id(run_id) else None


_STATE_VALUES = frozenset(s.value for s in State)


def json_line(line: bytes | str) -> Any:
    """A line's JSON value; None when it is not JSON."""
    try:
        return load_json(line)
    except ValueError:
        return None


_ATTEMPT_PACK = re.compile(r"^(s\d+-c\d+)-a(\d+)(~.*)?$")


def current_packs(names: Iterable[str]) -> list[str]:
    """The packs that count, in name order: of an AWS child's summaries (`s<sub>-c<child>-a<attempt>`, and their
    `~<time>` rewrites) only its highest attempt's. A later attempt writes an empty `-a<n>~start` pack when it
    begins, so the summary of an earlier attempt (its tasks cancelled by a Spot SIGTERM) stops counting even when
    the later attempt is killed before writing its own, and its tasks' status files are read instead. The job
    role cannot delete the earlier summary, and need not."""
    names = list(names)
    highest: dict[str, int] = {}
    for name in names:
        if m := _ATTEMPT_PACK.match(name):
            highest[m[1]] = max(highest.get(m[1], 0), int(m[2]))
    return [n for n in names if not (m := _ATTEMPT_PACK.match(n)) or int(m[2]) == highest[m[1]]]


def _pack_record(d: Any) -> tuple[int, dict[str, Any], dict[str, Any] | None] | None:
    """A pack line's JSON value as (index, status object, metrics): None when it is not one (what
    `PackEntry.parse` refuses)."""
    try:
        status = d["s"]
        index = status["index"]
        ok = isinstance(index, int) and status["state"] in _STATE_VALUES and not wrong_status_fields(status)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    metrics = d.get("m")
    return (index, status, metrics if isinstance(metrics, dict) else None) if ok else None


@dataclass(frozen=True)
class PackEntry:
    """One task in a pack: its status and its metrics (None: it has no metrics.json)."""

    status: TaskStatus
    metrics: dict[str, Any] | None = None

    def line(self) -> str:
        metrics = json.dumps(self.metrics, default=str) if self.metrics is not None else "null"
        return f'{{"i": {self.status.index}, "s": {self.status.to_json()}, "m": {metrics}}}\n'

    @classmethod
    def parse(cls, line: bytes | str) -> PackEntry | None:
        try:
            d = load_json(line)
            status = TaskStatus.from_dict(d["s"])
        except (ValueError, TypeError, KeyError, AttributeError):
            return None
        metrics = d.get("m")
        return cls(status, metrics if isinstance(metrics, dict) else None)


def _a_directory_or_none(location: str) -> None:
    """A local store's path names a directory, or nothing yet (it is made on the first write)."""
    try:
        mode = os.stat(location).st_mode
    except FileNotFoundError:
        return
    except NotADirectoryError:
        mode = 0
    except OSError:
        return  # unreadable: the first read says so
    if not stat.S_ISDIR(mode):
        raise SweepError(f"store {location}: not a directory; name a directory (made when missing) or "
                         "s3://bucket/prefix with --store or BATCHSWEEP_STORE")


class Store(Layout):
    """A store location and the layout of everything in it."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._warned: set[str] = set()
        self._packs: dict[str, tuple[tuple[str, ...], dict[int, PackEntry]]] = {}
        self._packs_listed: dict[str, float] = {}

    def warn(self, message: str) -> None:
        """Say once (per store object) that something in the store is damaged; the command goes on without it."""
        if message not in self._warned:
            self._warned.add(message)
            log.warning(message)

    def _warn_damaged(self, run_id: str, name: str, indices: list[int], consequence: str) -> None:
        shown = ", ".join(map(str, sorted(indices)[:10])) + (" ..." if len(indices) > 10 else "")
        self.warn(f"run {run_id}: {len(indices)} damaged {name} (task{'s' if len(indices) > 1 else ''} {shown}); "
                  f"{consequence}")

    @classmethod
    def open(cls, location: str | os.PathLike[str] | None = None, *, aws_profile: str | None = None,
             aws_region: str | None = None) -> Store:
        """The store at `location` (a directory, or s3://bucket/prefix), else $BATCHSWEEP_STORE, else
        `.batchsweep` here. Opening reads and writes nothing; a local path that is not a directory (a file,
        /dev/null) is a SweepError in one line."""
        location = str(location or os.environ.get("BATCHSWEEP_STORE") or DEFAULT_STORE)
        if location.startswith("s3://"):
            from batchsweep.aws.s3store import S3Backend

            return cls(S3Backend.from_url(location, profile=aws_profile, region=aws_region))
        _a_directory_or_none(location)
        return cls(LocalBackend(location))

    @property
    def url(self) -> str:
        """Where the store is, as a user would name it (a path, or s3://bucket/prefix)."""
        return self.backend.url

    @property
    def is_local(self) -> bool:
        """Whether the store is on this machine's disk (its task directories can be written in place)."""
        return isinstance(self.backend, LocalBackend)


    def task_files(self, run_id: str, name: str) -> dict[int, str]:
        """task index -> key of every task of the run that has the file `name` (a `TaskDir` name): one listing."""
        found = {}
        for key in self.backend.list_files(self.tasks_prefix(run_id)):
            index = self.task_index_of(key)
            if index is not None and key == self.task_key(run_id, index, name):
                found[index] = key
        return found

    def list_task_files(self, run_id: str) -> dict[int, set[str]]:
        """task index -> the names (`TaskDir`) of the files in its directory, kept outputs as `outputs`: one listing."""
        found: dict[int, set[str]] = {}
        for key in self.backend.list_files(self.tasks_prefix(run_id)):
            index = self.task_index_of(key)
            if index is not None:
                found.setdefault(index, set()).add(key.split("/", 5)[4])
        return found

    def running_with_series(self, run_id: str) -> list[int]:
        """Tasks with a series and no status, in their own files or a pack (running, or cut off): one listing."""
        packed = self.packed(run_id)  # a compacted run's statuses live in its pack
        return sorted(i for i, names in self.list_task_files(run_id).items()
                      if TaskDir.SERIES in names and TaskDir.STATUS not in names and i not in packed)

    def local_task_dir(self, run_id: str, index: int) -> TaskDir:
        """Local stores only: a task's directory on this machine (the worker writes there directly)."""
        return TaskDir(self.local_path(self.task_prefix(run_id, index)))


    def unused_shared_files(self, used: set[str]) -> list[str]:
        """Code packages and staged inputs in the store that no key in `used` names. An input staged as a
        directory (`inputs/<sha>/<name>/...`) counts as used when any file of it is."""
        def group(key: str) -> str:
            return "/".join(key.split("/")[:3])

        blobs = self.backend.list_files(CODE_PREFIX) + self.backend.list_files(INPUTS_PREFIX)
        inputs = {group(k) for k in used if k.startswith(f"{INPUTS_PREFIX}/")}
        return sorted(k for k in blobs if k not in used and not (k.startswith(f"{INPUTS_PREFIX}/") and group(k) in inputs))

    def local_path(self, key: str) -> Path:
        """Local stores only: the path of a key (the worker writes task files there directly)."""
        assert isinstance(self.backend, LocalBackend), "local_path() on a remote store"
        return self.backend.path(key)

    def local_real_path(self, key: str) -> str:
        """Local stores only: where a key must lead, the store's root resolved once (not through a symlink a task
        later put in the way)."""
        assert isinstance(self.backend, LocalBackend), "local_real_path() on a remote store"
        return self.backend.real_path(key)

    # -- runs ---------------------------------------------------------------------------------
    def mark(self) -> None:
        """A local store's marker file: a code directory that holds this store leaves it out of its package and key."""
        if self.is_local and not self.backend.exists(STORE_MARKER):
            self.backend.write_bytes(STORE_MARKER, b"a batchsweep store: not code, never part of a content key\n")

    def create_run(self, run_id: str, info: dict[str, Any], tasks: Iterable[Task]) -> None:
        """Write a new run: tasks.jsonl first, then run.json (`info`), so a run exists only once it is whole."""
        self.mark()
        self.write_tasks(run_id, tasks)
        self.write_json(self.run_record_key(run_id), info)

    def write_tasks(self, run_id: str, tasks: Iterable[Task]) -> None:
        """Replace the run's tasks.jsonl (a search adds each round's trials), in one atomic write."""
        data = "".join(t.to_json() + "\n" for t in tasks).encode()
        self.backend.write_bytes(self.tasks_file_key(run_id), data)

    def run_ids(self) -> list[str]:
        """The ids of the runs in the store (one listing of `runs/`), including damaged ones."""
        return self.backend.list_dirs("runs")

    def run_info(self, run_id: str) -> dict[str, Any]:
        """run.json as a dict. RunNotFound when the run has none; RunDamaged, naming why, when it is not JSON."""
        try:
            info = self.read_json(self.run_record_key(run_id))
        except FileNotFoundError:
            raise RunNotFound(f"run {run_id!r} not found in store {self.url}; `batchsweep runs` lists the runs") from None
        except ValueError as e:
            reason = _why(e)
        else:
            if isinstance(info, dict) and "run_id" in info:
                return info
            reason = "not a run record"
        raise RunDamaged(f"run {run_id}: run.json in {self.url} is damaged ({reason}); its task files are intact, "
                         "but the run cannot be read without it", reason=reason)

    def update_run_info(self, run_id: str, **changes: Any) -> dict[str, Any]:
        """Merge `changes` into run.json (read, then written whole); returns the new record."""
        info = {**self.run_info(run_id), **changes}
        self.write_json(self.run_record_key(run_id), info)
        return info

    def tasks(self, run_id: str) -> list[Task]:
        """Every readable task; a damaged line is left out with a warning (the others stay readable)."""
        return list(self.iter_tasks(run_id))

    def iter_tasks(self, run_id: str) -> Iterator[Task]:
        """`tasks`, one at a time (a table of 100,000 tasks need not hold 100,000 Task objects)."""
        text = self.backend.read_bytes(self.tasks_file_key(run_id)).decode("utf-8", errors="replace")
        lines = text.splitlines()
        del text
        bad = []
        for start in range(0, len(lines), 1000):  # a parse per 1,000 lines; a damaged one sends them one by one
            chunk = lines[start:start + 1000]
            try:
                tasks = [Task.from_dict(d) for d in load_json("[" + ",".join(line for line in chunk if line) + "]")]
            except (ValueError, TypeError, KeyError):
                tasks = []
            if len(tasks) == sum(1 for line in chunk if line):
                yield from tasks
                continue
            for number, line in enumerate(chunk, start):
                if not line:
                    continue
                try:
                    task = Task.from_json(line)
                except (ValueError, TypeError, KeyError):
                    bad.append(number)
                    continue
                yield task
        if bad:
            self._warn_damaged(run_id, "lines in tasks.jsonl", bad, "those tasks are left out")

    def remove_stale_temp(self, run_id: str) -> None:
        """Temp files a killed writer left in the run's directory (local stores; S3 writes are whole objects).
        Called by the run's one driver, so no live writer owns them."""
        if not self.is_local:
            return
        for entry in os.scandir(self.local_path(self.run_prefix(run_id))):
            if entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)

    def delete_run(self, run_id: str) -> None:
        """Delete everything under the run's directory (local: never through a symlink out of the store)."""
        self.backend.delete_prefix(self.run_prefix(run_id))

    # -- the reuse index ----------------------------------------------------------------------
    def record_success(self, cache_key: str, run_id: str, index: int) -> None:
        """Index one succeeded task under its content key (`record_successes`)."""
        self.record_successes([(cache_key, run_id, index)])

    def record_successes(self, found: Iterable[tuple[str, str, int]]) -> None:
        """Index entries (content key, run id, task index) of succeeded tasks. Local: a line each, appended to the
        key prefix's index file under its lock (one write per file). S3: an empty object each."""
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
        read whole (at most 256 files, however many keys). S3: one LIST per key for a few keys, else the index's
        shards (`index/00/` ... `index/ff/`) listed in parallel, so 100,000 keys cost about 256 + (index size /
        1000) requests, never a listing of every run."""
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
            sorted({f"index/{k[:2]}" for k in wanted})
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
        """A local store written before the index files has an empty file per entry (`index_key`): move one key
        prefix's entries into its index file, under the file's lock. Returns the lines it could not write (a
        store this user may only read), for the caller to read as if they were in the file."""
        old = self.local_path(f"index/{prefix}")
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

    # -- tasks --------------------------------------------------------------------------------
    def write_status(self, run_id: str, status: TaskStatus) -> None:
        """Write a task's status.json, atomically: a task's status is the last thing written for it. On a local
        store its fsync is batched in the background (`LocalBackend.write_soon`; `flush_writes` waits for it):
        the task's slot does not wait for the disk, and a status a power cut loses only runs the task again."""
        key, data = self.task_status_key(run_id, status.index), status.to_json().encode()
        if isinstance(self.backend, LocalBackend):
            self.backend.write_soon(key, data)
        else:
            self.backend.write_bytes(key, data)

    def flush_writes(self) -> None:
        """Wait until every status this store wrote is on disk (a local store; elsewhere nothing waits)."""
        if isinstance(self.backend, LocalBackend):
            self.backend.flush()

    def read_status(self, run_id: str, index: int, *, packs: bool = True) -> TaskStatus | None:
        """A task's status; None when it has none or it is damaged (then the task counts as not finished).
        `packs=False`: its own status file only (an AWS child about to run it: packs never hold a task that is
        submitted again, see `drop_from_packs`)."""
        raw = self._try_read(self.task_status_key(run_id, index))
        if raw is None and not packs:
            return None
        if raw is None:
            entry = self.packed(run_id, listed_within=PACKS_LISTED_WITHIN_S).get(index)
            return entry.status if entry is not None else None
        status = _parse_status(raw)
        if status is None:
            self._warn_damaged(run_id, "status.json", [index], _WITHOUT_STATUS)
        return status

    def statuses(self, run_id: str, n_tasks: int | None = None) -> dict[int, TaskStatus]:
        """Every readable status written so far: the truth about which tasks finished. Packs (an AWS child's
        summary, a compacted run) are read first; tasks they do not cover are read from their own status files
        (one by one when few, else through a listing of the run's tasks). `n_tasks` says which tasks exist."""
        packed = self.packed(run_id)
        found: dict[int, TaskStatus] = {i: e.status for i, e in packed.items()}
        found.update(self.unpacked_statuses(run_id, packed, n_tasks))
        return found

    def unpacked_statuses(self, run_id: str, packed: Container[int], n_tasks: int | None) -> dict[int, TaskStatus]:
        """The statuses of the tasks not in `packed`, from their own status files: one by one when few of the
        run's `n_tasks` are left, else through a listing of the run's tasks."""
        found: dict[int, TaskStatus] = {}
        gaps = [i for i in range(n_tasks) if i not in packed] if n_tasks is not None else None
        if gaps is not None and len(gaps) <= PACK_GAP_GETS and len(gaps) < (n_tasks or 0):  # some packed, few not
            for i, raw in zip(gaps, self._read_many([self.task_status_key(run_id, i) for i in gaps])):
                status = _parse_status(raw) if raw is not None else None
                if status is not None:
                    found[i] = status
                elif raw is not None:
                    self._warn_damaged(run_id, "status.json", [i], _WITHOUT_STATUS)
            return found
        listed = {i: key for i, key in self.task_files(run_id, TaskDir.STATUS).items() if i not in packed}
        bad = []
        for index, raw in zip(listed, self._read_many(list(listed.values()))):
            if raw is None:
                continue
            status = _parse_status(raw)
            if status is None:
                bad.append(index)
            else:
                found[status.index] = status
        if bad:
            self._warn_damaged(run_id, "status.json files", bad, _WITHOUT_STATUS)
        return found

    def iter_statuses(self, run_id: str, n_tasks: int) -> Iterator[TaskStatus]:
        """The statuses `statuses` finds for tasks 0..n_tasks-1, one at a time, in memory that does not grow with
        the run (`statuses` holds them all, and caches its packs' entries): packs read line by line, the later one
        first (a task in two packs: the later one is the truth), nothing of them kept but a byte per task saying
        it was seen; then the other tasks' status files STATUS_CHUNK at a time."""
        seen = bytearray(n_tasks)
        for name in reversed(current_packs(self.pack_names(run_id))):
            try:
                lines = _lines(self.backend.iter_bytes(self.pack_key(run_id, name)))
                for number, line in enumerate(lines):
                    if not line.strip():
                        continue
                    entry = PackEntry.parse(line)
                    if entry is None:
                        self.warn(f"run {run_id}: line {number + 1} of pack {name} is damaged; its task counts as "
                                  "without status")
                    elif 0 <= entry.status.index < n_tasks and not seen[entry.status.index]:
                        seen[entry.status.index] = 1
                        yield entry.status
            except FileNotFoundError:  # deleted since it was listed (a resume rewrote it): the rest is read below
                continue
        gaps = [i for i in range(n_tasks) if not seen[i]]
        if not self.is_local and len(gaps) > PACK_GAP_GETS:  # a listing, not a request per task that has none
            listed = self.task_files(run_id, TaskDir.STATUS)
            gaps = [i for i in gaps if i in listed]
            del listed
        for start in range(0, len(gaps), STATUS_CHUNK):
            chunk = gaps[start:start + STATUS_CHUNK]
            bad = []
            for index, raw in zip(chunk, self._read_many([self.task_status_key(run_id, i) for i in chunk])):
                status = _parse_status(raw) if raw is not None else None
                if status is not None:
                    yield status
                elif raw is not None:
                    bad.append(index)
            if bad:
                self._warn_damaged(run_id, "status.json files", bad, _WITHOUT_STATUS)

    def read_task_statuses(self, where: list[tuple[str, int]]) -> list[TaskStatus | None]:
        """Statuses of tasks of any runs, (run id, index) each; None for a missing or damaged one."""
        raws = self._read_many([self.task_status_key(run_id, index) for run_id, index in where])
        out = [_parse_status(raw) if raw is not None else None for raw in raws]
        for n, ((run_id, index), raw) in enumerate(zip(where, raws)):
            if raw is not None and out[n] is None:
                self._warn_damaged(run_id, "status.json", [index], "that task is not taken as a success")
            if raw is None:
                entry = self.packed(run_id, listed_within=PACKS_LISTED_WITHIN_S).get(index)
                out[n] = entry.status if entry is not None else None
        return out

    def iter_metrics(self, run_id: str, indices: Sequence[int], *, chunk: int = 64) -> Iterator[dict[str, Any]]:
        """These tasks' metrics, one at a time, in memory that does not grow with the run (`read_metrics` caches
        every pack entry): packs read line by line, the later one first, then the other tasks' metrics files
        `chunk` at a time; a caller may stop early."""
        wanted = set(indices)
        seen: set[int] = set()
        for name in reversed(self.pack_names(run_id)):
            try:
                for line in _lines(self.backend.iter_bytes(self.pack_key(run_id, name))):
                    entry = PackEntry.parse(line) if line.strip() else None
                    if entry is None or entry.status.index not in wanted or entry.status.index in seen:
                        continue
                    seen.add(entry.status.index)
                    if entry.metrics is not None:
                        yield entry.metrics
            except FileNotFoundError:
                continue
        rest = [i for i in indices if i not in seen]
        for start in range(0, len(rest), chunk):
            yield from self.read_metrics(run_id, rest[start:start + chunk], packs=False).values()

    def read_metrics(self, run_id: str, indices: Iterable[int], *, packs: bool = True) -> dict[int, dict[str, Any]]:
        """Each task's metrics: from a pack that covers it, else from its metrics.json (`packs=False`: from
        its metrics.json only)."""
        packed = self.packed(run_id) if packs else {}
        out: dict[int, dict[str, Any]] = {}
        wanted = []
        for i in indices:
            entry = packed.get(i)
            if entry is None:
                wanted.append(i)
            elif entry.metrics is not None:
                out[i] = entry.metrics
        raws = self._read_many([self.task_metrics_key(run_id, i) for i in wanted])
        bad = []
        for i, raw in zip(wanted, raws):
            if raw is None:
                continue
            try:
                value = load_json(raw)
            except ValueError:
                value = None
            if isinstance(value, dict):
                out[i] = value
            else:
                bad.append(i)
        if bad:
            self._warn_damaged(run_id, "metrics.json files", bad, "those tasks show no metrics")
        return out

    # -- packs: many tasks' statuses and metrics in one object ---------------------------------
    def pack_key(self, run_id: str, name: str) -> str:
        """The key of the run's pack `name` (`packs/<name>.jsonl`)."""
        return self.run_key(run_id, PACKS, f"{name}.jsonl")

    def pack_names(self, run_id: str) -> list[str]:
        """Every pack of the run, by name; `current_packs` leaves out the ones a later attempt superseded."""
        return sorted(k.rsplit("/", 1)[-1].removesuffix(".jsonl") for k in
                      self.backend.list_files(self.run_key(run_id, PACKS)) if k.endswith(".jsonl"))

    def write_pack(self, run_id: str, name: str, entries: Iterable[PackEntry]) -> None:
        """One object for many tasks. Written whole: locally a temp file written line by line (a compacted
        100,000-task run's pack is never one string in memory) and renamed; on S3 one PUT."""
        key = self.pack_key(run_id, name)
        if isinstance(self.backend, LocalBackend):
            target = self.backend.path(key)
            tmp = _write_temp(target, (e.line().encode() for e in entries))
            try:
                os.replace(tmp, target)
            except BaseException:
                os.unlink(tmp)
                raise
        else:
            self.backend.write_bytes(key, "".join(e.line() for e in entries).encode())
        self._packs.pop(run_id, None)
        self._packs_listed.pop(run_id, None)

    def delete_pack(self, run_id: str, name: str) -> None:
        """Delete one pack, and forget what was read of the run's packs."""
        self.backend.delete_prefix(self.pack_key(run_id, name))
        self._packs.pop(run_id, None)
        self._packs_listed.pop(run_id, None)

    def packed(self, run_id: str, *, listed_within: float = 0.0) -> dict[int, PackEntry]:
        """Every task a pack covers, with its status and metrics; packs later by name win. Read concurrently,
        one request per pack; cached per store object for as long as the run's pack names do not change (a
        pack is never rewritten under the same name, see `drop_from_packs`). `listed_within`: a listing of the
        packs that recent is reused (one task's status looked up many times, e.g. a search's trials on S3)."""
        cached = self._packs.get(run_id)
        if cached is not None and time.monotonic() - self._packs_listed.get(run_id, -math.inf) < listed_within:
            return cached[1]
        names = tuple(current_packs(self.pack_names(run_id)))
        self._packs_listed[run_id] = time.monotonic()
        if cached is not None and cached[0] == names:
            return cached[1]
        entries: dict[int, PackEntry] = {}
        raws = self._read_many([self.pack_key(run_id, n) for n in names])
        for name, raw in zip(names, raws):
            if raw is None:
                continue
            for index, status, metrics in self._pack_lines(run_id, name, raw):
                try:
                    entries[index] = PackEntry(TaskStatus.from_dict(status), metrics)
                except (ValueError, TypeError, KeyError, AttributeError):
                    self.warn(f"run {run_id}: task {index}'s line in pack {name} is damaged; it counts as without "
                              "status")
        self._packs[run_id] = (names, entries)
        return entries

    def pack_records(self, run_id: str) -> Iterator[tuple[int, dict[str, Any], dict[str, Any] | None]]:
        """Every line of every pack as (index, status as its JSON object, metrics or None), packs in name order
        (a task in two packs: the later one is the truth), each parsed as it arrives: the packs are read
        concurrently and neither they nor their tasks are all held at once (`results` of 100,000 tasks).
        Not cached; `packed` is the cached, typed view."""
        names = current_packs(self.pack_names(run_id))
        for name, raw in zip(names, self._read_stream([self.pack_key(run_id, n) for n in names])):
            if raw is not None:
                yield from self._pack_lines(run_id, name, raw)

    def _pack_lines(self, run_id: str, name: str, raw: bytes) -> list[tuple[int, dict[str, Any], dict[str, Any] | None]]:
        """A pack's lines as (index, status as its JSON object, metrics or None): one JSON parse for the whole
        pack; a damaged line sends it line by line, to leave that line out with a warning naming it."""
        lines = raw.splitlines()
        try:
            parsed: list[Any] = load_json(b"[" + b",".join(line for line in lines if line.strip()) + b"]")
        except ValueError:
            parsed = []
        records = [r for d in parsed if (r := _pack_record(d)) is not None]
        if len(records) == sum(1 for line in lines if line.strip()):
            return records
        records = []
        for number, line in enumerate(lines):
            if not line.strip():
                continue
            record = _pack_record(json_line(line))
            if record is None:
                self.warn(f"run {run_id}: line {number + 1} of pack {name} is damaged; its task counts as "
                          "without status")
            else:
                records.append(record)
        return records

    def drop_from_packs(self, run_id: str, indices: Iterable[int]) -> None:
        """Forget these tasks in every pack that has them (before they run again): each such pack is written
        again under a new name, then the old one is deleted, so a reader never sees a half-changed pack."""
        drop = set(indices)
        if not drop:
            return
        names = self.pack_names(run_id)
        for name, raw in zip(names, self._read_many([self.pack_key(run_id, n) for n in names])):
            if raw is None:
                continue
            entries = [e for e in map(PackEntry.parse, raw.splitlines()) if e is not None]
            if not any(e.status.index in drop for e in entries):
                continue
            stem = name.split("~", 1)[0]
            self.write_pack(run_id, f"{stem}~{time.time_ns()}", (e for e in entries if e.status.index not in drop))
            self.delete_pack(run_id, name)
        if self.is_local:
            self._drop_from_log_packs(run_id, drop)

    # -- log packs: a compacted run's logs in one file, with an index to read one task's alone -------------
    def log_pack_names(self, run_id: str) -> list[str]:
        """The run's log packs, oldest first (a pack counts once its index is written, after its data)."""
        if not self.is_local:
            return []
        return sorted(k.rsplit("/", 1)[-1].removesuffix(f".{LOG_PACK_INDEX}") for k in
                      self.backend.list_files(self.run_key(run_id, PACKS)) if k.endswith(f".{LOG_PACK_INDEX}"))

    def write_log_pack(self, run_id: str, indices: Iterable[int]) -> bytearray:
        """Local stores: the logs of these tasks (each at most LOG_PACK_MAX bytes; a larger one keeps its own
        file) copied into one new log pack, its data file then its index each written whole (a temp file renamed)
        before anything is removed. Returns which log files it holds, a byte per task (bit 1 its stdout.log, bit
        2 its stderr.log; no object per task: the runner compacts a 100,000-task run itself), for the caller to
        remove."""
        name = f"logs~{time.time_ns()}"
        data_target = self.local_path(self.log_pack_key(run_id, name, LOG_PACK_DATA))
        table = bytearray()  # the index, _LOG_ENTRY per task
        packed = bytearray()

        def chunks() -> Iterator[bytes]:
            offset = 0
            for index in indices:
                task_dir = self.local_task_dir(run_id, index)
                for k, stderr in enumerate((False, True)):
                    try:
                        with open(task_dir.log(stderr), "rb") as f:
                            if os.fstat(f.fileno()).st_size > LOG_PACK_MAX:
                                continue
                            raw = f.read()
                    except (FileNotFoundError, NotADirectoryError):
                        continue
                    if len(packed) <= index:
                        packed.extend(bytes(index + 1 - len(packed)))
                    packed[index] |= 1 << k
                    if raw:
                        if len(table) < (index + 1) * _LOG_ENTRY.size:
                            table.extend(bytes((index + 1) * _LOG_ENTRY.size - len(table)))
                        _HALF_ENTRY.pack_into(table, index * _LOG_ENTRY.size + k * _HALF_ENTRY.size, offset, len(raw))
                        offset += len(raw)
                        yield raw

        tmp = _write_temp(data_target, chunks())
        if not table:
            os.unlink(tmp)
            return packed  # only empty logs: nothing to keep
        os.replace(tmp, data_target)
        self.backend.write_bytes(self.log_pack_key(run_id, name, LOG_PACK_INDEX), bytes(table))
        return packed

    def read_packed_log(self, run_id: str, index: int, *, stderr: bool = False) -> bytes | None:
        """A task's log from the run's log packs, the newest that has it: its index entry and its own bytes
        read, nothing of the other tasks'. None when no log pack holds it."""
        for name in reversed(self.log_pack_names(run_id)):
            try:
                with self._pack_file(run_id, name, LOG_PACK_INDEX) as f:
                    entry = os.pread(f.fileno(), _LOG_ENTRY.size, index * _LOG_ENTRY.size)
                if len(entry) < _LOG_ENTRY.size:
                    continue
                out_at, out_len, err_at, err_len = _LOG_ENTRY.unpack(entry)
                at, length = (err_at, err_len) if stderr else (out_at, out_len)
                if not length:
                    if out_len or err_len:
                        return b""  # the task is in this pack: it printed nothing on this stream
                    continue
                with self._pack_file(run_id, name, LOG_PACK_DATA) as f:
                    if at + length > os.fstat(f.fileno()).st_size:
                        raise OutsideStore(f"task {index}'s entry points past the end of the pack")
                    return os.pread(f.fileno(), length, at)
            except FileNotFoundError:  # deleted with its run meanwhile
                continue
            except OutsideStore as e:
                self.warn(f"run {run_id}: log pack {name} is damaged or not the store's ({e}); it is not read")
        return None

    def _pack_file(self, run_id: str, name: str, part: str) -> BinaryIO:
        """A log pack's file, opened only when it is a regular file inside the store (a store someone else
        wrote: a symlink there would have the reader copy a file of its own into the store when it reuses a
        task, see planning.reuse.copy_results). OutsideStore otherwise."""
        path = self.local_path(self.log_pack_key(run_id, name, part))
        assert isinstance(self.backend, LocalBackend)
        self.backend.contain(path.parent)
        try:
            fd = open_regular(path, os.O_RDONLY)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise OutsideStore(f"{path.name} is a symlink") from None
            if e.errno == errno.EINVAL:
                raise OutsideStore(f"{path.name} is not a regular file") from None
            raise
        return os.fdopen(fd, "rb")

    def read_task_log(self, run_id: str, index: int, *, stderr: bool = False) -> bytes | None:
        """A finished task's log: its own file, else a log pack's entry; None when neither holds it."""
        try:
            return self.backend.read_bytes(self.task_log_key(run_id, index, stderr=stderr))
        except FileNotFoundError:
            return self.read_packed_log(run_id, index, stderr=stderr)

    def _drop_from_log_packs(self, run_id: str, drop: set[int]) -> None:
        """Forget these tasks' logs in every log pack (they run again): the index is written again without
        them (whole, renamed into place); the data stays."""
        for name in self.log_pack_names(run_id):
            key = self.log_pack_key(run_id, name, LOG_PACK_INDEX)
            try:
                table = bytearray(self.backend.read_bytes(key))
            except FileNotFoundError:
                continue
            changed = False
            for index in drop:
                at = index * _LOG_ENTRY.size
                if at + _LOG_ENTRY.size <= len(table) and any(table[at:at + _LOG_ENTRY.size]):
                    table[at:at + _LOG_ENTRY.size] = bytes(_LOG_ENTRY.size)
                    changed = True
            if changed:
                self.backend.write_bytes(key, bytes(table))

    def _try_read(self, key: str) -> bytes | None:
        try:
            return self.backend.read_bytes(key)
        except (FileNotFoundError, NotADirectoryError):  # a file where the task's directory should be: no status
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
        """Read many small objects; concurrently on S3, where each read is a round trip (and a lighter one than
        a single `read_bytes`, see `S3Backend.read_one_of_many`)."""
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
        """A JSON file of the store. FileNotFoundError when missing, ValueError when it is not JSON (or a directory
        stands where it should be)."""
        try:
            data = self.backend.read_bytes(key)
        except IsADirectoryError:
            raise ValueError("a directory, not a file") from None
        return load_json(data)

    def read_record(self, key: str) -> dict[str, Any] | None:
        """A JSON object the store keeps for itself (engine.json): None when missing, or damaged (with a warning)."""
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
