"""Where everything is in a store (docs/design.md §4): a named method per path (`Layout`, which `Store` is),
and the names of a task's files (`TaskDir`). Nothing here reads or writes.

    <store>/runs/<run_id>/run.json          written after tasks.jsonl: a run exists iff it has run.json
    <store>/runs/<run_id>/tasks.jsonl
    <store>/runs/<run_id>/runner.json       the run's one driver (`batchsweep.store.runlock`)
    <store>/runs/<run_id>/cancel.json       a cancel request for that driver
    <store>/runs/<run_id>/engine.json       what the engine needs to poll/cancel later (pid, job ids)
    <store>/runs/<run_id>/submissions/<n>.json  an array engine's n-th submission: its task indices, tasks per
                                            child
    <store>/runs/<run_id>/<journal>         a search's Optuna journal (its name is in run.json)
    <store>/runs/<run_id>/tasks/<i>/status.json   written last and atomically
    <store>/runs/<run_id>/tasks/<i>/{metrics.json,metrics.jsonl,stdout.log,stderr.log,outputs/}  (`TaskDir`)
    <store>/runs/<run_id>/results.parquet
    <store>/runs/<run_id>/packs/<name>.jsonl    statuses + metrics of many tasks in one object, a line per
                                                task (store/packs.py): an AWS child's summary
                                                (s<submission>-c<child>-a<attempt>) or a compacted run's
    <store>/runs/<run_id>/packs/<name>.{log,idx}  a compacted run's logs and their index (store/logpacks.py)
    <store>/code/<sha256>.tar.gz             content-addressed code package (remote engines)
    <store>/inputs/<sha256>/<name>           content-addressed local inputs (remote engines)
    <store>/sweeps/<name>.json               per-sweep stats (median task time) that size the next submit
    <store>/index/<k[:2]>.tsv                the reuse index of a local store: a line per succeeded task, its
                                             content key, run and task index (`batchsweep.store.index`)
    <store>/index/<k[:2]>/<key>/<run_id>~<i>  the same on S3: an empty object per succeeded task (a local
                                             store written before 0.x had these too: moved into the .tsv when
                                             next read)

No other module assembles these paths: tests/test_store_layout.py fails when a store file name appears as a
literal anywhere else in the package."""

from __future__ import annotations

import operator
from pathlib import Path
from typing import Any

from batchsweep.model import inside
from batchsweep.store import index as indexfile


class TaskDir:
    """A task's directory on this machine: the store's `runs/<id>/tasks/<i>/` on a local store, or the scratch
    directory a remote worker fills and uploads whole. The names of its files live here and nowhere else."""

    STATUS = "status.json"  # written last: a task without it did not finish
    METRICS = "metrics.json"
    SERIES = "metrics.jsonl"  # the task's metrics step by step (`batchsweep.task.series`)
    STDOUT = "stdout.log"
    STDERR = "stderr.log"
    OUTPUTS = "outputs"  # the kept files
    WORK = "work"  # the task's working directory while it runs (never uploaded)
    PARAMS = "params.json"  # params too large for the environment (BATCHSWEEP_PARAMS_FILE)

    def __init__(self, root: Path) -> None:
        self.root = root

    def __repr__(self) -> str:
        return f"TaskDir({str(self.root)!r})"

    @staticmethod
    def log_name(stderr: bool = False) -> str:
        """The file name of a task's stdout (or stderr) log."""
        return TaskDir.STDERR if stderr else TaskDir.STDOUT

    def log(self, stderr: bool = False) -> Path:
        """The task's stdout (or stderr) log."""
        return self.root / self.log_name(stderr)

    @property
    def status(self) -> Path:
        """status.json, written last: a task without it did not finish."""
        return self.root / self.STATUS

    @property
    def metrics(self) -> Path:
        """metrics.json: the task's final metrics."""
        return self.root / self.METRICS

    @property
    def series(self) -> Path:
        """metrics.jsonl: the task's metrics step by step."""
        return self.root / self.SERIES

    @property
    def outputs(self) -> Path:
        """The directory of the task's kept files."""
        return self.root / self.OUTPUTS

    @property
    def work(self) -> Path:
        """The task's working directory while it runs (never uploaded)."""
        return self.root / self.WORK

    @property
    def params(self) -> Path:
        """params.json: params too large for the environment."""
        return self.root / self.PARAMS


