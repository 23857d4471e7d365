"""The local backend: a store on this machine's disk. Each write is whole or not at all (a temp file renamed
into place), with the mode the umask gives; nothing is read or written through a symlink out of the store."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from batchsweep.files import regular_files, write_at
from batchsweep.store.layout import CODE_PREFIX as CODE_PREFIX
from batchsweep.store.layout import INPUTS_PREFIX as INPUTS_PREFIX
from batchsweep.store.layout import PACKS as PACKS
from batchsweep.store.layout import SEARCH_JOURNAL as SEARCH_JOURNAL
from batchsweep.store.layout import TASK_FILES as TASK_FILES
from batchsweep.store.layout import TaskDir as TaskDir
from batchsweep.store.layout import valid_run_id as valid_run_id


def _umask() -> int:
    """The process's umask, read without changing it (os.umask would race with other threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give: teammates read a shared store as the umask allows


def _write_temp(target: Path, data: bytes | Iterable[bytes], *, sync: bool = True) -> str:
    """A complete, fsync'ed temp file beside target (so a crash never leaves a rename of an empty file);
    `sync=False`: not fsync'ed here (`LocalBackend.write_soon`: a background thread does it)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, bytes):
                f.write(data)
            else:
                f.writelines(data)
            f.flush()
            if sync:
                os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


class Flusher:
    """fsyncs files in a background thread, a batch at a time, so the writer does not wait for the disk
    (`LocalBackend.write_soon`); `flush()` returns once everything added before it is on disk. The thread ends
    when idle and starts again with the next file."""

    IDLE_S = 5.0
    # How long a batch gathers files before its fsyncs (cut short by `flush`): the first fsync commits the
    # file system's journal for all of them, so the others cost little, where an fsync per file as it comes
    # commits it each time.
    GATHER_S = 0.2

    def __init__(self) -> None:
        self._pending: set[str] = set()
        self._busy = False
        self._running = False
        self._flushing = 0
        self._cv = threading.Condition()

    def add(self, path: str) -> None:
        with self._cv:
            self._pending.add(path)
            if not self._running:
                self._running = True
                threading.Thread(target=self._loop, name="batchsweep-fsync", daemon=True).start()
            self._cv.notify_all()

    def flush(self) -> None:
        with self._cv:
            self._flushing += 1
            self._cv.notify_all()
            try:
                self._cv.wait_for(lambda: not self._pending and not self._busy)
            finally:
                self._flushing -= 1

    def _loop(self) -> None:
        while True:
            with self._cv:
                if not self._cv.wait_for(lambda: self._pending, timeout=self.IDLE_S):
                    self._running = False
                    return
                self._cv.wait_for(lambda: self._flushing, timeout=self.GATHER_S)
                batch, self._pending, self._busy = self._pending, set(), True
            try:
                for path in batch:
                    try:
                        # a FIFO or a symlink swapped in meanwhile is neither waited on nor followed
                        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                    except OSError:
                        continue  # gone meanwhile (a resume cleared the task): nothing to keep
                    try:
                        os.fsync(fd)
                    except OSError:
                        pass
                    finally:
                        os.close(fd)
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of a stream of chunks, without their line ends."""
    rest = b""
    for chunk in chunks:
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def _chunks(f: BinaryIO, start: int) -> Iterator[bytes]:
    with f:
        f.seek(start)
        while block := f.read(1 << 20):
            yield block


class OutsideStore(OSError):
    """A path in the store that leads out of it, or a file there that is not one: never read or written."""


