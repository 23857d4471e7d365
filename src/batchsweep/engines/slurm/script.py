"""The batch script of one array job, and the sbatch options the spec's `resources:`, `timeout:` and `slurm:`
block make. A pure function of its inputs: `run --dry-run` shows the same text a submit keeps in the store."""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING

from batchsweep.engines.slurm.settings import SlurmEngineSettings
from batchsweep.errors import SpecError
from batchsweep.task.arrayslice import OFFSET_VAR

if TYPE_CHECKING:
    from batchsweep.spec.schema import Spec



def slurm_time(seconds: float) -> str:
    """Seconds as Slurm's D-HH:MM:SS, rounded up to the minute (Slurm's limits are whole minutes)."""
    minutes = max(1, math.ceil(seconds / 60))
    return f"{minutes // 1440}-{minutes % 1440 // 60:02d}:{minutes % 60:02d}:00"


def sbatch_options(
    spec: Spec, settings: SlurmEngineSettings, *, k: int, timeout_s: float | None
) -> list[str]:
    """The options every array job of the run gets: resources, time, and the `slurm:` block."""
    r = spec.resources
    if r.gpus != int(r.gpus):
        raise SpecError(f"resources.gpus: {r.gpus:g} — Slurm allots whole GPUs; use {max(1, round(r.gpus))}")
    options = [f"--cpus-per-task={settings.cpus_per_task or max(1, math.ceil(r.vcpus))}",
               f"--mem={settings.mem or f'{int(r.memory_mib)}M'}"]
    if settings.gres:
        options.append(f"--gres={settings.gres}")
    elif r.gpus:
        options.append(f"--gres=gpu:{int(r.gpus)}")
    if settings.time:
        options.append(f"--time={settings.time}")
    # a backstop above the worker's own per-attempt timeout, for all k tasks and their retries
    elif timeout_s:
        options.append(f"--time={slurm_time(k * (spec.retries + 1) * (timeout_s + 10) + 120)}")
    for name in ("partition", "account", "qos", "constraint"):
        value = getattr(settings, name)
        if value:
            options.append(f"--{name}={value}")
    options += ["--requeue", "--open-mode=append", *settings.extra]
    return options


# Which words of Slurm's refusal point at which sbatch options (matched in its lowercased last line).
_REFUSAL_OPTIONS = (
    (("partition",), ("partition",)),
    (("account",), ("account",)),
    (("qos",), ("qos",)),
    (("gres", "generic resource"), ("gres",)),
    (("feature", "constraint"), ("constraint",)),
    (("time limit",), ("time",)),
    (("node configuration", "memory", "cpu"), ("cpus-per-task", "mem", "gres", "constraint")),
)


def option_sources(settings: SlurmEngineSettings) -> dict[str, str]:
    """The spec field each sbatch option of `sbatch_options` comes from, by option name."""
    def field(name: str, block: object, fallback: str) -> str:
        return f"slurm.{name}" if block else fallback

    return {
        "cpus-per-task": field("cpus_per_task", settings.cpus_per_task, "resources.vcpus"),
        "mem": field("mem", settings.mem, "resources.memory_mib"),
        "gres": field("gres", settings.gres, "resources.gpus"),
        "time": field("time", settings.time, "timeout"),
        **{name: f"slurm.{name}" for name in ("partition", "account", "qos", "constraint")},
    }


def refusal(reason: str, settings: SlurmEngineSettings, options: Sequence[str]) -> str:
    """One line for a job `sbatch --test-only` refused: Slurm's reason, the options it most likely means
    with the spec field each comes from, and how to see what the cluster offers."""
    sources = option_sources(settings)
    given = {o[2:].split("=", 1)[0]: o for o in options if o.startswith("--") and "=" in o}
    low = reason.lower()
    names = next((n for words, n in _REFUSAL_OPTIONS if any(w in low for w in words)), tuple(sources))
    asked = ", ".join(f"{given[n]} (from {sources[n]})" for n in names if n in given and n in sources)
    return (
        f"slurm: sbatch --test-only refused the job: {reason}; it asked for {asked or ' '.join(options)}: "
        "change that field to what the cluster offers (`sinfo -o \"%P %c %m %G %f\"` lists each partition's "
        "CPUs, memory in MiB, GRES and features; `sacctmgr show assoc user=$USER` your accounts and QOS)"
    )


def _quoted_option(name: str, path: str) -> str:
    """An #SBATCH option naming a path: sbatch reads double quotes there, never a shell."""
    if any(c in path for c in "\"\n\r\0"):
        raise SpecError(
            f"the store's path {path!r} holds a quote or line break, which an #SBATCH line cannot "
            "carry; use a store path without them (--store)"
        )
    return f'--{name}="{path}"' if any(c.isspace() for c in path) else f"--{name}={path}"


def batch_script(*, run_id: str, store_url: str, submission: int, offset: int, size: int, max_parallel: int,
                 options: Sequence[str], output: str, python: str) -> str:
    """The script of one array job of `size` children, the first being child `offset` of the submission."""
    array = f"0-{size - 1}" + (f"%{max_parallel}" if max_parallel else "")
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name=batchsweep-{run_id}",
        f"#SBATCH --array={array}",
        f"#SBATCH {_quoted_option('output', output)}",
        *(f"#SBATCH {o}" for o in options),
        "",
        "# Each array task runs its slice of the run's tasks (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN",
        "# + BATCHSWEEP_CHILD_OFFSET) from the code package kept in the store at submit.",
        f"export BATCHSWEEP_STORE={shlex.quote(store_url)}",
        f"export BATCHSWEEP_RUN_ID={shlex.quote(run_id)}",
        f"export BATCHSWEEP_SUBMISSION={int(submission)}",
        f"export {OFFSET_VAR}={int(offset)}",
        f"exec {shlex.quote(python)} -m batchsweep.worker",
        "",
    ]
    return "\n".join(lines)
