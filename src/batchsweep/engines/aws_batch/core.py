"""What every part of the AWS Batch engine shares during a run: its settings, clients and engine.json."""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any

from batchsweep.engines.aws_batch.settings import _session
from batchsweep.engines.base import Engine, Progress, RunHandle


class AwsRun(Engine):
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

    def _record(self) -> dict[str, Any]:
        record = self.run.store.read_record(self.run.store.engine_record_key(self.run.id))
        if record is None or not isinstance(record.get("submissions"), list):
            return {"engine": self.name, "submissions": []}
        return record

    def _jobs(self) -> list[dict[str, Any]]:
        return [job for sub in self._record()["submissions"] for job in sub["jobs"]]
