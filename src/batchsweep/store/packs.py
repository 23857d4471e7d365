"""Packs: many tasks' statuses and metrics in one object of the run (`packs/<name>.jsonl`), a line per task
({"i": index, "s": status, "m": metrics or null}): an AWS child's summary (s<submission>-c<child>-a<attempt>)
or a compacted run's (compact~<time>). A pack is never rewritten under the same name."""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from batchsweep.model import State, TaskStatus, load_json, wrong_status_fields
from batchsweep.store.backend import Backend
from batchsweep.store.local import LocalBackend, _lines, _write_temp
from batchsweep.store.logpacks import LogPacks

_STATE_VALUES = frozenset(s.value for s in State)
PACK_CHUNK = 2000  # a pack's lines parsed at a time (one JSON array each)
# A pack line as (task index, its status as a JSON object, its metrics or None).
PackRecord = tuple[int, dict[str, Any], "dict[str, Any] | None"]


def json_line(line: bytes | str) -> Any:
    """A line's JSON value; None when it is not JSON."""
    try:
        return load_json(line)
    except ValueError:
        return None


_ATTEMPT_PACK = re.compile(r"^(s\d+-c\d+)-a(\d+)(~.*)?$")


def current_packs(names: Iterable[str]) -> list[str]:
    """The packs that count, in name order: of an AWS child's summaries (`s<sub>-c<child>-a<attempt>`, and
    their `~<time>` rewrites) only its highest attempt's. A later attempt writes an empty `-a<n>~start` pack
    when it begins, so the summary of an earlier attempt (its tasks cancelled by a Spot SIGTERM) stops
    counting even when the later attempt is killed before writing its own, and its tasks' status files are
    read instead. The job role cannot delete the earlier summary, and need not."""
    names = list(names)
    highest: dict[str, int] = {}
    for name in names:
        if m := _ATTEMPT_PACK.match(name):
            highest[m[1]] = max(highest.get(m[1], 0), int(m[2]))
    return [n for n in names if not (m := _ATTEMPT_PACK.match(n)) or int(m[2]) == highest[m[1]]]


def _pack_record(d: Any) -> PackRecord | None:
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
        """The entry as one line of a pack (JSON, newline-terminated)."""
        metrics = json.dumps(self.metrics, default=str) if self.metrics is not None else "null"
        return f'{{"i": {self.status.index}, "s": {self.status.to_json()}, "m": {metrics}}}\n'

    @classmethod
    def parse(cls, line: bytes | str) -> PackEntry | None:
        """A pack's line as an entry; None when it is damaged."""
        try:
            d = load_json(line)
            status = TaskStatus.from_dict(d["s"])
        except (ValueError, TypeError, KeyError, AttributeError):
            return None
        metrics = d.get("m")
        return cls(status, metrics if isinstance(metrics, dict) else None)


