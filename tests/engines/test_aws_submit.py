"""The AWS Batch engine's submission against moto's server on 127.0.0.1: one job or array jobs, the request
Batch accepts, tasks packed into children, and the checks that stop a run before anything is submitted.
Moto runs no containers here, so the tests play them (tests/engines/aws_batch_helpers.py)."""

from __future__ import annotations

import json
from collections import Counter

from aws_batch_helpers import play_containers, spec_body, submits, update_stack, write_spec

import batchsweep
from batchsweep import cli
from batchsweep.aws import clients
from batchsweep.emulator import server as emulator
from batchsweep.engines.aws_batch import retry_strategy
from batchsweep.store.core import Store


def test_one_task_is_a_plain_job_and_its_result_comes_back_from_s3(tmp_path, stack, calls):
    spec = write_spec(tmp_path, spec_body("{a: [7]}"))
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    (request,) = submits(calls)
    assert "arrayProperties" not in request
    assert play_containers(run, fork=False) == [0]  # a fresh `python -m batchsweep.worker`, as in the image
    df = batchsweep.load_run(run.id, store=tmp_path / "store").results()
    assert df.loc[0, "status"] == "succeeded" and df.loc[0, "product"] == 7
    assert run.store.url.startswith(f"s3://{stack['Bucket']}/batchsweep")


def test_25_tasks_are_one_array_job_and_every_row_comes_back(tmp_path, stack, calls):
    spec = write_spec(tmp_path, spec_body("{a: [1, 2, 3, 4, 5], b: [1, 2, 3, 4, 5]}"))
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    (request,) = submits(calls)
    assert request["arrayProperties"] == {"size": 25}
    assert set(play_containers(run)) == {0}
    again = batchsweep.load_run(store=tmp_path / "store")  # the latest run, found through the local pointer
    assert again.id == run.id and again.wait(progress=False) == 0
    df = again.results()
    assert len(df) == 25 and set(df["status"]) == {"succeeded"}
    assert (df["product"] == df["a"] * df["b"]).all()


def test_submit_request_follows_the_batch_rules(tmp_path, stack, calls, session):
    from botocore.validate import validate_parameters

    update_stack(session, SecretsPrefix="team")
    spec = write_spec(
        tmp_path,
        spec_body(
            "{a: [1, 2, 3]}",
            timeout="20s",
            retries="1",
            env="{LOG_LEVEL: debug}",
            secrets="{DB_PASSWORD: 'arn:aws:ssm:us-east-1:123456789012:parameter/team/db'}",
        ),
    )
    batchsweep.run(spec, store=tmp_path / "store", detach=True)
    (request,) = submits(calls)
    model = clients.make_client("batch", region="us-east-1").meta.service_model.operation_model("SubmitJob")
    validate_parameters(request, model.input_shape)  # raises on anything botocore would refuse
    rules = request["retryStrategy"]["evaluateOnExit"]
    assert request["retryStrategy"] == retry_strategy() and len(rules) <= 5
    assert rules[-1] == {"onReason": "*", "action": "EXIT"}
    assert {"onStatusReason": "Host EC2*", "action": "RETRY"} in rules
    assert request["timeout"]["attemptDurationSeconds"] >= 60
    env = {e["name"]: e["value"] for e in request["containerOverrides"]["environment"]}
    assert env["LOG_LEVEL"] == "debug" and "DB_PASSWORD" not in env
    assert not any(k.startswith("AWS_") and "KEY" in k for k in env)
    assert {"type": "VCPU", "value": "0.5"} in request["containerOverrides"]["resourceRequirements"]
    assert request["tags"]["batchsweep:run"] and request["tags"]["batchsweep:sweep"] == "cloud"
    assert len(json.dumps(request["containerOverrides"])) < 8192
    registered = [p for op, p in calls if op == "batch.RegisterJobDefinition"]
    assert registered[0]["containerProperties"]["secrets"] == [
        {"name": "DB_PASSWORD", "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/team/db"}]
    assert request["jobDefinition"].split("/")[-1].startswith(registered[0]["jobDefinitionName"])


