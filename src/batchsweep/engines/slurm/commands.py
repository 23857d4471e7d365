"""Slurm's commands (sbatch, squeue, scancel, scontrol), run with argument lists, never through a shell."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from batchsweep.engines.slurm.settings import DEFAULT_MAX_ARRAY_SIZE
from batchsweep.errors import EngineUnavailable, SweepError

TIMEOUT_S = 60.0  # a slurmctld that does not answer in a minute is down for our purposes


def slurm(argv: Sequence[str], *, what: str, input_text: str | None = None) -> str:
    """A Slurm command's stdout; SweepError naming the command and Slurm's own last error line when it
    fails."""
    if shutil.which(argv[0]) is None:
        raise EngineUnavailable(
            f"backend slurm: `{argv[0]}` is not on PATH; run batchsweep on a Slurm login node "
            "(or install Slurm's client commands)"
        )
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=TIMEOUT_S, input=input_text,
                              stdin=None if input_text is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SweepError(
            f"slurm: `{argv[0]}` gave no answer in {TIMEOUT_S:g} s ({what}); is slurmctld up?"
        ) from None
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        raise SweepError(
            f"slurm: {what}: {lines[-1] if lines else f'{argv[0]} exited with {done.returncode}'}"
        )
    return done.stdout


def max_array_size() -> int:
    """The cluster's MaxArraySize: array indices run from 0 to MaxArraySize - 1."""
    config = slurm(["scontrol", "show", "config"], what="reading the cluster's configuration")
    found = re.search(r"^MaxArraySize\s*=\s*(\d+)", config, re.MULTILINE)
    return int(found.group(1)) if found else DEFAULT_MAX_ARRAY_SIZE


@dataclass(frozen=True)
class ArrayTask:
    """One row of `squeue --array`: an array task Slurm still holds (pending, running, completing)."""

    job: str  # the array's job id
    index: int  # SLURM_ARRAY_TASK_ID
    state: str  # PENDING, RUNNING, COMPLETING, ...
    reason: str  # why it waits (Priority, Resources, JobArrayTaskLimit, ...); None when it does not


def queued(job_name: str) -> list[ArrayTask]:
    """The array tasks Slurm still holds for jobs of this name (finished ones have left squeue)."""
    out = slurm(["squeue", "--noheader", "--array", f"--name={job_name}", "--format=%F|%K|%T|%r"],
                what="asking squeue for the run's array tasks")
    rows = []
    for line in out.splitlines():
        parts = line.strip().split("|", 3)
        if len(parts) == 4 and parts[1].isdigit():
            rows.append(ArrayTask(job=parts[0], index=int(parts[1]), state=parts[2], reason=parts[3]))
    return rows


def cancel(job_ids: Sequence[str]) -> None:
    if job_ids:
        slurm(["scancel", *job_ids], what="cancelling the run's array jobs")
