"""Small helpers shared by the engine tests."""

from __future__ import annotations

import json
import math
import signal
import textwrap
import threading
import time as _time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from batchsweep.testing.harness import alive  # noqa: F401  (the tests import it from here)


def write_spec(tmp_path: Path, body: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def assert_stopped_by_the_median_rule(run: Any, pruned: set[int], *, epochs: int, bad: set[int]) -> None:
    """Every task's series holds each step up to its last; a pruned task names the median rule and a step
    from min_steps (2) on, before its end unless it is a middling one (not in `bad`), which the rule may stop
    as late as its last step; the others ran all `epochs`."""
    for i, s in run.statuses().items():
        raw = run.store.backend.read_bytes(run.store.task_key(run.id, i, "metrics.jsonl"))
        assert [json.loads(line)["step"] for line in raw.splitlines()] == list(range(1, s.last_step + 1))
        # stopped at a step before the end; a step or two more may be printed before SIGTERM lands
        if i in pruned:
            at = int(s.error.split("pruned at step ", 1)[1].split()[0])
            assert "by the median rule" in s.error and 2 <= at <= s.last_step
            assert at < epochs or i not in bad
        else:
            assert s.state.value == "succeeded" and s.last_step == epochs


def victim_files(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """Someone's files outside the run: a dotfile, and a directory holding a metrics.json and a note."""
    victim = tmp_path / "victim"
    (victim / "dir").mkdir(parents=True)
    files = {".bashrc": b"export PATH=$HOME/bin:$PATH  # mine\n", "dir/metrics.json": b'{"stolen": 1}',
             "dir/notes.txt": b"private notes\n"}
    for rel, data in files.items():
        (victim / rel).write_bytes(data)
    return victim, files


def assert_untouched(victim: Path, files: dict[str, bytes]) -> None:
    """The victim's files are what `victim_files` wrote, and no other file is there."""
    found = {p.relative_to(victim).as_posix(): p.read_bytes() for p in victim.rglob("*") if p.is_file()}
    assert found == files


@contextmanager
def ctrl_c_reaches_children() -> Iterator[None]:
    """Processes started inside take SIGINT as Ctrl-C in a terminal, even when this one ignores it.

    A process that a non-interactive shell starts in the background (`make test &`, `nohup … &`, some CI and
    agent runners) inherits SIGINT ignored, and so do its children; Python then installs no KeyboardInterrupt
    handler, so a test's SIGINT to a CLI it started would do nothing (the CLI watched on, printing progress,
    until the test timed out). An ignored signal stays ignored across exec, a handled one is reset to the
    default: handle it here while the child starts."""
    before = signal.getsignal(signal.SIGINT)
    if before == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if before == signal.SIG_IGN:
            signal.signal(signal.SIGINT, before)


class FakeClock:
    """A `batchsweep.clock.Clock` whose time moves only when code sleeps on it: minutes of polling pass at
    once. `on_sleep(clock)` runs after each sleep (the world a poll loop watches may change there). `wall` is
    its wall-clock time at start (`time.time()` when the code compares it with a stamp that a real clock
    wrote).

    A background thread's `wait` (a heartbeat) blocks until the sleeps of the thread that made the clock move
    time past its deadline; such a sleep returns once every background waiter that was due has run and waits
    again (or has ended), so a test sees what each beat did as soon as its sleep returns."""

    def __init__(self, start: float = 1_000_000.0, on_sleep: Callable[[FakeClock], None] | None = None,
                 wall: float | None = None) -> None:
        self.now = start
        self.slept: list[float] = []
        self.on_sleep = on_sleep
        self._wall_offset = 1_700_000_000.0 if wall is None else wall - start
        self._owner = threading.current_thread()
        self._changed = threading.Condition()
        # background threads blocked in wait: their deadlines
        self._waiting: dict[threading.Thread, float] = {}
        self._waiters: set[threading.Thread] = set()  # every background thread that ever waited

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self._wall_offset + self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        with self._changed:
            self.now += seconds
            self._changed.notify_all()
            settled = _time.monotonic() + 30
            while _time.monotonic() < settled and any(
                    t.is_alive() and self._waiting.get(t, -math.inf) <= self.now for t in self._waiters):
                self._changed.wait(0.01)
        if self.on_sleep is not None:
            self.on_sleep(self)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        if threading.current_thread() is self._owner:
            self.sleep(seconds)
            return event.is_set()
        me = threading.current_thread()
        with self._changed:
            deadline = self._waiting[me] = self.now + seconds
            self._waiters.add(me)
            self._changed.notify_all()
            while not event.is_set() and self.now < deadline:
                self._changed.wait(0.01)
            del self._waiting[me]
            return event.is_set()
