"""How the runner starts a task's process: cold, below a reaper of its own (through the task launcher, one
small server per run that forks a reaper per task; else a `python _reap.py` per task), and the client of a
server that starts tasks on request (`ServerClient`: the task launcher here, the warm fork server in
`task.warm`).

Both servers read requests and write replies as `_reap.frame`s on their stdin and stdout:

    runner → server   {"id": 7, "argv": [...], "cwd": ..., "env": {...}, "stdout": ..., "stderr": ...}
    server → runner   {"ready": true, ...}                     once, when it is ready
                      {"id": 7, "pid": 4242}                   the task runs
                      {"id": 7, "exit": 0, "usage": [...]}     ...and ended (a negative code: that signal)
                      {"id": 7, "error": "..."}                it could not be started
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from batchsweep.task import _reap, reaper
from batchsweep.task.forkclient import ForkClient, ForkedProcess

READY_TIMEOUT_S = 300.0  # importing a big ML stack on a cold disk can take a while
START_TIMEOUT_S = 60.0

LOG_FLAGS = _reap.LOG_FLAGS  # a symlink a task left there is not truncated


def open_log(path: Path) -> IO[bytes]:
    """A task's log file, new or emptied: never a file a symlink there names."""
    return os.fdopen(os.open(path, LOG_FLAGS, 0o666), "wb")


def cold_because(reason: str, launch: Any = None) -> Any:
    """A launcher that starts tasks cold (`launch`, else `launch_cold`) and says why in each one's status
    (`TaskStatus.cold_why`, through the process's `cold_why`)."""
    def launch_noted(argv: list[str], *, cwd: Path, env: dict[str, str], stdout: Path, stderr: Path) -> Any:
        proc: Any = (launch or launch_cold)(argv, cwd=cwd, env=env, stdout=stdout, stderr=stderr)
        proc.cold_why = reason
        return proc
    return launch_noted


def launch_cold(argv: list[str], *, cwd: Path, env: dict[str, str], stdout: Path,
                stderr: Path) -> subprocess.Popen[bytes] | reaper.Supervised:
    """A task started the ordinary way: its own process (and session), output to its log files, only in the
    working directory the runner made; on Linux below a reaper of its own (`reaper.spawn`), so nothing it
    starts outlives it."""
    with open_log(stdout) as out, open_log(stderr) as err:
        if reaper.can_supervise():
            return reaper.spawn(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        return reaper.start_checked(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)


class ServerClient(ForkClient):
    """The runner's handle on one server that starts tasks (`ExecServer`, `warm.WarmServer`): it frames the
    requests, reads the replies in a thread, and ends the server at `close`."""

    lost_before_start = "the server ended before the task started"
    what = "the server"  # in the errors a launch raises
    warm_tasks = False  # whether its tasks run warm (forked from the script's imports)

    def __init__(self, proc: subprocess.Popen[bytes], scratch: str) -> None:
        super().__init__("batchsweep-server-reader")
        self._proc = proc
        self._scratch = scratch
        self._reader.start()

    def _request(self, request: dict[str, Any]) -> dict[str, Any]:
        """A request as this server reads it."""
        return request

    def launch(
        self, argv: list[str], *, cwd: Path, env: dict[str, str], stdout: Path, stderr: Path
    ) -> ForkedProcess:
        """Start a task; returns once it runs. Raises OSError when it could not be started."""
        with self._lock:
            if self.gone:
                raise OSError(f"{self.what} has ended")
            self._next_id += 1
            task = ForkedProcess(self._next_id, argv)
            task.warm = self.warm_tasks
            self._children[task.id] = task
            frame = _reap.frame(
                self._request(
                    {
                        "id": task.id,
                        "argv": list(argv),
                        "cwd": str(cwd),
                        "env": dict(env),
                        "stdout": str(stdout),
                        "stderr": str(stderr),
                    }
                )
            )
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.write(frame)
                self._proc.stdin.flush()
            except (BrokenPipeError, ValueError) as e:
                self._children.pop(task.id, None)
                raise OSError(f"{self.what} has ended: {e}") from None
        if not task._started.wait(START_TIMEOUT_S):
            raise OSError(f"{self.what} did not start the task in time")
        if task.error is not None:
            raise OSError(task.error)
        return task

    @property
    def busy(self) -> bool:
        """Whether a task of this server is still running."""
        with self._lock:
            return bool(self._children)

    @property
    def alive(self) -> bool:
        return not self.gone

    def _replies(self) -> Iterator[dict[str, Any]]:
        out = self._proc.stdout
        assert out is not None
        frames = _reap.Frames()
        while chunk := os.read(out.fileno(), 1 << 16):  # (never read through its buffer)
            yield from frames.feed(chunk)

    def _kill(self, child: ForkedProcess) -> None:
        try:  # the task's process group: it runs in a session of its own
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self) -> None:
        """End the server (EOF on its stdin) and wait for it."""
        stdin: IO[bytes] | None = self._proc.stdin
        with self._lock:
            try:
                if stdin is not None:
                    stdin.close()
            except OSError:
                pass
        self._wait_for(self._proc)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        shutil.rmtree(self._scratch, ignore_errors=True)


class ExecServer(ServerClient):
    """The runner's cold tasks started by one small server (`_reap.py --serve`, run by this interpreter with
    `-I -S`: no batchsweep, no site) instead of a `python _reap.py` per task: each request forks a reaper of
    that small process, which posix_spawns the task exactly as a cold task starts (`launch_cold`: its own
    session, its log files, environment and argv) and outlives it to clean up. What a task costs beyond its
    own process: a fork of an ~9 MB interpreter, not an interpreter's start. Its tasks are cold."""

    lost_before_start = "the task launcher ended before the task started"
    what = "the task launcher"

    @classmethod
    def start_exec(cls) -> ExecServer | str:
        """A ready exec server, or why there is none."""
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", os.path.abspath(_reap.__file__), _reap.SERVE],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as e:
            return f"could not start the task launcher: {e}"
        server = cls(proc, tempfile.mkdtemp(prefix="batchsweep-exec-"))
        if not server._ready.wait(READY_TIMEOUT_S) or server.gone:
            server.close()
            return "the task launcher ended as it started"
        return server

    def cold_launcher(self, reason: str) -> Any:
        """`worker.Launcher` for cold tasks: through this server while it lives, `launch_cold` after."""
        def launch(argv: list[str], *, cwd: Path, env: dict[str, str], stdout: Path, stderr: Path) -> Any:
            if self.gone:
                return launch_cold(argv, cwd=cwd, env=env, stdout=stdout, stderr=stderr)
            return self.launch(argv, cwd=cwd, env=env, stdout=stdout, stderr=stderr)
        return cold_because(reason, launch)
