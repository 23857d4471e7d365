"""The local engine: a pool of threads on this machine, each running one task's process at a time.

Attached (`batchsweep run`), the pool lives in the calling process. Detached (`--detach`), a runner process
(`python -m batchsweep.engines.local STORE RUN_ID`) runs every task that has no status yet; its pid is in
engine.json so `status`, `wait` and `cancel` find it. A runner killed with -9 leaves tasks without a status,
which `resume` runs again.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchsweep.engines.base import Engine, Progress
from batchsweep.model import TaskStatus
from batchsweep.worker import (
    Launcher,
    ProcessRegistry,
    RunContext,
    context_from_run,
    execute_task,
    launch_cold,
)

if TYPE_CHECKING:
    from batchsweep.runs import Run
    from batchsweep.warm import WarmServer


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat): tells a live pid from a reused one."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]  # a zombie has exited: not alive


def _alive(record: dict[str, Any]) -> bool:
    if record.get("host") != socket.gethostname():
        return True  # another machine's runner: trust the record until it says it finished
    pid = record.get("pid")
    if not pid or record.get("finished"):
        return False
    started = _start_time(pid)
    return started is not None and started == record.get("pid_started")


class LocalEngine(Engine):
    name = "local"

    def __init__(self, run: Run) -> None:
        super().__init__(run)
        self._registry = ProcessRegistry()
        self._thread: threading.Thread | None = None
        self._running = 0
        self._lock = threading.Lock()
        self._written: dict[int, TaskStatus] = {}
        self._covers: frozenset[int] = frozenset()

    # -- submit -------------------------------------------------------------------------------
    def submit(self, indices: Sequence[int], *, detach: bool) -> None:
        if detach:
            proc = subprocess.Popen(
                [sys.executable, "-m", "batchsweep.engines.local", self.run.store.url, self.run.id],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            self._record(proc.pid)
            return
        self._record(os.getpid())
        self._covers = frozenset(indices)
        self._thread = threading.Thread(target=self.execute, args=(list(indices),), name="batchsweep-local", daemon=True)
        self._thread.start()

    def _record(self, pid: int) -> None:
        record = {"engine": self.name, "pid": pid, "pid_started": _start_time(pid), "host": socket.gethostname(),
                  "submitted_at": time.time()}
        self.run.store.write_json(self.run.store.run_key(self.run.id, "engine.json"), record)

    def execute(self, indices: list[int]) -> None:
        """Run these tasks with at most max_parallel at once; each writes its status when it ends."""
        run, store = self.run, self.run.store
        ctx = context_from_run(run.info)
        tasks = {t.index: t for t in run.tasks()}
        base_dir = Path(run.info["base_dir"])
        server = self._warm_server(ctx)
        launcher: Launcher = server.launcher if server is not None else launch_cold

        def one(index: int) -> None:
            if self._registry.cancelled.is_set():
                return  # never started: no status, so `resume` runs it
            with self._lock:
                self._running += 1
            try:
                slot = threading.current_thread().name.rsplit("_", 1)[-1]
                status = execute_task(ctx, tasks[index], store, worker=f"local-{slot}", registry=self._registry,
                                      resolve_input=lambda ref: base_dir / ref, launcher=launcher)
                with self._lock:
                    self._written[index] = status
            finally:
                with self._lock:
                    self._running -= 1

        workers = run.info.get("max_parallel") or os.cpu_count() or 1
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="slot") as pool:
                for future in [pool.submit(one, i) for i in indices]:
                    future.result()
        finally:
            if server is not None:
                server.close()
        self._finish()

    def _warm_server(self, ctx: RunContext) -> WarmServer | None:
        """The run's fork server when the spec asks for `warm: true` and the script allows it."""
        if not self.run.info["spec"].get("warm"):
            return None
        from batchsweep import warm

        reason = warm.unusable_reason(script=ctx.script, function=ctx.function)
        if reason is None:
            assert ctx.script is not None
            started = warm.WarmServer.start(ctx.code_dir / ctx.script, env=ctx.base_env, python=ctx.python)
            if not isinstance(started, str):
                return started
            reason = started
        print(f"warm start: {reason}; running cold", file=sys.stderr, flush=True)
        return None

    def _finish(self) -> None:
        key = self.run.store.run_key(self.run.id, "engine.json")
        try:
            record = self.run.store.read_json(key)
        except FileNotFoundError:
            return
        self.run.store.write_json(key, {**record, "finished": True, "finished_at": time.time()})

    # -- watch --------------------------------------------------------------------------------
    def poll(self) -> Progress:
        if self._thread is not None:
            with self._lock:
                written = dict(self._written)
            return Progress(active=self._thread.is_alive(), running=self._running, statuses=written,
                            covers=self._covers)
        try:
            record = self.run.store.read_json(self.run.store.run_key(self.run.id, "engine.json"))
        except FileNotFoundError:
            return Progress(active=False)
        active = _alive(record)
        workers = self.run.info.get("max_parallel") or os.cpu_count() or 1
        return Progress(active=active, running=workers if active else 0)

    def cancel(self) -> None:
        if self._thread is not None:
            self._registry.cancel_all()
            self._thread.join()
            return
        try:
            record = self.run.store.read_json(self.run.store.run_key(self.run.id, "engine.json"))
        except FileNotFoundError:
            return
        if _alive(record) and record.get("host") == socket.gethostname():
            os.kill(record["pid"], signal.SIGTERM)
            deadline = time.monotonic() + 30
            while self.poll().active and time.monotonic() < deadline:
                time.sleep(0.05)

    def logs(self, index: int, *, stderr: bool = False) -> Iterator[str] | None:
        return None  # a running task's log file is already in the store, where `logs` reads it

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join()


def _serve(store_url: str, run_id: str) -> None:
    """The detached runner: run every task that has no status yet."""
    from batchsweep.runs import load_run

    run = load_run(run_id, store=store_url)
    engine = LocalEngine(run)
    signal.signal(signal.SIGTERM, lambda *_: engine._registry.cancel_all())
    engine._record(os.getpid())
    done = set(run.store.statuses(run.id))
    engine.execute([t.index for t in run.tasks() if t.index not in done])


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2])
