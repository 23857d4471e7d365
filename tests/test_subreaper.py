"""The Python API makes the calling process a child subreaper only while a run's tasks run (a second line
behind each task's own reaper), and leaves the flag as it found it; a task's orphans go to its reaper, never
init."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parent / "scripts"

CALLER = textwrap.dedent("""
    import json, os, sys
    import batchsweep
    from batchsweep.task import reaper

    if sys.argv[3] == "preset":  # the caller made itself a subreaper on its own
        reaper._prctl(reaper.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    before = reaper.is_subreaper()
    run = batchsweep.run(sys.argv[1], store=sys.argv[2], progress=False)
    df = run.results()
    print(json.dumps({"before": before, "after": reaper.is_subreaper(), "adopters": sorted({int(a) for a in df["adopter"]}),
                      "by_reaper": sorted({bool(b) for b in df["adopted_by_reaper"]})}))
""")  # noqa: E501


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="child subreapers are a Linux prctl")
@pytest.mark.parametrize("preset", [False, True], ids=["unset", "set-by-the-caller"])
def test_the_subreaper_flag_is_held_during_a_run_and_restored_after(tmp_path: Path, preset: bool) -> None:
    spec = tmp_path / "sweep.yaml"
    spec.write_text(f"name: adopt\nscript: {SCRIPTS / 'adopted.py'}\nparams: {{grid: {{_a: [1, 2]}}}}\n")
    done = subprocess.run(
        [sys.executable, "-c", CALLER, str(spec), str(tmp_path / "store"), "preset" if preset else "-"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert 1 not in seen["adopters"] and seen["by_reaper"] == [True]  # each orphan went to its task's reaper
    assert seen["before"] is preset
    assert seen["after"] is preset  # batchsweep's flag is cleared; the caller's own is left alone
