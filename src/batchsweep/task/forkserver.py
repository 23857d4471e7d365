"""The fork server both warm starts are made of: a process that has imported what its children import, and
forks one child per request. Local warm start (`task/warmserver.py`: a task of a script) and the AWS
emulator's zygote (`emulator/zygote.py`: a played `python -m batchsweep.worker`) each keep their own channel
and what a child becomes; the loop, the replies and what a lost server means for its children are here, once
(the client's side: `task/forkclient.py`).

Replies, one dict each, whatever the channel:

    {"ready": true, ...}      once, after the imports (what else the server measured is the caller's)
    {"id": 7, "pid": 4242}    the child runs
    {"id": 7, "exit": 0, "usage": [cpu_s, peak_rss_mib]}   ...and ended (a negative code: killed by that
                                                           signal)
    {"id": 7, "error": "..."} it could not be started

Standard library only: a `python:` from another environment imports it (`scripts.options.helper_env`). It
imports neither `threading` nor `random`: their at-fork hooks would run in every child and every reaper.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import select
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from batchsweep.task import _reap, reaperpool

if TYPE_CHECKING:
    import socket


# -- server side ----------------------------------------------------------------------------------
class Channel(Protocol):
    """How requests reach a server and replies leave it."""

    def fileno(self) -> int: ...

    def receive(self) -> list[tuple[dict[str, Any], list[int]]] | None:
        """The requests that have arrived (each with the fds sent along); None at EOF."""

    def send(self, msg: dict[str, Any]) -> None: ...

    def close(self) -> None:
        """In a forked child: let go of the channel."""


class FrameChannel:
    """Length-prefixed `marshal` frames over two pipe fds (`_reap.frame`: the framing of both of the runner's
    servers, the warm server and the task launcher), requests in, replies out."""

    def __init__(self, fd_in: int, fd_out: int) -> None:
        self.fd_in, self.fd_out = fd_in, fd_out
        self._frames = _reap.Frames()

    def fileno(self) -> int:
        return self.fd_in

    def receive(self) -> list[tuple[dict[str, Any], list[int]]] | None:
        data = os.read(self.fd_in, 1 << 16)
        if not data:
            return None
        return [(request, []) for request in self._frames.feed(data)]

    def send(self, msg: dict[str, Any]) -> None:
        _reap.send(self.fd_out, msg)

    def close(self) -> None:
        for fd in (self.fd_in, self.fd_out):
            os.close(fd)


class PacketChannel:
    """One JSON object a packet over a SOCK_SEQPACKET socket, a request's fds sent along (the emulator's
    zygote: the child's stdout and stderr)."""

    def __init__(self, sock: socket.socket, *, max_packet: int, max_fds: int = 2) -> None:
        self.sock, self.max_packet, self.max_fds = sock, max_packet, max_fds

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> list[tuple[dict[str, Any], list[int]]] | None:
        import socket

        data, fds, _, _ = socket.recv_fds(self.sock, self.max_packet, self.max_fds)
        if not data:
            return None
        return [(json.loads(data), list(fds))]

    def send(self, msg: dict[str, Any]) -> None:
        self.sock.send(json.dumps(msg).encode())

    def close(self) -> None:
        self.sock.close()


def serve(channel: Channel, *, supervise: bool = False) -> tuple[dict[str, Any], list[int]] | None:
    """Fork a child per request until EOF. Returns None in the server (time to exit); in a child, its request
    and the fds sent with it (the parent's copies are closed). `supervise`: each child runs below a reaper
    (`reaperpool`: one per task running at once, kept by the server), which kills what the task left."""
    wake_r, wake_w = os.pipe()  # SIGCHLD wakes the loop through it, so ended children are reaped promptly
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    if supervise:
        return reaperpool.serve_reaped(channel, wake_r, wake_w)
    children: dict[int, int] = {}
    while True:
        try:
            ready, _, _ = select.select([channel.fileno(), wake_r], [], [])
        except InterruptedError:
            continue
        for fd in ready:
            if fd == wake_r:
                _reap.drain(wake_r)
                continue
            requests = channel.receive()
            if requests is None:
                return None
            for request, fds in requests:
                try:
                    pid = os.fork()
                except OSError as e:
                    _close(fds)
                    channel.send({"id": request["id"], "error": f"fork failed: {e}"})
                    continue
                if pid == 0:
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    _close([wake_r, wake_w])
                    channel.close()
                    return dict(request), fds
                _close(fds)
                children[pid] = request["id"]
                channel.send({"id": request["id"], "pid": pid})
        _reap.tell_ended(children, channel.send, reaper=False)



def _close(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


# -- a child --------------------------------------------------------------------------------------
def exit_code(code: object) -> int:
    """The exit code of `SystemExit(code)`, as the interpreter makes it (a message is printed and means 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def run_as_main(run: Callable[[], object], *, frame_of: str | None = None) -> NoReturn:
    """Run a child's program (`runpy`) and exit as the interpreter would have. An uncaught exception is
    reported from `frame_of`'s frame on (the script's, not the server's), and a KeyboardInterrupt ends by
    SIGINT."""
    code, interrupted = 0, False
    try:
        run()
    except SystemExit as e:
        code = exit_code(e.code)
    except BaseException as e:  # noqa: BLE001 - reported as the interpreter would
        tb = e.__traceback__
        while frame_of is not None and tb is not None and tb.tb_frame.f_code.co_filename != frame_of:
            tb = tb.tb_next
        sys.excepthook(type(e), e, tb or e.__traceback__)
        code, interrupted = 1, isinstance(e, KeyboardInterrupt)
        del e, tb
    exit_as_interpreter(code, interrupted=interrupted)


def exit_as_interpreter(code: int, *, interrupted: bool) -> NoReturn:
    """What interpreter shutdown does that a child can see, without tearing down every module the server
    imported (slow with a large stack loaded): join threads, run atexit, free the child's objects (unclosed
    files flush), flush stdio."""
    shutdown = getattr(sys.modules.get("threading"), "_shutdown", None)  # a child that started threads
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    gc.collect()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if interrupted:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code & 0xFF)
