"""No orphans: processes that leave a task's process group (`setsid`, a double fork, a scrubbed environment)
still die with the task.

On Linux each task runs below a reaper of its own: a small process (`spawn`: `_reap.py` run as a script; warm
tasks: a fork of the fork server, `forkserver.serve(supervise=True)`) that is a child subreaper
(`prctl(PR_SET_CHILD_SUBREAPER)`), so whatever the task leaves behind is re-parented to it, never to init,
whatever session or environment it made itself. When the task ends, the reaper kills and reaps everything
below it, then exits with the task's exit code. It is in no process group of the task's, so killing the task's
group leaves it to clean up. A per-task cgroup would do the same, but needs a writable, delegated cgroup2
tree, which neither a container (AWS Batch, Fargate) nor an ordinary user's session reliably has; a subreaper
needs nothing.

As a second line, every task process starts with a token in its environment (`BATCHSWEEP_TASK_TOKEN`), which
its descendants inherit unless they scrub it. The runner makes itself a child subreaper too, and when a task
ends kills its own unexpected children carrying that task's token with all their descendants; without a
subreaper (another OS, or prctl refused) the whole /proc is searched for the token instead. A runner killed
with -9 leaves its tasks running: `kill_run_tasks` stops them and everything below them (their reapers'
adoptees).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from batchsweep.task import _reap
from batchsweep.task._reap import PR_SET_CHILD_SUBREAPER, _children, _prctl, _tree
from batchsweep.task._reap import TOKEN_VAR as TOKEN_VAR
from batchsweep.task._reap import WORKDIR_VAR as WORKDIR_VAR
from batchsweep.task._reap import can_supervise as can_supervise

if TYPE_CHECKING:
    import subprocess

PR_GET_CHILD_SUBREAPER = 37

_subreaper = {"on": False}  # a property of the process, like the prctl flag it mirrors
_lock = threading.Lock()
# runs inside `subreaper()`, and whether the last one out clears the flag
_users = {"count": 0, "restore": False}


def is_subreaper() -> bool:
    """Whether this process adopts its orphaned descendants now (the kernel's flag, not our record of it)."""
    import ctypes

    flag = ctypes.c_int(0)
    return _prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) == 0 and flag.value != 0


def become_subreaper() -> bool:
    """Make this process adopt its orphaned descendants for good (a process that is only a runner: the AWS
    worker). Idempotent; False where the OS has no such thing."""
    if not _subreaper["on"]:
        _subreaper["on"] = _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    return _subreaper["on"]


@contextmanager
def subreaper() -> Iterator[bool]:
    """This process is a child subreaper while the block runs (runs inside someone else's process: the Python
    API), and after the last such block ends it is one again only if it was before: a flag batchsweep set is
    cleared, one the caller set is left alone. Yields whether it is one."""
    with _lock:
        if _users["count"] == 0 and not _subreaper["on"]:
            was = is_subreaper()
            _subreaper["on"] = was or _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
            _users["restore"] = _subreaper["on"] and not was
        _users["count"] += 1
    try:
        yield _subreaper["on"]
    finally:
        with _lock:
            _users["count"] -= 1
            if _users["count"] == 0 and _users["restore"]:
                _users["restore"] = False
                if _prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) == 0:
                    _subreaper["on"] = False


