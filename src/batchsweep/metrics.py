"""Task metrics: `log_metrics()` for scripts that want it, and metrics read from stdout for those that don't."""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

MAX_FILE_BYTES = 32 << 20  # a metrics file is a flat JSON object; anything bigger is a mistake or an attack


class UnsafeMetricsFile(Exception):
    """The task's metrics file is not a regular file of sane size: the task fails with this reason."""


def read_file(path: Path, *, limit: int = MAX_FILE_BYTES) -> bytes:
    """A task's metrics file, read without following a symlink, blocking on a FIFO or filling memory.
    FileNotFoundError when the task wrote none."""
    st = os.lstat(path)
    kinds = ((stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))
    kind = next((name for test, name in kinds if test(st.st_mode)), None)
    if kind is not None:
        raise UnsafeMetricsFile(f"{path.name} is {kind}, not a regular file; metrics were not read")
    too_big = UnsafeMetricsFile(f"{path.name} is larger than {limit >> 20} MiB; metrics were not read")
    if st.st_size > limit:
        raise too_big
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise too_big
    return data


def log_metrics(**values: Any) -> None:
    """Record metrics from inside a task (merged into the task's metrics.json)."""
    path = Path(os.environ.get("BATCHSWEEP_TASK_DIR", ".")) / "metrics.json"
    current: dict[str, Any] = {}
    if path.exists():
        try:
            current = json.loads(path.read_text())
        except ValueError:
            current = {}
    current.update(values)
    path.write_text(json.dumps(current, default=str))


def _number(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


MAX_LINE_BYTES = 1 << 20  # a longer line is cut here when scanned for metrics: memory stays bounded
CHUNK_BYTES = 1 << 20


def iter_lines(f: BinaryIO) -> Iterator[str]:
    """The lines of a stream, each cut at MAX_LINE_BYTES: constant memory, whatever the log's size."""
    carry = b""
    while block := f.read(CHUNK_BYTES):
        parts = block.split(b"\n")
        for part in parts[:-1]:
            yield (carry + part)[:MAX_LINE_BYTES].decode("utf-8", errors="replace")
            carry = b""
        carry = (carry + parts[-1])[:MAX_LINE_BYTES]
    if carry:
        yield carry.decode("utf-8", errors="replace")


def from_stream(f: BinaryIO, rule: str) -> dict[str, Any] | None:
    """`from_stdout` over a log file read as a stream (a regex is matched line by line)."""
    if rule == "last":
        last = ""
        for line in iter_lines(f):
            if line.strip():
                last = line
        return from_stdout(last, rule)
    pattern = re.compile(rule)
    found: dict[str, Any] = {}
    for line in iter_lines(f):
        for m in pattern.finditer(line):
            found.update({k: _number(v) for k, v in m.groupdict().items() if v is not None})
    return found or None


def from_stdout(stdout: str, rule: str) -> dict[str, Any] | None:
    """`last`: the last non-empty line, a JSON object or a number (recorded as `value`).
    Otherwise a regex with named groups; the last match wins for each name."""
    if rule == "last":
        lines = [line for line in stdout.splitlines() if line.strip()]
        if not lines:
            return None
        last = lines[-1].strip()
        try:
            value = json.loads(last)
        except ValueError:
            value = _number(last)
        if isinstance(value, dict):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return {"value": value}
        return None
    found: dict[str, Any] = {}
    for m in re.finditer(rule, stdout):
        found.update({k: _number(v) for k, v in m.groupdict().items() if v is not None})
    return found or None


# -- which way is better -----------------------------------------------------------------------------
# One rule for `results --sort` and the report: a name that says "lower is better" sorts ascending.
MAXIMIZE_NAMES = ("sharpe", "sortino", "calmar", "accuracy", "acc", "score", "auc", "f1", "r2", "return",
                  "precision", "recall", "reward", "profit")
MINIMIZE_NAMES = ("loss", "error", "err", "rmse", "mae", "mse", "mape", "value", "drawdown", "time", "duration",
                  "latency", "cost", "regret", "perplexity")


def direction_from_name(name: str, values: Sequence[Any] = ()) -> bool | None:
    """True = higher is better, False = lower is better, None = the name does not say. ``neg_*`` (sklearn)
    flips. A drawdown recorded as a negative fraction (every value <= 0) is best closest to zero."""
    tokens = re.split(r"[^a-z0-9]+", name.lower())
    flip = tokens[0] == "neg"
    for names, up in ((MAXIMIZE_NAMES, True), (MINIMIZE_NAMES, False)):
        if any(t in names for t in tokens):
            if "drawdown" in tokens and not up and _all_non_positive(values):
                return True
            return up != flip
    return None


def _all_non_positive(values: Sequence[Any]) -> bool:
    present = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    return bool(present) and all(v <= 0 for v in present)
