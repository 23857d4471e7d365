"""What the runner keeps of a task once it ended (docs/design.md §2): its metrics moved beside its working
directory, the files it made kept in outputs/, its working directory removed."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from batchsweep import metrics as metrics_mod
from batchsweep.model import Task, load_json
from batchsweep.store.core import TaskDir
from batchsweep.task import series as series_mod
from batchsweep.task.confine import Anchor, write_file
from batchsweep.task.context import RunContext


@dataclass
class TaskPaths:
    """Where a task's files go on this machine: the store's task dir (local) or a scratch dir (remote)."""

    task_dir: Path
    real: str | None = None  # where task_dir must lead, its store's root resolved once (confine.Anchor)
    work: Path = field(init=False)
    staged: dict[str, Path] = field(default_factory=dict)  # where each input sits in `work` -> its source

    def __post_init__(self) -> None:
        self.files = TaskDir(self.task_dir)  # the names of the task's files (the store's layout)
        self.work = self.files.work
        self.anchor: Anchor | None = None  # the task directory as it was made, set once it exists


def unchanged_input(work: Path, rel: str, staged: dict[str, Path]) -> bool:
    """Whether a file in the task's directory is a staged input as it was copied (not written by the task)."""
    for dst, source in staged.items():
        if rel == dst or rel.startswith(dst + "/"):
            original = source if rel == dst else source / rel[len(dst) + 1:]
            try:
                a, b = os.stat(original), os.stat(work / rel)
            except OSError:
                return False  # a file the task added inside a staged directory
            return (a.st_size, a.st_mtime_ns) == (b.st_size, b.st_mtime_ns)
    return False


def last_line(path: Path, *, limit: int = 200) -> str:
    """The last line a task wrote to a log (a traceback's last line says what went wrong)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            tail = f.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1][:limit] if lines else ""


def collect_metrics(ctx: RunContext, paths: TaskPaths) -> tuple[str | None, bool]:
    """Move the task's metrics into task_dir/metrics.json. Returns (a problem to report, whether any was found)."""
    target = paths.files.metrics
    rule = ctx.metrics_rule
    found: dict[str, Any] | None = None
    produced = paths.work / (rule if isinstance(rule, str) else metrics_mod.METRICS_FILE)
    try:
        value = load_json(metrics_mod.read_file(produced, within=paths.work))  # UnsafeMetricsFile: a FIFO, a symlink, huge
    except FileNotFoundError:
        pass
    except ValueError:
        return f"{produced.name} is not valid JSON", False
    else:
        if not isinstance(value, dict):
            return f"{produced.name} is not a JSON object", False
        found = metrics_mod.clean(value)
        produced.unlink()
    if metrics_mod.is_mlflow(rule):
        from batchsweep.task.mlflowmetrics import MlflowReadError, Reader

        try:
            logged = Reader(paths.work).final()
        except MlflowReadError as e:
            return str(e), bool(found)
        if logged:
            found = {**(found or {}), **logged}
    elif isinstance(rule, dict):
        stream, pattern = metrics_mod.rule_stream(rule)
        with contextlib.ExitStack() as stack:  # streams: a 1 GB log costs no memory
            logs = [stack.enter_context(open(log, "rb")) for log in
                    (paths.files.log(stderr=s == "stderr") for s in (("stdout", "stderr") if stream == "output" else (stream,)))
                    if log.exists()]
            printed = metrics_mod.from_streams(logs, pattern, match=rule.get("match") or "last")
        if printed:
            found = {**(found or {}), **printed}
            if series_mod.rule_source(rule) is not None:
                found.pop("step", None)  # the step reached is the status's last_step
    if found:
        write_file(target, json.dumps(found).encode())
    return None, bool(found)


def other_stream(ctx: RunContext, paths: TaskPaths) -> str:
    """The log a stream rule did not read (its tail), to tell the user when the numbers went there."""
    rule = ctx.metrics_rule
    if not isinstance(rule, dict) or rule.get("output") is not None or metrics_mod.is_mlflow(rule):
        return ""
    log = paths.files.log(stderr=rule.get("stdout") is not None)
    try:
        with open(log, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - (1 << 20)))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def collect_outputs(ctx: RunContext, task: Task, paths: TaskPaths) -> tuple[str, ...]:
    """Keep what `outputs:` names (or, without it, every file the task created) in task_dir/outputs."""
    outputs_dir = paths.files.outputs
    try:
        shutil.rmtree(outputs_dir)  # a previous attempt's
    except FileNotFoundError:
        pass
    files = []  # every file (not a symlink) the task left, as posix paths relative to its working dir
    for parent, _dirs, names in os.walk(paths.work):
        rel_parent = os.path.relpath(parent, paths.work).replace(os.sep, "/")
        for name in names:
            if not os.path.islink(os.path.join(parent, name)):
                files.append(name if rel_parent == "." else f"{rel_parent}/{name}")
    kept = []
    for rel in sorted(files, key=lambda r: r.split("/")):
        name = rel.rsplit("/", 1)[-1]
        if unchanged_input(paths.work, rel, paths.staged):
            continue  # an input as staged; one the task changed is kept, like any file it wrote
        if ctx.outputs and not any(fnmatch(rel, g) or fnmatch(name, g) for g in ctx.outputs):
            continue
        target = outputs_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(paths.work / rel, target)
        kept.append(rel)
    try:
        os.rmdir(paths.work)  # usually empty by now
    except OSError:
        shutil.rmtree(paths.work, ignore_errors=True)
    return tuple(kept)


def drop_empty(files: TaskDir) -> None:
    """A lean store: empty logs and an empty outputs directory are not kept (a missing log reads as empty)."""
    for path in (files.log(), files.log(stderr=True)):
        try:
            if path.stat().st_size == 0 and not path.is_symlink():
                path.unlink()
        except FileNotFoundError:
            pass
    try:
        files.outputs.rmdir()  # only when empty
    except OSError:
        pass
