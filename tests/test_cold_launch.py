"""Cold tasks of a local run start through one small launcher process (`launch.ExecServer`, `_reap.py
--serve`): each task's reaper is a fork of it, not an interpreter started per task, and a task starts as
`subprocess` would start it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import write_spec

import batchsweep
from batchsweep.task import reaper

PROBE = """\
import argparse, json, os, signal
p = argparse.ArgumentParser(); p.add_argument("--a", type=int); p.parse_args()
reaper = os.getppid()
with open(f"/proc/{reaper}/stat") as f:
    launcher = int(f.read().rsplit(")", 1)[1].split()[1])
with open(f"/proc/{reaper}/cmdline", "rb") as f:
    cmdline = f.read().split(b"\\0")
with open("/proc/self/status") as f:
    ignored = int(next(line for line in f if line.startswith("SigIgn:")).split()[1], 16)
print(json.dumps({"reaper": reaper, "launcher": launcher, "reaper_cmdline": [c.decode() for c in cmdline if c],
                  "sid": os.getsid(0) == os.getpid(), "cwd": os.getcwd(), "stdin": os.readlink("/proc/self/fd/0"),
                  "sigterm_ignored": bool(ignored & (1 << (signal.SIGTERM - 1)))}))
"""  # noqa: E501


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reapers are a Linux thing")
def test_cold_tasks_start_below_forks_of_one_launcher_not_an_interpreter_each(tmp_path: Path) -> None:
    (tmp_path / "probe.py").write_text(PROBE)
    spec = write_spec(tmp_path, f"""
        name: cold
        script: {tmp_path / 'probe.py'}
        params: {{grid: {{a: [1, 2, 3, 4]}}}}
        warm: false
    """)
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    seen = [json.loads(run.logs(i)) for i in range(4)]
    assert run.results()["warm"].eq(False).all()
    assert len({s["launcher"] for s in seen}) == 1, "one launcher for the run's tasks"
    assert len({s["reaper"] for s in seen}) == 4, "a reaper of its own per task"
    for s in seen:
        assert s["reaper_cmdline"][-1] == "--serve", (
            f"the reaper is a fork of the launcher: {s['reaper_cmdline']}"
        )
        # as `subprocess` starts it
        assert s["sid"] and s["stdin"] == "/dev/null" and not s["sigterm_ignored"]
        assert Path(s["cwd"]).name == "work"


def test_the_launcher_tells_a_program_it_cannot_start_and_starts_one_in_its_directory_and_environment(
        tmp_path: Path) -> None:
    from batchsweep.task.launch import ExecServer

    server = ExecServer.start_exec()
    assert isinstance(server, ExecServer)
    try:
        with pytest.raises(OSError, match=r"could not start /nonexistent/python: No such file or directory"):
            server.launch(["/nonexistent/python", "x.py"], cwd=tmp_path, env={}, stdout=tmp_path / "o",
                          stderr=tmp_path / "e")
        ok = server.launch(["/bin/sh", "-c", "echo $X; pwd"], cwd=tmp_path, env={"X": "hello"},
                           stdout=tmp_path / "o", stderr=tmp_path / "e")
        assert ok.wait(timeout=60) == 0 and ok.warm is False
        assert (tmp_path / "o").read_text() == f"hello\n{tmp_path}\n"
    finally:
        server.close()


@pytest.mark.parametrize("sig", [9, 15], ids=["SIGKILL", "SIGTERM"])
def test_a_task_killed_by_a_signal_below_its_own_reaper_ends_by_that_signal_and_is_measured(
    tmp_path: Path, sig: int
) -> None:
    """`reaper.spawn` (a cold task in a container): the reaper exits as its task did, SIGKILL included (the
    out-of-memory killer's), with nothing of its own on the task's stderr, and its account is kept."""
    proc = reaper.spawn(["sh", "-c", f"kill -{sig} $$"], cwd=tmp_path, stdin=subprocess.DEVNULL,
                        stderr=subprocess.PIPE)
    assert proc.wait(timeout=60) == -sig
    assert proc.reaper.stderr is not None and proc.reaper.stderr.read() == b""
    assert proc.usage is not None and proc.usage[1] > 0
