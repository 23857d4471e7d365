"""What every part of the AWS Batch engine shares during a run: its settings, clients and engine.json."""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from batchsweep.engines.aws_batch.settings import _session
from batchsweep.engines.base import Engine, EngineRecord, Progress, RunHandle, read_engine_record


class ArrayJob(BaseModel):
    """One SubmitJob of a submission: its id and the children (array indices) it holds."""

    model_config = ConfigDict(extra="allow")
    id: str
    offset: int  # the submission's child index of its first child
    size: int  # its children (1: a plain job, not an array)


class Submission(BaseModel):
    """One submit (the run's first, a resume's, a search round's): tasks per child, and its array jobs."""

    model_config = ConfigDict(extra="allow")
    n: int  # its number: submissions/<n>.json holds its task indices
    tasks_per_child: int = 1
    jobs: list[ArrayJob] = []
    submitted_at: float = 0.0


class AwsRecord(EngineRecord):
    """engine.json of an AWS Batch run: every submission's array jobs (written after each SubmitJob)."""

    submissions: list[Submission] = []


class AwsRun(Engine):
    record_model: ClassVar[type[AwsRecord]] = AwsRecord

    def __init__(self, run: RunHandle) -> None:
        super().__init__(run)
        self.settings: dict[str, Any] = dict(run.settings)
        self._next_poll = 0.0
        self._interval = 2.0
        self._last: Progress | None = None
        self._runnable_checked = -math.inf  # no check yet, however young the monotonic clock
        self._runnable_note: tuple[str, ...] = ()  # the advice of the last check, shown until the next one

    @cached_property
    def session(self) -> Any:
        return _session(self.settings)

    @cached_property
    def batch(self) -> Any:
        from batchsweep.aws.clients import make_client

        return make_client("batch", session=self.session)

    def _record(self) -> AwsRecord:
        """engine.json (none yet, or a damaged one: no submissions)."""
        return read_engine_record(self.run, self.record_model) or AwsRecord(engine=self.name)

    def _jobs(self) -> list[ArrayJob]:
        return [job for sub in self._record().submissions for job in sub.jobs]
