"""What a running task uses: peak memory (RSS of its whole process tree), CPU time, peak GPU memory, and an
optional memory limit.

Read from /proc (Linux) while the task runs, by one thread for every running task: quickly at first, then
every half second. The tree is the task's process group and session plus every descendant of its leader, so
a child that called `setsid()` is still counted while its parent lives. The quick first samples (the first
0.67 s) read only the leader and its descendants, through the kernel's children lists: a few files, where a
whole scan reads every process of the machine (one scan a round, shared by the tasks due in it); a group
member whose parent exited (an orphan) is counted from the first half-second sample on. When the task's
reaper tells what the task used as it waited for it (`stop(exited=...)`), that account completes the
samples: the CPU time up to the end, and the peak RSS of a task too short to be sampled. Elsewhere than
Linux nothing is measured and no limit is enforced.

GPU memory (only for a task that had a GPU) comes from NVML — the `nvidia-ml-py` package, imported when a task
with a GPU starts — as the memory NVML lists for the tree's processes on any device. Without the package or a
driver it is not measured (None), and nothing fails. NVML in a container may list host process ids, which then
match nothing in the tree: not measured either, rather than a made-up number.
"""

from __future__ import annotations

import heapq
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_PROC = "/proc"
_SCHEDULE_S = (0.02, 0.05, 0.1, 0.2, 0.3)  # then every _PERIOD_S
_PERIOD_S = 0.5
_CHEAP: list[bool | None] = [None]  # whether the quick samples can walk the leader's descendants (see sample)


@dataclass(frozen=True)
class Usage:
    peak_rss_mib: float | None
    cpu_s: float | None
    gpu_mem_mib: float | None = None


@dataclass(frozen=True)
class _Proc:
    ppid: int
    pgid: int
    sid: int
    rss_pages: int
    cpu_ticks: int  # own user+system time plus that of its children it has waited for


