"""Every task of a played AWS Batch run has its peak memory and CPU time in the results, as a local task does:
the README's tour (examples/tutorial) against moto's server, containers played."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from aws_batch_helpers import play_containers, write_spec

import batchsweep
from batchsweep.task import remote, worker

TUTORIAL = Path(__file__).parents[2] / "examples" / "tutorial"


@pytest.mark.parametrize("per_job", ["tasks_per_job: 1, ", "tasks_per_job: 2, "], ids=["cold", "warm"])
def test_a_played_tutorial_run_has_peak_rss_and_cpu_time_for_every_task(tmp_path, stack, per_job):
    shutil.copy(TUTORIAL / "train.py", tmp_path / "train.py")
    spec = write_spec(tmp_path, (TUTORIAL / "sweep.yaml").read_text().replace(
        "var_a: [1, 2, 3, 4]", "var_a: [1, 2]").replace("var_b: [1, 2, 3, 4, 5]", "var_b: [1, 2]")
        + f"backend: aws-batch\naws: {{{per_job}stack: batchsweep, region: us-east-1}}\n"
        + "resources: {vcpus: 0.5, memory_mib: 1024}\nwarm: true\n")
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    assert set(play_containers(run, fork=False)) == {0}  # fresh `python -m batchsweep.worker`s, as the README
    df = batchsweep.load_run(run.id, store=tmp_path / "store").results()
    assert list(df["status"]) == ["succeeded"] * 4
    assert bool(df["warm"].all()) == ("2" in per_job)
    assert df["peak_rss_mib"].gt(0).all() and df["cpu_s"].ge(0).all(), df[["peak_rss_mib", "cpu_s"]]


def test_a_container_task_too_short_to_be_sampled_is_measured_by_its_reaper(tmp_path):
    """A task that ends before the first sample still has both numbers: its reaper's account of it as the
    worker reaped it, which is what the local engine's launcher gives a local task."""
    (tmp_path / "task").mkdir()
    proc = remote.launch_teed(["/bin/sh", "-c", "exit 0"], cwd=tmp_path / "task",
                              env={"PATH": "/usr/bin:/bin"}, stdout=tmp_path / "out", stderr=tmp_path / "err")
    ctx = SimpleNamespace(memory_limit_mib=None, gpus=0, timeout_s=60.0)
    attempt = worker._wait_attempt(ctx, proc, None)  # type: ignore[arg-type]
    assert attempt.state.ok and attempt.usage.peak_rss_mib is not None and attempt.usage.peak_rss_mib > 0
    assert attempt.usage.cpu_s is not None and attempt.usage.cpu_s >= 0
