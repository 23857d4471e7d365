"""What a task may use on this machine: GPU devices (whole, or a share of one), vCPU slots and reserved memory.

The local engine takes a lease before it starts a task and gives it back when the task ends; a task never starts
without one. GPUs come from `BATCHSWEEP_GPUS` (a comma-separated id list: how tests run without GPUs), else
from NVML (the `nvidia-ml-py` package, imported only when a spec asks for GPUs), limited to the runner's own
`CUDA_VISIBLE_DEVICES` when that is set.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from batchsweep.errors import SpecError

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


class Leases:
    """Hands out GPU shares and memory reservations to concurrent tasks; `acquire` waits for them.

    Every task of a run asks for the same amounts, so how many may run at once is known up front
    (`parallel`); memory is checked against what the machine has free when a task starts, minus what the
    running tasks reserved and may not have touched yet.
    """

    def __init__(self, *, gpus_per_task: float, gpu_ids: list[str], memory_mib: float | None,
                 available_mib: float | None = None) -> None:
        self.gpus_per_task = gpus_per_task
        self.memory_mib = memory_mib
        self._free = {gpu: 1.0 for gpu in gpu_ids}
        self._reserved = 0.0
        self._running = 0
        self._budget = available_mib
        self._cond = threading.Condition()

    @classmethod
    def for_spec(cls, *, gpus: float, memory_mib: int | None, environ: Mapping[str, str] | None = None) -> Leases:
        """Check the request against this machine (SpecError when it can never fit) and build the leases."""
        gpu_ids = detect_gpus(environ) if gpus else []
        if gpus:
            if gpus > 1 and gpus != int(gpus):
                raise SpecError(f"resources.gpus: {gpus:g} — use a fraction below 1 (a share of one GPU) "
                                "or a whole number of GPUs")
            need = math.ceil(gpus)
            if need > len(gpu_ids):
                have = f"{len(gpu_ids)} ({', '.join(gpu_ids)})" if gpu_ids else "none"
                raise SpecError(f"resources.gpus: {gpus:g} per task, but this machine's GPUs: {have}; lower "
                                "resources.gpus, run on a GPU machine, or set BATCHSWEEP_GPUS=0,1,… to name them")
        if memory_mib is not None:
            total = total_memory_mib()
            if total is not None and memory_mib > total:
                raise SpecError(f"resources.memory_mib: {memory_mib} MiB per task, but this machine has "
                                f"{total:.0f} MiB in all; lower it (locally it is a reservation and a hard limit)")
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

    def _pick_gpus(self) -> tuple[str, ...] | None:
        g = self.gpus_per_task
        if not g:
            return ()
        if g < 1:
            # Fill a device that is already shared before opening a new one (packs the fractions).
            candidates = sorted((free, gpu) for gpu, free in self._free.items() if free + _EPS >= g)
            return (candidates[0][1],) if candidates else None
        whole = [gpu for gpu, free in self._free.items() if free > 1 - _EPS]
        return tuple(whole[: int(g)]) if len(whole) >= g else None

    def _memory_fits(self) -> bool:
        if self.memory_mib is None or self._running == 0 or self._budget is None:
            return True  # one task always runs, whatever the machine has free
        return self._reserved + self.memory_mib <= self._budget

    def acquire(self, cancelled: threading.Event | None = None) -> Lease | None:
        """Wait for a lease; None when `cancelled` is set first."""
        with self._cond:
            while True:
                if cancelled is not None and cancelled.is_set():
                    return None
                gpus = self._pick_gpus()
                if gpus is not None and self._memory_fits():
                    share = self.gpus_per_task if self.gpus_per_task < 1 else 1.0
                    for gpu in gpus:
                        self._free[gpu] -= share
                    memory = float(self.memory_mib or 0)
                    self._reserved += memory
                    self._running += 1
                    return Lease(gpus=gpus, memory_mib=memory)
                self._cond.wait(timeout=0.2)

    def release(self, lease: Lease) -> None:
        with self._cond:
            share = self.gpus_per_task if self.gpus_per_task < 1 else 1.0
            for gpu in lease.gpus:
                self._free[gpu] = min(1.0, self._free[gpu] + share)
            self._reserved -= lease.memory_mib
            self._running -= 1
            self._cond.notify_all()
