"""Child jobs that AWS Batch cannot place: they stay RUNNABLE with a statusReason, and `status` turns that
reason into advice. Moto never leaves a job RUNNABLE with a reason (without Docker its jobs succeed at once),
so the harness stands in for Batch's scheduler, as the other tests stand in for its containers: moto's server
runs in this process (`ThreadedMotoServer`, still a real HTTP endpoint) and `Scheduler.hold` puts the children
of a submitted job back in RUNNABLE with the reason Batch gives. Everything else is real: the engine's
DescribeJobs and ListJobs go over HTTP to moto, and the advice is read where a user reads it, in `batchsweep
status`. The clock is a FakeClock, so the two minutes the engine waits before it asks Batch why are not
waited."""

from __future__ import annotations

import json
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_fixtures import point_boto3_at
from helpers import FakeClock

import batchsweep
from batchsweep.aws.clients import make_session
from batchsweep.cli import statusview
from batchsweep.emulator import server as emulator

SCRIPT = Path(__file__).parent.parent / "scripts" / "writes_metrics.py"


@dataclass
class Scheduler:
    """What AWS Batch's scheduler would report about jobs it cannot place, written into moto's in-process
    backend."""

    backend: Any

    def hold(self, job_id: str, reason: str | None, *, running: int = 0) -> None:
        """The job (or each child of an array job) waits in RUNNABLE with `reason`; the first `running`
        children have started. The array parent is PENDING while its children wait, as on AWS."""
        job = self.backend.get_job_by_id(job_id)
        for n, child in enumerate(job._child_jobs or [job]):
            child.status = "RUNNING" if n < running else "RUNNABLE"
            child.job_stopped, child.job_stopped_reason = False, reason
        if job._child_jobs:
            job.status, job.job_stopped, job.job_stopped_reason = "PENDING", False, None


