"""The fork server both warm starts are made of: a process that has imported what its children import, and
forks one child per request. Local warm start (`task/warm.py`: a task of a script) and the AWS emulator's
zygote (`emulator/zygote.py`: a played `python -m batchsweep.worker`) each keep their own channel and what a
child becomes; the loop, the replies and what a lost server means for its children are here, once.

Replies, one JSON object each, whatever the channel:

    {"ready": true, ...}      once, after the imports (what else the server measured is the caller's)
    {"id": 7, "pid": 4242}    the child runs
    {"id": 7, "exit": 0}      ...and ended (a negative code: killed by that signal)
    {"id": 7, "error": "..."} it could not be started

Standard library only: a `python:` from another environment imports it (`scripts.options.helper_env`).
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, Protocol

from batchsweep.task import _reap


# -- client side ----------------------------------------------------------------------------------
class ForkedProcess:
    """A child forked by a fork server: the members of `subprocess.Popen` that the worker and the player use."""

    warm = True  # a task started this way ran warm (the worker records it: `TaskStatus.warm`)

    def __init__(self, request_id: int, argv: list[str]) -> None:
        self.id = request_id
        self.args = argv
        self.pid = 0
        self.returncode: int | None = None
        self.error: str | None = None
        self._started = threading.Event()
        self._ended = threading.Event()

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    def poll(self) -> int | None:
        return self.returncode


class ForkClient:
    """What a client keeps of its fork server: the children by request id, the server's hello, and the thread
    that reads the replies (`_replies`, the caller's channel) until the server is gone."""

    lost_before_start = "the fork server ended before the child started"

    def __init__(self, reader_name: str) -> None:
        self._lock = threading.Lock()
        self._next_id = 0
        self._children: dict[int, Any] = {}
        self._ready = threading.Event()
        self._hello: dict[str, Any] = {}
        self.gone = False
        self._reader = threading.Thread(target=self._read, name=reader_name, daemon=True)

    def _replies(self) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def _kill(self, child: Any) -> None:
        """End a child the lost server can no longer report on."""
        raise NotImplementedError

    def _wait_for(self, proc: subprocess.Popen[bytes]) -> None:
        """After the server was told to end (EOF on its channel): wait for it, kill it if it lingers, and for the
        reader to see it gone."""
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._reader.join(timeout=10)

    def _read(self) -> None:
        for msg in self._replies():
            if "ready" in msg:
                self._hello = msg
                self._ready.set()
                continue
            deliver(msg, self._children, self._lock)
        self._lost()

    def _lost(self) -> None:
        """The server is gone, and its children's exit codes with it: end them and say they were killed."""
        with self._lock:
            self.gone = True
            orphans = list(self._children.values())
            self._children.clear()
        self._ready.set()
        for child in orphans:
            if child.pid:
                self._kill(child)
                child.returncode = -signal.SIGKILL
            else:
                child.error = self.lost_before_start
            child._started.set()
            child._ended.set()


def deliver(msg: dict[str, Any], children: dict[int, Any], lock: threading.Lock | threading.RLock) -> None:
    """One reply to the child it names, by its id: it started (`pid`), could not start (`error`) or ended
    (`exit`); an ended child is forgotten."""
    with lock:
        child = children.get(msg["id"])
        if child is not None and ("exit" in msg or "error" in msg):
            del children[msg["id"]]
    if child is None:
        return
    if "pid" in msg:
        child.pid = msg["pid"]
        child._started.set()
    elif "error" in msg:
        child.error = msg["error"]
        child._started.set()
    else:
        child.returncode = int(msg["exit"])
        child._ended.set()


# -- server side ----------------------------------------------------------------------------------
class Channel(Protocol):
    """How requests reach a server and replies leave it."""

    def fileno(self) -> int: ...

    def receive(self) -> list[tuple[dict[str, Any], list[int]]] | None:
        """The requests that have arrived (each with the fds sent along); None at EOF."""

    def send(self, msg: dict[str, Any]) -> None: ...

    def close(self) -> None:
        """In a forked child: let go of the channel."""


class LineChannel:
    """One JSON object a line, over two pipe fds (warm start: the server's stdin and stdout)."""

    def __init__(self, fd_in: int, fd_out: int) -> None:
        self.fd_in, self.fd_out = fd_in, fd_out
        self._pending = b""

    def fileno(self) -> int:
        return self.fd_in

    def receive(self) -> list[tuple[dict[str, Any], list[int]]] | None:
        data = os.read(self.fd_in, 1 << 16)
        if not data:
            return None
        self._pending += data
        requests: list[tuple[dict[str, Any], list[int]]] = []
        while b"\n" in self._pending:
            line, self._pending = self._pending.split(b"\n", 1)
            requests.append((json.loads(line), []))
        return requests

    def send(self, msg: dict[str, Any]) -> None:
        data = json.dumps(msg).encode() + b"\n"
        while data:
            data = data[os.write(self.fd_out, data):]

    def close(self) -> None:
        for fd in (self.fd_in, self.fd_out):
            os.close(fd)


class PacketChannel:
    """One JSON object a packet over a SOCK_SEQPACKET socket, a request's fds sent along (the emulator's zygote:
    the child's stdout and stderr)."""

    def __init__(self, sock: socket.socket, *, max_packet: int, max_fds: int = 2) -> None:
        self.sock, self.max_packet, self.max_fds = sock, max_packet, max_fds

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> list[tuple[dict[str, Any], list[int]]] | None:
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
    and the fds sent with it (the parent's copies are closed). `supervise`: each child runs below a reaper of
    its own (`_reap.reap_task`: a fork of the server that outlives it), whose pid is the child's in the replies'
    place and whose exit is the child's."""
    wake_r, wake_w = os.pipe()  # SIGCHLD wakes the loop through it, so ended children are reaped promptly
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    sel = selectors.DefaultSelector()
    sel.register(channel.fileno(), selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    children: dict[int, int] = {}
    while True:
        for key, _ in sel.select():
            if key.fd == wake_r:
                _drain(wake_r)
                continue
            requests = channel.receive()
            if requests is None:
                return None
            for request, fds in requests:
                told_r, told_w = os.pipe() if supervise else (-1, -1)  # the reaper tells the task's pid through it
                try:
                    pid = os.fork()
                except OSError as e:
                    _close([*fds, *((told_r, told_w) if supervise else ())])
                    channel.send({"id": request["id"], "error": f"fork failed: {e}"})
                    continue
                if pid == 0:
                    sel.close()
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    _close([wake_r, wake_w])
                    channel.close()
                    if supervise:
                        _supervise(told_r, told_w)
                    return dict(request), fds
                _close(fds)
                children[pid] = request["id"]
                task = _told(told_r, told_w) if supervise else pid
                if task:
                    channel.send({"id": request["id"], "pid": task})
                else:
                    channel.send({"id": request["id"], "error": "the task's reaper could not fork it"})
        _reap.tell_ended(children, channel.send)


def _supervise(told_r: int, told_w: int) -> None:
    """In a forked child: become the reaper of a task forked from it, and return in that task (see `serve`)."""
    os.close(told_r)
    before = _reap.become_task_reaper()
    try:
        task = os.fork()
    except OSError:
        os._exit(1)
    if task == 0:
        os.close(told_w)
        _reap.as_task(before)
        return
    os.write(told_w, str(task).encode())
    os.close(told_w)
    _reap.reap_task(task)


def _told(told_r: int, told_w: int) -> int:
    """The pid a reaper tells (0: it ended first)."""
    os.close(told_w)
    data = b""
    while chunk := os.read(told_r, 32):
        data += chunk
    os.close(told_r)
    return int(data) if data.isdigit() else 0


def _drain(fd: int) -> None:
    while True:
        try:
            if not os.read(fd, 4096):
                return
        except BlockingIOError:
            return


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
    """Run a child's program (`runpy`) and exit as the interpreter would have. An uncaught exception is reported
    from `frame_of`'s frame on (the script's, not the server's), and a KeyboardInterrupt ends by SIGINT."""
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
    shutdown = getattr(threading, "_shutdown", None)
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
