"""The remote worker's SIGTERM path: ECS stops a container (a spot reclaim, a cancel, a Batch timeout) with
SIGTERM to its first process. The worker stops the running task, records why, starts no other task and exits
143, well before the task would have ended. Moto's server; the container played with `term_when`."""

from __future__ import annotations

import textwrap
from pathlib import Path

from aws_batch_helpers import write_spec

import batchsweep
from batchsweep.emulator import player
from batchsweep.task.remote import SIGTERM_REASON

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
    # never started
    assert run.store.read_status(run.id, 1) is None and run.store.read_status(run.id, 2) is None


FLAGGED = """
import argparse, json, os, time
p = argparse.ArgumentParser()
p.add_argument("--a", type=int)
a = p.parse_args().a
print(f"started {a}", flush=True)
if os.path.exists(os.environ["HANG_FLAG"]):
    time.sleep(60)
json.dump({"a_seen": a}, open("metrics.json", "w"))
"""


def test_a_stopped_packed_childs_unstarted_tasks_read_as_lost_and_resume_runs_them(
    tmp_path: Path, stack, capsys
):
    """Batch stops a child of 3 tasks in its first (its timeout, a Spot reclaim): the two it never started
    have no status, so the ended run shows them lost, and `resume` runs all three again."""
    from batchsweep import cli

    (tmp_path / "flagged.py").write_text(textwrap.dedent(FLAGGED))
    (tmp_path / "hang").touch()
    spec = write_spec(tmp_path, f"""
        name: stopped
        script: flagged.py
        params: {{grid: {{a: [1, 2, 3]}}}}
        backend: aws-batch
        aws: {{stack: batchsweep, region: us-east-1, tasks_per_job: 3}}
        resources: {{vcpus: 0.5, memory_mib: 1024}}
        env: {{HANG_FLAG: {tmp_path / 'hang'}}}
    """)
    store = str(tmp_path / "store")
    run = batchsweep.run(spec, store=store, detach=True)
    (played,) = player.play(run, term_when=lambda line: "started 1" in line)
    assert played.exit_code == 143, played.describe()
    states = batchsweep.load_run(run.id, store=store).states()
    assert [states[i].value for i in (1, 2)] == ["lost", "lost"] and not states[0].ok

    (tmp_path / "hang").unlink()
    assert cli.main(["resume", run.id, "--detach", "--store", store]) == 0
    assert [p.exit_code for p in player.play(batchsweep.load_run(run.id, store=store))] == [0]
    df = batchsweep.load_run(run.id, store=store).results(refresh=True)
    assert sorted(df["a_seen"]) == [1, 2, 3] and set(df["status"]) == {"succeeded"}
