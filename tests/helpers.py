"""Small helpers shared by the engine tests."""

from __future__ import annotations

import os
import signal
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def write_spec(tmp_path: Path, body: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def alive(pid: int) -> bool:
    """Whether a process still runs (a zombie has exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@contextmanager
def ctrl_c_reaches_children() -> Iterator[None]:
    """Processes started inside take SIGINT as Ctrl-C in a terminal, even when this one ignores it.

    A process that a non-interactive shell starts in the background (`make test &`, `nohup … &`, some CI and agent
    runners) inherits SIGINT ignored, and so do its children; Python then installs no KeyboardInterrupt handler,
    so a test's SIGINT to a CLI it started would do nothing (the CLI watched on, printing progress, until the test
    timed out). An ignored signal stays ignored across exec, a handled one is reset to the default: handle it here
    while the child starts."""
    before = signal.getsignal(signal.SIGINT)
    if before == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if before == signal.SIG_IGN:
            signal.signal(signal.SIGINT, before)


class FakeClock:
    """A `batchsweep.clock.Clock` whose time moves only when code sleeps on it: minutes of polling pass at once.
    `on_sleep(clock)` runs after each sleep (the world a poll loop watches may change there). `wall` is its
    wall-clock time at start (`time.time()` when the code compares it with a stamp that a real clock wrote)."""

    def __init__(self, start: float = 1_000_000.0, on_sleep: Callable[[FakeClock], None] | None = None,
                 wall: float | None = None) -> None:
        self.now = start
        self.slept: list[float] = []
        self.on_sleep = on_sleep
        self._wall_offset = 1_700_000_000.0 if wall is None else wall - start

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self._wall_offset + self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(self)
