"""The time that polling code reads and waits on, in one object a caller can replace.

Watching a run (`progress.watch`), `status --watch` and the AWS Batch engine's poll backoff take a `Clock`;
the default is the system's. A test passes one whose `sleep` moves its own time forward at once, so a behaviour
that takes minutes of polling (a backoff, a cadence of progress lines) is checked without waiting.
"""

from __future__ import annotations

import time


class Clock:
    """The system's clock: `monotonic` for intervals, `time` for wall-clock stamps, `sleep` to wait."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM = Clock()
