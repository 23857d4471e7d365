"""What a sweep costs on AWS Batch with Fargate: an estimate before the run, an account after it.

Prices come from ``data/fargate_prices.json`` (shipped with the package, dated, not fetched live),
so every figure here is an ESTIMATE and says what it assumed. Fargate bills each container per
second from the image pull until it stops, with a one-minute minimum; Spot is a discount range
because its real price moves by region and over time.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchsweep.errors import SweepError

if TYPE_CHECKING:
    from batchsweep.model import TaskStatus
    from batchsweep.store.record import RunRecord

DEFAULT_REGION = "us-east-1"

PRICES_FILE = Path(__file__).parents[1] / "data" / "fargate_prices.json"
NOT_INCLUDED = ("not included: retried attempts, S3 requests and transfer, CloudWatch Logs, ECR storage, "
                "ephemeral storage beyond 20 GB")
# Fargate's task sizes: vCPU -> (min, max, step) memory in MiB. Other combinations are rejected by AWS.
@dataclass(frozen=True)
class Estimate:
    """A cost range in USD (low == high on-demand) and the compute it is made of."""

    low_usd: float
    high_usd: float
    vcpu_hours: float
    gb_hours: float
    assumptions: list[str]
    region: str = ""
    spot: bool = False

    def lines(self) -> list[str]:
        kind = "Fargate Spot" if self.spot else "Fargate on-demand"
        cost = usd(self.low_usd) if self.low_usd == self.high_usd else f"{usd(self.low_usd)}–{usd(self.high_usd)}"
        return [f"ESTIMATED cost ({kind}, {self.region}): {cost} for {self.vcpu_hours:.3g} vCPU-hours "
                f"and {self.gb_hours:.3g} GB-hours",
                "This is an estimate from a price table, not a bill. It assumes:",
                *(f"  - {a}" for a in self.assumptions)]


def usd(x: float) -> str:
    return f"${x:,.2f}" if x >= 1 or x == 0 else f"${x:.2g}"


def load_prices() -> dict[str, Any]:
    prices: dict[str, Any] = json.loads(PRICES_FILE.read_text(encoding="utf-8"))
    return prices


def prices_for(region: str, table: dict[str, Any] | None = None) -> tuple[float, float]:
    """(USD per vCPU-hour, USD per GB-hour) on-demand in ``region``."""
    table = table or load_prices()
    if region not in table["regions"]:
        known = ", ".join(sorted(table["regions"]))
        raise SweepError(f"no Fargate prices for region {region!r}; known regions: {known} "
                         f"(add it to {PRICES_FILE.name} or pick one of these)")
    p = table["regions"][region]
    return float(p["vcpu_hour"]), float(p["gb_hour"])


def fargate_size_problem(vcpus: float, memory_mib: int) -> str | None:
    from batchsweep.aws.fargate import size_problem

    return size_problem(vcpus, memory_mib)


def estimate(*, n_tasks: int, task_seconds: float, vcpus: float, memory_mib: int, region: str, spot: bool,
             tasks_per_container: int = 1, startup_seconds: float = 30.0,
             duration_source: str = "given with --task-seconds") -> Estimate:
    """The cost of ``n_tasks`` tasks of ``task_seconds`` each, ``tasks_per_container`` run one after another
    in each container. ``duration_source`` says where ``task_seconds`` came from (shown in the assumptions)."""
    if n_tasks < 0 or tasks_per_container < 1:
        raise SweepError(f"need n_tasks >= 0 and tasks_per_container >= 1, got {n_tasks} and {tasks_per_container}")
    if not (math.isfinite(task_seconds) and task_seconds >= 0) or startup_seconds < 0:
        raise SweepError(f"task_seconds and startup_seconds must be >= 0, got {task_seconds} and {startup_seconds}")
    full, rest = divmod(n_tasks, tasks_per_container)
    containers = [tasks_per_container * task_seconds] * full + ([rest * task_seconds] if rest else [])
    assumed = [f"{n_tasks} task(s), {tasks_per_container} per container: {len(containers)} container(s)",
               f"task duration: {task_seconds:g} s each ({duration_source})"]
    return _price(containers, vcpus=vcpus, memory_mib=memory_mib, region=region, spot=spot,
                  startup_seconds=startup_seconds, assumed=assumed)


def compute_cost(durations_s: Sequence[float], *, vcpus: float, memory_mib: int, region: str, spot: bool,
                 startup_seconds: float = 30.0, per_container: bool = False) -> Estimate:
    """The cost of a finished run: one container per duration given — each task's, or (`per_container`) each
    child container's, which ran its tasks one after another."""
    measured = [float(d) for d in durations_s if d is not None and math.isfinite(d)]
    what = "container(s) (tasks packed in each), with their measured run times" if per_container else \
        "task(s), one container each, with their measured durations"
    assumed = [f"{len(measured)} {what} (total {sum(measured):.0f} s)"]
    if len(measured) < len(durations_s):
        unit = "container(s)" if per_container else "task(s)"
        assumed.append(f"{len(durations_s) - len(measured)} {unit} without a measured duration are not counted")
    return _price(measured, vcpus=vcpus, memory_mib=memory_mib, region=region, spot=spot,
                  startup_seconds=startup_seconds, assumed=assumed)