TASK_FILES = (TaskDir.METRICS, TaskDir.STDOUT, TaskDir.STDERR)
CODE_PREFIX = "code"  # code/<sha256>.tar.gz
INPUTS_PREFIX = "inputs"  # inputs/<sha256>/<name>
# a search's Optuna journal in the run's directory (new runs; run.json names it)
SEARCH_JOURNAL = "study.journal"
PACKS = "packs"
STORE_MARKER = ".batchsweep-store"  # at a local store's root: code that holds a store leaves it out
LOG_PACK_DATA, LOG_PACK_INDEX = "log", "idx"  # packs/<name>.log and packs/<name>.idx: a compacted run's logs
_TASK_NAMES = frozenset(
    {TaskDir.STATUS, TaskDir.METRICS, TaskDir.SERIES, TaskDir.STDOUT, TaskDir.STDERR, TaskDir.OUTPUTS}
)


def valid_run_id(run_id: Any) -> bool:
    """Whether a run id (from the command line, or read from a file in the store) is one directory name."""
    return inside(run_id) and "/" not in run_id


class Layout:
    """The store's keys: one named method per path (docs/design.md §4), for local and S3 stores alike."""

    # run_key/task_key are the generic builders; other modules call the named methods below.
    @staticmethod
    def run_key(run_id: str, *parts: str) -> str:
        """`runs/<run_id>/<parts...>`; ValueError for anything that is not one run id (never a path out of
        runs/)."""
        if not valid_run_id(run_id):  # read from a file in the store, say: never a path out of runs/
            raise ValueError(f"{run_id!r} is not a run id")
        return "/".join(("runs", run_id, *parts))

    @staticmethod
    def task_key(run_id: str, index: int, *parts: str) -> str:
        """`runs/<run_id>/tasks/<index>/<parts...>`."""
        return Layout.run_key(run_id, "tasks", str(operator.index(index)), *parts)

    @staticmethod
    def run_prefix(run_id: str) -> str:
        """The run's directory: everything of the run is under it."""
        return Layout.run_key(run_id)

    @staticmethod
    def run_record_key(run_id: str) -> str:
        """run.json: the run exists iff it has one (also a local pointer to a remote run)."""
        return Layout.run_key(run_id, "run.json")

    @staticmethod
    def tasks_file_key(run_id: str) -> str:
        """tasks.jsonl: a line per task (its params, inputs and content key)."""
        return Layout.run_key(run_id, "tasks.jsonl")

    @staticmethod
    def runner_key(run_id: str) -> str:
        """runner.json: the run's one driver (`batchsweep.store.runlock`)."""
        return Layout.run_key(run_id, "runner.json")

    @staticmethod
    def cancel_key(run_id: str) -> str:
        """cancel.json: a cancel request for the run's driver, read with its heartbeat."""
        return Layout.run_key(run_id, "cancel.json")

    @staticmethod
    def engine_record_key(run_id: str) -> str:
        """engine.json: what the engine needs to poll and cancel later (a pid, job ids, submissions)."""
        return Layout.run_key(run_id, "engine.json")

    @staticmethod
    def submission_key(run_id: str, n: int) -> str:
        """An array engine's n-th submission (0 the first; a resume or a search round adds one)."""
        return Layout.run_key(run_id, "submissions", f"{int(n)}.json")

    @staticmethod
    def engine_file_key(run_id: str, name: str) -> str:
        """A file the run's engine keeps beside engine.json (a generated batch script, a scheduler's
        output)."""
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"an engine's file is a plain file name, not {name!r}")
        return Layout.run_key(run_id, "engine", name)

    @staticmethod
    def results_cache_key(run_id: str) -> str:
        """results.parquet: the gathered table, rebuilt on demand."""
        return Layout.run_key(run_id, "results.parquet")

    @staticmethod
    def search_journal_key(run_id: str, name: str = SEARCH_JOURNAL) -> str:
        """A search's Optuna journal; its name is recorded in run.json (`search.journal`)."""
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"a search journal is a plain file name in the run's directory, not {name!r}")
        return Layout.run_key(run_id, name)

    @staticmethod
    def tasks_prefix(run_id: str) -> str:
        """The directory holding every task's directory (`tasks/<i>/`)."""
        return Layout.run_key(run_id, "tasks")

    @staticmethod
    def task_prefix(run_id: str, index: int) -> str:
        """One task's directory (`TaskDir` names what is in it)."""
        return Layout.task_key(run_id, index)

    @staticmethod
    def task_file_key(run_id: str, index: int, name: str) -> str:
        """A file in a task's directory by its `TaskDir` name, or `outputs/<path>` for a kept output."""
        first = name.split("/", 1)[0]
        if first not in _TASK_NAMES or (first == TaskDir.OUTPUTS) != ("/" in name):
            raise ValueError(
                f"{name!r} is not a file of a task's directory ({', '.join(sorted(_TASK_NAMES))})"
            )
        return Layout.task_key(run_id, index, name)

    @staticmethod
    def task_status_key(run_id: str, index: int) -> str:
        """A task's status.json, written last."""
        return Layout.task_key(run_id, index, TaskDir.STATUS)

    @staticmethod
    def task_metrics_key(run_id: str, index: int) -> str:
        """A task's metrics.json."""
        return Layout.task_key(run_id, index, TaskDir.METRICS)

    @staticmethod
    def task_series_key(run_id: str, index: int) -> str:
        """A task's series (metrics.jsonl), appended while it runs."""
        return Layout.task_key(run_id, index, TaskDir.SERIES)

    @staticmethod
    def task_log_key(run_id: str, index: int, *, stderr: bool = False) -> str:
        """A task's stdout.log (or stderr.log)."""
        return Layout.task_key(run_id, index, TaskDir.log_name(stderr))

    @staticmethod
    def packs_prefix(run_id: str) -> str:
        """The run's packs (`packs/`): statuses and metrics of many tasks, and log packs."""
        return Layout.run_key(run_id, PACKS)

    @staticmethod
    def pack_key(run_id: str, name: str) -> str:
        """The run's pack `name` (`packs/<name>.jsonl`)."""
        return Layout.run_key(run_id, PACKS, f"{name}.jsonl")

    @staticmethod
    def log_pack_key(run_id: str, name: str, part: str) -> str:
        """A compacted run's log pack `packs/<name>.log` (the tasks' logs, one after another) or its index
        `packs/<name>.idx` (a fixed-width entry per task: where its stdout and stderr are in the .log)."""
        if part not in (LOG_PACK_DATA, LOG_PACK_INDEX) or not name or "/" in name or name.startswith("."):
            raise ValueError(f"{name!r}.{part} is not a log pack")
        return Layout.run_key(run_id, PACKS, f"{name}.{part}")

    @staticmethod
    def task_output_key(run_id: str, index: int, path: str) -> str:
        """A kept output file, by its path relative to the task's working directory."""
        if not inside(path):
            raise ValueError(f"{path!r} is not a path inside a task's outputs")
        return Layout.task_key(run_id, index, TaskDir.OUTPUTS, path)

    @staticmethod
    def task_index_of(key: str) -> int | None:
        """The task index of a key under a run's `tasks/` (as listed by `list_files`), else None."""
        parts = key.split("/")
        if len(parts) >= 5 and parts[0] == "runs" and parts[2] == "tasks" and parts[3].isdigit():
            return int(parts[3])
        return None

    @staticmethod
    def task_file_of(key: str) -> tuple[int, str] | None:
        """(task index, file name) of a key `runs/<id>/tasks/<i>/<name>`; None for anything else (a kept
        output)."""
        parts = key.split("/")
        if len(parts) == 5 and parts[0] == "runs" and parts[2] == "tasks" and parts[3].isdigit():
            return int(parts[3]), parts[4]
        return None

    @staticmethod
    def code_key(sha256: str) -> str:
        """A code package by the sha256 of its content, `code/<sha256>.tar.gz`: shared by every run that ships
        it."""
        return f"{CODE_PREFIX}/{sha256}.tar.gz"

    @staticmethod
    def input_key(sha256: str, name: str) -> str:
        """A staged input, by the sha256 of its content: `inputs/<sha256>/<name>`."""
        return f"{INPUTS_PREFIX}/{sha256}/{name}"

    @staticmethod
    def sweep_stats_key(name: str) -> str:
        """A sweep's stats (median task time) that size its next submission: `sweeps/<name>.json`."""
        return f"sweeps/{name}.json"

    @staticmethod
    def index_key(cache_key: str, run_id: str | None = None, index: int | None = None) -> str:
        """The reuse index on S3 (and in a local store written before the index files): one empty object per
        succeeded task, named by its content key, run and task."""
        prefix = f"index/{cache_key[:2]}/{cache_key}"
        return prefix if run_id is None else f"{prefix}/{run_id}~{index}"

    @staticmethod
    def index_shard_prefix(prefix: str) -> str:
        """The entries on S3 (or in a local store written before the index files) of every content key that
        starts with `prefix` (two hex digits)."""
        return f"index/{prefix}"

    @staticmethod
    def index_file_key(cache_key: str) -> str:
        """The reuse index of a local store: one append-only file per key prefix
        (`batchsweep.store.index`)."""
        return f"index/{cache_key[:2]}{indexfile.SUFFIX}"
