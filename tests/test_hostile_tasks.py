"""Hostile tasks (issue 15, items 3, 6, 7): whatever a task leaves behind is its own failure, never a hung or
dead runner, and nothing outside its directory reaches the store."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers import alive, write_spec

import batchsweep
from batchsweep.store import Store

SCRIPTS = Path(__file__).parent / "scripts"


def _run(tmp_path: Path, params: str, **extra: str) -> object:
    lines = "".join(f"        {k}: {v}\n" for k, v in extra.items())
    spec = write_spec(tmp_path, f"""
        name: hostile
        script: {SCRIPTS / 'hostile_task.py'}
        params: {params}
        timeout: 60s
{lines}""")
    return batchsweep.run(spec, store=tmp_path / "store", progress=False)


@pytest.mark.parametrize("kind, reason", [("fifo", "is a FIFO"), ("dir", "is a directory"),
                                          ("symlink", "is a symlink"), ("huge", "larger than 32 MiB")])
def test_a_hostile_metrics_file_is_a_task_failure_with_its_reason(tmp_path, kind, reason):
    started = time.monotonic()
    run = _run(tmp_path, f"{{grid: {{a: [1]}}, fixed: {{metrics_kind: {kind}}}}}")
    df = run.results()
    assert time.monotonic() - started < 30
    assert list(df["status"]) == ["failed"] and reason in df["error"][0]
    metrics = tmp_path / "store" / "runs" / run.id / "tasks" / "0" / "metrics.json"
    assert not metrics.exists() or not metrics.is_symlink()


def test_uploads_to_a_store_never_follow_symlinks(tmp_path, aws_env, session):
    from batchsweep.aws.clients import make_client

    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2")
    task = tmp_path / "task"
    (task / "outputs" / "sub").mkdir(parents=True)
    (task / "outputs" / "plot.png").write_bytes(b"png")
    (task / "outputs" / "leak.txt").symlink_to(secret)
    (task / "outputs" / "linkdir").symlink_to(tmp_path, target_is_directory=True)
    (task / "metrics.json").symlink_to(secret)
    make_client("s3", session=session).create_bucket(Bucket="uploads")
    for store in (Store.open("s3://uploads/bs"), Store.open(tmp_path / "local")):
        store.backend.upload_dir(task, "runs/r/tasks/0")
        assert store.backend.list_files("runs/r/tasks/0") == ["runs/r/tasks/0/outputs/plot.png"]


def test_a_setsid_grandchild_dies_with_its_task(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    run = _run(tmp_path, f'{{grid: {{a: [1, 2]}}, fixed: {{setsid_child: "{pids}"}}}}')
    assert set(run.results()["status"]) == {"succeeded"}
    children = [int(p.read_text()) for p in pids.iterdir()]
    assert len(children) == 2
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in children), "a setsid grandchild outlived its task"


def test_a_setsid_grandchild_dies_at_timeout(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    run = _run(tmp_path, f'{{grid: {{a: [1]}}, fixed: {{setsid_child: "{pids}", sleep: 60}}}}', timeout="1s")
    assert list(run.results()["status"]) == ["timeout"]
    (child,) = [int(p.read_text()) for p in pids.iterdir()]
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)
