"""The remote worker's SIGTERM path: ECS stops a container (a spot reclaim, a cancel, a Batch timeout) with
SIGTERM to its first process. The worker stops the running task, records why, starts no other task and exits
143, well before the task would have ended. Moto's server; the container played with `term_when`."""

# ruff: noqa: F811 - the fixtures imported from test_aws_batch are parameters here
from __future__ import annotations

import textwrap
from pathlib import Path

from test_aws_batch import write_spec  # noqa: F401 - fixtures

import batchsweep
from batchsweep.aws import player
from batchsweep.worker.remote import SIGTERM_REASON

SLOW = """
import argparse, json, time
p = argparse.ArgumentParser()
p.add_argument("--a", type=int)
a = p.parse_args().a
print(f"started {a}", flush=True)
time.sleep(60)
json.dump({"a_seen": a}, open("metrics.json", "w"))
"""


def test_sigterm_stops_the_running_task_with_its_reason_and_starts_no_other(tmp_path: Path, stack):
    (tmp_path / "slow.py").write_text(textwrap.dedent(SLOW))
    spec = write_spec(tmp_path, """
        name: stopped
        script: slow.py
        params: {grid: {a: [1, 2, 3]}}
        backend: aws-batch
        aws: {stack: batchsweep, region: us-east-1, tasks_per_job: 3}
        resources: {vcpus: 0.5, memory_mib: 1024}
    """)
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    (played,) = player.play(run, term_when=lambda line: "started 1" in line)
    assert played.exit_code == 143, played.describe()

    first = run.store.read_status(run.id, 0)
    assert first is not None and not first.state.ok
    assert first.error is not None and SIGTERM_REASON in first.error
    assert first.duration_s is not None and first.duration_s < 45  # stopped, not run to its 60 s end
    assert run.store.read_status(run.id, 1) is None and run.store.read_status(run.id, 2) is None  # never started
