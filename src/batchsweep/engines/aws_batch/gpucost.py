"""What GPU tasks cost on AWS Batch: they run on EC2 instances (Fargate has no GPUs), priced from
``data/ec2_gpu_prices.json`` (dated, not fetched live). Batch places several jobs on one instance when they
fit, so a container is priced at its share of an instance: the largest of its GPU, vCPU and memory fractions.
Batch launches the types of lowest cost per unit that fit, but which family (g4dn's T4 or g5's A10G) is its
choice, so the figure is a range over the families: each one's cheapest share that fits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from batchsweep.report.cost import Estimate

PRICES_FILE = Path(__file__).parents[2] / "data" / "ec2_gpu_prices.json"
# An EC2 instance boots, starts the ECS agent and pulls the image before its first container runs; later ones
# reuse the instance. Per container this is an average, not a measurement.
STARTUP_S = 120.0
NOT_INCLUDED = (
    "not included: retried attempts, idle instance time between jobs, EBS volumes, the instance's "
    "public IPv4 address, S3 requests and transfer, CloudWatch Logs, ECR storage"
)


def load_prices() -> dict[str, Any]:
    prices: dict[str, Any] = json.loads(PRICES_FILE.read_text(encoding="utf-8"))
    return prices


def shares(*, vcpus: float, memory_mib: int, gpus: float, table: dict[str, Any]) -> dict[str, float]:
    """USD per hour of one container in each family, on the type of that family where its share costs least:
    the type's price times the container's share of it. Memory counts what the ECS agent leaves to jobs
    (`usable_memory` of the instance). Keyed by the instance type."""
    best: dict[str, tuple[float, str]] = {}
    for name, it in table["instances"].items():
        usable_mib = it["memory_gib"] * 1024 * float(table["usable_memory"])
        if gpus > it["gpus"] or vcpus > it["vcpus"] or memory_mib > usable_mib:
            continue
        cost = float(it["hour"]) * max(gpus / it["gpus"], vcpus / it["vcpus"], memory_mib / usable_mib)
        family = name.split(".")[0]
        best[family] = min(best.get(family, (cost, name)), (cost, name))
    return {name: cost for cost, name in best.values()}


def price(run_seconds: list[float], *, vcpus: float, memory_mib: int, gpus: float, region: str, spot: bool,
          assumed: list[str], startup_seconds: float = STARTUP_S) -> Estimate | str:
    """EC2's price of containers that ran `run_seconds` each, or why there is no figure."""
    table = load_prices()
    families = "/".join(table["families"])
    if region not in table["regions"]:
        return (f"not estimated: no EC2 GPU prices for region {region!r} (the table covers "
                f"{', '.join(table['regions'])}; add it to {PRICES_FILE.name})")
    per_hour = shares(vcpus=vcpus, memory_mib=memory_mib, gpus=gpus, table=table)
    if not per_hour:
        return (
            f"not estimated: no {families} instance has {gpus:g} GPU(s), {vcpus:g} vCPUs and {memory_mib} "
            "MiB for one task; lower resources or pick larger GpuInstanceTypes"
        )
    cheapest, dearest = min(per_hour, key=per_hour.__getitem__), max(per_hour, key=per_hour.__getitem__)
    minimum = float(table["billing"]["minimum_seconds"])
    billed = sum(max(minimum, startup_seconds + s) for s in run_seconds)
    low, high = per_hour[cheapest] * billed / 3600, per_hour[dearest] * billed / 3600
    disc = table["spot_discount"]
    if spot:
        low, high = low * (1 - disc["high"]), high * (1 - disc["low"])
    assumptions = [
        *assumed,
        f"prices: EC2 {table['platform']} on-demand in {region}, from the price table of {table['as_of']} "
        "(not live prices)",
        f"each container: {gpus:g} GPU, {vcpus:g} vCPU and {memory_mib} MiB, priced as its share of the "
        f"instance Batch places it on: from {cheapest} (${per_hour[cheapest]:.3f}/hour) to {dearest} "
        f"(${per_hour[dearest]:.3f}/hour): the best fit of each family of the stack's default "
        f"GpuInstanceTypes ({families})",
        f"startup: {startup_seconds:g} s per container (instance boot and image pull, averaged over the "
        "containers an instance runs)",
        f"billing per second with a {minimum:g} s minimum: {billed:,.0f} s billed",
        (
            f"EC2 Spot: {disc['low']:.0%}–{disc['high']:.0%} off on-demand (varies by region, zone and over "
            "time); reclaimed tasks that are retried cost extra"
        )
        if spot
        else "on-demand (aws.spot: false): the range is which family Batch launches",
        NOT_INCLUDED,
    ]
    return Estimate(low_usd=low, high_usd=high, vcpu_hours=billed / 3600 * vcpus,
                    gb_hours=billed / 3600 * memory_mib / 1024, assumptions=assumptions,
                    kind=f"EC2 GPU {'Spot' if spot else 'on-demand'}, {region}", region=region, spot=spot)
