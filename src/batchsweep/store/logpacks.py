"""A compacted run's logs in one file, with an index to read one task's alone (local stores): the data file
`packs/<name>.log` holds the tasks' logs one after another, `packs/<name>.idx` a fixed-width entry per task.
"""

from __future__ import annotations

import errno
import os
import struct
import time
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from batchsweep.files import open_regular
from batchsweep.store.backend import StoreBase
from batchsweep.store.layout import LOG_PACK_DATA, LOG_PACK_INDEX
from batchsweep.store.local import LocalBackend, OutsideStore, _write_temp

LOG_PACK_MAX = 1 << 20  # a task's log larger than this keeps its own file when its run is compacted
_LOG_ENTRY = struct.Struct("<QQQQ")  # an index entry per task: stdout offset, length, stderr offset, length
_HALF_ENTRY = struct.Struct("<QQ")


class LogPacks(StoreBase):
    """Writing, reading and forgetting tasks' logs in a run's log packs."""

    def log_pack_names(self, run_id: str) -> list[str]:
        """The run's log packs, oldest first (a pack counts once its index is written, after its data); none
        on S3, whose runs are not compacted."""
        if not self.is_local:
            return []
        return sorted(k.rsplit("/", 1)[-1].removesuffix(f".{LOG_PACK_INDEX}") for k in
                      self.backend.list_files(self.packs_prefix(run_id)) if k.endswith(f".{LOG_PACK_INDEX}"))

    def write_log_pack(self, run_id: str, indices: Iterable[int]) -> bytearray:
        """Local stores: the logs of these tasks (each at most LOG_PACK_MAX bytes; a larger one keeps its own
        file) copied into one new log pack, its data file then its index each written whole (a temp file
        renamed) before anything is removed. Returns which log files it holds, a byte per task (bit 1 its
        stdout.log, bit 2 its stderr.log; no object per task: the runner compacts a 100,000-task run itself),
        for the caller to remove."""
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
                        at = index * _LOG_ENTRY.size + k * _HALF_ENTRY.size
                        _HALF_ENTRY.pack_into(table, at, offset, len(raw))
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
                self.warn(f"run {run_id}: log pack {name} is damaged or not the store's ({e}); it is not "
                          "read")
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