def test_invalid_fargate_pair_is_bad_input_and_nothing_is_submitted(tmp_path, stack, calls, capsys):
    spec = write_spec(tmp_path, spec_body("{a: [1, 2]}").replace("memory_mib: 1024", "memory_mib: 9000"))
    code = cli.main(["run", str(spec), "--store", str(tmp_path / "store")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "9000" in err[0] and "1024" in err[0] and "4096" in err[0]
    assert not submits(calls) and not Store.open(tmp_path / "store").run_ids()


def test_a_sweep_with_requirements_needs_the_stacks_image_built_with_them(
    tmp_path, stack, calls, capsys, session
):
    from batchsweep.infra import image

    spec = write_spec(tmp_path, spec_body("{a: [1, 2]}", requirements="[humanize==4.9.0]"))
    code = cli.main(["run", str(spec), "--store", str(tmp_path / "store")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and not submits(calls)
    assert (
        "task image (latest) was built without this sweep's requirements (requirements: in the spec)"
        in err[0]
    )
    assert err[0].endswith(f"with `batchsweep image push {spec}`")
    other = image.image_tag(image.current_dockerfile(["humanize==4.8.0"]), ["humanize==4.8.0"])
    emulator.register_image(session, f"{image.repository_uri(stack)}:{other}")
    assert cli.main(["run", str(spec), "--store", str(tmp_path / "store")]) == 2 and not submits(calls)
    reqs = ["humanize==4.9.0"]
    emulator.register_image(
        session, f"{image.repository_uri(stack)}:{image.image_tag(image.current_dockerfile(reqs), reqs)}"
    )
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    assert len(submits(calls)) == 1 and play_containers(run) == [0, 0]


def test_10001_tasks_take_two_submit_calls(tmp_path, stack, calls):
    spec = write_spec(
        tmp_path,
        spec_body(
            "{a: " + json.dumps(list(range(10_001))) + "}", aws="{stack: batchsweep, tasks_per_job: 1}"
        ),
    )
    batchsweep.run(spec, store=tmp_path / "store", detach=True)
    batch_calls = [op for op, _ in calls if op.startswith("batch.")]
    assert batch_calls.count("batch.SubmitJob") == 2
    sizes = [r.get("arrayProperties", {}).get("size", 1) for r in submits(calls)]
    assert sizes == [10_000, 1]


def test_max_parallel_packs_tasks_into_fewer_children(tmp_path, stack, calls):
    spec = write_spec(tmp_path, spec_body("{a: [1, 2, 3, 4, 5, 6, 7]}", max_parallel="3"))
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    (request,) = submits(calls)
    assert request["arrayProperties"] == {"size": 3}
    assert set(play_containers(run)) == {0}
    assert len(run.results(refresh=True)) == 7 and set(run.results()["status"]) == {"succeeded"}


def test_a_dry_run_packs_tasks_into_containers_as_the_submit_then_does(tmp_path, stack, calls, capsys):
    """Both take the task time from the newest finished run this machine knows, an S3 run included (its
    `results` keep the figure in the local store too): the dry run no longer says 2 containers of 8 when the
    submit, packing by the earlier run's short tasks, makes 1 of 16."""
    import re

    spec = write_spec(tmp_path, spec_body("{a: [" + ", ".join(map(str, range(16))) + "]}", max_parallel="2"))
    store = str(tmp_path / "store")
    first = batchsweep.run(spec, store=store, detach=True)
    # no earlier run: max_parallel's 2 children of 8
    assert submits(calls)[0]["arrayProperties"] == {"size": 2}
    play_containers(first)
    assert len(batchsweep.load_run(first.id, store=store).results()) == 16  # finished: its task time is kept

    capsys.readouterr()
    assert cli.main(["run", str(spec), "--dry-run", "--store", store]) == 0
    out = capsys.readouterr().out
    shown = re.search(r"16 task\(s\), (\d+) per container: (\d+) container\(s\)", out)
    assert shown is not None and f"of earlier run {first.id} (aws-batch)" in out, out
    second = batchsweep.run(spec, store=store, detach=True, reuse=False)
    (submission,) = second.store.read_json(second.store.engine_record_key(second.id))["submissions"]
    assert (submission["tasks_per_child"], len(submission["jobs"])) == (int(shown[1]), 1)
    assert int(shown[1]) == 16 and int(shown[2]) == 1


def test_a_child_batch_calls_succeeded_without_a_status_is_lost_and_resume_reruns_it(tmp_path, stack, calls):
    spec = write_spec(tmp_path, spec_body("{a: [1, 2, 3, 4]}"))
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    play_containers(run, only={0, 1})
    df = batchsweep.load_run(run.id, store=tmp_path / "store").results()
    assert Counter(df["status"]) == {"succeeded": 2, "lost": 2}
    first = {i: s.ended_at for i, s in run.store.statuses(run.id).items()}
    assert cli.main(["resume", run.id, "--detach", "--store", str(tmp_path / "store")]) == 0
    second = submits(calls)[-1]
    assert second["arrayProperties"] == {"size": 2}
    assert set(play_containers(batchsweep.load_run(run.id, store=tmp_path / "store"))) == {0}
    df = batchsweep.load_run(run.id, store=tmp_path / "store").results()
    assert len(df) == 4 and set(df["status"]) == {"succeeded"}
    after = run.store.statuses(run.id)
    assert all(after[i].ended_at == t for i, t in first.items()), "finished tasks ran again"


def test_aws_region_alone_is_enough(tmp_path, stack, monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    spec = write_spec(
        tmp_path,
        spec_body("{a: [1]}").replace(
            "aws: {stack: batchsweep, region: us-east-1}", "aws: {stack: batchsweep}"
        ),
    )
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    assert run.info["engine"]["region"] == "us-east-1"


def test_missing_bucket_is_one_line_and_nothing_is_submitted(tmp_path, stack, calls, capsys):
    spec = write_spec(
        tmp_path, spec_body("{a: [1]}", aws="{bucket: no-such-bucket, job_queue: q, job_definition: d}")
    )
    assert cli.main(["run", str(spec), "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-bucket" in err[0]
    assert not submits(calls)


def test_missing_credentials_is_one_line_and_nothing_is_submitted(
    tmp_path, stack, calls, capsys, monkeypatch
):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    spec = write_spec(tmp_path, spec_body("{a: [1]}"))
    assert cli.main(["run", str(spec), "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "credentials" in err[0]
    assert not submits(calls) and not Store.open(tmp_path / "store").run_ids()
