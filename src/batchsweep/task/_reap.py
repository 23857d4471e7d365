"""What a task's reaper process runs (see `reaper`): a child subreaper that forks the task, waits for it, then
kills and reaps everything below itself and exits as the task did.

Run as a script (`python -I -S _reap.py FD ARGV...`) for every cold task, so it imports next to nothing: no
`signal` (its enums), no `typing`, no batchsweep.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from collections.abc import Callable
    from types import FrameType
    from typing import NoReturn

    Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None
else:
    import _signal as signal  # `signal` without the enums it builds on import: a few ms of every cold task

PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, *args: object) -> int | None:
    """libc's prctl, or None where there is none (another OS) or it refused."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, *args))
    except (OSError, AttributeError):
        return None


# Signals a reaper ignores (the task is signalled on its own: the reaper outlives it to clean up), and those a
# task starts with at their defaults again (Python ignores SIGPIPE and SIGXFSZ; `subprocess` restores them too).
IGNORED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
RESTORED = (*IGNORED, signal.SIGPIPE, *(getattr(signal, n) for n in ("SIGXFSZ", "SIGXFZ") if hasattr(signal, n)))


def _initial_environ() -> dict[str, str]:
    """This process's environment as it was started with (the interpreter may have added to os.environ since:
    LC_CTYPE, coercing a C locale), to be passed on unchanged."""
    try:
        with open("/proc/self/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return dict(os.environ)
    return dict(item.split("=", 1) for item in os.fsdecode(raw).split("\0") if "=" in item)


def become_task_reaper() -> dict[int, Handler]:
    """Make this process the reaper of the task it is about to fork: a child subreaper deaf to the signals meant
    for the task. Returns the dispositions it replaced, for the task to restore (`as_task`)."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    before: dict[int, Handler] = {}
    for sig in RESTORED:
        before[sig] = signal.getsignal(sig)
    for sig in IGNORED:
        signal.signal(sig, signal.SIG_IGN)
    return before


def as_task(before: dict[int, Handler]) -> None:
    """In the task just forked by a reaper: the signals as they were before the reaper."""
    for sig, handler in before.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def reap_task(task: int) -> NoReturn:
    """In a reaper: wait for `task` (reaping the orphans it hands over meanwhile), then kill and reap every
    process below this one, and exit as the task did."""
    status = None
    while status is None:
        try:
            pid, st = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(1)  # the task was never ours: nothing to mirror
        if pid == task:
            status = st
    kill_below(os.getpid())
    code = os.waitstatus_to_exitcode(status)
    if code < 0:  # killed by a signal: end by the same one, without leaving a core of the reaper
        try:
            import resource

            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        except (ImportError, ValueError, OSError):
            pass
        signal.signal(-code, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [-code])
        os.kill(os.getpid(), -code)
        os._exit(128 - code)
    os._exit(code & 0xFF)


def kill_below(root: int) -> None:
    """SIGKILL every descendant of `root` (this process, a child subreaper) and reap them, until none is left:
    what a dying process leaves is re-parented to the subreaper, so each round sees whatever the last forked."""
    while True:
        for pid in _tree(root)[1:]:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def main(args: list[str]) -> NoReturn:
    """`python -I -S _reap.py FD ARGV...` (`reaper.spawn`): run ARGV as this reaper's task; report `pid N` on FD, and
    `pid N error ERRNO WHY` when ARGV could not be executed."""
    report, argv = int(args[0]), args[1:]
    env = _initial_environ()
    become_task_reaper()
    os.set_inheritable(report, False)  # the task's program never holds it: EOF tells the runner it was executed
    task = os.fork()
    if task == 0:  # the task writes the whole report itself, in order
        os.setsid()
        as_task(dict.fromkeys(RESTORED, signal.SIG_DFL))  # as `subprocess` starts a program
        os.write(report, f"pid {os.getpid()}".encode())
        try:
            os.execvpe(argv[0], argv, env)
        except OSError as e:
            os.write(report, f" error {e.errno or 0} {e.strerror or e}".encode())
        os._exit(127)
    os.close(report)
    reap_task(task)


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


def _tree(root: int) -> list[int]:
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(_children(pid))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
