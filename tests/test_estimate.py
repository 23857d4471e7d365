"""`batchsweep estimate`, `run --dry-run` and the cost after a run: what a sweep will take, from the spec
alone, never calling AWS; durations from --task-seconds, a local --pilot, or an earlier finished run of the
sweep."""

from __future__ import annotations

import dataclasses
import os
import re
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import batchsweep
from batchsweep import cli
from batchsweep.engines.aws_batch.cost import load_prices
from batchsweep.report.cost import run_cost, usd
from batchsweep.store.core import Store
from batchsweep.store.record import RunRecord

SCRIPTS = Path(__file__).parent / "scripts"


def write_spec(tmp_path: Path, *, name: str = "est", grid: str = "{a: [1, 2, 3, 4], b: [0.5, 1, 2, 3, 4]}",
               extra: str = "") -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: {name}
        script: {SCRIPTS / 'writes_metrics.py'}
        params:
          grid: {grid}
        """) + textwrap.dedent(extra))
    return path


def cli_out(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert cli.main(list(argv)) == 0
    return capsys.readouterr().out


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials anywhere, and every AWS endpoint pointed at a port where nothing listens."""
    for var in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def ipv4_price() -> float:
    """Each Fargate container holds a public IPv4 address (the stack has no NAT gateway), billed per hour."""
    return float(load_prices()["public_ipv4"]["hour"])


def price(region: str) -> tuple[float, float]:
    p = load_prices()["regions"][region]
    return p["vcpu_hour"], p["gb_hour"]


def test_on_demand_estimate_arithmetic_from_task_seconds(tmp_path: Path, no_aws: None,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, extra="""\
        resources: {vcpus: 2, memory_mib: 4096}
        aws: {region: us-west-1, spot: false}
        """)
    out = cli_out(capsys, "estimate", str(spec), "--backend", "aws-batch", "--task-seconds", "3600",
                  "--store", str(tmp_path / "store"))
    # 20 containers, each billed 30 s startup + 3600 s; 2 vCPU and 4 GB each, and a public IPv4 address
    hours = 20 * 3630 / 3600
    vcpu_price, gb_price = price("us-west-1")
    expected = hours * 2 * vcpu_price + hours * 4 * gb_price + hours * ipv4_price()
    assert f"Fargate on-demand, us-west-1): ${expected:,.2f} for" in out
    assert "tasks      20" in out and "2 vCPU, 4096 MiB per task" in out
    assert "task duration: 3600 s each (given with --task-seconds)" in out
    assert "20 task(s), 1 per container: 20 container(s)" in out
    assert "This is an estimate" in out


def test_spot_estimate_is_a_range_and_packs_tasks_per_job(tmp_path: Path, no_aws: None,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, extra="""\
        backend: aws-batch
        aws: {region: eu-central-1, spot: true, tasks_per_job: 8}
        """)
    out = cli_out(capsys, "estimate", str(spec), "--task-seconds", "3600", "--store", str(tmp_path / "store"))
    # 20 tasks of an hour, 8 per container: containers of 8, 8 and 4 hours, each + 30 s startup
    hours = (2 * (8 * 3600 + 30) + 4 * 3600 + 30) / 3600
    vcpu_price, gb_price = price("eu-central-1")
    on_demand = hours * 1 * vcpu_price + hours * 2 * gb_price
    disc = load_prices()["spot_discount"]
    ipv4 = hours * ipv4_price()  # Spot's discount does not apply to the address
    low, high = on_demand * (1 - disc["high"]) + ipv4, on_demand * (1 - disc["low"]) + ipv4
    assert f"(Fargate Spot, eu-central-1): ${low:,.2f}–${high:,.2f}" in out
    assert "20 task(s), 8 per container: 3 container(s)" in out
    assert "tasks per container: 8 (aws.tasks_per_job)" in out