class LocalBackend:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()
        self.url = str(self.root)
        self._real_root: str | None = None
        self._flusher = Flusher()

    def path(self, key: str) -> Path:
        return self.root / key

    def read_bytes(self, key: str) -> bytes:
        with open(f"{self.url}/{key}", "rb") as f:  # no pathlib: results read thousands of these
            return f.read()

    def write_soon(self, key: str, data: bytes) -> None:
        """As `write_bytes` (whole or not at all, renamed into place), with its fsync left to a background
        thread (`flush` waits for it): a task's status, whose loss in a power cut only means the task runs
        again on resume. A process killed with -9 loses nothing: the file is whole in the page cache once
        renamed. (A task's metrics.json and logs were never fsync'ed.)"""
        target = self.path(key)
        tmp = _write_temp(target, data, sync=False)
        try:
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
        self._flusher.add(str(target))

    def write_soon_at(self, key: str, data: bytes, dir_fd: int) -> None:
        """As `write_soon`, into the directory dir_fd that key's file goes in, held open by the writer (a
        task's directory as its runner made it): a symlink someone put in the way of key's path is never
        written through."""
        write_at(os.path.basename(key), data, dir_fd, mode=FILE_MODE)
        self._flusher.add(str(self.path(key)))

    def flush(self) -> None:
        """Wait until everything `write_soon` wrote is on disk."""
        self._flusher.flush()

    def write_bytes(self, key: str, data: bytes) -> None:
        target = self.path(key)
        tmp = _write_temp(target, data)
        try:
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise

    def iter_bytes(self, key: str, start: int = 0) -> Iterator[bytes]:
        f = open(self.path(key), "rb")  # raises FileNotFoundError here, before the first chunk is asked for
        return _chunks(f, start)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        target = self.path(key)
        for attempt in range(5):
            tmp = _write_temp(target, data)
            try:
                os.link(tmp, target)  # atomic and exclusive, and the file appears whole
                return True
            except FileExistsError:
                return False
            except FileNotFoundError:
                # the run's driver swept our temp file as a killed writer's (`remove_stale_temp`): again
                if attempt == 4 or not target.parent.is_dir():
                    raise
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        return False

    def read_tagged(self, key: str) -> tuple[bytes, str]:
        data = self.read_bytes(key)
        return data, hashlib.sha256(data).hexdigest()

    def replace_if(self, key: str, data: bytes, tag: str) -> str | None:
        target = self.path(key)
        # flock guards the read-compare-write; the kernel drops it if this process dies.
        with open(target.parent / f".{target.name}.flock", "a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            try:
                _, current = self.read_tagged(key)
            except FileNotFoundError:
                return None
            if current != tag:
                return None
            self.write_bytes(key, data)
            return hashlib.sha256(data).hexdigest()

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def list_dirs(self, prefix: str) -> list[str]:
        try:
            return [e.name for e in os.scandir(self.path(prefix)) if e.is_dir()]
        except FileNotFoundError:
            return []

    def list_files(self, prefix: str) -> list[str]:
        base = self.path(prefix)
        rel = str(base.relative_to(self.root))
        found: list[str] = []
        # scandir, not rglob: 10,000 tasks are 40,000 files, and d_type spares a stat for each.
        todo = [(str(base), "" if rel == "." else f"{rel}/")]
        while todo:
            directory, key = todo.pop()
            try:
                entries = os.scandir(directory)
            except (FileNotFoundError, NotADirectoryError):
                continue
            with entries:
                for e in entries:
                    if e.is_dir(follow_symlinks=False):
                        todo.append((e.path, f"{key}{e.name}/"))
                    elif e.is_file():
                        found.append(key + e.name)
        return sorted(found)

    def upload_dir(self, local: Path, key: str) -> None:
        target = self.path(key)
        if local.resolve() != target.resolve():
            for rel in regular_files(local):
                dest = target / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(local / rel, dest, follow_symlinks=False)

    def download(self, key: str, local: Path) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path(key), local)

    def delete_prefix(self, prefix: str) -> None:
        """A directory and everything under it, or a single file (as on S3, where a key is its own prefix)."""
        path = self.path(prefix)
        if path.is_symlink():
            path.unlink()
            return
        self.contain(path)
        if path.is_file():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path, ignore_errors=True)

    def copy(self, source: str, target: str) -> None:
        """A hard link where the file system allows (store files are never changed in place), else a copy.
        OutsideStore when either side leads out of the store or the source is not a regular file (a store
        someone else wrote: a symlink there would copy or link a file of the reader's into it)."""
        src, dest = self.path(source), self.path(target)
        self.contain(src)
        if not stat.S_ISREG(os.lstat(src).st_mode):
            raise OutsideStore(f"{source} in store {self.url} is not a regular file; it was not copied")
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.contain(dest)
        try:
            os.link(src, dest, follow_symlinks=False)
        except FileExistsError:
            os.unlink(dest)
            os.link(src, dest, follow_symlinks=False)
        except OSError:
            shutil.copyfile(src, dest, follow_symlinks=False)

    def real_path(self, key: str) -> str:
        """Where key is in the store with the store's root resolved once (the first time one is asked for), so
        a symlink someone later puts in the root's place is not followed by it."""
        if self._real_root is None:
            self._real_root = os.path.realpath(self.root)
        return os.path.join(self._real_root, key)

    def contain(self, path: Path) -> None:
        """OutsideStore unless path, its symlinks resolved, is below the store's own root."""
        root = self.real_path("").rstrip("/")
        if os.path.commonpath([os.path.realpath(path), root]) != root:
            raise OutsideStore(f"{path} leads outside store {self.url} (through a symlink); nothing was done "
                               "there")
