"""The servers that start a run's tasks (the warm fork server, the cold tasks' launcher) end at EOF on their
stdin, never by a signal meant for the tasks: a job scheduler's cancel (scancel) signals every process of the
job at once, and a server that died of it took its running tasks' ends with it (each was reported killed,
and its worker recorded a failure rather than its own cancel)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from batchsweep.task.forkclient import ForkedProcess
from batchsweep.task.launch import ExecServer, ServerClient
from batchsweep.task.warm import WarmServer

TASK = """\
import os, sys, time
with open("/proc/self/status") as f:
    ignored = int(next(line for line in f if line.startswith("SigIgn:")).split()[1], 16)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(ignored))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
if sys.argv[2] == "hang":
    time.sleep(120)
"""


def parent_of(pid: int) -> int:
    return int(next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith("PPid:")))


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} was not written"
        time.sleep(0.05)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the tasks' reapers are a Linux thing")
@pytest.mark.parametrize("kind", ["warm", "cold"])
def test_a_task_signalled_with_its_server_and_reaper_ends_by_the_signal_and_the_server_serves_on(
    tmp_path: Path, kind: str
) -> None:
    script = tmp_path / "task.py"
    script.write_text(TASK)
    started = WarmServer.start(script, env=dict(os.environ)) if kind == "warm" else ExecServer.start_exec()
    assert not isinstance(started, str), started
    server: ServerClient = started

    def launch(mark: str, how: str) -> ForkedProcess:
        return server.launch([sys.executable, str(script), str(tmp_path / mark), how], cwd=tmp_path,
                             env=dict(os.environ), stdout=tmp_path / f"{mark}.out",
                             stderr=tmp_path / f"{mark}.err")

    def ignores_sigterm(mark: str) -> bool:
        return bool(int((tmp_path / mark).read_text()) & (1 << (signal.SIGTERM - 1)))

    try:
        task = launch("first", "hang")
        wait_for(tmp_path / "first")
        assert not ignores_sigterm("first"), "the task starts with SIGTERM ignored"
        # scancel's SIGTERM, to every process of the job: the server, the task's reaper, the task
        for pid in (server._proc.pid, parent_of(task.pid), task.pid):
            os.kill(pid, signal.SIGTERM)
        assert task.wait(timeout=60) == -signal.SIGTERM  # not -SIGKILL: its server, lost, reported it killed
        assert server.alive
        after = launch("second", "end")
        assert after.wait(timeout=60) == 0 and not ignores_sigterm("second")
    finally:
        server.close()
