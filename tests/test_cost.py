"""Fargate cost estimates: price lookups, billing arithmetic on fixed inputs, and what they say they
assumed."""

from __future__ import annotations

import math
from typing import Any

import pytest

from batchsweep.engines.aws_batch.cost import (
    compute_cost,
    estimate,
    fargate_size_problem,
    load_prices,
    prices_for,
)
from batchsweep.errors import SweepError

REQUIRED_REGIONS = ["us-east-1", "us-east-2", "us-west-1", "us-west-2", "eu-west-1", "eu-central-1",
                    "ap-northeast-1", "ap-southeast-1", "ap-southeast-2"]
BASE: dict[str, Any] = {"vcpus": 1, "memory_mib": 2048, "region": "us-east-1"}
IPV4 = 0.005  # USD per public IPv4 address-hour: each Fargate container of the stack holds one


def test_price_table_is_dated_sourced_and_covers_the_main_regions() -> None:
    table = load_prices()
    assert table["as_of"] and "aws.amazon.com/fargate/pricing" in table["source"]
    assert set(REQUIRED_REGIONS) <= set(table["regions"])
    assert 0 < table["spot_discount"]["low"] < table["spot_discount"]["high"] < 1
    assert table["public_ipv4"]["hour"] == IPV4
    for region in table["regions"]:
        vcpu, gb = prices_for(region)
        assert 0.03 < vcpu < 0.07 and 0.003 < gb < 0.008


def test_us_east_1_prices() -> None:
    assert prices_for("us-east-1") == (0.04048, 0.004445)


def test_unknown_region_names_it_and_lists_known_ones() -> None:
    with pytest.raises(SweepError, match=r"'mars-north-1'.*known regions: .*us-east-1"):
        estimate(n_tasks=1, task_seconds=60, spot=False, **{**BASE, "region": "mars-north-1"})


def test_on_demand_100_tasks_of_a_minute() -> None:
    # 100 containers x (30 s startup + 60 s) = 9000 s = 2.5 h; 1 vCPU, 2 GB, a public IPv4 address:
    # 2.5 vCPU-h x 0.04048 + 5 GB-h x 0.004445 + 2.5 address-h x 0.005 = 0.1012 + 0.022225 + 0.0125 = 0.135925
    est = estimate(n_tasks=100, task_seconds=60, spot=False, **BASE)
    assert est.vcpu_hours == pytest.approx(2.5)
    assert est.gb_hours == pytest.approx(5.0)
    assert est.low_usd == est.high_usd == pytest.approx(0.135925)


def test_on_demand_without_startup() -> None:
    # 6000 s = 5/3 h: 5/3 x 0.04048 + 10/3 x 0.004445
    est = estimate(n_tasks=100, task_seconds=60, spot=False, startup_seconds=0, **BASE)
    assert est.low_usd == pytest.approx(5 / 3 * 0.04048 + 10 / 3 * 0.004445 + 5 / 3 * IPV4)


def test_one_minute_minimum_per_container() -> None:
    # 10 tasks of 5 s + 10 s startup are each billed 60 s, not 15 s
    est = estimate(n_tasks=10, task_seconds=5, spot=False, startup_seconds=10, **BASE)
    assert est.vcpu_hours == pytest.approx(600 / 3600)
    assert any("60 s minimum" in a for a in est.assumptions)


def test_spot_is_a_discount_range() -> None:
    address = 2.5 * IPV4  # the public IPv4 address costs the same on Spot
    on_demand = estimate(n_tasks=100, task_seconds=60, spot=False, **BASE).low_usd - address
    spot = estimate(n_tasks=100, task_seconds=60, spot=True, **BASE)
    assert spot.low_usd == pytest.approx(on_demand * 0.3 + address)
    assert spot.high_usd == pytest.approx(on_demand * 0.5 + address)


def test_tasks_packed_into_containers_pay_startup_once_per_container() -> None:
    # 10 tasks, 4 per container: containers of 4, 4, 2 tasks x 100 s, each + 30 s startup
    est = estimate(n_tasks=10, task_seconds=100, spot=False, tasks_per_container=4, vcpus=2, memory_mib=4096,
                   region="eu-central-1")
    seconds = (430 + 430 + 230)
    assert est.vcpu_hours == pytest.approx(seconds / 3600 * 2)
    assert est.low_usd == pytest.approx(seconds / 3600 * (2 * 0.04656 + 4 * 0.00511 + IPV4))


