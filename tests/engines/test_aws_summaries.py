"""Each AWS Batch child writes one summary (the statuses and metrics of its tasks): `results` reads one object
per child, and falls back to the tasks' own files for a child that wrote none. Moto's server; containers
played."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from aws_batch_helpers import play_containers, spec_body, write_spec

import batchsweep


def _gets(calls: list) -> list[str]:
    return [str(params["Key"]) for op, params in calls if op == "s3.GetObject"]


def test_results_read_one_summary_per_child_and_fall_back_to_task_files_without_one(
    tmp_path: Path, stack, calls
):
    body = spec_body(
        "{a: " + json.dumps(list(range(1, 13))) + "}", aws="{stack: batchsweep, tasks_per_job: 4}"
    )
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

    calls.clear()  # the report: the summaries say no task has a series, so no task's files are listed
    batchsweep.load_run(run.id, store=tmp_path / "store").report(tmp_path / "report.html")
    listed = [str(params.get("Prefix")) for op, params in calls if op == "s3.ListObjectsV2"]
    assert not [p for p in listed if "/tasks" in p], listed

    # A child killed after its tasks' files but before its summary: its tasks come from their own files.
    run.store.delete_pack(run.id, "s0000-c000001-a1")
    calls.clear()
    fallback = batchsweep.load_run(run.id, store=tmp_path / "store").results(refresh=True)
    per_task = sorted(
        int(k.split("/tasks/")[1].split("/")[0]) for k in _gets(calls) if k.endswith("status.json")
    )
    assert per_task == [4, 5, 6, 7]
    pd.testing.assert_frame_equal(fallback, packed)

    for name in run.store.pack_names(run.id):  # no summary at all: the same table from the files alone
        run.store.delete_pack(run.id, name)
    pd.testing.assert_frame_equal(
        batchsweep.load_run(run.id, store=tmp_path / "store").results(refresh=True), packed
    )


def _leave_what_children_write(run, per_child: int, *, summaries: set[int], finished: int) -> None:
    """The store as the children would leave it, written through the store: tasks below `finished` have their
    status.json and metrics.json (every 7th failed, without metrics); the children in `summaries` also their
    summary of them."""
    from batchsweep.model import State, TaskStatus
    from batchsweep.store.core import PackEntry
    from batchsweep.task.remote import summary_name

    store = run.store
    for child in range(-(-run.n_tasks // per_child)):
        entries = []
        for i in range(child * per_child, min(finished, (child + 1) * per_child)):
            failed = i % 7 == 3
            status = TaskStatus(
                index=i,
                state=State.FAILED if failed else State.SUCCEEDED,
                exit_code=1 if failed else 0,
                error="exit code 1: ValueError: bad" if failed else None,
                started_at=1e9 + i,
                ended_at=1e9 + i + 0.25,
                worker=f"child-{child}",
                cpu_s=0.1 * i,
            )
            metrics = None if failed else {"loss": 1 / (i + 1), "epoch": i % 5}
            if metrics is not None:
                store.backend.write_bytes(store.task_metrics_key(run.id, i), json.dumps(metrics).encode())
            store.backend.write_bytes(store.task_status_key(run.id, i), status.to_json().encode())
            entries.append(PackEntry(status, metrics))
        if child in summaries and entries:
            store.write_pack(run.id, summary_name(0, child, 1), entries)


def test_many_summaries_read_concurrently_give_the_per_task_table_mixed_or_mid_run(
    tmp_path: Path, stack, calls, caplog
):
    """Enough summaries and uncovered tasks that they are read concurrently (`S3Backend.read_one_of_many`):
    the table is the one the tasks' own files give, with some children's summaries missing, and with the last
    children not finished yet."""
    body = spec_body(
        "{a: " + json.dumps(list(range(1, 41))) + "}", aws="{stack: batchsweep, tasks_per_job: 2}"
    )
    run = batchsweep.run(write_spec(tmp_path, body), store=tmp_path / "store", detach=True)
    store = tmp_path / "store"
    every = set(range(20))
    _leave_what_children_write(run, 2, summaries=every - {3, 11, 12, 13, 14, 15, 16, 17, 18}, finished=36)

    calls.clear()
    mixed = batchsweep.load_run(run.id, store=store).results(refresh=True)
    gets = _gets(calls)
    assert len([k for k in gets if "/packs/" in k]) == 10  # children 0-2 and 4-10
    per_task = sorted(int(k.split("/tasks/")[1].split("/")[0]) for k in gets if k.endswith("status.json"))
    assert per_task == [6, 7, *range(22, 40)]  # the children without a summary, and the tasks not finished
    assert len(mixed) == 40 and list(mixed["status"][:36]) == [
        "failed" if i % 7 == 3 else "succeeded" for i in range(36)
    ]
    assert set(mixed["status"][36:]) <= {"pending", "running", "lost"}
    ok = mixed[mixed["status"] == "succeeded"]
    assert list(ok["loss"]) == [1 / (i + 1) for i in ok["task"]] and list(ok["epoch"]) == [
        i % 5 for i in ok["task"]
    ]
    assert list(mixed["a"]) == list(range(1, 41)) and list(mixed["cpu_s"][:36]) == [
        0.1 * i for i in range(36)
    ]
    # `status` and `report`: the same reads, typed
    statuses = batchsweep.load_run(run.id, store=store).statuses()
    assert sorted(statuses) == list(range(36))
    assert [(s.state.value, s.cpu_s, s.worker) for s in map(statuses.get, range(36))] == list(
        zip(mixed["status"][:36], mixed["cpu_s"][:36], mixed["worker"][:36]))

    for name in run.store.pack_names(run.id):
        run.store.delete_pack(run.id, name)
    pd.testing.assert_frame_equal(batchsweep.load_run(run.id, store=store).results(refresh=True), mixed)
    # a missing file is not a damaged one
    assert not [r.message for r in caplog.records if "damaged" in r.message]


def test_one_of_many_reads_says_missing_only_for_a_missing_key_and_lets_botocore_say_the_rest(session):
    from botocore.exceptions import ClientError

    from batchsweep.aws.s3store import S3Backend
    from batchsweep.store.core import Store

    S3Backend("summaries", "").client.create_bucket(Bucket="summaries")
    store = Store(S3Backend("summaries", "p"))
    keys = [f"runs/r/packs/{n}.jsonl" for n in range(9)]
    for n, key in enumerate(keys):
        store.backend.write_bytes(key, f'{{"n": {n}}}\n'.encode() * (n * 1000))
    assert store._read_many([*keys, "runs/r/packs/none.jsonl"]) == [
        *(store.backend.read_bytes(k) for k in keys), None]
    with pytest.raises(FileNotFoundError):
        store.backend.read_one_of_many("runs/r/none")
    for read in (S3Backend("no-such-bucket").read_bytes, S3Backend("no-such-bucket").read_one_of_many):
        with pytest.raises(ClientError, match="NoSuchBucket"):
            read("runs/r/packs/0.jsonl")


def test_only_a_childs_highest_attempt_counts_among_its_summaries() -> None:
    from batchsweep.store.core import current_packs

    names = ["compact~1", "s0000-c000001-a1", "s0000-c000001-a1~5", "s0000-c000001-a2~start",
             "s0000-c000002-a1", "s0000-c000003-a2", "s0000-c000003-a10", "s0001-c000001-a1"]
    assert current_packs(names) == [
        "compact~1",
        "s0000-c000001-a2~start",
        "s0000-c000002-a1",
        "s0000-c000003-a10",
        "s0001-c000001-a1",
    ]