def _price(run_seconds: list[float], *, vcpus: float, memory_mib: int, region: str, spot: bool,
           startup_seconds: float, assumed: list[str]) -> Estimate:
    if vcpus <= 0 or memory_mib <= 0:
        raise SweepError(f"vcpus and memory_mib must be > 0, got {vcpus} and {memory_mib}")
    table = load_prices()
    vcpu_price, gb_price = prices_for(region, table)
    minimum = float(table["billing"]["minimum_seconds"])
    billed = sum(max(minimum, startup_seconds + s) for s in run_seconds)
    gb = memory_mib / 1024
    vcpu_hours, gb_hours = billed / 3600 * vcpus, billed / 3600 * gb
    on_demand = vcpu_hours * vcpu_price + gb_hours * gb_price
    disc = table["spot_discount"]
    low, high = (on_demand * (1 - disc["high"]), on_demand * (1 - disc["low"])) if spot else (on_demand, on_demand)
    assumptions = [
        *assumed,
        f"prices: Fargate {table['platform']} in {region}, ${vcpu_price}/vCPU-hour and ${gb_price}/GB-hour on-demand, "
        f"from the price table of {table['as_of']} (not live prices)",
        f"each container: {vcpus:g} vCPU and {memory_mib} MiB ({gb:g} GB)",
        f"startup: {startup_seconds:g} s per container (image pull and boot are billed)",
        f"billing per second with a {minimum:g} s minimum per container: {billed:,.0f} s billed",
        (f"Fargate Spot: {disc['low']:.0%}–{disc['high']:.0%} off on-demand (varies by region and over time); "
         "reclaimed tasks that are retried cost extra") if spot else
        "on-demand: a single figure; real durations vary, so the cost moves with them",
        NOT_INCLUDED,
    ]
    problem = fargate_size_problem(vcpus, memory_mib)
    if problem:
        assumptions.append(f"warning: {problem}; AWS Batch would reject this job definition")
    return Estimate(low_usd=low, high_usd=high, vcpu_hours=vcpu_hours, gb_hours=gb_hours,
                    assumptions=assumptions, region=region, spot=spot)


# -- right-sizing -----------------------------------------------------------------------------------
HEADROOM = 1.25  # what a suggestion adds to the most any task used
MIN_SAVING = 0.2  # smaller savings are not worth a line


@dataclass(frozen=True)
class RightSize:
    """A smaller size that still fits what every task of a run used, and what it saves: on AWS Batch a valid
    Fargate size and its share of the per-hour price; locally and on Dask the smaller reservation (vCPU slots,
    reserved memory) and how much of it that frees for more tasks at once."""

    used_mib: float
    used_vcpus: float
    vcpus: float | None  # None: keep the vCPUs as they are (nothing reserves them there, or they already fit)
    memory_mib: int | None  # None: keep the memory as it is
    saving: float  # fraction of the per-hour price (AWS); of the reservation freed (elsewhere)
    backend: str = "aws-batch"
    reserved_vcpus: float | None = None  # what each task reserved (local and Dask)
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
        if self.backend == "aws-batch":
            return (f"{used}: {self.resources()} would cut the estimated AWS cost by {self.saving:.0%} "
                    "(`run --right-size` applies it)")
        reserved = " and ".join([*([f"{self.reserved_vcpus:g} vCPU"] if self.reserved_vcpus is not None else []),
                                 *([f"{self.reserved_mib:g} MiB"] if self.reserved_mib is not None else [])])
        freed = " and ".join(
            [*([f"{self.reserved_vcpus / self.vcpus:.3g}× fewer vCPU slots"]
               if self.vcpus is not None and self.reserved_vcpus else []),
             *([f"{self.reserved_mib / self.memory_mib:.3g}× less memory"]
               if self.memory_mib is not None and self.reserved_mib else [])])
        where = "on this machine" if self.backend == "local" else "on the Dask workers"
        return (f"{used} of the {reserved} each reserved: {self.resources()} reserves {freed} per task, so more "
                f"run at once {where} (`run --right-size` applies it)")


