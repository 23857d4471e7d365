"""Cost and size, as every engine reports them: an `Estimate` (a priced range and what it assumed), a
`RightSize` suggestion, and the figures both are made from (task durations, what tasks used). Which price and
which size apply is the engine's (`Engine.estimate_cost`, `run_cost`, `right_size`); `run_cost` and
`run_right_size` here ask the engine of a finished run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from batchsweep.engines.base import Engine
    from batchsweep.model import TaskStatus
    from batchsweep.store.record import RunRecord

Usage = Sequence[tuple[float, float, float]]  # (peak_rss_mib, cpu_s, duration_s) of succeeded tasks


@dataclass(frozen=True)
class Durations:
    """Seconds per task and where that figure came from (said in the output)."""

    task_s: float
    source: str
    known: bool = True  # False: a default assumption, not a measurement or a user's figure
    from_earlier_run: bool = False


@dataclass(frozen=True)
class Estimate:
    """A cost range in USD (low == high on-demand) and the compute it is made of."""

    low_usd: float
    high_usd: float
    vcpu_hours: float
    gb_hours: float
    assumptions: list[str]
    kind: str = ""  # what was priced, e.g. "Fargate Spot, us-east-1"
    region: str = ""
    spot: bool = False

    def lines(self) -> list[str]:
        cost = (
            usd(self.low_usd)
            if self.low_usd == self.high_usd
            else f"{usd(self.low_usd)}–{usd(self.high_usd)}"
        )
        return [f"ESTIMATED cost ({self.kind}): {cost} for {self.vcpu_hours:.3g} vCPU-hours "
                f"and {self.gb_hours:.3g} GB-hours",
                "This is an estimate from a price table, not a bill. It assumes:",
                *(f"  - {a}" for a in self.assumptions)]


def usd(x: float) -> str:
    return f"${x:,.2f}" if x >= 1 or x == 0 else f"${x:.2g}"


def cost_summary(est: Estimate) -> str:
    figure = usd(est.low_usd) if est.low_usd == est.high_usd else f"{usd(est.low_usd)}–{usd(est.high_usd)}"
    return f"{figure} (ESTIMATE, {est.kind})"


# -- right-sizing -----------------------------------------------------------------------------------
HEADROOM = 1.25  # what a suggestion adds to the most any task used
MIN_SAVING = 0.2  # smaller savings are not worth a line


@dataclass(frozen=True)
class RightSize:
    """A smaller size that still fits what every task of a run used, and what it saves: on a priced engine a
    smaller size and its share of the per-hour price (`where` None); elsewhere the smaller reservation (vCPU
    slots, reserved memory) and how much of it that frees for more tasks at once `where` they run."""

    used_mib: float
    used_vcpus: float
    vcpus: float | None  # None: keep the vCPUs as they are (nothing reserves them there, or they already fit)
    memory_mib: int | None  # None: keep the memory as it is
    saving: float  # fraction of the per-hour price (priced); of the reservation freed (elsewhere)
    # where the freed reservation lets more tasks run ("on this machine"); None: priced
    where: str | None = None
    reserved_vcpus: float | None = None  # what each task reserved (unpriced engines)
    reserved_mib: float | None = None

    @property
    def overrides(self) -> list[str]:
        return [*([f"resources.vcpus={self.vcpus:g}"] if self.vcpus is not None else []),
                *([f"resources.memory_mib={self.memory_mib}"] if self.memory_mib is not None else [])]

    def resources(self) -> str:
        parts = [*([f"vcpus: {self.vcpus:g}"] if self.vcpus is not None else []),
                 *([f"memory_mib: {self.memory_mib}"] if self.memory_mib is not None else [])]
        return f"`resources: {{{', '.join(parts)}}}`"

    def line(self) -> str:
        used = f"tasks used at most {self.used_mib / 1024:.2g} GiB and {self.used_vcpus:.2g} vCPU"
        if self.where is None:
            return (f"{used}: {self.resources()} would cut the estimated AWS cost by {self.saving:.0%} "
                    "(`run --right-size` applies it)")
        reserved = " and ".join(
            [
                *([f"{self.reserved_vcpus:g} vCPU"] if self.reserved_vcpus is not None else []),
                *([f"{self.reserved_mib:g} MiB"] if self.reserved_mib is not None else []),
            ]
        )
        freed = " and ".join(
            [*([f"{self.reserved_vcpus / self.vcpus:.3g}× fewer vCPU slots"]
               if self.vcpus is not None and self.reserved_vcpus else []),
             *([f"{self.reserved_mib / self.memory_mib:.3g}× less memory"]
               if self.memory_mib is not None and self.reserved_mib else [])])
        return (
            f"{used} of the {reserved} each reserved: {self.resources()} reserves {freed} per task, so more "
            f"run at once {self.where} (`run --right-size` applies it)"
        )


# a task shorter than this is mostly the interpreter starting: its use says nothing of a size
MIN_MEASURED_S = 1.0


def peak_use(usage: Usage) -> tuple[float, float] | None:
    """The most memory (MiB) and vCPUs (CPU time over duration) any task used, from (peak_rss_mib, cpu_s,
    duration_s) of succeeded tasks that ran at least MIN_MEASURED_S; None when none ran long enough to
    tell."""
    measured = [(rss, cpu / dur) for rss, cpu, dur in usage if dur >= MIN_MEASURED_S]
    if not measured:
        return None
    return max(m for m, _ in measured), max(v for _, v in measured)


VCPU_STEPS = (0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)  # vCPU reservations a suggestion picks from
MEMORY_STEP_MIB = 256  # a memory suggestion is a multiple of it
RESERVED_FACTOR = 2.0  # a reservation is worth a line when what it needs is at most half of it


def right_size_reserved(usage: Usage, *, vcpus: float | None, memory_mib: float | None,
                        where: str) -> RightSize | None:
    """For an engine that reserves rather than prices: the smaller reservation (HEADROOM over the most any
    task used) when it is at most half of what each task reserved. `vcpus`/`memory_mib`: what the run reserved
    per task, None where nothing was."""
    peak = peak_use(usage)
    if peak is None:
        return None
    used_mib, used_vcpus = peak
    new_vcpus: float | None = next((v for v in VCPU_STEPS if v >= used_vcpus * HEADROOM), None)
    if vcpus is None or new_vcpus is None or new_vcpus * RESERVED_FACTOR > vcpus:
        new_vcpus = None
    new_mib: int | None = max(
        MEMORY_STEP_MIB, math.ceil(used_mib * HEADROOM / MEMORY_STEP_MIB) * MEMORY_STEP_MIB
    )
    if memory_mib is None or new_mib is None or new_mib * RESERVED_FACTOR > memory_mib:
        new_mib = None
    if new_vcpus is None and new_mib is None:
        return None
    freed = [
        1 - new / old for new, old in ((new_vcpus, vcpus), (new_mib, memory_mib)) if new is not None and old
    ]
    return RightSize(used_mib=used_mib, used_vcpus=used_vcpus, vcpus=new_vcpus, memory_mib=new_mib,
                     saving=max(freed), where=where, reserved_vcpus=vcpus, reserved_mib=memory_mib)


def usage_of(statuses: Iterable[TaskStatus]) -> list[tuple[float, float, float]]:
    """(peak_rss_mib, cpu_s, duration_s) of the succeeded tasks that measured them."""
    from batchsweep.model import State

    return [(s.peak_rss_mib, s.cpu_s, s.duration_s) for s in statuses
            if s.state is State.SUCCEEDED and s.peak_rss_mib is not None and s.cpu_s is not None
            and s.duration_s is not None]


def usage_of_table(table: pd.DataFrame) -> list[tuple[float, float, float]]:
    """The same from a run's results table (its status, peak_rss_mib, cpu_s and duration_s columns), which a
    report has already: reading 10,000 status files again for three numbers each took a fifth of its time."""
    import pandas as pd

    if not {"status", "peak_rss_mib", "cpu_s", "duration_s"} <= set(table.columns):
        return []
    cols = [
        pd.to_numeric(table[c], errors="coerce").tolist() for c in ("peak_rss_mib", "cpu_s", "duration_s")
    ]
    return [(rss, cpu, took) for state, rss, cpu, took in zip(table["status"].tolist(), *cols)
            if state == "succeeded" and not any(v is None or math.isnan(v) for v in (rss, cpu, took))]


# -- a finished run ------------------------------------------------------------------------------
def container_seconds(tasks: Iterable[tuple[str | None, float | None, float | None]]) -> list[float]:
    """How long each container ran, from its tasks' (worker, started_at, ended_at): an AWS child job runs its
    tasks one after another in one container, so it bills from its first task's start to its last task's
    end."""
    spans: dict[str, tuple[float, float]] = {}
    for worker, started, ended in tasks:
        if not worker or started is None or ended is None:
            continue
        first, last = spans.get(worker, (started, ended))
        spans[worker] = (min(first, started), max(last, ended))
    return [last - first for first, last in spans.values()]


def _engine_of(record: RunRecord) -> type[Engine] | None:
    """The engine that ran a finished run; None when it is not installed here (nothing to price it with)."""
    from batchsweep.errors import SweepError
    from batchsweep.registry import get_engine

    try:
        return get_engine(record.backend)
    except SweepError:
        return None


def run_cost(record: RunRecord, durations_s: Sequence[float], *,
             containers_s: Sequence[float] | None = None) -> Estimate | None:
    """What a finished run cost, as its engine prices it (None for an engine that prices nothing). With
    `containers_s` (`container_seconds`), each container is priced once for its whole run time."""
    engine = _engine_of(record)
    return engine.run_cost(record, durations_s, containers_s) if engine is not None else None


def run_right_size(record: RunRecord, statuses: Iterable[TaskStatus] | None = None, *,
                   usage: list[tuple[float, float, float]] | None = None) -> RightSize | None:
    """The suggestion for a finished run from its engine, judged against the settings it recorded: from the
    tasks' statuses, or their `usage` as `usage_of`/`usage_of_table` give it."""
    engine = _engine_of(record)
    if engine is None:
        return None
    used = usage if usage is not None else usage_of(statuses or ())
    return engine.right_size(record.spec, used, record.engine_as(engine.engine_settings_model))