@pytest.fixture(scope="module")
def batch_scheduler() -> Iterator[Scheduler]:
    from moto.batch.models import batch_backends
    from moto.server import ThreadedMotoServer

    port = emulator.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        request = urllib.request.Request(
            f"{url}/moto-api/config",
            data=json.dumps({"batch": {"use_docker": False}}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(request, timeout=10).read()
        with pytest.MonkeyPatch.context() as mp:
            point_boto3_at(url, mp)
            emulator.deploy_stack(make_session(region="us-east-1"))
            yield Scheduler(batch_backends["123456789012"]["us-east-1"])
            urllib.request.urlopen(
                urllib.request.Request(f"{url}/moto-api/reset", data=b"{}", method="POST")
            ).read()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def runs(
    batch_scheduler: Scheduler, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, str, str]]:
    """Three submitted runs, each (store, run id, its one job's id): an array of 3 children on the default
    (Spot) queue, the same on the on-demand queue, and a single task (a plain job, not an array)."""
    from aws_batch_helpers import update_stack

    update_stack(make_session(region="us-east-1"), EnableGpu="true")
    out = {}
    for name, grid, aws in (
        ("spot", "[1, 2, 3]", ""),
        ("on-demand", "[1, 2, 3]", ", spot: false"),
        ("single", "[1]", ""),
        ("gpu", "[1, 2]", ""),
        ("gpu-on-demand", "[1, 2]", ", spot: false"),
    ):
        resources = "{vcpus: 4, memory_mib: 15000, gpus: 1}" if name.startswith("gpu") else \
            "{vcpus: 0.5, memory_mib: 1024}"
        tmp = tmp_path_factory.mktemp(name)
        spec = tmp / "sweep.yaml"
        spec.write_text(textwrap.dedent(f"""\
            name: stuck
            script: {SCRIPT}
            params: {{grid: {{a: {grid}}}}}
            backend: aws-batch
            aws: {{stack: batchsweep, region: us-east-1{aws}}}
            resources: {resources}
            """))
        run = batchsweep.run(spec, store=tmp / "store", detach=True)
        (job,) = run.store.read_json(run.store.engine_record_key(run.id))["submissions"][0]["jobs"]
        out[name] = (tmp / "store", run.id, job["id"])
    return out


def status_two_minutes_on(store: Path, run_id: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The `note` lines of `batchsweep status`, read two minutes after the submit (when the engine first
    asks)."""
    run = batchsweep.load_run(run_id, store=store)
    submitted = run.store.read_json(run.store.engine_record_key(run_id))["submissions"][0]["submitted_at"]
    run.engine.clock = FakeClock(wall=submitted + 121)
    capsys.readouterr()
    statusview.print_status(run)
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith("note")]


CAPACITY = (
    "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - Service cannot fulfill the capacity requested for instance "
    "type"
)
TOO_BIG = (
    "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - The job resource requirement (vCPU/memory/GPU) is higher "
    "than that can be met by the CE(s) attached to the job queue."
)
CE_MAX = (
    "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE - CE(s) associated with the job queue cannot meet the "
    "CPU requirement of the job."
)
ROLE = "MISCONFIGURATION:SERVICE_ROLE_PERMISSIONS - Batch service role has a permission issue."


@pytest.mark.parametrize(
    ("run_name", "reason", "advice"),
    [
        ("spot", CAPACITY, "AWS has no spare capacity of this kind now; wait, or set aws.spot: false"),
        ("on-demand", CAPACITY, "AWS has no spare capacity of this kind now; wait, or lower `resources`"),
        ("spot", TOO_BIG, "no compute environment can fit one task's vCPU/memory; lower `resources`"),
        (
            "spot",
            CE_MAX,
            "the compute environment's max vCPUs is below one task's; `batchsweep infra up --param "
            "MaxVcpus=N`",
        ),
        ("spot", ROLE, "the Batch service role lacks permissions; redeploy with `batchsweep infra up`"),
        (
            "spot",
            None,
            "jobs wait for capacity; the default Fargate Spot quota is 6 vCPUs per account (`batchsweep "
            "doctor`)",
        ),
        (
            "on-demand",
            "a reason batchsweep does not know",
            "jobs wait for capacity; the default Fargate on-demand quota is 6 vCPUs per account "
            "(`batchsweep doctor`)",
        ),
        ("single", TOO_BIG, "no compute environment can fit one task's vCPU/memory; lower `resources`"),
        (
            "gpu",
            None,
            "jobs wait for GPU instances; the account's G and VT Spot vCPU quota is often 0 on a new account "
            "(`batchsweep doctor` reads it)",
        ),
        (
            "gpu-on-demand",
            None,
            "jobs wait for GPU instances; the account's G and VT on-demand vCPU quota is often 0 on "
            "a new account (`batchsweep doctor` reads it)",
        ),
        (
            "gpu",
            TOO_BIG,
            "no GPU instance type of the stack fits one task's GPUs/vCPU/memory; lower `resources` or "
            "`batchsweep infra up --param GpuInstanceTypes=...` with larger types",
        ),
        (
            "gpu",
            CE_MAX,
            "the GPU environment's max vCPUs is below one task's; `batchsweep infra up --param "
            "GpuMaxVcpus=N`",
        ),
        ("gpu", CAPACITY, "AWS has no spare capacity of this kind now; wait, or set aws.spot: false"),
    ],
)
def test_status_turns_batchs_reason_for_stuck_children_into_advice(
    batch_scheduler, runs, capsys, run_name, reason, advice
):
    store, run_id, job = runs[run_name]
    batch_scheduler.hold(job, reason)
    shown = reason or "no reason given by Batch"
    assert status_two_minutes_on(store, run_id, capsys) == [
        f"note     tasks stuck in RUNNABLE: {shown} — {advice}"
    ]


def test_no_advice_once_a_child_has_started(batch_scheduler, runs, capsys):
    store, run_id, job = runs["spot"]
    # Batch placed one: the others queue behind it, nothing is stuck
    batch_scheduler.hold(job, CAPACITY, running=1)
    assert status_two_minutes_on(store, run_id, capsys) == []


def test_batch_is_asked_why_after_two_minutes_then_every_five_and_the_advice_stays_on_screen(
    batch_scheduler, runs
):
    """A watch of 15 minutes: no advice while the run is young (jobs often wait a minute for Fargate), then
    the reason is asked for once per 5 minutes, and every poll in between still carries the advice (a `status
    --watch` redraws the screen at each poll)."""
    store, run_id, job = runs["spot"]
    batch_scheduler.hold(job, CAPACITY)
    engine = batchsweep.load_run(run_id, store=store).engine
    submitted = engine.run.store.read_json(engine.run.store.engine_record_key(run_id))["submissions"][0][
        "submitted_at"
    ]
    clock = engine.clock = FakeClock(wall=submitted)
    asked: list[float] = []
    engine.batch.meta.events.register(
        "before-call.batch.ListJobs", lambda **_: asked.append(clock.now - 1_000_000)
    )
    notes = {}
    while clock.now < 1_000_000 + 15 * 60:
        notes[clock.now - 1_000_000] = engine.poll().notes
        clock.sleep(5)
    # Batch is asked at the first DescribeJobs poll from 120 s on; those polls are up to 36 s apart (backoff)
    assert len(asked) == 3 and 120 <= asked[0] <= 160
    assert all(300 <= b - a <= 345 for a, b in zip(asked, asked[1:]))
    advice = (f"tasks stuck in RUNNABLE: {CAPACITY} — AWS has no spare capacity of this kind now; "
              "wait, or set aws.spot: false",)
    assert all(not n for t, n in notes.items() if t < asked[0])
    assert all(n == advice for t, n in notes.items() if t >= asked[0])
    assert time.time() - submitted < 900  # the 15 minutes were the fake clock's
