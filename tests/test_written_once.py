"""Issue 16, item 6: what the package says in many places is written in one: durations, "did you mean", state
names and counts, the params batchsweep adds, whether a process lives, and the extras an error message
names."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomllib

from batchsweep import model, text
from batchsweep.model import State
from batchsweep.store import runlock

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "batchsweep"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, "–"),
        (math.nan, "–"),
        (math.inf, "–"),
        (0, "0 s"),
        (0.0004, "< 0.001 s"),
        (0.0234, "0.023 s"),
        (0.4, "0.4 s"),
        (1, "1.0 s"),
        (12.34, "12.3 s"),
        (59.9, "59.9 s"),
        (60, "1m 00s"),
        (125.4, "2m 05s"),
        (3599.4, "59m 59s"),
        (3600, "1h 00m"),
        (5400, "1h 30m"),
        (90061, "25h 01m"),
    ],
)
def test_a_duration_is_written_one_way(seconds: float | None, shown: str) -> None:
    assert text.duration(seconds) == shown


def test_did_you_mean_names_the_closest_option_or_nothing() -> None:
    assert text.did_you_mean("retires", ["timeout", "retries", "resources"]) == "did you mean 'retries'? "
    assert text.did_you_mean("zzz", ["timeout", "retries"]) == ""
    assert text.did_you_mean("timout", ["timeout"], cutoff=0.8) == "did you mean 'timeout'? "


def test_state_names_cover_every_state_once_and_split_into_ok_failed_and_unfinished() -> None:
    assert sorted(model.STATE_NAMES) == sorted(s.value for s in State)
    assert model.OK_STATE_NAMES == ("succeeded", "pruned")
    assert model.FAILED_STATE_NAMES == ("failed", "timeout", "lost", "cancelled")
    assert set(model.DONE_STATE_NAMES) == set(model.OK_STATE_NAMES) | set(model.FAILED_STATE_NAMES)
    assert set(model.STATE_NAMES) - set(model.DONE_STATE_NAMES) == {"running", "pending"}
    assert (
        text.state_counts({"pending": 2, "failed": 1, "succeeded": 3, "lost": 0})
        == "3 succeeded, 1 failed, 2 pending"
    )


def test_a_process_is_alive_while_it_runs_and_not_once_it_exits_or_its_pid_means_another() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        started = runlock.start_time(child.pid)
        assert started is not None
        assert runlock.pid_alive(child.pid) and runlock.pid_alive(child.pid, started)
        assert not runlock.pid_alive(child.pid, str(int(started) + 1))  # the pid, reused by a later process
        child.kill()
        deadline = time.monotonic() + 120
        while runlock.start_time(child.pid) is not None and time.monotonic() < deadline:
            time.sleep(0.01)  # a killed child not reaped yet is a zombie: not alive either
        assert not runlock.pid_alive(child.pid, started)
    finally:
        child.kill()
        child.wait()
    assert not runlock.pid_alive(child.pid)
    assert runlock.pid_alive(os.getpid())
    assert not runlock.pid_alive(0) and not runlock.pid_alive(-1)  # os.kill(0, 0) would say "alive"


def test_every_extra_a_message_or_a_doc_names_exists_in_pyproject() -> None:
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    named: dict[str, set[str]] = {}
    for path in [*SRC.rglob("*.py"), ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for extra in re.findall(r"batchsweep\[([\w,-]+)\]", path.read_text(encoding="utf-8")):
            for one in extra.split(","):
                named.setdefault(one, set()).add(str(path.relative_to(ROOT)))
    assert {"dask", "search"} <= set(named)
    missing = {e: sorted(where) for e, where in named.items() if e not in extras}
    assert not missing, f"extras named but not in pyproject's optional-dependencies: {missing}"


# Each of these is written in one module: a second copy elsewhere is a test failure, not a review comment.
ONE_PLACE = {
    r"get_close_matches\(": "text.py",
    r"os\.kill\(\w+, 0\)": "store/runlock.py",
    r"divmod\([^)]*\b60\)": "text.py",
    r"\"succeeded\", \"pruned\"|\"failed\", \"timeout\"": None,  # state names are spelt as State members
    r"\(\"trial\", \"round\"": "model.py",
    r"version\(\"batchsweep\"\)": "store/provenance.py",
}


@pytest.mark.parametrize("pattern", ONE_PLACE)
def test_written_in_one_place(pattern: str) -> None:
    found = sorted({str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                    if re.search(pattern, p.read_text(encoding="utf-8"))})
    home = ONE_PLACE[pattern]
    assert found == ([home] if home else []), f"{pattern} written in {found}"
