"""Task metrics read from what a script writes or prints (`batchsweep.task.api.log_metrics` is what a script
calls).

A rule reads stdout, stderr or both (`output`: stdout's text, then stderr's). `last` takes the last printed
line (a JSON object, or a number recorded as `value`); otherwise the rule is a regex with named groups, and
`match` says whether the first or the last match of each name wins. `None`, `null`, `nan`, `inf` and empty
captures are missing values: they are left out, never recorded as text that would break a numeric column.
"""

from __future__ import annotations

import collections
import errno
import json
import math
import os
import re
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

# Where log_metrics(step=...) appends a series when the script runs outside batchsweep (under batchsweep the
# worker names the task's series file, `store.TaskDir.SERIES`, in BATCHSWEEP_SERIES_FILE).
SERIES_FILE = "metrics.jsonl"
METRICS_FILE = "metrics.json"  # what a script writes in its working directory (the default `metrics:` rule);
# the worker moves it into the task's directory in the store (`store.TaskDir.METRICS`, the same name)
MAX_FILE_BYTES = 32 << 20  # a metrics file is a flat JSON object; anything bigger is a mistake or an attack


class UnsafeMetricsFile(Exception):
    """The task's metrics file is not a regular file of sane size: the task fails with this reason."""


def read_file(path: Path | str, *, limit: int = MAX_FILE_BYTES, dir_fd: int | None = None) -> bytes:
    """A task's metrics file, read without following a symlink, blocking on a FIFO or filling memory (with
    `dir_fd`, path is a name in that directory). FileNotFoundError when the task wrote none."""
    name = os.path.basename(path)
    st = os.lstat(path, dir_fd=dir_fd)
    kinds = ((stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))
    kind = next((what for test, what in kinds if test(st.st_mode)), None)
    if kind is not None:
        raise UnsafeMetricsFile(f"{name} is {kind}, not a regular file; metrics were not read")
    too_big = UnsafeMetricsFile(f"{name} is larger than {limit >> 20} MiB; metrics were not read")
    if st.st_size > limit:
        raise too_big
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        fd = -1
    if fd < 0 or not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the lstat above
        if fd >= 0:
            os.close(fd)
        raise UnsafeMetricsFile(f"{name} is no longer a regular file; metrics were not read")
    with os.fdopen(fd, "rb") as f:
        # As many bytes as it has (and one more): a read of limit + 1 takes a buffer that size first, 32 MiB
        # per task being finished, which was most of a local runner's peak memory. A file still growing is
        # read on.
        data = f.read(st.st_size + 1)
        if len(data) > st.st_size:
            data += f.read(limit + 1 - len(data))
    if len(data) > limit:
        raise too_big
    return data


MISSING = frozenset(
    {
        "",
        "none",
        "null",
        "nan",
        "-nan",
        "+nan",
        "inf",
        "-inf",
        "+inf",
        "infinity",
        "-infinity",
        "+infinity",
        "n/a",
        "na",
    }
)
STREAMS = ("stdout", "stderr", "output")


