"""The time that polling code reads and waits on, in one object a caller can replace.

Watching a run (`progress.watch`), `status --watch`, every engine's polls and waits (`Engine.clock`: the AWS
Batch poll backoff, the local engine's and Dask's cancel waits, Dask's scheduler polls) and the run lock's
heartbeat (`RunLock.clock`) take a `Clock`; the default is the system's. A test passes one whose `sleep` moves
its own time forward at once, so a behaviour that takes minutes of polling (a backoff, a cadence of progress
lines) is checked without waiting.
"""

from __future__ import annotations

import threading
import time


class Clock:
    """The system's clock: `monotonic` for intervals, `time` for wall-clock stamps, `sleep` to wait."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Wait until `event` is set or `seconds` pass; whether it is set (a thread's stoppable sleep)."""
        return event.wait(seconds)


SYSTEM = Clock()