def test_zero_tasks_cost_nothing() -> None:
    assert estimate(n_tasks=0, task_seconds=60, spot=True, **BASE).high_usd == 0


@pytest.mark.parametrize("bad", [{"n_tasks": -1}, {"task_seconds": -5}, {"task_seconds": math.nan},
                                 {"tasks_per_container": 0}, {"vcpus": 0}])
def test_bad_inputs_are_sweep_errors(bad: dict[str, Any]) -> None:
    args = {"n_tasks": 10, "task_seconds": 60, "spot": False, **BASE, **bad}
    with pytest.raises(SweepError):
        estimate(**args)


def test_lines_say_estimate_and_list_the_assumptions() -> None:
    text = "\n".join(
        estimate(
            n_tasks=100, task_seconds=60, spot=True, duration_source="median of run 20240601", **BASE
        ).lines()
    )
    assert "ESTIMATED cost (Fargate Spot, us-east-1): $0.05–$0.074" in text
    for needle in ("price table of", load_prices()["as_of"], "us-east-1", "median of run 20240601",
                   "startup: 30 s per container", "50%–70% off", "not included", "public IPv4: one address"):
        assert needle in text


def test_on_demand_lines_show_a_single_figure() -> None:
    first = estimate(n_tasks=100, task_seconds=60, spot=False, **BASE).lines()[0]
    assert first.startswith("ESTIMATED cost (Fargate on-demand, us-east-1): $0.14 for 2.5 vCPU-hours")


def test_compute_cost_bills_each_measured_task() -> None:
    # 20 s + 30 s startup -> 60 s minimum; 100 s + 30 s -> 130 s; NaN (never ran) is not counted
    est = compute_cost([20.0, 100.0, math.nan], spot=False, startup_seconds=30, **BASE)
    assert est.vcpu_hours == pytest.approx(190 / 3600)
    assert est.low_usd == pytest.approx(190 / 3600 * (0.04048 + 2 * 0.004445 + IPV4))
    assert any("1 task(s) without a measured duration" in a for a in est.assumptions)


@pytest.mark.parametrize(("vcpus", "mib", "ok"), [(1, 2048, True), (0.25, 512, True), (4, 30720, True),
                                                  (1, 1024, False), (3, 8192, False), (8, 18432, False)])
def test_fargate_sizes(vcpus: float, mib: int, ok: bool) -> None:
    assert (fargate_size_problem(vcpus, mib) is None) == ok


def test_an_invalid_fargate_size_is_flagged_in_the_assumptions() -> None:
    est = estimate(n_tasks=1, task_seconds=60, spot=False, vcpus=1, memory_mib=1000, region="us-east-1")
    assert any(
        a.startswith("warning: resources.memory_mib: 1000 MiB is not valid with 1 vCPU")
        for a in est.assumptions
    )


# -- right-sizing -------------------------------------------------------------------------------
def test_right_size_picks_the_cheapest_valid_fargate_size_with_headroom() -> None:
    from batchsweep.engines.aws_batch.cost import right_size

    # Peak 700 MiB and 0.4 vCPU busy: with 25% headroom, 875 MiB and 0.5 vCPU -> 0.5 vCPU / 1024 MiB.
    got = right_size([(700, 4.0, 10.0), (300, 1.0, 10.0)], vcpus=1, memory_mib=4096)
    assert got is not None and (got.vcpus, got.memory_mib) == (0.5, 1024)
    # 1 vCPU + 4 GB = 0.04048 + 4 * 0.004445; 0.5 vCPU + 1 GB = 0.02024 + 0.004445
    assert got.saving == pytest.approx(1 - (0.02024 + 0.004445) / (0.04048 + 4 * 0.004445))
    assert "`resources: {vcpus: 0.5, memory_mib: 1024}`" in got.line() and "58%" in got.line()
    assert got.overrides == ["resources.vcpus=0.5", "resources.memory_mib=1024"]


def test_right_size_stays_quiet_when_the_size_already_fits_or_nothing_was_measured() -> None:
    from batchsweep.engines.aws_batch.cost import right_size

    assert right_size([(1800, 9.0, 10.0)], vcpus=1, memory_mib=2048) is None  # used nearly all of it
    assert right_size([], vcpus=4, memory_mib=8192) is None
    assert right_size([(100, 0.0, 0.0)], vcpus=4, memory_mib=8192) is None  # no duration, no vCPU figure
