"""What a task may use on this machine: GPU devices (whole, or a share of one), vCPU slots and reserved
memory.

The local engine takes a lease before it starts a task and gives it back when the task ends; a task never
starts without one. GPUs come from `BATCHSWEEP_GPUS` (a comma-separated id list: how tests run without GPUs),
else from NVML (the `nvidia-ml-py` package, imported only when a spec asks for GPUs), limited to the runner's
own `CUDA_VISIBLE_DEVICES` when that is set.

GPU leases are the machine's, not a run's (`MachineGpus`): one table per machine, a JSON file in a system-wide
runtime directory (`$BATCHSWEEP_RUNTIME_DIR`, else /dev/shm/batchsweep, else $TMPDIR/batchsweep), read and
rewritten under an exclusive `flock`, shared by every run of every user. Each lease names the process that
holds it (pid and start time): one whose holder is gone (a runner killed with its tasks) is reclaimed by the
next reader. Concurrent sweeps never get the same share of a device, and tasks asking for 2, 1 or 0.5 GPUs
mix.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchsweep.errors import SpecError
from batchsweep.store.runlock import pid_alive, start_time

_EPS = 1e-9


def detect_gpus(environ: Mapping[str, str] | None = None) -> list[str]:
    """GPU ids this runner may hand out, as the strings `CUDA_VISIBLE_DEVICES` takes."""
    env = os.environ if environ is None else environ
    override = env.get("BATCHSWEEP_GPUS")
    if override is not None:
        return [g.strip() for g in override.split(",") if g.strip()]
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no driver, no devices: NVML raises its own error types
        return []
    try:
        return [str(i) for i in range(pynvml.nvmlDeviceGetCount())]
    finally:
        pynvml.nvmlShutdown()


def available_memory_mib() -> float | None:
    """MemAvailable from /proc/meminfo (Linux), else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def total_memory_mib() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (ValueError, OSError):
        return None


@dataclass(frozen=True)
class Lease:
    gpus: tuple[str, ...] = ()
    memory_mib: float = 0.0
    id: str = ""  # its entry in the machine's GPU lease table
    share: float = 1.0  # of each device in `gpus` (below 1: a share of one)


TABLE_NAME = "gpu-leases.json"


def runtime_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The system-wide directory of the machine's lease table (the same for every user and run)."""
    env = os.environ if environ is None else environ
    explicit = env.get("BATCHSWEEP_RUNTIME_DIR")
    if explicit:
        return Path(explicit)
    return (
        Path("/dev/shm/batchsweep")
        if os.path.isdir("/dev/shm")
        else Path(tempfile.gettempdir()) / "batchsweep"
    )