def _read_proc(name: str) -> _Proc | None:
    try:
        with open(f"{_PROC}/{name}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None  # exited meanwhile
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return _Proc(ppid=int(fields[1]), pgid=int(fields[2]), sid=int(fields[3]),
                 rss_pages=int(fields[21]), cpu_ticks=sum(int(x) for x in fields[11:15]))


def _read_procs() -> dict[int, _Proc]:
    procs = {}
    for name in os.listdir(_PROC):
        if name.isdigit() and (p := _read_proc(name)) is not None:
            procs[int(name)] = p
    return procs


def _children_files() -> bool:
    """Whether this kernel lists a thread's children (/proc/<pid>/task/<tid>/children,
    CONFIG_PROC_CHILDREN)."""
    me = os.getpid()
    return os.path.exists(f"{_PROC}/{me}/task/{me}/children")


def _descendants(leader: int) -> dict[int, _Proc]:
    """The leader and its living descendants, found through their children lists: a few reads for a small
    tree, where `_read_procs` reads every process of the machine."""
    found: dict[int, _Proc] = {}
    todo = [leader]
    while todo:
        pid = todo.pop()
        if pid in found or (p := _read_proc(str(pid))) is None:
            continue
        found[pid] = p
        try:
            tids = os.listdir(f"{_PROC}/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"{_PROC}/{pid}/task/{tid}/children", "rb") as f:
                    todo.extend(int(c) for c in f.read().split())
            except (OSError, ValueError):
                continue
    return found


def tree(leader: int, procs: dict[int, _Proc]) -> set[int]:
    """The leader's process group and session, and every descendant of any of them."""
    members = {pid for pid, p in procs.items() if pid == leader or p.pgid == leader or p.sid == leader}
    children: dict[int, list[int]] = {}
    for pid, p in procs.items():
        children.setdefault(p.ppid, []).append(pid)
    todo = list(members)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in members:
                members.add(child)
                todo.append(child)
    return members


class GpuMemory:
    """The GPU memory NVML lists for a set of processes, on every device of this machine."""

    def __init__(self, nvml: Any, handles: list[Any]) -> None:
        self._nvml = nvml
        self._handles = handles

    @classmethod
    def open(cls) -> GpuMemory | None:
        """None when NVML is not installed or finds no driver."""
        try:
            import pynvml  # nvidia-ml-py
        except ImportError:
            return None
        try:
            pynvml.nvmlInit()
        except Exception:  # noqa: BLE001 - no driver, no library: NVML raises its own error types
            return None
        try:
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception:  # noqa: BLE001
            cls._shutdown(pynvml)
            return None
        return cls(pynvml, handles)

    def used_mib(self, pids: set[int]) -> float | None:
        """What those processes hold now, in MiB; None when NVML lists none of them (or cannot say)."""
        # (device, pid): a process may be listed as compute and graphics
        used: dict[tuple[int, int], int] = {}
        for device, handle in enumerate(self._handles):
            for query in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
                try:
                    procs = getattr(self._nvml, query)(handle)
                except Exception:  # noqa: BLE001 - not supported on this device, or it fell off the bus
                    continue
                for p in procs:
                    if p.pid in pids and p.usedGpuMemory is not None:  # None: NVML cannot tell (e.g. WDDM)
                        used[device, p.pid] = max(used.get((device, p.pid), 0), int(p.usedGpuMemory))
        return sum(used.values()) / 2**20 if used else None

    def close(self) -> None:
        self._shutdown(self._nvml)

    @staticmethod
    def _shutdown(nvml: Any) -> None:
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


class UsageSampler:
    """Samples a task's process tree until `stop()`; calls `on_limit` once if its RSS goes over `limit_mib`.
    With `gpu`, also its peak GPU memory (when NVML is there). Every running task's sampler is served by one
    thread (`_Sampling`): a thread per task cost more of the runner's CPU than a short task's samples."""

    def __init__(self, leader: int, *, limit_mib: float | None = None,
                 on_limit: Callable[[], None] | None = None, gpu: bool = False) -> None:
        self.leader = leader
        self.limit_mib = limit_mib
        self.on_limit = on_limit
        self.over_limit = False
        self._peak_rss_mib = 0.0
        self._cpu_s = 0.0
        self._sampled = False
        self._gpu = gpu
        self._gpu_memory: GpuMemory | None = None
        self._peak_gpu_mib: float | None = None
        self._lock = threading.Lock()  # a sample and `stop` one at a time
        self._stopped = False
        self._waits = iter(_SCHEDULE_S)

    @staticmethod
    def available() -> bool:
        return os.path.exists(f"{_PROC}/self/stat")

    def start(self) -> UsageSampler:
        if self._gpu:
            self._gpu_memory = GpuMemory.open()
        if self.available():
            _SAMPLING.add(self, next(self._waits))
        return self

    def stop(self, exited: tuple[float, float] | None = None) -> Usage:
        """The usage measured; `exited`: the task's own account as its reaper waited for it (CPU seconds of
        the tree, peak RSS in MiB of its largest process), which covers what samples miss (the end of the
        task, a task shorter than the first sample)."""
        with self._lock:
            self._stopped = True
        if self._gpu_memory is not None:
            self._gpu_memory.close()
            self._gpu_memory = None
        gpu = None if self._peak_gpu_mib is None else round(self._peak_gpu_mib, 1)
        if exited is not None:
            self._cpu_s = max(self._cpu_s, exited[0])
            self._peak_rss_mib = max(self._peak_rss_mib, exited[1])
        elif not self._sampled:
            return Usage(None, None, gpu)
        return Usage(round(self._peak_rss_mib, 1), round(self._cpu_s, 3), gpu)

    def sample(self, *, whole: bool = True, procs: dict[int, _Proc] | None = None) -> None:
        """`whole=False`: the leader and its descendants only (the quick first samples of a short task);
        else every process of the machine is read (`procs`, when given), to find the task's group and session
        members its descendants left behind (orphans of a child that exited)."""
        if procs is None:
            procs = _read_procs() if whole or not _CHEAP[0] else _descendants(self.leader)
        with self._lock:
            if not self._stopped:
                self._record(procs)

    def _record(self, procs: dict[int, _Proc]) -> None:
        members = tree(self.leader, procs)
        if not members:
            return
        rss = sum(procs[pid].rss_pages for pid in members) * _PAGE_MIB
        cpu = sum(procs[pid].cpu_ticks for pid in members) / _TICKS
        self._sampled = True
        self._peak_rss_mib = max(self._peak_rss_mib, rss)
        self._cpu_s = max(self._cpu_s, cpu)
        if self._gpu_memory is not None:
            gpu = self._gpu_memory.used_mib(members)
            if gpu is not None:
                self._peak_gpu_mib = max(self._peak_gpu_mib or 0.0, gpu)
        if self.limit_mib is not None and rss > self.limit_mib and not self.over_limit:
            self.over_limit = True
            if self.on_limit is not None:  # it kills and waits: not in the thread that samples every task
                threading.Thread(target=self.on_limit, name="usage-limit", daemon=True).start()


_PAGE_MIB = os.sysconf("SC_PAGE_SIZE") / 2**20 if hasattr(os, "sysconf") else 4096 / 2**20
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class _Sampling:
    """The thread that samples every running task when its next sample is due: quickly at first, then every
    `_PERIOD_S`; the whole-machine reads of one round are shared by the tasks due in it. It ends when no task
    has run for a while and starts again with the next one."""

    IDLE_S = 5.0

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._due: list[tuple[float, int, UsageSampler]] = []
        self._seq = 0
        self._running = False

    def add(self, sampler: UsageSampler, after: float) -> None:
        with self._cv:
            self._push(sampler, time.monotonic() + after)
            if not self._running:
                self._running = True
                threading.Thread(target=self._loop, name="usage", daemon=True).start()
            elif self._due[0][2] is sampler:
                self._cv.notify()

    def _push(self, sampler: UsageSampler, when: float) -> None:
        self._seq += 1
        heapq.heappush(self._due, (when, self._seq, sampler))

    def _loop(self) -> None:
        if _CHEAP[0] is None:
            _CHEAP[0] = _children_files()
        while True:
            with self._cv:
                while True:
                    while self._due and self._due[0][2]._stopped:
                        heapq.heappop(self._due)
                    if not self._due:
                        if not self._cv.wait(self.IDLE_S) and not self._due:
                            self._running = False
                            return
                        continue
                    left = self._due[0][0] - time.monotonic()
                    if left <= 0:
                        break
                    self._cv.wait(left)
                now, ready = time.monotonic(), []
                while self._due and self._due[0][0] <= now:
                    ready.append(heapq.heappop(self._due)[2])
            whole: dict[int, _Proc] | None = None
            for sampler in ready:
                wait = next(sampler._waits, None)
                try:
                    if wait is None and whole is None:
                        whole = _read_procs()
                    sampler.sample(whole=wait is None, procs=whole if wait is None else None)
                except Exception:  # noqa: BLE001 - a failed sample leaves a task unmeasured, the run unbroken
                    pass
                with self._cv:
                    if not sampler._stopped:
                        self._push(sampler, now + (_PERIOD_S if wait is None else wait))


_SAMPLING = _Sampling()