def test_dry_run_on_aws_batch_prints_estimate_writes_nothing_and_never_loads_boto(
        tmp_path: Path, no_aws: None) -> None:
    spec = write_spec(tmp_path)
    code = (
        "import sys; from batchsweep import cli; rc = cli.main(sys.argv[1:]); "
        "print('AWS-MODULES', sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore'))); "
        "sys.exit(rc)"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "run",
            str(spec),
            "--dry-run",
            "--backend",
            "aws-batch",
            "--task-seconds",
            "5",
            "--store",
            str(tmp_path / "store"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=os.environ.copy(),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "dry run: nothing was started" in out
    assert "ESTIMATED cost (Fargate Spot, us-east-1)" in out
    assert "This is an estimate from a price table, not a bill. It assumes:" in out
    assert "region us-east-1: from the default" in out
    assert "AWS-MODULES []" in out  # no AWS client was even imported, so no call was attempted
    assert not (tmp_path / "store").exists() and not (tmp_path / ".batchsweep").exists()


def test_a_real_run_in_the_same_environment_does_fail_to_reach_aws(tmp_path: Path, no_aws: None,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The control for the test above: without --dry-run the same spec needs AWS and says so."""
    spec = write_spec(tmp_path)
    assert cli.main(["run", str(spec), "--backend", "aws-batch", "--store", str(tmp_path / "store")]) == 2
    assert "error:" in capsys.readouterr().err


def test_without_any_duration_the_default_is_assumed_and_said(tmp_path: Path, no_aws: None,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = cli_out(capsys, "estimate", str(write_spec(tmp_path)), "--backend", "aws-batch",
                  "--store", str(tmp_path / "store"))
    assert "60 s per task (DEFAULT ASSUMPTION" in out
    assert "ASSUME 60 s per task" in out and "--task-seconds S or --pilot N" in out


def test_pilot_runs_the_first_tasks_locally_and_uses_their_durations(
    tmp_path: Path, no_aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, grid="{a: [1, 2, 3, 4, 5, 6], sleep: [0.3]}")
    store = tmp_path / "store"
    out = cli_out(capsys, "run", str(spec), "--dry-run", "--backend", "aws-batch", "--pilot", "2",
                  "--store", str(store))
    seconds = float(re.search(r"duration   ([0-9.]+) s per task \(median of a local pilot of 2 of 2", out)[1])
    assert 0.3 <= seconds < 10
    assert "tasks      6" in out
    assert not store.exists()  # the pilot ran in a throwaway store


def test_pilot_whose_tasks_all_fail_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, grid="{a: [1, 2], fail_on: [1]}")
    assert cli.main(["estimate", str(spec), "--pilot", "1", "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert (
        "--pilot 1: none of the pilot tasks succeeded (task 0: exit code 3: failing on purpose); fix the task"
        in err
    )
    assert "failing on purpose" in err


def test_durations_of_an_earlier_finished_run_of_the_sweep_are_used(
    tmp_path: Path, no_aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, grid="{a: [1, 2, 3], sleep: [0.2]}")
    store = tmp_path / "store"
    run = batchsweep.run(spec, store=store, progress=False)
    median = statistics.median(run.results()["duration_s"])
    out = cli_out(capsys, "estimate", str(spec), "--backend", "aws-batch", "--store", str(store))
    assert (
        f"duration   {median:g} s per task (median of 3 succeeded task(s) of earlier run {run.id} (local))"
        in out
    )
    assert "DEFAULT ASSUMPTION" not in out


def test_runs_of_another_sweep_are_not_used(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    batchsweep.run(write_spec(tmp_path, name="other", grid="{a: [1]}"), store=store, progress=False)
    out = cli_out(capsys, "estimate", str(write_spec(tmp_path, name="mine")), "--store", str(store))
    assert "DEFAULT ASSUMPTION: no finished run of sweep 'mine'" in out


def test_task_seconds_and_pilot_need_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cli.main(["run", str(write_spec(tmp_path)), "--task-seconds", "5", "--store", str(tmp_path / "s")])
        == 2
    )
    assert "only apply with --dry-run" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_an_invalid_fargate_size_is_bad_input_in_an_estimate_too(tmp_path: Path, no_aws: None,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, extra="resources: {vcpus: 1, memory_mib: 1000}\n")
    assert cli.main(["estimate", str(spec), "--backend", "aws-batch", "--task-seconds", "1"]) == 2
    assert "resources.memory_mib: 1000 MiB is not valid with 1 vCPU on Fargate" in capsys.readouterr().err


def test_status_shows_compute_time_after_a_local_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    run = batchsweep.run(write_spec(tmp_path, grid="{a: [1, 2], sleep: [0.1]}"), store=store, progress=False)
    from batchsweep.text import duration

    took = run.results()["duration_s"]
    out = cli_out(capsys, "status", run.id, "--store", str(store))
    assert (
        f"compute  {duration(took.sum())} of task time (sum of task durations), longest "
        f"{duration(took.max())}" in out
    )
    assert "0.0 s" not in out
    # Tasks shorter than a second measure the interpreter starting, not a size to reserve: no advice.
    assert took.max() < 1 and not [line for line in out.splitlines() if line.startswith("size")], out
    assert "cost" not in out  # a local run has no bill to estimate


def _record(backend: str, engine: dict[str, Any], **spec: Any) -> RunRecord:
    """A finished run's record: what the cost of a run is read from."""
    return RunRecord.of({"run_id": "r", "name": "r", "backend": backend, "created": "", "created_ts": 0.0,
                         "n_tasks": 3, "engine": engine,
                         "spec": {"name": "r", "script": "s.py", "params": {"grid": {"a": [1]}}, **spec}})


def test_cost_of_a_finished_aws_run_from_its_measured_durations() -> None:
    info = {"resources": {"vcpus": 1, "memory_mib": 2048, "gpus": 0}, "aws": {"spot": False}}
    est = run_cost(_record("aws-batch", {"region": "us-east-2"}, **info), [90.0, 10.0, 200.0])
    assert est is not None
    # one container each: max(60, 30 + d) = 120, 60, 230 s
    hours = (120 + 60 + 230) / 3600
    vcpu_price, gb_price = price("us-east-2")
    assert (
        est.low_usd
        == est.high_usd
        == pytest.approx(hours * vcpu_price + hours * 2 * gb_price + hours * ipv4_price())
    )
    assert (
        f"public IPv4: one address per container (the stack's subnets have no NAT gateway) at $0.005/hour: "
        f"${hours * 0.005:.4g}" in est.assumptions
    )
    assert run_cost(_record("local", {"region": "us-east-2"}, **info), [90.0]) is None


def test_report_of_an_aws_run_carries_the_estimated_cost(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    run = batchsweep.run(write_spec(tmp_path, grid="{a: [1, 2]}"), store=store, progress=False)
    run.results()  # cached: reading it back needs no engine
    # The same finished run, as if it had run on aws-batch (its run.json is all the report reads for cost).
    info = {**run.info, "backend": "aws-batch", "engine": {"region": "us-east-1"}}
    store.write_json(store.run_key(run.id, "run.json"), info)
    out = tmp_path / "report.html"
    batchsweep.load_run(run.id, store=store).report(out)
    html = out.read_text()
    assert "estimated cost" in html and "An estimate from a price table, not a bill" in html


def test_a_local_dry_run_prints_the_tasks_and_no_estimate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = cli_out(capsys, "run", str(write_spec(tmp_path)), "--dry-run", "--store", str(tmp_path / "store"))
    assert "20 tasks · backend local" in out
    assert "ESTIMATE" not in out and "cost" not in out and "ASSUME" not in out
    out = cli_out(capsys, "run", str(write_spec(tmp_path)), "--dry-run", "--task-seconds", "2",
                  "--store", str(tmp_path / "store"))
    assert "ESTIMATE for sweep est on local" in out  # asked for: a duration was given


def test_a_search_dry_run_says_trials_rounds_and_space_and_the_estimate_agrees(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("optuna")
    spec = tmp_path / "search.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: srch
        script: {SCRIPTS / 'writes_metrics.py'}
        params: {{fixed: {{b: 2}}}}
        search: {{sampler: tpe, trials: 20, batch: 6, metric: product, direction: maximize, seed: 3,
                  space: {{a: "randint(1, 9)"}}}}
        """))
    store = str(tmp_path / "store")
    out = cli_out(capsys, "run", str(spec), "--dry-run", "--store", store)
    assert (
        "search   tpe sampler · 20 trials in 4 rounds of up to 6 (batch) · maximize product · seed 3" in out
    )
    assert re.search(r"^space\s+a\s+randint\(1, 9\)$", out, re.M) and "fixed    b=2" in out
    assert "20 tasks (one per trial) · backend local" in out and not re.search(r"^0 tasks", out, re.M)
    est = cli_out(capsys, "estimate", str(spec), "--store", store)
    assert "tasks      20 (a search: 20 trials in 4 rounds of up to 6, one submission per round)" in est


def test_an_aws_dry_run_reads_the_latest_finished_run_once(tmp_path: Path, no_aws: None,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    # The durations and the right-size suggestion both come from the newest finished run: one read of its
    # statuses serves both (a store with thousands of tasks is read once, not twice).
    spec = write_spec(tmp_path, grid="{a: [1, 2, 3]}", extra="resources: {vcpus: 4, memory_mib: 16384}\n")
    store = tmp_path / "store"
    run = batchsweep.run(spec, store=store, progress=False)
    # Tasks of a minute each: right-sizing ignores tasks shorter than a second (their use is the
    # interpreter's). Their use is set too: a task that ends before the first sample (a loaded machine) has
    # none.
    opened = Store.open(store)
    for status in opened.statuses(run.id, 3).values():
        assert status.started_at is not None
        opened.write_status(
            run.id, dataclasses.replace(status, ended_at=status.started_at + 60, peak_rss_mib=60.0, cpu_s=1.0)
        )
    reads: list[str] = []
    statuses = Store.statuses

    def counted(self: Store, run_id: str, *args: object, **kwargs: object) -> object:
        reads.append(run_id)
        return statuses(self, run_id, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Store, "statuses", counted)
    out = cli_out(capsys, "run", str(spec), "--dry-run", "--backend", "aws-batch", "--store", str(store))
    assert f"of earlier run {run.id} (local)" in out  # the durations came from it
    assert "right-size" in out.lower()  # and so did the suggested smaller size
    assert reads == [run.id]


def gpu_price(name: str) -> float:
    from batchsweep.engines.aws_batch.gpucost import load_prices as gpu_prices

    return float(gpu_prices()["instances"][name]["hour"])


def test_gpu_tasks_are_priced_as_ec2_instances_not_fargate(tmp_path: Path, no_aws: None,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, grid="{a: [1, 2, 3, 4]}", extra="""\
        resources: {vcpus: 4, memory_mib: 15000, gpus: 1}
        aws: {region: us-east-1, spot: false}
        """)
    out = cli_out(capsys, "estimate", str(spec), "--backend", "aws-batch", "--task-seconds", "3600",
                  "--store", str(tmp_path / "store"))
    # 4 containers of 120 s startup + 3600 s; a 4-vCPU, 1-GPU task fits best on a g4dn.xlarge (T4) or a
    # g5.xlarge (A10G): which family Batch launches is the range
    hours = 4 * 3720 / 3600
    low, high = hours * gpu_price("g4dn.xlarge"), hours * gpu_price("g5.xlarge")
    assert f"(EC2 GPU on-demand, us-east-1): ${low:,.2f}–${high:,.2f}" in out, out
    assert "Fargate" not in out.split("ESTIMATED cost")[1]


def test_a_gpu_spot_estimate_takes_the_spot_discount_and_an_unpriced_region_says_so(
        tmp_path: Path, no_aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    from batchsweep.engines.aws_batch.gpucost import load_prices as gpu_prices

    spec = write_spec(tmp_path, grid="{a: [1]}", extra="""\
        resources: {vcpus: 4, memory_mib: 15000, gpus: 1}
        aws: {region: us-west-2}
        """)
    out = cli_out(capsys, "estimate", str(spec), "--backend", "aws-batch", "--task-seconds", "600",
                  "--store", str(tmp_path / "store"))
    disc = gpu_prices()["spot_discount"]
    hours = 720 / 3600
    low, high = (
        hours * gpu_price("g4dn.xlarge") * (1 - disc["high"]),
        hours * gpu_price("g5.xlarge") * (1 - disc["low"]),
    )
    assert f"(EC2 GPU Spot, us-west-2): {usd(low)}–{usd(high)}" in out, out
    spec.write_text(spec.read_text().replace("us-west-2", "ap-south-1"))
    out = cli_out(capsys, "estimate", str(spec), "--backend", "aws-batch", "--task-seconds", "600",
                  "--store", str(tmp_path / "store"))
    assert "not estimated: no EC2 GPU prices for region 'ap-south-1'" in out


def test_cost_of_a_finished_gpu_run_is_priced_as_ec2() -> None:
    info = {"resources": {"vcpus": 4, "memory_mib": 15000, "gpus": 1}, "aws": {"spot": True}}
    est = run_cost(_record("aws-batch", {"region": "us-east-1", "spot": False}, **info), [3480.0, 3480.0])
    # the queue it ran on, not the spec's
    assert est is not None and est.kind == "EC2 GPU on-demand, us-east-1"
    assert est.low_usd == pytest.approx(2 * gpu_price("g4dn.xlarge"))


def test_a_dry_run_on_a_private_network_stack_counts_no_public_ipv4(
    tmp_path: Path, session: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """PrivateNetwork=true: the containers hold no public address (issue #29 item 8). Before, every Fargate
    estimate added one address per container; now the dry run reads the stack's parameter and says which."""
    import json

    from batchsweep.aws.clients import make_client

    cfn = make_client("cloudformation", session=session)
    template = {"Parameters": {"PrivateNetwork": {"Type": "String", "Default": "false"}},
                "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}}
    for name, private in (("priv", "true"), ("pub", "false")):
        cfn.create_stack(StackName=name, TemplateBody=json.dumps(template),
                         Parameters=[{"ParameterKey": "PrivateNetwork", "ParameterValue": private}])
    cost = {}
    for name in ("priv", "pub", "none-yet"):
        spec = write_spec(tmp_path, extra=f"aws: {{stack: {name}, spot: false}}\n")
        out = cli_out(
            capsys,
            "run",
            str(spec),
            "--dry-run",
            "--backend",
            "aws-batch",
            "--task-seconds",
            "3600",
            "--store",
            str(tmp_path / "store"),
        )
        cost[name] = float(
            re.search(r"ESTIMATED cost \([^)]*\): \$([0-9.,]+)", out).group(1).replace(",", "")
        )
        if name == "priv":
            assert "network: stack 'priv' has PrivateNetwork=true" in out and "public IPv4: none" in out, out
        elif name == "pub":
            assert (
                "network: stack 'pub' has PrivateNetwork=false" in out and "public IPv4: one address" in out
            )
        else:
            assert "public IPv4 counted: no stack 'none-yet' yet" in out, out
    hours = 20 * 3630 / 3600  # 20 containers, one address each while they run
    assert cost["pub"] == cost["none-yet"] > cost["priv"]
    assert cost["pub"] - cost["priv"] == pytest.approx(hours * ipv4_price(), abs=0.011)
