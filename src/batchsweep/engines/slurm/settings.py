"""The Slurm engine's settings: the spec's `slurm:` block, what a run records of it (run.json `engine`) and of
its array jobs (engine.json)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from batchsweep.store.record import EngineRecord, EngineSettings

# Slurm's default MaxArraySize; the real one is read from `scontrol show config`
DEFAULT_MAX_ARRAY_SIZE = 1001
_TIME = re.compile(r"(\d+-)?\d+(:\d{1,2}){0,2}|\d+-\d+")
_MEM = re.compile(r"\d+[KMGT]?")


class SlurmBlock(BaseModel):
    """The spec's `slurm:` block: sbatch options for every array job of the run."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    # sbatch --time (MM, HH:MM:SS, D-HH:MM); default: from `timeout:`, else the partition's
    time: str | None = None
    cpus_per_task: int | None = Field(default=None, ge=1)  # default: resources.vcpus rounded up
    mem: str | None = None  # sbatch --mem (4096, 4G); default: resources.memory_mib
    gres: str | None = None  # sbatch --gres; default: gpu:N for resources.gpus
    constraint: str | None = None
    extra: list[str] = []  # more sbatch options, each one `--name=value` line
    # tasks each array task runs (default: packed by duration)
    tasks_per_job: int | None = Field(default=None, ge=1)

    @field_validator("partition", "account", "qos", "gres", "constraint")
    @classmethod
    def _one_word(cls, v: str | None) -> str | None:
        if v is not None and (not v or any(c.isspace() or c in "\"'\\" for c in v)):
            raise ValueError(f"{v!r}: one word, without spaces or quotes")
        return v

    @field_validator("time")
    @classmethod
    def _slurm_time(cls, v: str | None) -> str | None:
        if v is not None and not _TIME.fullmatch(v):
            raise ValueError(
                f"{v!r} is not a Slurm time; write MINUTES, HH:MM:SS or D-HH:MM:SS (e.g. 2:00:00)"
            )
        return v

    @field_validator("mem")
    @classmethod
    def _slurm_mem(cls, v: str | None) -> str | None:
        if v is not None and not _MEM.fullmatch(v):
            raise ValueError(f"{v!r} is not a Slurm memory size; write e.g. 4096 (MiB) or 4G")
        return v

    @field_validator("extra")
    @classmethod
    def _options(cls, v: list[str]) -> list[str]:
        for option in v:
            if not re.fullmatch(r"--[a-z][a-z0-9-]*(=[^\s\"'\\]+)?", option):
                raise ValueError(
                    f"{option!r}: give each extra sbatch option as one `--name=value` (no spaces or "
                    "quotes), e.g. --mail-type=END"
                )
            if option.split("=")[0] in (
                "--array",
                "--output",
                "--error",
                "--job-name",
                "--wrap",
                "--parsable",
            ):
                raise ValueError(f"{option!r}: batchsweep sets {option.split('=')[0]} itself; leave it out")
        return v


class SlurmEngineSettings(EngineSettings):
    """What a Slurm run records of its settings (run.json `engine`): the block, the cluster's array limit and
    the interpreter the array tasks run the worker with."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    gres: str | None = None
    constraint: str | None = None
    extra: list[str] = []
    tasks_per_job: int | None = None
    max_array_size: int = DEFAULT_MAX_ARRAY_SIZE
    python: str = ""


class ArrayJob(BaseModel):
    """One sbatch of a submission: Slurm's job id, the children it holds, its batch script in the store."""

    model_config = ConfigDict(extra="allow")
    id: str
    offset: int  # the submission's child number of its array index 0
    size: int
    script: str  # the store key of the batch script


class Submission(BaseModel):
    model_config = ConfigDict(extra="allow")
    n: int  # submissions/<n>.json holds its task indices
    tasks_per_child: int = 1
    jobs: list[ArrayJob] = []
    submitted_at: float = 0.0


class SlurmRecord(EngineRecord):
    """engine.json of a Slurm run: every submission's array jobs (written after each sbatch)."""

    submissions: list[Submission] = []
