"""Each AWS Batch child writes one summary (the statuses and metrics of its tasks): `results` reads one object per
child, and falls back to the tasks' own files for a child that wrote none. Moto's server; containers played."""

# ruff: noqa: F811 - the fixtures imported from test_aws_batch are parameters here
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from test_aws_batch import calls, play_containers, spec_body, write_spec  # noqa: F401 - fixtures

import batchsweep


def _gets(calls: list) -> list[str]:
    return [str(params["Key"]) for op, params in calls if op == "s3.GetObject"]


def test_results_read_one_summary_per_child_and_fall_back_to_task_files_without_one(tmp_path: Path, stack, calls):
    body = spec_body("{a: " + json.dumps(list(range(1, 13))) + "}", aws="{stack: batchsweep, tasks_per_job: 4}")
    spec = write_spec(tmp_path, body.replace("params: {grid:", "params: {fixed: {fail_on: 6}, grid:"))
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    assert play_containers(run) == [0, 3, 0]  # task a=6 fails in the second child

    calls.clear()
    packed = batchsweep.load_run(run.id, store=tmp_path / "store").results(refresh=True)
    gets = _gets(calls)
    assert sorted(k.rsplit("/", 1)[-1] for k in gets if "/packs/" in k) == [
        "s0000-c000000-a1.jsonl", "s0000-c000001-a1.jsonl", "s0000-c000002-a1.jsonl"]
    assert not [k for k in gets if k.endswith(("status.json", "metrics.json"))], "no per-task reads"
    assert list(packed["status"]).count("failed") == 1 and packed.loc[5, "exit_code"] == 3
    ok = packed[packed["status"] == "succeeded"]
    assert len(ok) == 11 and (ok["product"] == ok["a"]).all()

    # A child killed after its tasks' files but before its summary: its tasks come from their own files.
    run.store.delete_pack(run.id, "s0000-c000001-a1")
    calls.clear()
    fallback = batchsweep.load_run(run.id, store=tmp_path / "store").results(refresh=True)
    per_task = sorted(int(k.split("/tasks/")[1].split("/")[0]) for k in _gets(calls) if k.endswith("status.json"))
    assert per_task == [4, 5, 6, 7]
    pd.testing.assert_frame_equal(fallback, packed)

    for name in run.store.pack_names(run.id):  # no summary at all: the same table from the files alone
        run.store.delete_pack(run.id, name)
    pd.testing.assert_frame_equal(batchsweep.load_run(run.id, store=tmp_path / "store").results(refresh=True), packed)
