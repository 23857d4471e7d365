"""One runner per run: `runs/<id>/runner.json`, taken by an exclusive create or a compare-and-swap in the
store.

The first create of the file claims the run id (a colliding id can never overwrite an earlier run). From then
on the file is only replaced conditionally (If-Match on S3, an flock'ed compare on a local disk), so of two
processes that want the run, exactly one wins. The holder rewrites its heartbeat every HEARTBEAT_S seconds; a
holder is alive while its process runs (same host) or its heartbeat is younger than STALE_S (another host, a
restarted container). A dead or stale holder is taken over; a released file is free.

The heartbeat thread also looks for a cancel request (`runs/<id>/cancel.json`, written by `batchsweep cancel`
on any host) and calls the holder's cancel hook, so a cancel reaches a runner on another machine.

The heartbeat's stamps and waits are a `batchsweep.clock.Clock`'s (`clock=`: a test passes a fake one).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchsweep.clock import SYSTEM, Clock
from batchsweep.errors import RunStateError
from batchsweep.model import load_json

if TYPE_CHECKING:
    from batchsweep.store.core import Store

HEARTBEAT_S = float(os.environ.get("BATCHSWEEP_HEARTBEAT_S", "5"))
STALE_S = float(os.environ.get("BATCHSWEEP_STALE_S", "60"))


class RunBusy(RunStateError):
    """Another live process drives this run."""


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat): tells a live pid from a reused
    one."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]  # a zombie has exited: not alive


def pid_alive(pid: int, started: str | None = None) -> bool:
    """Whether process `pid` of this host runs (a zombie does not) and, given the `start_time` recorded with
    it, is still that process and not a later one that reuses its pid. Without /proc (not Linux), asks the
    kernel."""
    if pid <= 0:
        return False
    now = start_time(pid)
    if now is not None:
        return started is None or now == started
    if os.path.isdir("/proc/self"):
        return False  # Linux: no such process, or a zombie
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process
    return True


@dataclass(frozen=True)
class Holder:
    token: str
    host: str
    pid: int
    pid_started: str | None
    command: str
    heartbeat_at: float
    released: bool = False

    def alive(self, now: float | None = None) -> bool:
        """Whether its process runs (this host) or its heartbeat is younger than STALE_S at wall-clock
        `now`."""
        if self.released:
            return False
        if self.host == socket.gethostname():
            if not pid_alive(self.pid, self.pid_started):
                return False  # the process is gone, or its pid was reused (a restarted container)
            if self.pid_started is not None:
                return True
        return (now or time.time()) - self.heartbeat_at < STALE_S

    def describe(self, now: float | None = None) -> str:
        age = max(0.0, (now or time.time()) - self.heartbeat_at)
        return f"`{self.command}` (pid {self.pid} on {self.host}, heartbeat {age:.0f}s ago)"

    @classmethod
    def parse(cls, data: bytes) -> Holder | None:
        try:
            d = load_json(data)
            found = cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
        except (ValueError, TypeError, KeyError):
            return None  # a damaged lock file holds nothing
        typed = (isinstance(found.token, str) and isinstance(found.host, str) and type(found.pid) is int
                 and isinstance(found.pid_started, (str, type(None))) and isinstance(found.command, str)
                 and type(found.heartbeat_at) in (int, float) and type(found.released) is bool)
        return found if typed else None  # valid JSON of the wrong types (a string pid) is damaged too


def holder(store: Store, run_id: str, clock: Clock = SYSTEM) -> Holder | None:
    """The run's live holder, or None."""
    try:
        found = Holder.parse(store.backend.read_bytes(store.runner_key(run_id)))
    except FileNotFoundError:
        return None
    return found if found is not None and found.alive(clock.time()) else None