class MachineGpus:
    """The machine's GPU lease table (module docstring): `take` a share of devices, `give_back` by lease
    id."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else runtime_dir() / TABLE_NAME
        self.pid = os.getpid()
        self.started = start_time(self.pid)

    def _open(self) -> int:
        directory = self.path.parent
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            try:
                # every user's runs share it; the sticky bit keeps files their owner's
                os.chmod(directory, 0o1777)
            except OSError:
                pass
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        try:
            if os.fstat(fd).st_uid == os.getuid():
                os.fchmod(fd, 0o666)  # past the umask: another user's runs must be able to lease too
        except OSError:
            pass
        return fd

    def _update(self, change: Any) -> Any:
        """Read the table under an exclusive flock, drop the leases of dead holders, apply `change` (which may
        edit the list in place) and write the list back; returns what `change` returned."""
        import fcntl

        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = b""
            while chunk := os.read(fd, 1 << 16):
                raw += chunk
            try:
                loaded = json.loads(raw) if raw.strip() else []
            except ValueError:
                loaded = []  # a torn or damaged table: what its holders still run is lost, never misread
            table = (
                [e for e in loaded if isinstance(e, dict) and self._alive(e)]
                if isinstance(loaded, list)
                else []
            )
            before = len(table)
            result = change(table)
            if (
                result is not None
                or len(table) != before
                or len(loaded if isinstance(loaded, list) else []) != before
            ):
                data = json.dumps(table).encode()
                os.lseek(fd, 0, os.SEEK_SET)
                os.ftruncate(fd, 0)
                while data:
                    data = data[os.write(fd, data):]
            return result
        finally:
            os.close(fd)  # (releases the lock)

    @staticmethod
    def _alive(entry: dict[str, Any]) -> bool:
        """Whether the lease's holder still runs (the same process: a reused pid has another start time)."""
        try:
            pid = int(entry["pid"])
        except (KeyError, TypeError, ValueError):
            return False
        started = entry.get("started")
        return pid_alive(pid, started if isinstance(started, str) else None)

    def take(self, gpus: float, ids: list[str], *, holder: str = "") -> tuple[str, tuple[str, ...]] | None:
        """A lease of `gpus` (a fraction below 1: a share of one device; else that many whole devices) among
        `ids`: (its id, the devices), or None when they are not free now."""
        def change(table: list[dict[str, Any]]) -> tuple[str, tuple[str, ...]] | None:
            free = {gpu: 1.0 for gpu in ids}
            for entry in table:
                for gpu in entry.get("gpus") or []:
                    if gpu in free:
                        free[gpu] -= float(entry.get("share") or 1.0)
            picked = pick(free, gpus)
            if picked is None:
                return None
            lease_id = secrets.token_hex(8)
            table.append({"id": lease_id, "pid": self.pid, "started": self.started, "gpus": list(picked),
                          "share": gpus if gpus < 1 else 1.0, "holder": holder})
            return lease_id, picked

        result: tuple[str, tuple[str, ...]] | None = self._update(change)
        return result

    def give_back(self, lease_id: str) -> None:
        def change(table: list[dict[str, Any]]) -> None:
            table[:] = [e for e in table if e.get("id") != lease_id]

        self._update(change)


def pick(free: dict[str, float], gpus: float) -> tuple[str, ...] | None:
    """The devices a request takes given each one's free share; None when it does not fit now."""
    if gpus < 1:
        # Fill a device that is already shared before opening a new one (packs the fractions).
        candidates = sorted((share, gpu) for gpu, share in free.items() if share + _EPS >= gpus)
        return (candidates[0][1],) if candidates else None
    whole = [gpu for gpu, share in free.items() if share > 1 - _EPS]
    return tuple(whole[: int(gpus)]) if len(whole) >= gpus else None


