"""No orphans: processes that leave a task's process group (`setsid`, a double fork) still die with the task.

Every task process starts with a token in its environment (`BATCHSWEEP_TASK_TOKEN`), which its descendants
inherit. The runner makes itself a child subreaper (Linux `prctl(PR_SET_CHILD_SUBREAPER)`), so a descendant
whose parent died is re-parented to the runner instead of init: when a task ends, the runner's own unexpected
children carrying that task's token are killed with all their descendants, and reaped. Without a subreaper
(another OS, or prctl refused) the whole /proc is searched for the token instead.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any

TOKEN_VAR = "BATCHSWEEP_TASK_TOKEN"
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37

_subreaper = {"on": False}  # a property of the process, like the prctl flag it mirrors
_lock = threading.Lock()
_users = {"count": 0, "restore": False}  # runs inside `subreaper()`, and whether the last one out clears the flag


def _prctl(option: int, *args: Any) -> int | None:
    """libc's prctl, or None where there is none (another OS) or it refused."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, *args))
    except (OSError, AttributeError):
        return None


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


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return found


def _has_token(pid: int, marker: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return marker in f.read()
    except OSError:
        return False


def _tree(root: int) -> list[int]:
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(_children(pid))
    return out


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
    tasks a runner killed with -9 left behind (their parent gone, they run on). Returns how many were killed."""
    if not os.path.isdir("/proc"):
        return 0  # another OS: nothing to search
    marker = f"{TOKEN_VAR}={run_id}/".encode()  # tokens are "<run id>/<task>/<random>"
    me = os.getpid()
    return _kill_found(lambda: [int(n) for n in os.listdir("/proc")
                                if n.isdigit() and int(n) != me and _has_token(int(n), marker)])


def _kill_found(find: Callable[[], list[int]]) -> int:
    """SIGKILL what `find` names, and reap our own among them, until it names nothing (a dying tree may fork
    once more while it is walked: three rounds at most). Returns how many were killed."""
    killed = 0
    for _ in range(3):
        pids = find()
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                continue
        for pid in pids:
            try:
                os.waitpid(pid, 0)  # our child (directly or through the subreaper): reap it; anyone else's: ECHILD
            except ChildProcessError:
                continue
    return killed
