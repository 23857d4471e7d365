"""What every part of the AWS Batch engine shares during a run: its settings, clients and engine.json."""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any, ClassVar

from batchsweep.aws.record import ArrayJob, AwsEngineSettings, AwsRecord, Submission
from batchsweep.engines.aws_batch.settings import _session
from batchsweep.engines.base import Engine, Progress, RunHandle, read_engine_record
from batchsweep.task.arrayslice import Slicing

__all__ = ["ArrayJob", "AwsRecord", "AwsRun", "Submission"]  # engine.json's models: batchsweep.aws.record


class AwsRun(Engine):
    record_model: ClassVar[type[AwsRecord]] = AwsRecord
    engine_settings_model: ClassVar[type[AwsEngineSettings]] = AwsEngineSettings

    def __init__(self, run: RunHandle) -> None:
        super().__init__(run)
        self.settings = run.record.engine_as(AwsEngineSettings)
        self._next_poll = 0.0
        self._interval = 2.0
        self._last: Progress | None = None
        self._runnable_checked = -math.inf  # no check yet, however young the monotonic clock
        self._runnable_note: tuple[str, ...] = ()  # the advice of the last check, shown until the next one
        self._slicings: dict[int, Slicing] = {}  # each submission's, read once (`Poller._slicing`)

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
