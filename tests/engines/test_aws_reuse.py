"""Reuse through the S3 store (moto's server): a widened grid runs only its new cells on (emulated) AWS Batch,
the reused results are server-side copies in the new run. Executions are counted by the task's own side
effect."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

import batchsweep
from batchsweep.emulator import player

SCRIPT = """\
import argparse, json, os
p = argparse.ArgumentParser()
p.add_argument("--a", type=int, required=True)
args = p.parse_args()
with open(os.environ["RUN_LOG"], "a") as f:
    f.write(f"{args.a}\\n")
open("plot.txt", "w").write("x" * 1000)
print(json.dumps({"printed": args.a * 10}))
json.dump({"y": args.a * 2}, open("metrics.json", "w"))
"""


def sweep(project: Path, grid: str, log: Path, extra: str = "") -> Path:
    project.mkdir(exist_ok=True)
    (project / "task.py").write_text(SCRIPT)
    spec = project / "sweep.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: cloud-reuse
        script: task.py
        params: {{grid: {{a: {grid}}}}}
        env: {{RUN_LOG: "{log}"}}
        backend: aws-batch
        aws: {{stack: batchsweep, region: us-east-1}}
        resources: {{vcpus: 0.5, memory_mib: 1024}}
        """) + extra)
    return spec


def run_played(spec: Path, store: Path, **kwargs: Any) -> batchsweep.Run:
    run = batchsweep.run(spec, store=store, detach=True, progress=False, **kwargs)
    player.play(run)
    assert run.wait(progress=False) in (0, 1)
    return run


def executions(log: Path) -> list[str]:
    lines = sorted(log.read_text().splitlines()) if log.exists() else []
    log.write_text("")
    return lines


def test_a_widened_grid_on_aws_batch_runs_only_its_new_cells(tmp_path: Path, stack: dict[str, str]) -> None:
    log, store, project = tmp_path / "executions.log", tmp_path / "store", tmp_path / "project"
    first = run_played(sweep(project, "[1, 2]", log), store)
    assert executions(log) == ["1", "2"]
    second = run_played(sweep(project, "[1, 2, 3]", log), store)
    assert executions(log) == ["3"]
    df = second.results(refresh=True)
    assert list(df["status"]) == ["succeeded"] * 3 and list(df["y"]) == [2, 4, 6]
    assert list(df["reused_from"])[:2] == [f"{first.id}/0", f"{first.id}/1"]
    backend = second.store.backend
    assert second.store.url.startswith("s3://")
    assert backend.read_bytes(second.store.task_key(second.id, 0, "outputs", "plot.txt")) == b"x" * 1000
    first.store.delete_run(first.id)  # the copies are the new run's own
    assert second.results(refresh=True)["y"].tolist() == [2, 4, 6]


def test_a_changed_metrics_rule_on_s3_runs_nothing(tmp_path: Path, stack: dict[str, str]) -> None:
    log, store, project = tmp_path / "executions.log", tmp_path / "store", tmp_path / "project"
    run_played(sweep(project, "[1, 2]", log), store)
    executions(log)
    again = run_played(sweep(project, "[1, 2]", log, extra="metrics: {stdout: last}\n"), store)
    assert executions(log) == []
    df = again.results(refresh=True)
    assert list(df["printed"]) == [10, 20] and list(df["y"]) == [2, 4]


def test_a_failed_task_on_aws_batch_runs_again(tmp_path: Path, stack: dict[str, str]) -> None:
    log, store, project = tmp_path / "executions.log", tmp_path / "store", tmp_path / "project"
    spec = sweep(project, "[1, 2]", log)
    (project / "task.py").write_text(
        SCRIPT.replace(
            "args = p.parse_args()\n",
            "args = p.parse_args()\n"
            "import sys\nif args.a == 2 and os.path.exists(os.environ['RUN_LOG'] + '.fail'): sys.exit(3)\n",
        )
    )
    Path(f"{log}.fail").write_text("")
    first = run_played(spec, store)
    assert list(first.results(refresh=True)["status"]) == ["succeeded", "failed"]
    executions(log)
    Path(f"{log}.fail").unlink()
    second = run_played(spec, store)
    assert executions(log) == ["2"]
    assert list(second.results(refresh=True)["status"]) == ["succeeded"] * 2


def test_a_task_that_failed_on_aws_batch_is_replayed_here_from_the_s3_store(
    tmp_path: Path, stack: dict[str, str], capfd: pytest.CaptureFixture[str]
) -> None:
    from batchsweep import cli

    log, store, project = tmp_path / "executions.log", tmp_path / "store", tmp_path / "project"
    spec = sweep(project, "[1, 2]", log)
    (project / "task.py").write_text(
        SCRIPT.replace('open("plot.txt"', 'import sys\nif args.a == 2: sys.exit(7)\nopen("plot.txt"')
    )
    failed = run_played(spec, store)
    assert list(failed.results(refresh=True)["status"]) == ["succeeded", "failed"]
    executions(log)
    # the replay uses the run's code
    (project / "task.py").write_text("raise SystemExit('the local copy changed')\n")
    capfd.readouterr()
    assert cli.main(["rerun", failed.id, "1", "--dir", str(tmp_path / "d"), "--store", str(store)]) == 7
    assert executions(log) == ["2"]
    assert "from s3://" in capfd.readouterr().err


def test_gc_on_the_s3_store_deletes_old_runs_and_their_code_and_leaves_the_rest_complete(
        tmp_path: Path, stack: dict[str, str]) -> None:
    from batchsweep import cli

    log, store, project = tmp_path / "executions.log", tmp_path / "store", tmp_path / "project"
    old = run_played(sweep(project, "[1, 2]", log), store)
    (project / "task.py").write_text(SCRIPT + "# changed\n")
    new = run_played(project / "sweep.yaml", store)
    assert executions(log) == ["1", "1", "2", "2"]  # a code change reruns everything
    s3 = new.store
    packages = s3.backend.list_files("code")
    assert len(packages) == 2
    assert cli.main(["gc", "--keep-last", "1", "--yes", "--store", str(store)]) == 0
    assert s3.backend.list_files("code") == [s3.code_key(new.info["code_sha256"])]
    assert old.id not in s3.run_ids() and not (store / "runs" / old.id).exists()
    df = batchsweep.load_run(new.id, store=store).results(refresh=True)
    assert list(df["status"]) == ["succeeded"] * 2 and list(df["y"]) == [2, 4]
    assert cli.main(["rerun", new.id, "0", "--dir", str(tmp_path / "d"), "--store", str(store)]) == 0
