"""The nouns every module shares: a Task (what to run), its State, its Status (what happened)."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field, fields
from typing import Any


class State(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    LOST = "lost"  # the engine says it ended, but no status was written (see LOST_REASON)
    PRUNED = "pruned"  # stopped early by the spec's `stop:` rule: not a failure, never rerun by resume

    @property
    def ok(self) -> bool:
        """Ended as it should: the run's exit code is 0 when every task is ok."""
        return self in (State.SUCCEEDED, State.PRUNED)

    @property
    def done(self) -> bool:
        return self not in (State.PENDING, State.RUNNING)

    @property
    def ran(self) -> bool:
        """Its worker ran the script to an end it recorded (with the series' last step, when it has one)."""
        return self in (State.SUCCEEDED, State.FAILED, State.TIMEOUT, State.PRUNED)


# A lost task's error when its engine cannot say more (a killed AWS container, a Dask worker that died).
LOST_REASON = "ended without writing a status"

# State names as strings, in the order tables, cards and progress lines show them.
STATE_NAMES = tuple(s.value for s in (State.SUCCEEDED, State.PRUNED, State.FAILED, State.TIMEOUT, State.LOST,
                                      State.CANCELLED, State.RUNNING, State.PENDING))
DONE_STATE_NAMES = tuple(n for n in STATE_NAMES if State(n).done)
OK_STATE_NAMES = tuple(n for n in STATE_NAMES if State(n).ok)  # succeeded or pruned: the run's exit code is 0
# ended without a result
FAILED_STATE_NAMES = tuple(n for n in STATE_NAMES if State(n).done and not State(n).ok)

# The params batchsweep adds to lay a run out, not ones it explores: a search numbers its tasks by trial and
# round, `params.repeat: n` runs every point n times as repeat 0..n-1. A script is given one only if it asks.
SEARCH_PARAMS = ("trial", "round")
REPEAT_PARAM = "repeat"
OWN_PARAMS = (*SEARCH_PARAMS, REPEAT_PARAM)
# Beyond what any run holds (planning caps a space at 10^6 tasks unless --max-tasks raises it): a run.json
# that says more is damaged, not a table to allocate.
MAX_RUN_TASKS = 100_000_000
# The results table's own columns (`batchsweep.columns`): a param by one of these names would overwrite it.
STATUS_COLUMNS = (
    "status",
    "attempts",
    "duration_s",
    "exit_code",
    "error",
    "started_at",
    "ended_at",
    "worker",
    "peak_rss_mib",
    "cpu_s",
)
OPTIONAL_COLUMNS = ("gpu", "gpu_mem_mib", "last_step", "partial", "reused_from", "warm", "host")
RESULT_COLUMNS = ("task", *STATUS_COLUMNS, *OPTIONAL_COLUMNS, "outputs")

STAGED_AT = " => "  # a task input staged at a path of its own: "data/yhoo.txt => datas/yhoo.txt"


def input_parts(ref: str) -> tuple[str, str]:
    """(source, where it is staged in the task's directory) of one of a task's inputs."""
    src, sep, dst = ref.partition(STAGED_AT)
    return src, dst if sep else src.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Task:
    index: int
    params: dict[str, Any]
    inputs: tuple[str, ...] = ()
    cache_key: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "index": self.index,
                "params": self.params,
                "inputs": list(self.inputs),
                "cache_key": self.cache_key,
            },
            separators=(",", ":"),
            default=str,
        )

    @classmethod
    def from_json(cls, line: str) -> Task:
        return cls.from_dict(json.loads(line))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Task:
        """TypeError for a line of the wrong shape (tasks.jsonl may be damaged, or written by someone
        else)."""
        index, params, inputs, key = d["index"], d["params"], d.get("inputs", ()), d.get("cache_key", "")
        if (type(index) is not int or index < 0 or not isinstance(params, dict)
                or not all(isinstance(k, str) for k in params) or not isinstance(inputs, (list, tuple))
                or not all(isinstance(i, str) for i in inputs) or not isinstance(key, str)):
            raise TypeError("a tasks.jsonl line of the wrong shape")
        return cls(index=index, params=params, inputs=tuple(inputs), cache_key=key)