class Packs(LogPacks):
    """Writing, reading (cached per store object) and rewriting a run's packs."""

    def __init__(self, backend: Backend) -> None:
        super().__init__(backend)
        self._packs: dict[str, tuple[tuple[str, ...], dict[int, PackEntry]]] = {}
        self._packs_listed: dict[str, float] = {}

    def pack_names(self, run_id: str) -> list[str]:
        """Every pack of the run, by name (one listing of `packs/`, local or S3); `current_packs` leaves out
        the ones a later attempt superseded."""
        return sorted(k.rsplit("/", 1)[-1].removesuffix(".jsonl") for k in
                      self.backend.list_files(self.packs_prefix(run_id)) if k.endswith(".jsonl"))

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
        """Every task a pack covers, with its status and metrics; packs later by name win. Read as
        `pack_records` reads them (streamed locally; one request per pack on S3, concurrently); cached per
        store object for as long as the run's pack names do not change (a pack is never rewritten under the
        same name, see `drop_from_packs`). `listed_within`: a listing of the packs that recent is reused (one
        task's status looked up many times, e.g. a search's trials on S3)."""
        cached = self._packs.get(run_id)
        listed_ago = time.monotonic() - self._packs_listed.get(run_id, -math.inf)
        if cached is not None and listed_ago < listed_within:
            return cached[1]
        names = tuple(current_packs(self.pack_names(run_id)))
        self._packs_listed[run_id] = time.monotonic()
        if cached is not None and cached[0] == names:
            return cached[1]
        entries: dict[int, PackEntry] = {}
        for name, (index, status, metrics) in self._records_of(run_id, names):
            try:
                entries[index] = PackEntry(TaskStatus.from_dict(status), metrics)
            except (ValueError, TypeError, KeyError, AttributeError):
                self.warn(
                    f"run {run_id}: task {index}'s line in pack {name} is damaged; it counts as without "
                    "status"
                )
        self._packs[run_id] = (names, entries)
        return entries

    def pack_records(self, run_id: str) -> Iterator[PackRecord]:
        """Every line of every pack as (index, status as its JSON object, metrics or None), packs in name
        order (a task in two packs: the later one is the truth), parsed PACK_CHUNK lines at a time as they
        arrive: neither the packs nor their tasks are ever all held at once (`results` of 100,000 tasks).
        Local: each pack streamed from its file. S3: each pack (a child's summary) one GET, PARALLEL_READS in
        flight. Not cached; `packed` is the cached, typed view."""
        for _, record in self._records_of(run_id, current_packs(self.pack_names(run_id))):
            yield record

    def _records_of(self, run_id: str, names: Iterable[str]) -> Iterator[tuple[str, PackRecord]]:
        """(pack name, record) of every line of these packs, in order, parsed PACK_CHUNK lines at a time:
        locally each pack streamed from its file, on S3 each one GET (PARALLEL_READS in flight)."""
        names = list(names)
        keys = [self.pack_key(run_id, n) for n in names]
        if self.is_local:
            for name, key in zip(names, keys):
                try:
                    for record in self._pack_lines(run_id, name, _lines(self.backend.iter_bytes(key))):
                        yield name, record
                except (FileNotFoundError, NotADirectoryError, IsADirectoryError):  # deleted since listed
                    continue
            return
        for name, raw in zip(names, self._read_stream(keys)):
            if raw is not None:
                for record in self._pack_lines(run_id, name, raw.splitlines()):
                    yield name, record

    def _pack_lines(self, run_id: str, name: str, lines: Iterable[bytes]) -> Iterator[PackRecord]:
        """A pack's lines as (index, status as its JSON object, metrics or None), PACK_CHUNK lines parsed at a
        time."""
        chunk: list[bytes] = []
        first = 0
        for number, line in enumerate(lines):
            if not chunk:
                first = number
            chunk.append(line)
            if len(chunk) == PACK_CHUNK:
                yield from self._pack_chunk(run_id, name, first, chunk)
                chunk = []
        if chunk:
            yield from self._pack_chunk(run_id, name, first, chunk)

    def _pack_chunk(self, run_id: str, name: str, first: int, lines: list[bytes]) -> list[PackRecord]:
        """Lines `first`... of a pack, parsed as one JSON array; a damaged line sends them line by line, to
        leave that line out with a warning naming it."""
        present = [line for line in lines if line.strip()]
        try:
            parsed: list[Any] = load_json(b"[" + b",".join(present) + b"]")
        except ValueError:
            parsed = []
        records = [r for d in parsed if (r := _pack_record(d)) is not None]
        if len(records) == len(present):
            return records
        records = []
        for number, line in enumerate(lines, first):
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
            kept = (e for e in entries if e.status.index not in drop)
            self.write_pack(run_id, f"{stem}~{time.time_ns()}", kept)
            self.delete_pack(run_id, name)
        if self.is_local:
            self._drop_from_log_packs(run_id, drop)
