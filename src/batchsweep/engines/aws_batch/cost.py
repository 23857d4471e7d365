"""What a sweep costs on AWS Batch with Fargate (GPU tasks: EC2, gpucost.py): an estimate before the run, an
account after it, and the smaller Fargate size that fits what a run's tasks used (the engine's
`estimate_cost`, `run_cost`, `right_size`).

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
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchsweep.aws.record import AwsEngineSettings
from batchsweep.errors import SweepError
from batchsweep.report.cost import HEADROOM, MIN_SAVING, Estimate, RightSize, peak_use, usage_of

if TYPE_CHECKING:
    from batchsweep.model import TaskStatus
    from batchsweep.report.cost import Durations
    from batchsweep.spec.schema import Spec
    from batchsweep.store.record import RunRecord

DEFAULT_REGION = "us-east-1"

PRICES_FILE = Path(__file__).parents[2] / "data" / "fargate_prices.json"
NOT_INCLUDED = ("not included: retried attempts, S3 requests and transfer, CloudWatch Logs, ECR storage, "
                "ephemeral storage beyond 20 GB")


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
             duration_source: str = "given with --task-seconds", public_ipv4: bool = True) -> Estimate:
    """The cost of ``n_tasks`` tasks of ``task_seconds`` each, ``tasks_per_container`` run one after another
    in each container. ``duration_source`` says where ``task_seconds`` came from (shown in the
    assumptions)."""
    if n_tasks < 0 or tasks_per_container < 1:
        raise SweepError(
            f"need n_tasks >= 0 and tasks_per_container >= 1, got {n_tasks} and {tasks_per_container}"
        )
    if not (math.isfinite(task_seconds) and task_seconds >= 0) or startup_seconds < 0:
        raise SweepError(
            f"task_seconds and startup_seconds must be >= 0, got {task_seconds} and {startup_seconds}"
        )
    full, rest = divmod(n_tasks, tasks_per_container)
    containers = [tasks_per_container * task_seconds] * full + ([rest * task_seconds] if rest else [])
    assumed = [f"{n_tasks} task(s), {tasks_per_container} per container: {len(containers)} container(s)",
               f"task duration: {task_seconds:g} s each ({duration_source})"]
    return _price(containers, vcpus=vcpus, memory_mib=memory_mib, region=region, spot=spot,
                  startup_seconds=startup_seconds, assumed=assumed, public_ipv4=public_ipv4)


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
        assumed.append(
            f"{len(durations_s) - len(measured)} {unit} without a measured duration are not counted"
        )
    return _price(measured, vcpus=vcpus, memory_mib=memory_mib, region=region, spot=spot,
                  startup_seconds=startup_seconds, assumed=assumed)


def _price(run_seconds: list[float], *, vcpus: float, memory_mib: int, region: str, spot: bool,
           startup_seconds: float, assumed: list[str], public_ipv4: bool = True) -> Estimate:
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
    low, high = (
        (on_demand * (1 - disc["high"]), on_demand * (1 - disc["low"])) if spot else (on_demand, on_demand)
    )
    ipv4_price = float(table["public_ipv4"]["hour"])
    # one per container while it runs; no Spot discount
    ipv4 = billed / 3600 * ipv4_price if public_ipv4 else 0.0
    low, high = low + ipv4, high + ipv4
    assumptions = [
        *assumed,
        f"prices: Fargate {table['platform']} in {region}, ${vcpu_price}/vCPU-hour and ${gb_price}/GB-hour "
        f"on-demand, from the price table of {table['as_of']} (not live prices)",
        f"each container: {vcpus:g} vCPU and {memory_mib} MiB ({gb:g} GB)",
        f"startup: {startup_seconds:g} s per container (image pull and boot are billed)",
        f"billing per second with a {minimum:g} s minimum per container: {billed:,.0f} s billed",
        "public IPv4: one address per container (the stack's subnets have no NAT gateway) at "
        f"${ipv4_price}/hour: ${ipv4:.4g}"
        if public_ipv4
        else "public IPv4: none (PrivateNetwork: the containers reach AWS through the stack's VPC "
        "endpoints, billed by the hour whether or not a sweep runs, not per run)",
        (
            f"Fargate Spot: {disc['low']:.0%}–{disc['high']:.0%} off on-demand (varies by region and over "
            "time); reclaimed tasks that are retried cost extra"
        )
        if spot
        else "on-demand: a single figure; real durations vary, so the cost moves with them",
        NOT_INCLUDED,
    ]
    problem = fargate_size_problem(vcpus, memory_mib)
    if problem:
        assumptions.append(f"warning: {problem}; AWS Batch would reject this job definition")
    return Estimate(low_usd=low, high_usd=high, vcpu_hours=vcpu_hours, gb_hours=gb_hours,
                    assumptions=assumptions, kind=f"Fargate {'Spot' if spot else 'on-demand'}, {region}",
                    region=region, spot=spot)


# -- right-sizing ------------------------------------------------------------------------------------
def right_size(usage: Sequence[tuple[float, float, float]], *, vcpus: float, memory_mib: int,
               region: str = "us-east-1") -> RightSize | None:
    """The cheapest valid Fargate size with HEADROOM over the most any task used, if it saves MIN_SAVING.

    `usage` holds (peak_rss_mib, cpu_s, duration_s) of succeeded tasks; a task's vCPU use is its CPU time over
    its duration."""
    from batchsweep.aws.fargate import VALID

    peak = peak_use(usage)
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


def aws_region(spec_region: str | None) -> str:
    """The spec's aws.region, else the standard environment variables, else us-east-1 (no AWS call)."""
    return (
        spec_region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    )


