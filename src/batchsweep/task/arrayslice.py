"""Which tasks an array child runs: the mapping from an array index to a slice of a submission's tasks, used
by the engine that submits the array and by the worker that runs one child of it (`batchsweep.task.remote`).

A submission lists its task indices and a number of tasks per child, `k`: child `c` runs
`indices[c*k:(c+1)*k]`, one after another. A submission of more children than one array job holds (AWS Batch:
10,000) goes out as several array jobs, each told its first child number in BATCHSWEEP_CHILD_OFFSET. A child's
number is that offset plus its index in its array job, which the scheduler sets in the environment:

    AWS_BATCH_JOB_ARRAY_INDEX   AWS Batch array jobs, 0-based (not set in a job of size 1: index 0)
    JOB_COMPLETION_INDEX        Kubernetes Indexed Jobs, 0-based
    SLURM_ARRAY_TASK_ID         Slurm job arrays, minus SLURM_ARRAY_TASK_MIN when set (`--array=1-100` ->
                                0..99); the array is contiguous (no `:step`, no lists)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

OFFSET_VAR = "BATCHSWEEP_CHILD_OFFSET"
AWS_BATCH_VAR = "AWS_BATCH_JOB_ARRAY_INDEX"
KUBERNETES_VAR = "JOB_COMPLETION_INDEX"
SLURM_VAR = "SLURM_ARRAY_TASK_ID"
SLURM_MIN_VAR = "SLURM_ARRAY_TASK_MIN"
INDEX_VARS = (AWS_BATCH_VAR, KUBERNETES_VAR, SLURM_VAR)  # the first one set names the child


def _whole(env: Mapping[str, str], name: str) -> int:
    raw = env[name].strip()
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={env[name]!r} is not a whole number") from None
    if value < 0:
        raise ValueError(f"{name}={env[name]!r} is negative")
    return value


def array_index(env: Mapping[str, str]) -> int:
    """This process's 0-based index in its array job, read from the scheduler's variable; 0 outside an
    array."""
    for name in INDEX_VARS:
        if env.get(name, "").strip():
            index = _whole(env, name)
            if name == SLURM_VAR and env.get(SLURM_MIN_VAR, "").strip():
                low = _whole(env, SLURM_MIN_VAR)
                if index < low:
                    raise ValueError(f"{SLURM_VAR}={index} is below {SLURM_MIN_VAR}={low}")
                index -= low
            return index
    return 0


def child_number(env: Mapping[str, str]) -> int:
    """This child's number in its submission: the array job's offset plus the index in the array."""
    return (_whole(env, OFFSET_VAR) if env.get(OFFSET_VAR, "").strip() else 0) + array_index(env)



# Short tasks are packed into children (array tasks) of about this long: one Python start and one scheduler
# placement each, and AWS advises Batch jobs of a few minutes.
CHILD_TARGET_S = 180.0


def tasks_per_child(
    n: int, *, max_parallel: int, tasks_per_job: int | None, task_seconds: float | None
) -> int:
    """How many tasks each array task runs: as asked, else enough to last ~3 minutes when the sweep's median
    task time is known; with `max_parallel`, at least n / max_parallel (no more array tasks than may run)."""
    if tasks_per_job:
        k = tasks_per_job
    elif task_seconds:
        k = max(1, int(CHILD_TARGET_S // max(task_seconds, 0.001)))
    else:
        k = 1
    if max_parallel:
        k = max(k, math.ceil(n / max_parallel))
    return max(1, min(k, n))


@dataclass(frozen=True)
class Slicing:
    """A submission's tasks cut into children of `tasks_per_child` tasks (the store keeps it as
    `submissions/<n>.json`: `{"indices": [...], "tasks_per_child": k}`)."""

    indices: tuple[int, ...]
    tasks_per_child: int

    def __post_init__(self) -> None:
        if self.tasks_per_child < 1:
            raise ValueError(f"tasks_per_child must be at least 1, not {self.tasks_per_child}")

    @classmethod
    def of(cls, indices: Sequence[int], tasks_per_child: int) -> Slicing:
        return cls(tuple(int(i) for i in indices), int(tasks_per_child))

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Slicing:
        return cls.of(record["indices"], record["tasks_per_child"])

    def to_record(self) -> dict[str, Any]:
        return {"indices": list(self.indices), "tasks_per_child": self.tasks_per_child}

    @property
    def children(self) -> int:
        return math.ceil(len(self.indices) / self.tasks_per_child)

    def tasks_of(self, child: int) -> list[int]:
        """The task indices child number `child` runs, in order (none for a child past the end)."""
        if child < 0:
            raise ValueError(f"child {child}: children are numbered from 0")
        k = self.tasks_per_child
        return list(self.indices[child * k:(child + 1) * k])

    def child_of(self, index: int) -> int | None:
        """The child that runs task `index` (None when this submission does not have it)."""
        try:
            return self.indices.index(index) // self.tasks_per_child
        except ValueError:
            return None

    def array_jobs(self, max_size: int) -> Iterator[tuple[int, int]]:
        """(offset, size) of each array job the children need, at most `max_size` children each."""
        for offset in range(0, self.children, max_size):
            yield offset, min(max_size, self.children - offset)
