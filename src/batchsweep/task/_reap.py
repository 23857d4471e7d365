"""What a task's reaper process runs (see `reaper`): a child subreaper that forks the task, waits for it, then
kills and reaps everything below itself and exits as the task did.

Run as a script (`python -I -S _reap.py FD ARGV...`) for every cold task, so it imports next to nothing: no
`signal` (its enums), no `typing`, no batchsweep.
"""

from __future__ import annotations

import errno
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from collections.abc import Callable
    from types import FrameType
    from typing import Any, NoReturn

    Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None
else:
    import _signal as signal  # `signal` without the enums it builds on import: a few ms of every cold task

PR_SET_CHILD_SUBREAPER = 36
WORKDIR_VAR = "BATCHSWEEP_WORKDIR_ID"  # "dev:ino" of the working directory the runner made for the task
TOKEN_VAR = "BATCHSWEEP_TASK_TOKEN"  # what every process of a task carries in its environment (see `reaper`)


# libc, loaded once per process: a fork server loads it before it forks (`load_libc`)
_LIBC: list[object] = []


def load_libc() -> object | None:
    """libc through ctypes, loaded on first use and kept: a reaper forked from a process that loaded it does
    not import ctypes again (~4 ms of CPU per task)."""
    if not _LIBC:
        try:
            import ctypes

            _LIBC.append(ctypes.CDLL(None, use_errno=True))
        except OSError:
            _LIBC.append(None)
    return _LIBC[0]


def _prctl(option: int, *args: object) -> int | None:
    """libc's prctl, or None where there is none (another OS) or it refused."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = load_libc()
        return None if libc is None else int(libc.prctl(option, *args))  # type: ignore[attr-defined]
    except (OSError, AttributeError):
        return None


# Signals a reaper ignores (the task is signalled on its own: the reaper outlives it to clean up), and those a
# task starts with at their defaults again (Python ignores SIGPIPE and SIGXFSZ; `subprocess` restores them
# too).
IGNORED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
RESTORED = (
    *IGNORED,
    signal.SIGPIPE,
    *(getattr(signal, n) for n in ("SIGXFSZ", "SIGXFZ") if hasattr(signal, n)),
)


def _initial_environ() -> dict[str, str]:
    """This process's environment as it was started with (the interpreter may have added to os.environ since:
    LC_CTYPE, coercing a C locale), to be passed on unchanged."""
    try:
        with open("/proc/self/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return dict(os.environ)
    return dict(item.split("=", 1) for item in os.fsdecode(raw).split("\0") if "=" in item)


# What RESTORED were in this process (or the server it was forked from) before it first went deaf (`deafen`)
_HEARD: dict[int, Handler] = {}


def deafen() -> dict[int, Handler]:
    """Ignore the signals meant for a task (IGNORED), as its reaper and the server that starts it do: they
    outlive the task to report its end, and a job scheduler's cancel (scancel) signals every process of the
    job at once. Returns the dispositions RESTORED had before the first call, for a task to restore
    (`as_task`)."""
    if not _HEARD:
        _HEARD.update((sig, signal.getsignal(sig)) for sig in RESTORED)
    for sig in IGNORED:
        signal.signal(sig, signal.SIG_IGN)
    return dict(_HEARD)


def become_task_reaper() -> dict[int, Handler]:
    """Make this process the reaper of the task it is about to fork: a child subreaper deaf to the signals
    meant for the task. Returns the dispositions to restore in the task (`as_task`)."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    return deafen()


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
        if -code not in (signal.SIGKILL, signal.SIGSTOP):  # those two cannot be set: always at their default
            signal.signal(-code, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [-code])
        os.kill(os.getpid(), -code)
        os._exit(128 - code)
    os._exit(code & 0xFF)


def kill_below(root: int) -> None:
    """SIGKILL every descendant of `root` (this process, a child subreaper) and reap them, until none is left:
    what a dying process leaves is re-parented to the subreaper, so each round sees whatever the last
    forked."""
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
    """`python -I -S _reap.py FD ARGV...` (`reaper.spawn`): run ARGV as this reaper's task; report `pid N` on
    FD, and `pid N error ERRNO WHY` when ARGV could not be executed."""
    report, argv = int(args[0]), args[1:]
    env = _initial_environ()
    become_task_reaper()
    # the task's program never holds it: EOF tells the runner it was executed
    os.set_inheritable(report, False)
    task = os.fork()
    if task == 0:  # the task writes the whole report itself, in order
        become_task(argv, env, report, session=True)
    os.close(report)
    reap_task(task)


