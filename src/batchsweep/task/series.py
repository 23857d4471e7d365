"""A task's series: its metrics step by step (`metrics.jsonl` in the task's store directory), recorded while
it runs.

Two sources, one file. A metrics rule whose regex names a `step` group (`epoch (?P<step>\\d+)
.*loss=(?P<loss>\\S+)`) is matched against the task's log as it grows: the worker reads the new bytes of
stdout.log/stderr.log every flush and appends one JSON line per match. A script that opts in calls
`batchsweep.log_metrics(step=..., **values)`, which appends the same line itself (`BATCHSWEEP_SERIES_FILE`
names the file). Each line:

    {"step": 3, "val_loss": 0.52, "t": 1764471234.512}

`t` is when the value was seen (unix seconds). Values are finite numbers only; a missing or text value is left
out. On a remote store the file is uploaded after a read that added lines: at once when other workers decide
from running series (halving, hyperband), else at most every PUSH_S seconds.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from batchsweep.files import open_regular
from batchsweep.metrics import MAX_LINE_BYTES, UnsafeMetricsFile, is_mlflow, value_of

ENV_FILE = "BATCHSWEEP_SERIES_FILE"
FLUSH_ENV = "BATCHSWEEP_SERIES_FLUSH_S"  # sets both intervals below (tests shorten them)
READ_S = 1.0  # how often a running task's log is read for new steps and the stop rule asked, on every store
PUSH_S = 5.0  # at most how often a running series goes to a remote store when no worker decides from it
STREAMS = {"stdout": ("stdout",), "stderr": ("stderr",), "output": ("stdout", "stderr")}


def _from_env() -> float | None:
    raw = os.environ.get(FLUSH_ENV)
    if raw:
        try:
            return max(0.05, float(raw))
        except ValueError:
            pass
    return None


def read_every() -> float:
    """Seconds between two reads of a running task's log (and two asks of its stop rule): the same on every
    store, since the log is on the worker's own disk."""
    return _from_env() or READ_S


def push_every() -> float:
    """Seconds at least between two uploads of a running task's series to a remote store, when only live views
    (`status --watch`, the report) read it while it runs; also the base of a stop rule's listing budget."""
    return _from_env() or PUSH_S


def rule_source(rule: Any) -> tuple[tuple[str, ...], re.Pattern[str]] | None:
    """The log streams and regex of a metrics rule that names a `step` group; None for any other rule."""
    if not isinstance(rule, dict):
        return None
    for key, streams in STREAMS.items():
        pattern = rule.get(key)
        if isinstance(pattern, str) and pattern != "last":
            compiled = re.compile(pattern)
            if "step" in compiled.groupindex:
                return streams, compiled
    return None


def number(raw: Any) -> float | int | None:
    """A series value: a finite number, or None (missing, text, a boolean, nan, inf)."""
    value = value_of(raw)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def records_from_line(line: str, pattern: re.Pattern[str], t: float) -> list[dict[str, Any]]:
    out = []
    for m in pattern.finditer(line):
        values = {k: number(v) for k, v in m.groupdict().items() if v is not None}
        step = values.pop("step", None)
        values = {k: v for k, v in values.items() if v is not None}
        if step is None or not values:
            continue
        out.append({"step": step, **values, "t": round(t, 3)})
    return out


def parse(data: bytes | Iterable[str]) -> list[dict[str, Any]]:
    """The records of a series file (its bytes, or its lines); a damaged or partial line is skipped."""
    out = []
    for raw in data.splitlines() if isinstance(data, bytes) else data:
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if isinstance(record, dict) and number(record.get("step")) is not None:
            out.append(record)
    return out


def values_by_step(records: Iterable[dict[str, Any]], metric: str) -> dict[int, float]:
    """One metric's series as {step: value} (a later record for a step wins; non-whole steps are left out)."""
    out: dict[int, float] = {}
    for record in records:
        step, value = number(record.get("step")), number(record.get(metric))
        if step is None or value is None or float(step) != int(step):
            continue
        out[int(step)] = float(value)
    return out


def append(path: Path, records: list[dict[str, Any]], *, dir_fd: int | None = None) -> None:
    """The records as lines at the end of path (with `dir_fd`: its name in that directory)."""
    if not records:
        return
    data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()
    # O_NOFOLLOW: a task that put a symlink there (to a file outside its directory) gets nothing written
    # through it
    fd = open_regular(path.name if dir_fd is not None else path, os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                      dir_fd=dir_fd)
    try:
        os.write(fd, data)  # one write with O_APPEND: lines from the script's log_metrics never interleave
    finally:
        os.close(fd)


