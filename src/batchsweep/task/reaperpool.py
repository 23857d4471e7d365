"""A fork server's tasks below reapers it keeps (`forkserver.serve(supervise=True)`): each reaper is a child
subreaper forked once from the server, which forks one task at a time, waits for it, kills and reaps
whatever it left below the reaper, reports, and waits for the next request. One reaper per task running at
once, so a task costs one fork of the server's image, not two (a reaper forked per task, then the task
forked by it), and a reaper's leftovers are all its current task's.

Between the server and a reaper, `_reap.frame`s over two pipes: a request down; `{"pid": N}` (or
`{"error": ...}`) once the task runs, then `{"exit": code, "usage": [...]}` when it ended and its tree is
gone. A reaper ends at EOF on its request pipe (the server ended) once its task has ended.
"""

from __future__ import annotations

import os
import select
import signal
from typing import Any

from batchsweep.task import _reap

Channel = Any  # forkserver.Channel (which imports this module)


class _Reaper:
    """The server's end of one reaper."""

    def __init__(self, pid: int, to: int, back: int) -> None:
        self.pid, self.to, self.back = pid, to, back
        self.frames = _reap.Frames()
        self.serving: Any = None  # the request id of the task it runs; None when idle
        self.started = False  # whether that task's pid was told

    def replies(self, *, block: bool) -> list[dict[str, Any]]:
        """What the reaper sent (`block`: wait for at least one message); [] at EOF."""
        while True:
            if not block and not select.select([self.back], [], [], 0)[0]:
                return []
            data = os.read(self.back, 1 << 16)
            if not data:
                return []
            found = self.frames.feed(data)
            if found or not block:
                return found


def serve_reaped(channel: Channel, wake_r: int, wake_w: int) -> tuple[dict[str, Any], list[int]] | None:
    """`forkserver.serve` with `supervise`: None in the server at EOF; in a task, its request."""
    reapers: list[_Reaper] = []
    while True:
        busy = [r.back for r in reapers if r.serving is not None]
        ready, _, _ = select.select([channel.fileno(), wake_r, *busy], [], [])
        for fd in ready:
            if fd == wake_r:
                _reap.drain(wake_r)
                _bury(reapers, channel)
            elif fd == channel.fileno():
                requests = channel.receive()
                if requests is None:
                    for reaper in reapers:
                        os.close(reaper.to)  # each ends once its task has
                    for reaper in reapers:  # the idle ones end now: waited for, their CPU counts as ours
                        if reaper.serving is None:
                            try:
                                os.waitpid(reaper.pid, 0)
                            except ChildProcessError:
                                pass
                    return None
                for request, fds in requests:
                    for fd_sent in fds:
                        os.close(fd_sent)  # (only the zygote sends fds, and it does not supervise)
                    served = _start(request, reapers, channel, wake_r, wake_w)
                    if served is not None:
                        return served
            else:
                reaper = next(r for r in reapers if r.back == fd)
                _relay(reaper, reaper.replies(block=False), channel)


def _start(request: dict[str, Any], reapers: list[_Reaper], channel: Channel, wake_r: int,
           wake_w: int) -> tuple[dict[str, Any], list[int]] | None:
    """Hand a request to an idle reaper (a new one when all are busy) and tell its task's pid. Returns the
    request in the task's process; None in the server."""
    reaper = next((r for r in reapers if r.serving is None), None)
    if reaper is not None:
        try:
            _reap.send(reaper.to, request)
        except OSError:  # it died idle: a new one
            reaper = None
    if reaper is None:
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        try:
            pid = os.fork()
        except OSError as e:
            for fd in (down_r, down_w, up_r, up_w):
                os.close(fd)
            channel.send({"id": request["id"], "error": f"fork failed: {e}"})
            return None
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for fd in (wake_r, wake_w, down_w, up_r, *(x for r in reapers for x in (r.to, r.back))):
                os.close(fd)
            channel.close()
            return _reap_tasks(request, down_r, up_w)
        os.close(down_r)
        os.close(up_w)
        reaper = _Reaper(pid, down_w, up_r)
        reapers.append(reaper)
    reaper.serving = request["id"]
    while reaper.serving is not None and not reaper.started:
        told = reaper.replies(block=True)  # the pid, and the exit too when the task was quick
        _relay(reaper, told or [{"error": "the task's reaper could not fork it"}], channel)
    return None


def _relay(reaper: _Reaper, msgs: list[dict[str, Any]], channel: Channel) -> None:
    """Tell the client what a reaper said of the task it serves: its pid, why it could not start, its exit."""
    for msg in msgs:
        if reaper.serving is None:
            return
        if "pid" in msg:
            reaper.started = True
            channel.send({"id": reaper.serving, "pid": msg["pid"]})
            continue
        if "error" in msg:
            msg = {"error": msg["error"] or "the task's reaper could not fork it"}
        channel.send({**msg, "id": reaper.serving})
        reaper.serving, reaper.started = None, False


def _bury(reapers: list[_Reaper], channel: Channel) -> None:
    """Forget the reapers that ended (killed: they end only at EOF otherwise); a task one was serving ended
    with it, as far as the server can tell."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        for reaper in [r for r in reapers if r.pid == pid]:
            _relay(reaper, reaper.replies(block=False), channel)  # what it said before it ended
            if reaper.serving is not None:
                key = "exit" if reaper.started else "error"
                value = os.waitstatus_to_exitcode(status) if reaper.started else "the task's reaper ended"
                channel.send({"id": reaper.serving, key: value})
                reaper.serving = None
            os.close(reaper.to)
            os.close(reaper.back)
            reapers.remove(reaper)


def _reap_tasks(request: dict[str, Any] | None, down: int, up: int) -> tuple[dict[str, Any], list[int]]:
    """In a reaper: run each request's task below this process, one at a time, until EOF on `down`. Returns
    only in a task (its request); the reaper itself exits."""
    before = _reap.become_task_reaper()
    frames = _reap.Frames()
    pending: list[dict[str, Any]] = [request] if request is not None else []
    while True:
        while not pending:
            data = os.read(down, 1 << 16)
            if not data:
                os._exit(0)
            pending.extend(frames.feed(data))
        request = pending.pop(0)
        try:
            task = os.fork()
        except OSError as e:
            _reap.send(up, {"error": f"fork failed: {e}"})
            continue
        if task == 0:
            os.close(down)
            os.close(up)
            _reap.as_task(before)
            return request, []
        _reap.send(up, {"pid": task})
        _reap.send(up, _wait(task))


def _wait(task: int) -> dict[str, Any]:
    """Wait for the task (reaping what it hands over meanwhile), then kill and reap everything left below this
    reaper; the task's exit code and usage."""
    while True:
        try:
            pid, status, used = os.wait4(-1, 0)
        except ChildProcessError:
            return {"exit": -signal.SIGKILL}  # not ours after all: nothing to tell
        if pid == task:
            break
    _reap.kill_below(os.getpid())
    return {"exit": os.waitstatus_to_exitcode(status), "reaped": True,
            "usage": [round(used.ru_utime + used.ru_stime, 3), round(used.ru_maxrss / 1024, 1)]}

