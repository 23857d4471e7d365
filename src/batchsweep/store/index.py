"""A local store's reuse index file (docs/design.md §4.1): append-only lines, many writers at once.

One file per content-key prefix (`index/<key[:2]>.tsv`, see `batchsweep.store.reuse`), a line per succeeded
task:

    <key> TAB <run_id> TAB <task index> TAB <crc32 of what precedes, 8 hex digits> LF

Writers append under an exclusive `flock` of the file, so two runs finishing at once never interleave or lose
a line; a writer that finds the file replaced while it waited (a rewrite by `rewrite`) appends to the new one.
A line torn by a crash is cut off by the next writer, and a reader skips any line whose checksum does not
match, so a damaged line is never read as a different task. Readers take no lock: appends and the rename of a
rewrite are atomic for them, and an unterminated last line is one still being written.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

SUFFIX = ".tsv"
_TAIL = 1 << 16  # how far back a writer looks for the end of the last whole line


def line(cache_key: str, run_id: str, index: int) -> bytes:
    body = f"{cache_key}\t{run_id}\t{index}".encode()
    return body + f"\t{zlib.crc32(body):08x}\n".encode()


def entries(raw: bytes, wanted: set[bytes]) -> Iterator[tuple[str, str, int]]:
    """(key, run id, task index) of each whole, intact line of `raw` whose key is in `wanted`."""
    for text in raw.split(b"\n")[:-1]:  # the last piece is empty, or a line still being written
        key, _, rest = text.partition(b"\t")
        if key not in wanted:
            continue
        body, _, crc = text.rpartition(b"\t")
        parts = rest.split(b"\t")
        if len(parts) != 3 or crc != b"%08x" % zlib.crc32(body) or not parts[1].isdigit():
            continue
        yield key.decode(), parts[0].decode(errors="replace"), int(parts[1])


def run_of(text: bytes) -> bytes:
    """The run id field of a line (empty for a damaged one)."""
    parts = text.split(b"\t")
    return parts[1] if len(parts) == 4 else b""


@contextmanager
def locked(path: Path, mode: int) -> Iterator[int]:
    """An fd of the file at `path` (created if missing), held under an exclusive flock: the file a writer
    waits for may be replaced by a rewrite meanwhile, so the lock counts only on the inode still at `path`."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, mode)
        except FileNotFoundError:  # the index's directory, made with the first entry
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, mode)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                yield fd
                return
        finally:
            os.close(fd)  # lets go of the lock


def append(path: Path, lines: Iterable[bytes], mode: int) -> None:
    """Append whole lines (no fsync: a line lost in a power cut costs one reuse, never a wrong one)."""
    data = b"".join(lines)
    if data:
        with locked(path, mode) as fd:
            append_locked(fd, data)


def append_locked(fd: int, data: bytes) -> None:
    """Append to a file held by `locked`, first cutting off a line a writer that died left torn."""
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        start = max(0, size - _TAIL)
        cut = os.pread(fd, size - start, start).rfind(b"\n")
        if cut >= 0 or start == 0:
            os.ftruncate(fd, start + cut + 1)
        else:
            data = b"\n" + data  # a long damaged tail: ended here, and skipped by readers (bad checksum)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def rewrite(path: Path, keep: Callable[[bytes], bool], mode: int) -> int:
    """Keep only the lines `keep` accepts (a new file renamed over the old one, under the lock); lines
    removed."""
    if not path.exists():
        return 0
    with locked(path, mode) as fd:
        size = os.fstat(fd).st_size
        raw = os.pread(fd, size, 0) if size else b""
        lines = raw.split(b"\n")[:-1]
        kept = [t for t in lines if keep(t)]
        if len(kept) == len(lines):
            return 0
        tmp_fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(tmp_fd, mode)
            with os.fdopen(tmp_fd, "wb") as f:
                f.write(b"".join(t + b"\n" for t in kept))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return len(lines) - len(kept)