@dataclass
class _Tail:
    """New complete lines of a growing log file."""

    path: Path
    held: Callable[[], int] | None = None  # the directory holding it, open (`Recorder.held`)
    offset: int = 0
    carry: bytes = b""

    def lines(self, *, final: bool) -> list[str]:
        try:
            with _open_nofollow(self.path, self.held) as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        parts = (self.carry + data).split(b"\n")
        self.carry = parts.pop()[:MAX_LINE_BYTES]
        if final and self.carry:
            parts.append(self.carry)
            self.carry = b""
        return [p[:MAX_LINE_BYTES].decode("utf-8", errors="replace") for p in parts]


def _open_nofollow(path: Path, held: Callable[[], int] | None = None) -> BinaryIO:
    """A file the task may have replaced by a symlink or a FIFO: OSError then, never what the link names.
    With `held`, its name in the directory that gives, as that directory was made."""
    if held is not None:
        return os.fdopen(open_regular(path.name, os.O_RDONLY, dir_fd=held()), "rb")
    return os.fdopen(open_regular(path, os.O_RDONLY), "rb")


class TaskFiles(Protocol):
    """Where a task's files are (`batchsweep.store.core.TaskDir`, which the worker passes: the store owns the
    names)."""

    @property
    def series(self) -> Path: ...
    @property
    def work(self) -> Path: ...
    def log(self, stderr: bool = False) -> Path: ...


@dataclass
class Recorder:
    """Records one attempt's series into the task's series file and keeps what it holds in memory."""

    files: TaskFiles
    rule: Any
    upload: Callable[[bytes], None] | None = None  # a remote store: put the file there after a read that
    push_every: float = 0.0  # added lines, at most this often while the task runs (the final poll: always)
    clock: Callable[[], float] = time.monotonic
    work: Path | None = None  # the task's working directory (an MLflow rule reads the store there)
    # The task's directory as the runner made it, open: its files are reached through it, so a task that
    # swaps the directory's name for a symlink gets nothing read, written or removed outside the run.
    held: Callable[[], int] | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    _tails: list[_Tail] = field(default_factory=list)  # the logs a step rule reads
    _series: _Tail = field(init=False)  # the series file itself (the log rule's lines and log_metrics' lines)
    _pattern: re.Pattern[str] | None = None
    _uploaded: int = 0
    _pushed_at: float = -math.inf

    _mlflow: Any = None  # an MLflow rule: the task's MLflow store (batchsweep.task.mlflowmetrics.Reader)

    def __post_init__(self) -> None:
        self._series = _Tail(self.path, self.held)
        source = rule_source(self.rule)
        if source is not None:
            streams, self._pattern = source
            self._tails = [_Tail(self.files.log(stderr=s == "stderr"), self.held) for s in streams]

    @property
    def path(self) -> Path:
        return self.files.series

    def start(self) -> None:
        """A fresh series for a new attempt (a retried task's curve starts again)."""
        try:
            if self.held is not None:
                os.unlink(self.path.name, dir_fd=self.held())
            else:
                self.path.unlink()
        except FileNotFoundError:
            pass
        self.records.clear()
        # The first push waits push_every too: the read that the first decision follows makes no request.
        self._uploaded, self._pushed_at = 0, (self.clock() if self.push_every else -math.inf)
        if is_mlflow(self.rule):  # a new attempt logs to a new store
            from batchsweep.task.mlflowmetrics import Reader

            self._mlflow = Reader(self.work or self.files.work)
        for tail in (*self._tails, self._series):
            tail.offset, tail.carry = 0, b""

    def poll(self, *, final: bool = False) -> list[dict[str, Any]]:
        """Read what the task printed (and logged) since the last poll; returns the new records."""
        if self._pattern is not None:
            now = time.time()
            found = [r for tail in self._tails for line in tail.lines(final=final)
                     for r in records_from_line(line, self._pattern, now)]
            append(self.path, found, dir_fd=self._dir())
        if self._mlflow is not None:
            from batchsweep.task.mlflowmetrics import MlflowReadError

            try:
                append(self.path, self._mlflow.series(), dir_fd=self._dir())
            except (MlflowReadError, UnsafeMetricsFile):
                # mid-write, unreadable or not followed: the next poll retries, and the task's metrics say
                # what went wrong
                pass
        # a line the script is halfway through waits for the next poll
        new = parse(self._series.lines(final=final))
        self.records.extend(new)
        whole = self._series.offset - len(self._series.carry)  # bytes of whole lines read so far
        due = final or self.clock() - self._pushed_at >= self.push_every
        if self.upload is not None and whole != self._uploaded and due:
            with _open_nofollow(self.path, self.held) as f:
                self.upload(f.read())
            self._uploaded, self._pushed_at = whole, self.clock()
        return new

    def _dir(self) -> int | None:
        return self.held() if self.held is not None else None

    @property
    def last_step(self) -> int | float | None:
        steps = [number(r.get("step")) for r in self.records]
        present = [s for s in steps if s is not None]
        return max(present) if present else None