def checked(args: list[str]) -> NoReturn:
    """`python -I -S _reap.py --checked FD ARGV...` (`reaper.start_checked`, where no reaper can run): this
    process becomes ARGV once it has checked its working directory; the same report on FD as `main`."""
    report, argv = int(args[0]), args[1:]
    os.set_inheritable(report, False)
    become_task(argv, _initial_environ(), report, session=False)


def become_task(argv: list[str], env: dict[str, str], report: int, *, session: bool) -> NoReturn:
    """Execute ARGV in this process, in a session of its own when `session`, once `check_workdir` passed;
    write `pid N` to FD, then ` error ERRNO WHY` when it could not be executed (`pid N error ...` when the
    check refused it)."""
    try:
        check_workdir(env)
    except OSError as e:
        os.write(report, f"pid {os.getpid()} error {e.errno} {e.strerror}".encode())
        os._exit(127)
    if session:
        os.setsid()
    as_task(dict.fromkeys(RESTORED, signal.SIG_DFL))  # as `subprocess` starts a program
    os.write(report, f"pid {os.getpid()}".encode())
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        os.write(report, f" error {e.errno or 0} {e.strerror or e}".encode())
    os._exit(127)


SERVE = "--serve"  # `python -I -S _reap.py --serve`: the cold tasks' launcher (`launch.ExecServer`)
CHECKED = "--checked"  # `python -I -S _reap.py --checked FD ARGV...`: a task without a reaper (`checked`)
# a symlink a task left there is not followed
LOG_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW


def frame(msg: dict[str, Any]) -> bytes:
    """A message as the runner's servers and their clients frame it both ways: a 4-byte length, then the
    `marshal`led dict (no json to import; a builtin module)."""
    import marshal

    body = marshal.dumps(msg)
    return len(body).to_bytes(4, "little") + body


def send(fd: int, msg: dict[str, Any]) -> None:
    data = frame(msg)
    while data:
        data = data[os.write(fd, data):]


class Frames:
    """The messages in a stream of bytes read as they come (`frame`)."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        import marshal

        self._pending += data
        found = []
        while len(self._pending) >= 4 and len(self._pending) >= 4 + (
            size := int.from_bytes(self._pending[:4], "little")
        ):
            found.append(marshal.loads(self._pending[4:4 + size]))
            self._pending = self._pending[4 + size:]
        return found


def check_workdir(env: dict[str, str]) -> None:
    """In a task's launcher, once in its working directory: OSError when that is no longer the directory
    the runner made (another task of the run swapped it for a symlink meanwhile), so the task never starts
    there."""
    expected = env.get(WORKDIR_VAR)
    if expected:
        here = os.stat(".")
        if f"{here.st_dev}:{here.st_ino}" != expected:
            raise OSError(errno.ESTALE, "its working directory was replaced before it started (another "
                          "task of the run put something in its place); it was not started there")


def spawn_task(request: dict[str, object]) -> int:
    """In a reaper: start the task's command as `subprocess.Popen` would (its own session, the task's working
    directory, stdin from /dev/null, its log files, the signals a reaper or Python ignores back at their
    defaults) with posix_spawn, and return its pid. OSError when it could not be executed."""
    argv = [str(a) for a in request["argv"]]  # type: ignore[attr-defined]
    env = {str(k): str(v) for k, v in request["env"].items()}  # type: ignore[attr-defined]
    program = argv[0]
    if "/" not in program:  # looked up on the task's PATH, as Popen does with `env`
        found = [p for d in os.get_exec_path(env) if os.access(p := os.path.join(d, program), os.X_OK)]
        program = found[0] if found else program
    os.chdir(str(request["cwd"]))  # the reaper's own directory: the spawned task starts in it
    check_workdir(env)
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, str(request["stdout"]), LOG_FLAGS, 0o666),
               (os.POSIX_SPAWN_OPEN, 2, str(request["stderr"]), LOG_FLAGS, 0o666)]
    return os.posix_spawn(program, argv, env, file_actions=actions, setsid=True, setsigdef=RESTORED)


def _reaper_of(request: dict[str, object], told: int) -> NoReturn:
    """In a fork of the server: become the reaper of the task it spawns, tell the task's pid (or why it could
    not be started) on `told`, then reap it and exit as it did."""
    become_task_reaper()
    try:
        task = spawn_task(request)
    except BaseException as e:  # noqa: BLE001 - told to the server, which tells the runner
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
        argv = request.get("argv") or ["the task"]
        os.write(told, f"could not start {argv[0]}: {why}".encode(errors="replace"))  # type: ignore[index]
        os._exit(127)
    os.write(told, str(task).encode())
    os.close(told)
    reap_task(task)


def serve() -> int:
    """`python -I -S _reap.py --serve`: read requests (a 4-byte length, then a marshalled dict: id, argv, cwd,
    env, stdout, stderr) on stdin until EOF; for each, fork a reaper that spawns the task, and reply on stdout
    with {"id", "pid"} once it runs (or {"id", "error"}), then {"id", "exit"} when it ended. Single-threaded,
    nothing imported beyond the interpreter's core: a fork of it costs a fraction of a millisecond."""
    import select

    ctl_in, ctl_out = os.dup(0), os.dup(1)
    for fd, flags in ((0, os.O_RDONLY), (1, os.O_WRONLY)):  # nothing else may write into the replies
        null = os.open(os.devnull, flags)
        os.dup2(null, fd)
        os.close(null)
    load_libc()  # each reaper's prctl: loaded once here, not in every fork
    deafen()  # it ends at EOF on stdin; its tasks start with RESTORED at their defaults (`spawn_task`)
    wake_r, wake_w = os.pipe()  # SIGCHLD wakes the loop through it
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    send(ctl_out, {"ready": True, "threads": 1})
    children: dict[int, object] = {}
    frames = Frames()
    while True:
        ready, _, _ = select.select([ctl_in, wake_r], [], [])
        if wake_r in ready:
            while True:
                try:
                    if not os.read(wake_r, 4096):
                        break
                except BlockingIOError:
                    break
        if ctl_in in ready:
            chunk = os.read(ctl_in, 1 << 16)
            if not chunk:
                return 0
            for request in frames.feed(chunk):
                told_r, told_w = os.pipe()
                try:
                    pid = os.fork()
                except OSError as e:
                    os.close(told_r)
                    os.close(told_w)
                    send(ctl_out, {"id": request["id"], "error": f"fork failed: {e}"})
                    continue
                if pid == 0:
                    for fd in (ctl_in, ctl_out, wake_r, wake_w, told_r):
                        os.close(fd)
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    _reaper_of(request, told_w)
                os.close(told_w)
                children[pid] = request["id"]
                told = b""
                while part := os.read(told_r, 4096):
                    told += part
                os.close(told_r)
                if told.isdigit():
                    send(ctl_out, {"id": request["id"], "pid": int(told)})
                else:
                    send(ctl_out, {"id": request["id"], "error": told.decode(errors="replace")
                                   or "the task's reaper could not start it"})
        tell_ended(children, lambda msg: send(ctl_out, msg), reaper=True)