def _peak_use(usage: Sequence[tuple[float, float, float]]) -> tuple[float, float] | None:
    """The most memory (MiB) and vCPUs (CPU time over duration) any task used, from (peak_rss_mib, cpu_s,
    duration_s) of succeeded tasks; None when none ran long enough to tell."""
    measured = [(rss, cpu / dur) for rss, cpu, dur in usage if dur > 0]
    if not measured:
        return None
    return max(m for m, _ in measured), max(v for _, v in measured)


def right_size(usage: Sequence[tuple[float, float, float]], *, vcpus: float, memory_mib: int,
               region: str = "us-east-1") -> RightSize | None:
    """The cheapest valid Fargate size with HEADROOM over the most any task used, if it saves MIN_SAVING.

    `usage` holds (peak_rss_mib, cpu_s, duration_s) of succeeded tasks; a task's vCPU use is its CPU time over
    its duration."""
    from batchsweep.aws.fargate import VALID

    peak = _peak_use(usage)
    if peak is None:
        return None
    used_mib, used_vcpus = peak
    vcpu_price, gb_price = prices_for(region)

    def price(v: float, m: float) -> float:
        return v * vcpu_price + m / 1024 * gb_price

    fits = [(price(v, m), v, m) for v, sizes in VALID.items() for m in sizes
            if v >= used_vcpus * HEADROOM and m >= used_mib * HEADROOM]
    if not fits:
        return None
    best, v, m = min(fits)
    saving = 1 - best / price(vcpus, memory_mib)
    if saving < MIN_SAVING:
        return None
    return RightSize(used_mib=used_mib, used_vcpus=used_vcpus, vcpus=v, memory_mib=m, saving=saving)


VCPU_STEPS = (0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)  # vCPU reservations a suggestion picks from
MEMORY_STEP_MIB = 256  # a memory suggestion is a multiple of it
RESERVED_FACTOR = 2.0  # a reservation is worth a line when what it needs is at most half of it


def right_size_reserved(usage: Sequence[tuple[float, float, float]], *, vcpus: float | None,
                        memory_mib: float | None, backend: str) -> RightSize | None:
    """Locally and on Dask: the smaller reservation (HEADROOM over the most any task used) when it is at most
    half of what each task reserved. `vcpus`/`memory_mib`: what the run reserved per task, None where nothing
    was (locally memory is reserved only when the spec sets it; Dask reserves no vCPUs)."""
    peak = _peak_use(usage)
    if peak is None:
        return None
    used_mib, used_vcpus = peak
    new_vcpus: float | None = next((v for v in VCPU_STEPS if v >= used_vcpus * HEADROOM), None)
    if vcpus is None or new_vcpus is None or new_vcpus * RESERVED_FACTOR > vcpus:
        new_vcpus = None
    new_mib: int | None = max(MEMORY_STEP_MIB, math.ceil(used_mib * HEADROOM / MEMORY_STEP_MIB) * MEMORY_STEP_MIB)
    if memory_mib is None or new_mib is None or new_mib * RESERVED_FACTOR > memory_mib:
        new_mib = None
    if new_vcpus is None and new_mib is None:
        return None
    freed = [1 - new / old for new, old in ((new_vcpus, vcpus), (new_mib, memory_mib)) if new is not None and old]
    return RightSize(used_mib=used_mib, used_vcpus=used_vcpus, vcpus=new_vcpus, memory_mib=new_mib,
                     saving=max(freed), backend=backend, reserved_vcpus=vcpus, reserved_mib=memory_mib)


