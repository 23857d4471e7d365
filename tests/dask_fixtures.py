"""A real Dask cluster for the Dask engine's tests: `dask scheduler` and `dask worker` processes on 127.0.0.1.

Each process gets its own process group (start_new_session), so a test can SIGKILL one worker's group as a
machine loss would, and teardown stops everything by group. Workers run with --no-nanny: one process per
worker starts faster on a small machine, and a killed worker stays dead instead of being restarted by its
nanny, which is the loss the tests want to see. (With a nanny, killing the group kills nanny and worker
alike.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["dask_cluster", "dask_processes"]

DASK = str(Path(sys.executable).parent / "dask")
# Dask's imports take seconds in each process it starts, many more on a loaded machine.
START_TIMEOUT_S = 120.0


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _address_in(scheduler_file: Path) -> str:
    try:
        return str(json.loads(scheduler_file.read_text())["address"])
    except (OSError, ValueError, KeyError):
        return ""


class DaskProcesses:
    """A scheduler and its workers, started as separate processes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.workers: list[subprocess.Popen[bytes]] = []
        self._n = 0
        scheduler_file = directory / "scheduler.json"
        # --port 0: the scheduler takes a free port itself and names it in the scheduler file (no race).
        self.scheduler = self._spawn("scheduler", [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0",
                                                   "--no-dashboard", "--scheduler-file", str(scheduler_file)])
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _address_in(scheduler_file):  # the file may exist before it is written
            if time.monotonic() > deadline or self.scheduler.poll() is not None:
                self.stop()
                raise RuntimeError(f"dask scheduler did not start; see {directory / 'scheduler.log'}")
            time.sleep(0.05)
        self.address: str = _address_in(scheduler_file)

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.directory / f"{name}.log", "wb")  # a file, not a pipe: a full pipe would block it
        try:
            return subprocess.Popen(argv, cwd=self.directory, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()

    def add_worker(self, *extra: str) -> subprocess.Popen[bytes]:
        self._n += 1
        name = f"worker-{self._n}"
        proc = self._spawn(name, [DASK, "worker", self.address, "--name", name, "--nworkers", "1",
                                  "--nthreads", "2", "--no-nanny", "--no-dashboard",
                                  "--local-directory", str(self.directory / name), *extra])
        self.workers.append(proc)
        return proc

    def connected(self) -> int:
        from distributed import Client

        with Client(self.address, timeout=START_TIMEOUT_S, set_as_default=False) as client:
            return len(client.nthreads())

    def ensure_workers(self, n: int) -> None:
        """Start workers until n are alive and wait until the scheduler counts exactly n."""
        self.workers = [w for w in self.workers if w.poll() is None]
        while len(self.workers) < n:
            self.add_worker()
        deadline = time.monotonic() + START_TIMEOUT_S
        while self.connected() != n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{n} dask workers did not connect; see the logs in {self.directory}")
            time.sleep(0.1)

    def kill_worker(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker's whole process group, as a lost machine would."""
        _stop(proc, signal.SIGKILL)
        self.workers.remove(proc)

    def stop(self) -> None:
        for proc in self.workers:
            _stop(proc)
        _stop(self.scheduler)


@pytest.fixture(scope="module")
def dask_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskProcesses]:
    procs = DaskProcesses(tmp_path_factory.mktemp("dask"))
    try:
        yield procs
    finally:
        procs.stop()


@pytest.fixture
def dask_cluster(dask_processes: DaskProcesses) -> DaskProcesses:
    """The module's scheduler with exactly two connected workers (a test before may have killed one)."""
    dask_processes.ensure_workers(2)
    return dask_processes