def load_json(raw: str | bytes) -> Any:
    """json.loads of a file a task, another user or a damaged disk wrote: ValueError also when it is nested
    too deeply to parse (json's RecursionError), so that a reader's `except ValueError` covers every bad
    file."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply to read") from None


def inside(path: Any) -> bool:
    """Whether path is a relative posix path that stays below the directory it is relative to (no `..`, no
    empty or `.` part, no NUL): what a kept output's name or a task's file name in the store must be."""
    return (isinstance(path, str) and bool(path) and "\0" not in path and "\\" not in path
            and not any(part in ("", ".", "..") for part in path.split("/")))


_INT, _NUMBER, _TEXT = (int,), (int, float), (str,)
_STATUS_TYPES = {
    "index": _INT,
    "attempts": _INT,
    "exit_code": (*_INT, type(None)),
    "error": (*_TEXT, type(None)),
    "started_at": (*_NUMBER, type(None)),
    "ended_at": (*_NUMBER, type(None)),
    "worker": _TEXT,
    "infra_retries": _INT,
    "peak_rss_mib": (*_NUMBER, type(None)),
    "cpu_s": (*_NUMBER, type(None)),
    "gpu": (*_TEXT, type(None)),
    "gpu_mem_mib": (*_NUMBER, type(None)),
    "metrics_missing": (*_TEXT, type(None)),
    "command": (*_TEXT, type(None)),
    "last_step": (*_NUMBER, type(None)),
    "reused_from": (*_TEXT, type(None)),
}
_COUNTS = ("index", "attempts", "exit_code", "infra_retries")


def wrong_status_fields(d: dict[str, Any]) -> list[str]:
    """The fields of a status's JSON object of the wrong type, or a whole number no status holds (10^40
    attempts or exit code): a status with any is damaged (`TaskStatus.from_dict`, and a pack line read without
    it)."""
    return [k for k, kinds in _STATUS_TYPES.items() if k in d and (type(d[k]) not in kinds or (
        k in _COUNTS and type(d[k]) is int and not -(2**31) <= d[k] < 2**31))]


@dataclass(frozen=True)
class TaskStatus:
    """A task's `status.json`: written last, once per finished task."""

    index: int
    state: State
    attempts: int = 1
    exit_code: int | None = None
    error: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    worker: str = ""
    outputs: tuple[str, ...] = field(default=())
    # times the engine re-ran it after an infrastructure failure (spot reclaim, host lost)
    infra_retries: int = 0
    peak_rss_mib: float | None = None  # peak memory of the task's whole process tree (sampled), last attempt
    cpu_s: float | None = None  # user + system CPU time of the tree, last attempt
    gpu: str | None = None  # the GPU ids it was leased on this machine (CUDA_VISIBLE_DEVICES)
    gpu_mem_mib: float | None = None  # peak GPU memory of the tree's processes (NVML), when it had a GPU
    metrics_missing: str | None = None  # it succeeded but yielded no metric: what the rule found instead
    command: str | None = None  # the command line it ran, as typed in the script's directory
    # the last step of its series (metrics.jsonl), where a pruned task stopped
    last_step: int | float | None = None
    # "RUN_ID/TASK": its result was copied from that earlier task with the same key
    reused_from: str | None = None
    host: str | None = None  # the machine it ran on
    # forked from the run's fork server (a warm start), not started as a new interpreter
    warm: bool | None = None
    # why it started cold, when it did (`warm: false`, what `auto` found unsafe...)
    cold_why: str | None = None

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return round(self.ended_at - self.started_at, 3)

    def to_json(self) -> str:
        # every field a scalar: no asdict deep copy
        d = {name: getattr(self, name) for name in _STATUS_FIELDS}
        d["state"] = self.state.value
        d["outputs"] = list(self.outputs)
        return json.dumps(d, indent=None)

    @classmethod
    def from_json(cls, text: str | bytes) -> TaskStatus:
        return cls.from_dict(load_json(text))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskStatus:
        """A status as written; ValueError when it names an output outside its task's directory (a store
        someone else wrote: the output is a path the reader would act on)."""
        d = dict(d)
        d["state"] = State(d["state"])
        d["outputs"] = outputs = tuple(d.get("outputs", ()))
        if outputs and not all(map(inside, outputs)):
            raise ValueError(f"an output outside its task's directory: {outputs!r}")
        wrong = wrong_status_fields(d)
        if wrong:  # valid JSON of the wrong types ("attempts": "many") is a damaged status, not a crash later
            raise TypeError(f"status fields of the wrong type: {', '.join(wrong)}")
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})


_STATUS_FIELDS = tuple(f.name for f in fields(TaskStatus))  # what `TaskStatus.to_json` writes, in order