class Leases:
    """Hands out GPU shares and memory reservations to concurrent tasks; `acquire` waits for them.

    Tasks ask for `gpus_per_task` GPUs unless `acquire` names their own (`resources.gpus: "{param}"`: then
    `gpus_per_task` is the smallest request, so `parallel` says how many may run at once at most, and a larger
    request waits for its devices); memory is checked against what the machine has free when a task starts,
    minus what the running tasks reserved and may not have touched yet.
    """

    def __init__(self, *, gpus_per_task: float, gpu_ids: list[str], memory_mib: float | None,
                 available_mib: float | None = None, machine: MachineGpus | None | bool = True,
                 holder: str = "") -> None:
        self.gpus_per_task = gpus_per_task
        # GPUs come from the machine's table (shared with every other run) unless machine=False
        self._machine = (
            (MachineGpus() if machine is True else machine or None) if gpus_per_task or gpu_ids else None
        )
        self.holder = holder
        self.memory_mib = memory_mib
        self._free = {gpu: 1.0 for gpu in gpu_ids}
        self._reserved = 0.0
        self._running = 0
        self._budget = available_mib
        self._cond = threading.Condition()

    @classmethod
    def for_spec(
        cls, *, gpus: float, memory_mib: int | None, environ: Mapping[str, str] | None = None
    ) -> Leases:
        """Check the request against this machine (SpecError when it can never fit) and build the leases."""
        gpu_ids = detect_gpus(environ) if gpus else []
        if gpus:
            if gpus > 1 and gpus != int(gpus):
                raise SpecError(f"resources.gpus: {gpus:g} — use a fraction below 1 (a share of one GPU) "
                                "or a whole number of GPUs")
            need = math.ceil(gpus)
            if need > len(gpu_ids):
                have = f"{len(gpu_ids)} ({', '.join(gpu_ids)})" if gpu_ids else "none"
                raise SpecError(
                    f"resources.gpus: {gpus:g} per task, but this machine's GPUs: {have}; lower "
                    "resources.gpus, run on a GPU machine, or set BATCHSWEEP_GPUS=0,1,… to name them"
                )
        if memory_mib is not None:
            total = total_memory_mib()
            if total is not None and memory_mib > total:
                raise SpecError(
                    f"resources.memory_mib: {memory_mib} MiB per task, but this machine has "
                    f"{total:.0f} MiB in all; lower it (locally it is a reservation and a hard limit)"
                )
        return cls(gpus_per_task=gpus, gpu_ids=gpu_ids, memory_mib=memory_mib,
                   available_mib=available_memory_mib() if memory_mib is not None else None)

    @property
    def gpu_ids(self) -> list[str]:
        return list(self._free)

    def parallel(self) -> int | None:
        """How many tasks the GPUs allow at once (None: the GPUs do not limit it)."""
        if not self.gpus_per_task:
            return None
        if self.gpus_per_task < 1:
            return len(self._free) * int(1 / self.gpus_per_task + _EPS)
        return len(self._free) // int(self.gpus_per_task)

    def _memory_fits(self) -> bool:
        if self.memory_mib is None or self._running == 0 or self._budget is None:
            return True  # one task always runs, whatever the machine has free
        return self._reserved + self.memory_mib <= self._budget

    def _take_gpus(self, g: float) -> tuple[str, tuple[str, ...]] | None:
        if not g:
            return "", ()
        if self._machine is not None:
            try:
                return self._machine.take(g, list(self._free), holder=self.holder)
            except OSError as e:  # no shared table here: this run's own leases, said once
                logging.getLogger("batchsweep").warning(
                    "GPU leases: the machine's lease table %s cannot be used (%s); leasing among this run's "
                    "tasks only, so another run may be given the same GPUs",
                    self._machine.path,
                    e,
                )
                self._machine = None
        picked = pick(self._free, g)
        return ("", picked) if picked is not None else None

    def acquire(self, cancelled: threading.Event | None = None, *, gpus: float | None = None) -> Lease | None:
        """Wait for a lease of `gpus` (default: `gpus_per_task`); None when `cancelled` is set first. GPUs
        held by other runs are waited for too (looked at again every 0.2 s)."""
        g = self.gpus_per_task if gpus is None else gpus
        if math.ceil(g) > len(self._free):
            raise SpecError(
                f"resources.gpus: a task asks for {g:g} GPUs, but this run may use {len(self._free)}"
            )
        share = g if g < 1 else 1.0
        with self._cond:
            while True:
                if cancelled is not None and cancelled.is_set():
                    return None
                if self._memory_fits():
                    taken = self._take_gpus(g)
                    if taken is not None:
                        lease_id, devices = taken
                        if not lease_id:  # leased here: keep count here
                            for gpu in devices:
                                self._free[gpu] -= share
                        memory = float(self.memory_mib or 0)
                        self._reserved += memory
                        self._running += 1
                        return Lease(gpus=devices, memory_mib=memory, id=lease_id, share=share)
                self._cond.wait(timeout=0.2)

    def release(self, lease: Lease) -> None:
        with self._cond:
            if lease.id and self._machine is not None:
                self._machine.give_back(lease.id)
            elif lease.gpus:
                for gpu in lease.gpus:
                    self._free[gpu] = min(1.0, self._free[gpu] + lease.share)
            self._reserved -= lease.memory_mib
            self._running -= 1
            self._cond.notify_all()