def right_size_from(statuses: Iterable[TaskStatus], *, vcpus: float, memory_mib: int,
                    region: str | None = None) -> RightSize | None:
    """A smaller Fargate size from what the succeeded tasks measured (peak memory, CPU time), if worth it."""
    return right_size(usage_of(statuses), vcpus=vcpus, memory_mib=memory_mib, region=aws_region(region))


def run_cost(record: RunRecord, durations_s: Sequence[float], *,
             containers_s: Sequence[float] | None = None) -> Estimate | None:
    """Estimated cost of a finished AWS Batch run: Fargate's price, or EC2's for GPU tasks (None when the
    price tables lack its region). With `containers_s` (`container_seconds`), each child container is priced
    once for its whole run time: tasks are packed."""
    spec = record.spec
    settings = record.engine_as(AwsEngineSettings)  # the engine's settings as it resolved them (region, spot)
    region = settings.region or aws_region(spec.aws.region)
    spot = bool(spec.aws.spot if settings.spot is None else settings.spot)
    if spec.resources.gpus:
        from batchsweep.engines.aws_batch import gpucost

        measured = [float(d) for d in (containers_s or durations_s) if d is not None and math.isfinite(d)]
        unit = "container(s) (tasks packed in each)" if containers_s else "task(s), one container each"
        est = gpucost.price(measured, vcpus=float(spec.resources.vcpus), memory_mib=spec.resources.memory_mib,
                            gpus=float(spec.resources.gpus), region=str(region), spot=spot,
                            assumed=[f"{len(measured)} {unit}, with their measured run times "
                                     f"(total {sum(measured):.0f} s)"])
        return est if isinstance(est, Estimate) else None
    try:
        return compute_cost(list(containers_s or durations_s), per_container=bool(containers_s),
                            vcpus=float(spec.resources.vcpus), memory_mib=spec.resources.memory_mib,
                            region=str(region), spot=spot)
    except SweepError:
        return None  # e.g. a region the price table does not cover: no figure rather than a wrong one