class Supervised:
    """A task started below its reaper (`spawn`): `pid` is the task's own (its session and process group: what
    a kill signals), `wait` and `returncode` the reaper's, which ends once the task and everything it left
    behind have ended, with the task's exit code (a negative one: killed by that signal)."""

    def __init__(self, reaper: subprocess.Popen[bytes], pid: int) -> None:
        self.reaper = reaper
        self.pid = pid
        self.args = reaper.args
        # (CPU s, peak RSS MiB) of the reaper and all it waited for, the task's tree, as `wait` reaped it: the
        # account the task launcher gives a local task, so a task too short to be sampled is still measured
        self.usage: tuple[float, float] | None = None

    @property
    def returncode(self) -> int | None:
        return self.reaper.returncode

    def wait(self, timeout: float | None = None) -> int:
        """As `Popen.wait`, but reaped with wait4, which also tells the resources the reaper's tree used."""
        if self.reaper.returncode is not None:
            return self.reaper.returncode
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.0005
        while True:
            try:
                pid, status, used = os.wait4(self.reaper.pid, 0 if deadline is None else os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere (a `poll`): Popen has its code
                return self.reaper.wait(timeout=timeout)
            if pid == self.reaper.pid:
                self.usage = (round(used.ru_utime + used.ru_stime, 3), round(used.ru_maxrss / 1024, 1))
                self.reaper.returncode = os.waitstatus_to_exitcode(status)
                return self.reaper.returncode
            assert deadline is not None
            left = deadline - time.monotonic()
            if left <= 0:
                import subprocess

                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            delay = min(delay * 2, left, 0.05)  # Popen's own polling of a wait with a timeout
            time.sleep(delay)

    def poll(self) -> int | None:
        return self.reaper.poll()


def spawn(argv: list[str], **popen: Any) -> Supervised:
    """Start `argv` below a reaper of its own (`_reap.py`, run by this interpreter), with `subprocess.Popen`'s
    keyword arguments (cwd, env, stdin, stdout, stderr: the task's; the reaper gets a session of its own, the
    task another). Returns once the task's program was executed; OSError when it could not be, as Popen's."""
    return Supervised(*_start([], argv, popen))


def start_checked(argv: list[str], **popen: Any) -> subprocess.Popen[bytes]:
    """Start `argv` as Popen would (in a session of its own) where no reaper can run, through `_reap.py
    --checked`, which starts it only in the working directory the runner made (`_reap.check_workdir`).
    OSError when it could not be started, as Popen's."""
    return _start([_reap.CHECKED], argv, popen)[0]


def _start(mode: list[str], argv: list[str], popen: dict[str, Any]) -> tuple[subprocess.Popen[bytes], int]:
    """`_reap.py` in `mode` on argv: its process and the task's pid, once the task's program was executed."""
    import subprocess

    read, write = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", os.path.abspath(_reap.__file__), *mode, str(write), *argv],
            start_new_session=True,
            pass_fds=(write,),
            **popen,
        )
    finally:
        os.close(write)
    with os.fdopen(read, "rb") as report:
        words = report.read().decode(errors="replace").split(maxsplit=4)
    if len(words) == 2 and words[0] == "pid" and words[1].isdigit():
        return proc, int(words[1])
    proc.wait()
    if len(words) >= 4 and words[2] == "error" and words[3].isdigit():
        raise OSError(int(words[3]), words[4] if len(words) > 4 else "", argv[0])
    raise OSError(f"the task's reaper could not start it (exit code {proc.returncode})")


def _has_token(pid: int, marker: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return marker in f.read()
    except OSError:
        return False


def _candidates(marker: bytes, *, spare: set[int]) -> list[int]:
    me = os.getpid()
    if _subreaper["on"] and os.path.exists(f"/proc/{me}/task/{me}/children"):
        # Orphans of an ended task are our direct children now; a live escapee's tree hangs below them.
        roots = [c for c in _children(me) if c not in spare and _has_token(c, marker)]
        return [p for root in roots for p in _tree(root)]
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != me and int(name) not in spare and _has_token(int(name), marker):
            pids.append(int(name))
    return pids


def kill_orphans(token: str, *, spare: Collection[int] = ()) -> int:
    """Kill every process still carrying this task's token (but those in `spare`); returns how many."""
    marker = f"{TOKEN_VAR}={token}\0".encode()
    return _kill_found(lambda: _candidates(marker, spare=set(spare)))


def kill_run_tasks(run_id: str) -> int:
    """Kill every process on this machine still carrying a task token of this run, with their descendants: the
    tasks a runner killed with -9 left behind (their parent gone, they run on), their reapers and what those
    adopted (a daemon that scrubbed its environment). Returns how many were killed."""
    if not os.path.isdir("/proc"):
        return 0  # another OS: nothing to search
    marker = f"{TOKEN_VAR}={run_id}/".encode()  # tokens are "<run id>/<task>/<random>"
    me = os.getpid()

    def found() -> list[int]:
        carriers = [
            int(n) for n in os.listdir("/proc") if n.isdigit() and int(n) != me and _has_token(int(n), marker)
        ]
        return list(dict.fromkeys(p for c in carriers for p in _tree(c) if p != me))

    stopped: list[int] = []
    for _ in range(10):  # stopped first, so nothing forks (or is re-parented out of reach) while it is killed
        fresh = [p for p in found() if p not in stopped]
        if not fresh:
            break
        for pid in fresh:
            try:
                os.kill(pid, signal.SIGSTOP)
            except (ProcessLookupError, PermissionError):
                continue
        stopped.extend(fresh)
    return _kill_found(lambda: [p for p in dict.fromkeys(stopped + found()) if _exists(p)])


def _exists(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def _kill_found(find: Callable[[], list[int]]) -> int:
    """SIGKILL what `find` names, and reap our own among them, until it names nothing (a dying tree may fork
    once more while it is walked: three rounds at most). Returns how many were killed."""
    killed: set[int] = set()
    for _ in range(3):
        pids = find()
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except (ProcessLookupError, PermissionError):
                continue
        for pid in pids:
            try:
                # our child (directly or through the subreaper): reap it; anyone else's: ECHILD
                os.waitpid(pid, 0)
            except ChildProcessError:
                continue
    return len(killed)

