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
from collections.abc import Collection

TOKEN_VAR = "BATCHSWEEP_TASK_TOKEN"
PR_SET_CHILD_SUBREAPER = 36

_subreaper = {"on": False}  # a property of the process, like the prctl flag it mirrors


def become_subreaper() -> bool:
    """Make this process adopt its orphaned descendants. Idempotent; False where the OS has no such thing."""
    if _subreaper["on"]:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        _subreaper["on"] = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
    return _subreaper["on"]


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
    killed = 0
    for _ in range(3):  # a dying tree may fork once more while we walk it
        pids = _candidates(marker, spare=set(spare))
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
                os.waitpid(pid, 0)  # our child through the subreaper: reap it; anyone else's: ECHILD
            except ChildProcessError:
                continue
    return killed
