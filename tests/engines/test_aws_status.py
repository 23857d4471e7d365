"""The AWS Batch engine's run as another process reads it, against moto's server: polls and their backoff,
`status` and `results` before and after the containers ran, the S3 requests those make, cancel, and a task's
CloudWatch logs."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from aws_batch_helpers import SCRIPTS, play_containers, spec_body, write_spec

import batchsweep
from batchsweep import cli
from batchsweep.aws import clients
from batchsweep.model import State, TaskStatus


def test_status_shows_batch_states_and_the_tasks_without_a_result(tmp_path, stack, calls, capsys):
    spec = write_spec(tmp_path, spec_body("{a: [1, 2, 3]}"))
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    play_containers(run, only={0})
    capsys.readouterr()
    assert cli.main(["status", run.id, "--store", str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out
    assert "3 SUCCEEDED (child jobs)" in out
    assert "1 succeeded, 2 lost" in out
    assert out.count("ended without writing a status") == 2


def test_results_read_before_the_containers_ran_agree_with_status_once_they_have(tmp_path, stack, capsys):
    """moto calls every job SUCCEEDED at once (as Batch may before a container's upload lands): the tasks read
    as lost until their statuses arrive, and `results` does not keep that guess in its cache."""
    spec = write_spec(tmp_path, spec_body("{a: [1, 2, 3]}"))
    store = str(tmp_path / "store")
    run = batchsweep.run(spec, store=store, detach=True)
    assert set(batchsweep.load_run(run.id, store=store).results()["status"]) == {"lost"}
    assert play_containers(run) == [0, 0, 0]
    capsys.readouterr()
    assert cli.main(["status", run.id, "--store", store]) == 0
    assert "tasks    3 succeeded (of 3)" in capsys.readouterr().out
    df = batchsweep.load_run(run.id, store=store).results()  # no refresh
    assert list(df["status"]) == ["succeeded"] * 3 and list(df["product"]) == [1, 2, 3]
    assert run.store.backend.exists(run.store.results_cache_key(run.id))  # now every task has its own status


def test_an_unreachable_aws_store_is_one_line_not_a_traceback(tmp_path, stack, monkeypatch, capsys):
    spec = write_spec(tmp_path, spec_body("{a: [1]}"))
    batchsweep.run(spec, store=tmp_path / "store", detach=True)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert cli.main(["status", "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: AWS: ") and "credentials" in err[0].lower()


def test_s3_requests_do_not_grow_with_the_task_count(tmp_path, stack, calls):
    def s3_ops(n: int) -> list[str]:
        spec = write_spec(tmp_path, spec_body("{a: " + json.dumps(list(range(n))) + "}",
                                              aws="{stack: batchsweep, tasks_per_job: 1}"))
        calls.clear()
        run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
        # The run's lock refreshes its heartbeat every few seconds: that grows with time, not with tasks.
        # The reuse lookup lists the index: one LIST per key up to 256 keys, then the 256 shards (bounded).
        lookups.append(sum(1 for op, params in calls if op == "s3.ListObjectsV2"
                           and "/index/" in str(params.get("Prefix", ""))))
        # The reuse account reads the run.json of each earlier run started in the newest one's second (their
        # ids tie): that grows with how fast runs follow each other, not with tasks.
        return sorted(op for op, params in calls if op.startswith("s3.")
                      and not str(params.get("Key", "")).endswith(("runner.json", "cancel.json"))
                      and not (str(params.get("Key", "")).endswith("/run.json")
                               and run.id not in params["Key"])
                      and "/index/" not in str(params.get("Prefix", "")))

    lookups: list[int] = []
    s3_ops(3)  # uploads the code package once
    # 2,500 tasks: past the 256 keys where the reuse lookup lists the index's shards instead, and past two
    # pages of an S3 listing (1,000 keys), so a request per task or per page of tasks would show.
    small, big = s3_ops(3), s3_ops(2_500)
    assert small, "the store's S3 requests must be counted"
    assert big == small, f"S3 requests must not grow with tasks: {small} vs {big}"
    assert lookups[1:] == [3, 256], "the reuse lookup is one LIST per key, at most one per index shard"


class _RunningChildren:
    """The engine's Batch client, reporting the array's children in `running` RUNNING and the others
    SUCCEEDED, its parent PENDING (moto's children succeed at submit; played ones change nothing there)."""

    def __init__(self, real: Any, running: set[int]) -> None:
        self.real, self.running = real, running

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def describe_jobs(self, jobs: list[str]) -> dict[str, Any]:
        out = self.real.describe_jobs(jobs=jobs)
        for job in out["jobs"]:
            size = job.get("arrayProperties", {}).get("size", 0)
            job["status"] = "PENDING"
            job["arrayProperties"]["statusSummary"] = {"RUNNING": len(self.running),
                                                       "SUCCEEDED": size - len(self.running)}
        return out

    def get_paginator(self, operation: str) -> Any:
        if operation != "list_jobs":
            return self.real.get_paginator(operation)
        running = self.running

        class Pages:
            def paginate(self, arrayJobId: str, jobStatus: str) -> list[dict[str, Any]]:  # noqa: N803
                ids = sorted(running) if jobStatus == "RUNNING" else []
                return [{"jobSummaryList": [{"jobId": f"{arrayJobId}:{i}"} for i in ids]}]

        return Pages()


@pytest.mark.parametrize("packed", [False, True])
def test_a_poll_names_the_running_tasks_and_its_s3_requests_do_not_depend_on_which_children_run(
        tmp_path, stack, calls, packed):
    """`status`' per-task view names the tasks Batch's running children are at, as the bar counts them: a
    child of one task is that task; a packed child is at the first task of its slice without a status. The
    submission's slicing is read once per engine (none in the one that submitted), so polls that see more or
    fewer running children make the same S3 requests: none."""
    extra = ({"max_parallel": "3"} if packed
             else {"aws": "{stack: batchsweep, region: us-east-1, tasks_per_job: 1}"})
    spec = write_spec(tmp_path, spec_body("{a: [1, 2, 3, 4, 5, 6, 7]}", **extra))
    submitted = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    run = batchsweep.load_run(submitted.id, store=tmp_path / "store")  # as `status` in another shell
    engine = run.engine
    done = TaskStatus(index=0, state=State.SUCCEEDED)
    run.store.write_status(run.id, done)
    fake = _RunningChildren(engine.batch, {0, 2})
    engine.__dict__["batch"] = fake

    def polled() -> tuple[list[int], list[str]]:
        calls.clear()
        engine._next_poll = 0.0
        engine.poll()
        s3 = [f"{op} {str(params.get('Key', params.get('Prefix', ''))).rsplit('/', 2)[-2:]}"
              for op, params in calls if op.startswith("s3.")]
        return [i for i, s in run.states().items() if s is State.RUNNING], s3

    # packed: children [0, 1, 2] [3, 4, 5] [6]; task 0 has its status, so child 0 is at task 1
    running, s3 = polled()
    assert running == ([1, 6] if packed else [2])
    each = ["s3.GetObject ['RUN', 'engine.json']".replace("RUN", run.id)]  # every poll reads engine.json
    assert s3 == [*each, "s3.GetObject ['submissions', '0.json']"]  # ...and the first, the slicing
    fake.running = {0, 1, 2}
    assert polled() == (([1, 3, 6] if packed else [1, 2]), each)
    fake.running = set()
    assert polled() == ([], each)
    submitter = submitted.engine  # the engine that submitted: its slicing is at hand
    submitter.__dict__["batch"] = _RunningChildren(submitter.batch, {1})
    calls.clear()
    submitter._next_poll = 0.0
    submitter.poll()
    assert [op for op, params in calls if op.startswith("s3.") and "engine.json" not in str(params)] == []
    assert submitted.states()[3 if packed else 1] is State.RUNNING


def test_polls_back_off_to_one_describe_every_30_seconds_and_a_cancel_polls_at_once(tmp_path, stack, calls,
                                                                                    jobs_stay_queued):
    """Ten minutes of a queued run's watch on a fake clock: DescribeJobs is asked at growing intervals, never
    more than 30 s (+ jitter) apart, ~30 times in all, not the 2,400 times a 0.25 s watch loop polls."""
    from helpers import FakeClock

    run = batchsweep.run(
        write_spec(tmp_path, spec_body("{a: [1, 2, 3]}")), store=tmp_path / "store", detach=True
    )
    engine = batchsweep.load_run(run.id, store=tmp_path / "store").engine
    clock = engine.clock = FakeClock()

    def describes() -> int:
        return sum(op == "batch.DescribeJobs" for op, _ in calls)

    asked: list[float] = []
    while clock.now < 1_000_600:
        before = describes()
        assert engine.poll().active
        if describes() > before:
            asked.append(clock.now)
        clock.sleep(0.25)
    gaps = [b - a for a, b in zip(asked, asked[1:])]
    assert 15 <= len(asked) <= 40 and max(gaps) <= 36.25 and gaps[0] < 5 < gaps[-1]
    engine.cancel()
    before = describes()
    engine.poll()
    assert describes() == before + 1  # after a cancel, the next poll asks Batch at once


def test_cancel_terminates_the_array_parents_and_marks_the_run(
    tmp_path, stack, calls, capsys, jobs_stay_queued
):
    spec = write_spec(tmp_path, spec_body("{a: [1, 2, 3]}"))
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    assert cli.main(["cancel", run.id, "--store", str(tmp_path / "store")]) == 0
    terminated = [p["jobId"] for op, p in calls if op == "batch.TerminateJob"]
    record = run.store.read_json(run.store.run_key(run.id, "engine.json"))
    assert terminated == [record["submissions"][0]["jobs"][0]["id"]]
    assert batchsweep.load_run(run.id, store=tmp_path / "store").info["cancelled"] is True


def test_cancel_of_a_finished_run_changes_nothing(tmp_path, stack, calls, capsys):
    spec = write_spec(tmp_path, spec_body("{a: [1]}"))
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    play_containers(run)
    assert cli.main(["cancel", run.id, "--store", str(tmp_path / "store")]) == 0
    assert "not running" in capsys.readouterr().out
    assert not [op for op, _ in calls if op == "batch.TerminateJob"]
    assert "cancelled" not in batchsweep.load_run(run.id, store=tmp_path / "store").info


def test_status_watch_shows_the_running_tasks_latest_steps_read_from_s3_while_containers_play(
        tmp_path, stack, calls, monkeypatch, capsys):
    """Two played containers print a known curve each (val_loss = quality + 1/epoch); mid-run, `status
    --watch` lists both with their latest step, value and best, read from the series files in S3 — one listing
    and one read per running task, not one per task of the run."""
    import threading

    monkeypatch.setenv("BATCHSWEEP_SERIES_FLUSH_S", "0.2")  # S3's default is 5 s
    spec = write_spec(tmp_path, "\n".join([
        "name: cloud-watch",
        f"script: {SCRIPTS / 'curve.py'}",
        "params: {grid: {quality: [0.2, 0.5, 9.0]}, fixed: {pace: 0.3, epochs: 40, hold: "
        f"'{tmp_path / 'release'}'}}}}",
        r"metrics: {stdout: 'epoch (?P<step>\d+) .*val_loss=(?P<val_loss>[\d.]+)'}",
        "backend: aws-batch",
        "aws: {stack: batchsweep, region: us-east-1}",
        "resources: {vcpus: 0.5, memory_mib: 1024}",
    ]) + "\n")
    store = tmp_path / "store"
    run = batchsweep.run(spec, store=store, detach=True)
    played = threading.Thread(target=play_containers, args=(run,), kwargs={"only": {0, 1}})
    played.start()
    try:
        s3 = run.store
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            raws = [s3._try_read(s3.task_key(run.id, i, "metrics.jsonl")) for i in (0, 1)]
            if all(raw and len(raw.splitlines()) >= 2 for raw in raws):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the played containers wrote no series to S3")
        calls.clear()
        assert cli.main(["status", run.id, "--watch", "--store", str(store)]) == 0
        out = capsys.readouterr().out
        series_reads = [
            p["Key"] for op, p in calls if op == "s3.GetObject" and p["Key"].endswith("metrics.jsonl")
        ]
    finally:
        # The tasks hold after epoch 2 until here: a `status` slower than the 11 s they ran on found them
        # finished on a loaded machine.
        (tmp_path / "release").touch()
        played.join(timeout=120)
    rows = {}
    # Batch in moto says the jobs ended at once
    table = out.split("tasks with a series and no status yet", 1)[-1]
    for line in table.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0] in ("0", "1") and "quality=" in line:
            rows[int(parts[0])] = (int(parts[1]), float(parts[2]), float(parts[3]))
    assert set(rows) == {0, 1}, out
    for index, quality in ((0, 0.2), (1, 0.5)):
        step, value, best = rows[index]
        assert 2 <= step < 40
        assert value == pytest.approx(quality + 1 / step, abs=1e-3) and best == value  # a falling curve
    assert sorted(k.rsplit("/", 2)[-2] for k in series_reads) == ["0", "1"]  # task 2 never started: not read
    assert sum(op == "s3.ListObjectsV2" for op, _ in calls) <= 4


def test_logs_of_a_task_whose_stream_does_not_exist_yet_say_so(tmp_path, stack, session, capsys):
    spec = write_spec(tmp_path, spec_body("{a: [1, 2]}"))
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    assert run.logs(1) == ""  # no CloudWatch stream yet: no output, not an AWS error
    capsys.readouterr()
    assert cli.main(["logs", run.id, "1", "--store", str(tmp_path / "store")]) == 0
    err = capsys.readouterr().err
    assert f"task 1 of {run.id}: no output" in err and "credentials" not in err


def test_logs_of_a_task_without_a_result_come_from_its_child_jobs_log_stream_filtered_to_it(
    tmp_path, stack, session
):
    spec = write_spec(tmp_path, spec_body("{a: [1, 2, 3, 4]}", max_parallel="2"))
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    record = run.store.read_json(run.store.run_key(run.id, "engine.json"))
    child = f"{record['submissions'][0]['jobs'][0]['id']}:1"  # tasks 2 and 3
    desc = clients.make_client("batch", session=session).describe_jobs(jobs=[child])["jobs"][0]
    stream = desc["container"]["logStreamName"]
    logs = clients.make_client("logs", session=session)
    now = int(time.time() * 1000)
    logs.create_log_stream(logGroupName=stack["LogGroup"], logStreamName=stream)
    lines = ["[task 2] done", "[task 3] epoch 1", "[task 3 stderr] warning: slow", "worker: something",
             "[task 3] epoch 2"]
    logs.put_log_events(logGroupName=stack["LogGroup"], logStreamName=stream,
                        logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(lines)])
    assert run.logs(3) == "epoch 1\nepoch 2\n"
    assert run.logs(3, stderr=True) == "warning: slow\n"
    assert run.engine.last_output(3) == "epoch 2"


class PagedLogs:
    """GetLogEvents as CloudWatch answers it: pages that may be empty before the end, which is the token
    repeating."""

    def __init__(self, pages: list[list[str]]) -> None:
        self.pages = pages

    def get_log_events(self, **kwargs: Any) -> dict[str, Any]:
        n = int(kwargs.get("nextToken", "f/0").split("/")[1])
        events = [{"message": m} for m in self.pages[n]] if n < len(self.pages) else []
        return {"events": events, "nextForwardToken": f"f/{min(n + 1, len(self.pages))}"}


def test_log_pages_are_read_until_the_forward_token_repeats_not_until_an_empty_page():
    from batchsweep.engines.aws_batch import _log_lines

    pages = [["a"], [], ["b", "c"], [], [], ["d"]]
    assert list(_log_lines(PagedLogs(pages), "g", "s")) == ["a", "b", "c", "d"]