class RunLock:
    """This process's hold on a run."""

    def __init__(self, store: Store, run_id: str, record: Holder, tag: str, clock: Clock = SYSTEM) -> None:
        self.store = store
        self.clock = clock
        self.run_id = run_id
        self.key = store.runner_key(run_id)
        self.record = record
        self._tag = tag
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()
        self.lost = False
        self.handed_over = False
        self.on_cancel: Callable[[], Any] | None = None
        self._cancel_seen = False

    @staticmethod
    def _new(command: str, clock: Clock) -> Holder:
        pid = os.getpid()
        return Holder(token=secrets.token_hex(8), host=socket.gethostname(), pid=pid,
                      pid_started=start_time(pid), command=command, heartbeat_at=clock.time())

    @staticmethod
    def _bytes(record: Holder) -> bytes:
        return json.dumps(asdict(record)).encode()

    @classmethod
    def create(cls, store: Store, run_id: str, *, command: str, clock: Clock = SYSTEM) -> RunLock | None:
        """Claim a new run id: None when any run (live or not) already has it."""
        record = cls._new(command, clock)
        data = cls._bytes(record)
        if not store.backend.create_exclusive(store.runner_key(run_id), data):
            return None
        _, tag = store.backend.read_tagged(store.runner_key(run_id))
        return cls(store, run_id, record, tag, clock)

    @classmethod
    def acquire(cls, store: Store, run_id: str, *, command: str, clock: Clock = SYSTEM) -> RunLock:
        """Take the run, or raise RunBusy naming the live holder."""
        key = store.runner_key(run_id)
        record = cls._new(command, clock)
        for _ in range(5):
            if store.backend.create_exclusive(key, cls._bytes(record)):  # a run from before locks existed
                return cls(store, run_id, record, store.backend.read_tagged(key)[1], clock)
            try:
                data, tag = store.backend.read_tagged(key)
            except FileNotFoundError:
                continue
            current = Holder.parse(data)
            if current is not None and current.alive(clock.time()):
                raise RunBusy(
                    f"run {run_id} is being driven by {current.describe(clock.time())}; wait for it "
                    f"(`batchsweep wait {run_id}`) or stop it (`batchsweep cancel {run_id}`)"
                )
            new_tag = store.backend.replace_if(key, cls._bytes(record), tag)
            if new_tag is not None:
                return cls(store, run_id, record, new_tag, clock)
        raise RunBusy(f"run {run_id}: another process is taking it over right now; try again")

    @classmethod
    def adopt(cls, store: Store, run_id: str, token: str, *, command: str, clock: Clock = SYSTEM) -> RunLock:
        """The detached runner takes over the hold its parent made for it (same token)."""
        key = store.runner_key(run_id)
        for _ in range(20):  # the parent may be naming this process in the same instant
            data, tag = store.backend.read_tagged(key)
            current = Holder.parse(data)
            if current is None or current.token != token or current.released:
                break
            lock = cls(store, run_id, current, tag, clock)
            if lock.update(pid=os.getpid(), pid_started=start_time(os.getpid()), command=command):
                return lock
        raise RunBusy(f"run {run_id} was taken over by another process; this runner stops")

    # -- while held ---------------------------------------------------------------------------
    def update(self, **changes: Any) -> bool:
        """Rewrite the record (compare-and-swap). False, and `lost`, when another process took the run."""
        with self._mutex:
            if self.lost:
                return False
            record = Holder(**{**asdict(self.record), **changes, "heartbeat_at": self.clock.time()})
            tag = self.store.backend.replace_if(self.key, self._bytes(record), self._tag)
            if tag is None:
                self.lost = True
                return False
            self.record, self._tag = record, tag
            return True

    def hand_over(self, pid: int) -> str:
        """Name a child process (the detached runner) as the holder; it adopts the hold with the token."""
        self._stop_heartbeat()
        self.handed_over = True
        self.update(pid=pid, pid_started=start_time(pid))  # fails harmlessly if the child adopted it first
        return self.record.token

    def start_heartbeat(self, on_cancel: Callable[[], Any] | None = None) -> None:
        self.on_cancel = on_cancel
        if self._thread is None:
            self._thread = threading.Thread(target=self._beat, name="batchsweep-heartbeat", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        while not self.clock.wait(self._stop, HEARTBEAT_S):
            try:
                if not self.update():
                    return
                self._check_cancel()
            except Exception:  # noqa: BLE001 - a missed beat is retried; a long outage makes the hold stale
                continue

    def _check_cancel(self) -> None:
        if self._cancel_seen or self.on_cancel is None:
            return
        try:
            request = load_json(self.store.backend.read_bytes(self.store.cancel_key(self.run_id)))
        except (FileNotFoundError, ValueError):
            return
        if isinstance(request, dict) and request.get("token") == self.record.token:
            self._cancel_seen = True
            threading.Thread(target=self.on_cancel, name="batchsweep-cancel", daemon=True).start()

    def _stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None

    def release(self) -> None:
        self._stop_heartbeat()
        if not self.lost and not self.record.released:
            self.update(released=True)


def request_cancel(store: Store, run_id: str) -> Holder | None:
    """Ask the run's live holder, wherever it runs, to cancel. Returns that holder (None: nobody holds it)."""
    current = holder(store, run_id)
    if current is not None:
        store.write_json(store.cancel_key(run_id), {"token": current.token, "at": time.time()})
    return current
