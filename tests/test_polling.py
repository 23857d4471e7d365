"""Watching a run, driven by a fake clock (tests/helpers.FakeClock): a minute of polling takes no time at
all."""

from __future__ import annotations

from collections import Counter

import pytest
from helpers import FakeClock

from batchsweep.engines.base import Progress
from batchsweep.report import progress


class SlowRun:
    """A stand-in run of `total` tasks in which one more task succeeds at each poll."""

    name = "slow"

    def __init__(self, total: int, notes: tuple[str, ...] = ()) -> None:
        self.n_tasks = total
        self.done = 0
        self.notes = notes
        self.engine = self

    def poll(self) -> Progress:
        return self.counts()[1]

    def counts(self) -> tuple[Counter[str], Progress]:
        done, self.done = self.done, min(self.done + 1, self.n_tasks)
        active = done < self.n_tasks
        counts = Counter({"succeeded": done, **({"pending": self.n_tasks - done} if active else {})})
        return counts, Progress(active=active, notes=self.notes)


def test_plain_progress_prints_a_line_every_5_seconds_and_the_last_one_at_the_end(monkeypatch, capsys):
    monkeypatch.setenv("CI", "true")
    clock = FakeClock()
    progress.watch(SlowRun(100), interval=0.25, clock=clock)  # 100 polls, 25 s of the run's time
    assert clock.slept == [0.25] * 100
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == [
        "[0/100]",
        "[20/100]",
        "[40/100]",
        "[60/100]",
        "[80/100]",
        "[100/100]",
    ]
    assert lines[1].endswith("eta 00:20") and lines[-1] == "[100/100] 100 succeeded"


class ReusedRun(SlowRun):
    """A run whose tasks were all reused: complete from the first poll, though the engine reports it
    active once more before it ends."""

    def counts(self) -> tuple[Counter[str], Progress]:
        self.done += 1
        return Counter({"succeeded": self.n_tasks}), Progress(active=self.done < 2)


def test_a_run_with_nothing_left_to_run_shows_no_eta_and_its_line_once(monkeypatch, capsys):
    monkeypatch.setenv("CI", "true")
    progress.watch(ReusedRun(20), interval=0.25, clock=FakeClock())
    assert capsys.readouterr().err.splitlines() == ["[20/20] 20 succeeded"]


def test_watch_without_progress_polls_until_the_engine_ends(capsys):
    clock = FakeClock()
    progress.watch(SlowRun(7), show=False, interval=2.0, clock=clock)
    assert clock.slept == [2.0] * 7 and capsys.readouterr() == ("", "")


@pytest.mark.parametrize("plain", [True, False])
def test_a_note_is_shown_once_however_many_polls_repeat_it(plain, monkeypatch, capsys):
    monkeypatch.setenv("CI", "true") if plain else monkeypatch.setattr(progress, "_plain", lambda: False)
    progress.watch(SlowRun(12, notes=("jobs wait for capacity",)), interval=0.25, clock=FakeClock())
    assert capsys.readouterr().err.count("jobs wait for capacity") == 1