# -- a finished run ------------------------------------------------------------------------------
def aws_region(spec_region: str | None) -> str:
    """The spec's aws.region, else the standard environment variables, else us-east-1 (no AWS call)."""
    return spec_region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def usage_of(statuses: Iterable[TaskStatus]) -> list[tuple[float, float, float]]:
    """(peak_rss_mib, cpu_s, duration_s) of the succeeded tasks that measured them."""
    from batchsweep.model import State

    return [(s.peak_rss_mib, s.cpu_s, s.duration_s) for s in statuses
            if s.state is State.SUCCEEDED and s.peak_rss_mib is not None and s.cpu_s is not None
            and s.duration_s is not None]


def right_size_from(statuses: Iterable[TaskStatus], *, vcpus: float, memory_mib: int,
                    region: str | None = None) -> RightSize | None:
    """A smaller Fargate size from what the succeeded tasks measured (peak memory, CPU time), if worth it."""
    return right_size(usage_of(statuses), vcpus=vcpus, memory_mib=memory_mib, region=aws_region(region))


def reserved(backend: str, resources: dict[str, Any], *, memory_set: bool) -> tuple[float | None, float | None]:
    """What each task reserves per backend besides AWS, as (vcpus, memory_mib), None where nothing is: locally
    vCPU slots always and memory when the spec sets it; on Dask memory when the spec sets it (a worker
    resource); vCPUs nowhere else."""
    memory = (float(resources.get("memory_mib") or 0) or None) if memory_set else None
    if backend == "local":
        return float(resources.get("vcpus") or 1), memory
    if backend == "dask":
        return None, memory
    return None, None


def run_right_size(record: RunRecord, statuses: Iterable[TaskStatus]) -> RightSize | None:
    """The suggestion for a finished run, on any backend: a smaller Fargate size for an AWS run (none for GPU
    tasks, which run on EC2), a smaller reservation for a local or Dask run."""
    resources, backend = record.spec.resources, record.backend
    if backend == "aws-batch":
        if resources.gpus:
            return None
        return right_size_from(statuses, vcpus=resources.vcpus, memory_mib=resources.memory_mib,
                               region=record.spec.aws.region)
    from batchsweep.store.record import DaskEngineSettings, LocalEngineSettings

    # what the engine reserved, as it recorded it
    memory: float | None
    if backend == "local":
        vcpus, memory = resources.vcpus, record.engine_as(LocalEngineSettings).memory_limit_mib
    elif backend == "dask":
        dask_memory = (record.engine_as(DaskEngineSettings).resources or {}).get("MEMORY")
        vcpus, memory = None, (dask_memory / 2**20 if dask_memory else None)
    else:
        return None
    return right_size_reserved(usage_of(statuses), vcpus=vcpus, memory_mib=memory, backend=backend)


def container_seconds(tasks: Iterable[tuple[str | None, float | None, float | None]]) -> list[float]:
    """How long each container ran, from its tasks' (worker, started_at, ended_at): an AWS child job runs its
    tasks one after another in one container, so it bills from its first task's start to its last task's end."""
    spans: dict[str, tuple[float, float]] = {}
    for worker, started, ended in tasks:
        if not worker or started is None or ended is None:
            continue
        first, last = spans.get(worker, (started, ended))
        spans[worker] = (min(first, started), max(last, ended))
    return [last - first for first, last in spans.values()]


def run_cost(record: RunRecord, durations_s: Sequence[float], *,
             containers_s: Sequence[float] | None = None) -> Estimate | None:
    """Estimated cost of a finished aws-batch run (None for other backends or GPU runs). With `containers_s`
    (`container_seconds`), each child container is priced once for its whole run time: tasks are packed."""
    spec = record.spec
    if record.backend != "aws-batch" or spec.resources.gpus:
        return None
    from batchsweep.aws.record import AwsEngineSettings

    settings = record.engine_as(AwsEngineSettings)  # the engine's settings as it resolved them (region, spot)
    region = settings.region or aws_region(spec.aws.region)
    try:
        return compute_cost(list(containers_s or durations_s), per_container=bool(containers_s),
                            vcpus=float(spec.resources.vcpus), memory_mib=spec.resources.memory_mib,
                            region=str(region), spot=bool(spec.aws.spot if settings.spot is None else settings.spot))
    except SweepError:
        return None  # e.g. a region the price table does not cover: no figure rather than a wrong one


def cost_summary(est: Estimate) -> str:
    figure = usd(est.low_usd) if est.low_usd == est.high_usd else f"{usd(est.low_usd)}–{usd(est.high_usd)}"
    return f"{figure} (ESTIMATE, {'Fargate Spot' if est.spot else 'Fargate on-demand'}, {est.region})"