def tell_ended(children: dict[int, Any], send: Callable[[dict[str, Any]], None], *, reaper: bool) -> None:
    """Reap the children of `children` (pid -> request id) that have ended, without waiting for the others,
    and `send` each one's request id, exit code and usage: CPU seconds and peak RSS (MiB, its largest process)
    of the child and what it waited for, its task (this server's and batchsweep.task.forkserver's replies);
    `reaper`: each child is its task's reaper, so one that exits by itself has killed what the task left."""
    while children:
        try:
            pid, status, used = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in children:
            send({"id": children.pop(pid), "exit": os.waitstatus_to_exitcode(status),
                  "usage": [round(used.ru_utime + used.ru_stime, 3), round(used.ru_maxrss / 1024, 1)],
                  **({"reaped": True} if reaper else {})})


def can_supervise() -> bool:
    """Whether tasks can run below a reaper of their own here (Linux, with /proc and this interpreter's
    path)."""
    return sys.platform.startswith("linux") and bool(sys.executable) and os.path.isdir("/proc/self/task")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            fd = os.open(f"/proc/{pid}/task/{tid}/children", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:  # read raw: a file object's buffering costs a stat and a seek of every reaper's every task
            data, chunk = b"", b"x"
            while chunk:
                chunk = os.read(fd, 1 << 16)
                data += chunk
            found.extend(int(c) for c in data.split())
        except (OSError, ValueError):
            continue
        finally:
            os.close(fd)
    return found


def _tree(root: int) -> list[int]:
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(_children(pid))
    return out


if __name__ == "__main__":
    if sys.argv[1:] == [SERVE]:
        sys.exit(serve())
    if sys.argv[1:2] == [CHECKED]:
        checked(sys.argv[2:])
    main(sys.argv[1:])


def drain(fd: int) -> None:
    """Read a non-blocking wake-up pipe empty (the fork servers' and the reaper pool's SIGCHLD pipes)."""
    while True:
        try:
            if not os.read(fd, 4096):
                return
        except BlockingIOError:
            return
