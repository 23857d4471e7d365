"""The client side of a fork server (`batchsweep.task.forkserver`): the children it forked, by request id, and
the thread that reads the server's replies. Used by the runner (`task.warm`, `task.launch`) and the AWS
emulator's player (`emulator/zygote.py`); the server itself never imports it (nor `threading`, whose hooks
would run in every fork).
"""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Iterator
from typing import Any


class ForkedProcess:
    """A child forked by a fork server: the members of `subprocess.Popen` that the worker and the player
    use."""

    warm = True  # a task started this way ran warm (the worker records it: `TaskStatus.warm`)

    def __init__(self, request_id: int, argv: list[str]) -> None:
        self.id = request_id
        self.args = argv
        self.pid = 0
        self.returncode: int | None = None
        self.usage: tuple[float, float] | None = None  # (CPU s, peak RSS MiB) as its reaper was waited for
        self._reaped = False
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

    @property
    def reaped(self) -> bool:
        """Whether the server said this child ended by itself (a code >= 0: below a reaper, everything the
        task left behind was killed with it; a signal may mean the reaper itself was killed)."""
        return self._reaped and self.returncode is not None and self.returncode >= 0


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
        """After the server was told to end (EOF on its channel): wait for it, kill it if it lingers, and for
        the reader to see it gone."""
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
        used = msg.get("usage")
        child.usage = (float(used[0]), float(used[1])) if used else None
        child._reaped = bool(msg.get("reaped"))
        child.returncode = int(msg["exit"])
        child._ended.set()