def estimate_for(spec: Spec, n_tasks: int, d: Durations) -> Estimate | str:
    """The engine's `estimate_cost`: the price of `n_tasks` tasks packed into child containers as the engine
    would pack them (Fargate's, or EC2's for GPU tasks), or why there is no figure."""
    from batchsweep.task.arrayslice import tasks_per_child

    # The engine packs tasks by duration only when an earlier run measured it, so do the same here.
    k = tasks_per_child(max(n_tasks, 1), max_parallel=spec.max_parallel, tasks_per_job=spec.aws.tasks_per_job,
                        task_seconds=d.task_s if d.from_earlier_run else None)
    if spec.resources.gpus:
        from batchsweep.engines.aws_batch import gpucost

        full, rest = divmod(n_tasks, k)
        containers = [k * d.task_s] * full + ([rest * d.task_s] if rest else [])
        gpu = gpucost.price(containers, vcpus=spec.resources.vcpus, memory_mib=spec.resources.memory_mib,
                            gpus=spec.resources.gpus, region=aws_region(spec.aws.region), spot=spec.aws.spot,
                            assumed=[f"{n_tasks} task(s), {k} per container: {len(containers)} container(s)",
                                     f"task duration: {d.task_s:g} s each ({d.source})"])
        if isinstance(gpu, str):
            return gpu
        est = gpu
    else:
        public, network = _public_ipv4(spec)
        est = estimate(
            n_tasks=n_tasks,
            task_seconds=d.task_s,
            vcpus=spec.resources.vcpus,
            memory_mib=spec.resources.memory_mib,
            region=aws_region(spec.aws.region),
            spot=spec.aws.spot,
            tasks_per_container=k,
            duration_source=d.source,
            public_ipv4=public,
        )
    why = ("aws.tasks_per_job" if spec.aws.tasks_per_job else
           f"max_parallel {spec.max_parallel}" if spec.max_parallel and k > 1 else
           "packed to a few minutes per container from the earlier run's durations" if k > 1 else
           "no aws.tasks_per_job, max_parallel or earlier durations to pack by")
    region = ("aws.region in the spec" if spec.aws.region else
              "AWS_REGION" if os.environ.get("AWS_REGION") else
              "AWS_DEFAULT_REGION" if os.environ.get("AWS_DEFAULT_REGION") else
              "the default, as no aws.region is set in the spec")
    extra = [f"tasks per container: {k} ({why})", f"region {est.region}: from {region}",
             f"spot: {'yes' if spec.aws.spot else 'no'} (aws.spot)"]
    if not spec.resources.gpus:
        extra.append(network)
    return replace(est, assumptions=[*est.assumptions, *extra])


# Where boto3 would find credentials; with none of them in sight the dry run makes no AWS call (nor imports
# boto3)
_CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
                    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI")


def _credentials_in_sight() -> bool:
    files = (os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
             os.environ.get("AWS_CONFIG_FILE", "~/.aws/config"))
    return any(os.environ.get(v) for v in _CREDENTIAL_VARS) or any(os.path.isfile(os.path.expanduser(f))
                                                                    for f in files)


def _public_ipv4(spec: Spec) -> tuple[bool, str]:
    """Whether the run's containers hold a public IPv4 address (billed per hour), read from the stack's
    PrivateNetwork parameter when it can be; and where that came from, as an assumption line."""
    aws = spec.aws
    if (aws.bucket and aws.job_queue and aws.job_definition) or not aws.stack:
        return True, ("public IPv4 counted: your own Batch resources (whether their job definition assigns a "
                      "public IP is not read)")
    if not _credentials_in_sight():
        return True, (f"public IPv4 counted: stack {aws.stack!r} not read (no AWS credentials in sight), so "
                      "whether it has PrivateNetwork=true is not known")
    try:
        from batchsweep.aws.clients import make_session
        from batchsweep.infra.stack import describe_stack

        found = describe_stack(aws.stack, session=make_session(profile=aws.profile, region=aws.region))
    except Exception as e:  # noqa: BLE001 - offline, expired credentials: an estimate still, saying so
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        return True, f"public IPv4 counted: stack {aws.stack!r} could not be read ({reason})"
    if found is None:
        return (
            True,
            f"public IPv4 counted: no stack {aws.stack!r} yet (`infra up` makes public subnets by default)",
        )
    params = {p.get("ParameterKey"): p.get("ParameterValue") for p in found.get("Parameters") or []}
    private = params.get("PrivateNetwork") == "true"
    return not private, f"network: stack {aws.stack!r} has PrivateNetwork={'true' if private else 'false'}"


def right_size_for(spec: Spec, usage: Sequence[tuple[float, float, float]]) -> RightSize | None:
    """The engine's `right_size`: a smaller Fargate size (none for GPU tasks, which run on EC2)."""
    if spec.resources.gpus:
        return None
    return right_size(usage, vcpus=spec.resources.vcpus, memory_mib=spec.resources.memory_mib,
                      region=aws_region(spec.aws.region))