def value_of(raw: Any) -> Any:
    """A metric value as recorded: numbers stay numbers, numeric text becomes a number, missing becomes
    None."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, (int, float)):
        return raw if math.isfinite(raw) else None
    if raw is None:
        return None
    if isinstance(raw, str):
        text = raw.strip()
        if text.lower() in MISSING:
            return None
        for cast in (int, float):
            try:
                number = cast(text)
            except ValueError:
                continue
            return number if math.isfinite(number) else None
        return text
    return raw


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


def clean(values: dict[str, Any]) -> dict[str, Any]:
    """Drop missing values (None, NaN, inf, 'None', ''): a task that printed `loss=nan` has no loss."""
    out = {}
    for k, v in values.items():
        value = value_of(v)
        if value is not None:
            out[str(k)] = value
    return out


def is_mlflow(rule: Any) -> bool:
    """Whether a metrics rule reads what the script logs to MLflow (`{mlflow: true}`,
    batchsweep.task.mlflowmetrics)."""
    return isinstance(rule, dict) and rule.get("mlflow") is True


def rule_stream(rule: dict[str, Any]) -> tuple[str, str]:
    """(stream, pattern) of a stream rule such as {stdout: last} or {stderr: 'loss=(?P<loss>\\S+)'}."""
    stream = next(s for s in STREAMS if rule.get(s) is not None)
    return stream, str(rule[stream])


def describe(rule: str | dict[str, Any], *, other: str = "") -> str:
    """What a rule that found nothing found instead; `other` is the stream the rule did not read (stderr for a
    stdout rule), to say when the numbers are there."""
    if isinstance(rule, str):
        return f"no {rule} was written"
    if is_mlflow(rule):
        return "no metric was logged to MLflow in the task's working directory (mlflow.db, mlruns/)"
    stream, pattern = rule_stream(rule)
    where = "stdout or stderr" if stream == "output" else stream
    if pattern == "last":
        return f"the last line of {where} is not a JSON object or a number"
    said = f"{where} rule '{pattern}' matched nothing"
    if stream != "output" and other and from_text(other, pattern):
        elsewhere = "stderr" if stream == "stdout" else "stdout"
        said += f" (it matches {elsewhere}: write metrics: {{{elsewhere}: ...}} or {{output: ...}})"
    return said


def from_streams(files: Sequence[BinaryIO], pattern: str, *, match: str = "last") -> dict[str, Any] | None:
    """Metrics from logs read as streams, one after the other (a regex is matched line by line): constant
    memory whatever the logs' size. None when the rule found nothing (or only missing values)."""
    lines = (line for f in files for part in iter_lines(f) for line in part.split("\r"))
    return _from_lines(lines, pattern, match=match)


def from_text(text: str, pattern: str, *, match: str = "last") -> dict[str, Any] | None:
    """`from_streams` over text already in memory."""
    return _from_lines(iter(text.replace("\r", "\n").splitlines()), pattern, match=match)


# Colour and cursor codes (CSI sequences) a logger writes even to a file (colorlog, rich): `1.0\x1b[0m` is
# 1.0.
ANSI_CODE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")


TAIL_CHARS = 1 << 16  # how much of the end of a log a JSON object printed over several lines may span


def _printed_object(tail: list[str]) -> dict[str, Any] | None:
    """The JSON object that ends the output over several lines (`json.dumps(m, indent=2)`): from the last line
    that opens one at its start (`{`) to the end."""
    for start in range(len(tail) - 1, -1, -1):
        if tail[start].startswith("{"):
            try:
                value = json.loads("\n".join(tail[start:]))
            except ValueError:
                continue
            return value if isinstance(value, dict) else None
    return None


def _from_lines(lines: Iterator[str], pattern: str, *, match: str) -> dict[str, Any] | None:
    lines = (ANSI_CODE.sub("", line) if "\x1b" in line else line for line in lines)
    if pattern == "last":
        chosen = ""
        tail: collections.deque[str] = collections.deque()  # the last lines, at most TAIL_CHARS of them
        size = 0
        for line in lines:
            if line.strip():
                chosen = line
                if match == "first":
                    break
                tail.append(line)
                size += len(line)
                while size > TAIL_CHARS and len(tail) > 1:
                    size -= len(tail.popleft())
        if not chosen:
            return None
        try:
            value = json.loads(chosen.strip())
        except ValueError:
            value = _printed_object(list(tail)) if chosen.strip() == "}" else None
            if value is None:
                value = value_of(chosen)
        if isinstance(value, dict):
            return clean(value) or None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return {"value": value}
        return None
    regex = re.compile(pattern)
    found: dict[str, Any] = {}
    for line in lines:
        for m in regex.finditer(line):
            for k, v in m.groupdict().items():
                value = value_of(v)
                if value is None or (match == "first" and k in found):
                    continue
                found[k] = value
    return found or None


# -- which way is better -----------------------------------------------------------------------------
# One rule for `results --sort` and the report: a name that says "lower is better" sorts ascending.
MAXIMIZE_NAMES = ("sharpe", "sortino", "calmar", "accuracy", "acc", "score", "auc", "f1", "r2", "return",
                  "precision", "recall", "reward", "profit")
MINIMIZE_NAMES = (
    "loss",
    "error",
    "err",
    "rmse",
    "mae",
    "mse",
    "mape",
    "value",
    "drawdown",
    "time",
    "duration",
    "latency",
    "cost",
    "regret",
    "perplexity",
)


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
    present = [
        v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ]
    return bool(present) and all(v <= 0 for v in present)
