"""The AWS path in a stricter world: moto over TLS with IAM enforced (aws_fixtures.iam_world).

An admin deployed the stack; the sweep's user holds only the stack's SubmitPolicyArn; each container is played
with the job role's own temporary credentials, its output shipped to CloudWatch Logs with the execution
role's, as the awslogs driver does. What a policy lacks fails here as AccessDenied, as it would on a real
account.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_fixtures import _moto_view as moto_view
from aws_fixtures import iam_allows, policy_document
from botocore.exceptions import ClientError

import batchsweep
from batchsweep import cli
from batchsweep.aws import clients
from batchsweep.emulator import player

VICTIM = 13
SCRIPT = """\
import argparse, json, os, sys, time
p = argparse.ArgumentParser()
p.add_argument("--a", type=int, required=True)
a = p.parse_args().a
print(f"start a={a}", flush=True)
print(f"thinking about {a}", file=sys.stderr, flush=True)
if a == {victim} and os.path.exists(os.environ["KILL_FLAG"]):
    # stdout and stderr are two pipes, each copied to the container's log by a thread of the worker: the
    # stdout line waits until the player has seen the stderr line in that log, so the log has them in order
    # (a time.sleep(0.3) was not enough on a loaded machine, and then the kill lost the stderr line)
    deadline = time.monotonic() + 300
    while not os.path.exists(os.environ["KILL_FLAG"] + ".go") and time.monotonic() < deadline:
        time.sleep(0.02)
    print(f"halfway a={a}", flush=True)
    time.sleep(120)  # the player kills the container here, before anything is uploaded
json.dump({"square": a * a}, open("metrics.json", "w"))
""".replace("{victim}", str(VICTIM))


ACCOUNT = "123456789012"


@pytest.fixture
def as_submitter(iam_world: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """This process (the CLI, the Python API) signs as the user who holds only the submit policy."""
    for name, value in iam_world.env(iam_world.submitter_keys).items():
        monkeypatch.setenv(name, value)
    yield iam_world


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Every non-S3 AWS call batchsweep makes in this process (operation, params), from its own clients."""
    recorded: list[tuple[str, dict[str, Any]]] = []
    real = clients.make_client

    def recording(service: str, **kwargs: Any) -> Any:
        client = real(service, **kwargs)
        client.meta.events.register("provide-client-params.*.*", lambda params, model, **_: recorded.append(
            (f"{client.meta.service_model.signing_name}:{model.name}", params)))
        return client

    for module in list(sys.modules.values()):
        if (
            getattr(module, "__name__", "").startswith("batchsweep")
            and getattr(module, "make_client", None) is real
        ):
            monkeypatch.setattr(module, "make_client", recording)
    return recorded


def authorized(world: Any, action: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    """The (action, resource ARN) pairs AWS authorizes a call against, per the service authorization reference
    (moto checks only S3's ARNs)."""
    region = f"us-east-1:{ACCOUNT}"
    if action == "batch:SubmitJob":  # tags on a new job also need TagResource on it
        tagged = [("batch:TagResource", f"arn:aws:batch:{region}:job/new")] if params.get("tags") else []
        return [(action, params["jobQueue"]), (action, params["jobDefinition"]), *tagged]
    if action in ("batch:TerminateJob", "batch:CancelJob"):
        return [(action, f"arn:aws:batch:{region}:job/{params['jobId']}")]
    if action == "cloudformation:DescribeStacks":
        cfn = world.admin.client("cloudformation")
        return [(action, cfn.describe_stacks(StackName=params["StackName"])["Stacks"][0]["StackId"])]
    if action in ("logs:GetLogEvents", "logs:FilterLogEvents"):
        stream = f":log-stream:{params['logStreamName']}" if "logStreamName" in params else ":*"
        return [(action, f"arn:aws:logs:{region}:log-group:{params['logGroupName']}{stream}")]
    if action == "ecr:DescribeImages":
        return [(action, f"arn:aws:ecr:{region}:repository/{params['repositoryName']}")]
    if action in (
        "batch:DescribeJobs",
        "batch:ListJobs",
        "batch:DescribeJobDefinitions",
        "batch:DescribeJobQueues",
        "batch:DescribeComputeEnvironments",
    ):
        return [(action, "*")]  # no resource-level permissions
    raise AssertionError(f"the submitter made a call this test does not map to a resource: {action}")


def assert_allowed_by_the_real_policy(world: Any, calls: list[tuple[str, dict[str, Any]]]) -> None:
    real = policy_document(world.admin.client("iam"), world.outputs["SubmitPolicyArn"], "v1")
    for call, params in calls:
        if call.startswith(("s3:", "sts:")):  # moto checks S3's ARNs; GetCallerIdentity needs no grant
            continue
        # the player's, as awslogs with the execution role
        if call in ("logs:CreateLogStream", "logs:PutLogEvents"):
            continue
        for action, arn in authorized(world, call, params):
            assert iam_allows(real, action, arn), f"SubmitPolicy does not allow {action} on {arn}"


def sweep(tmp_path: Path, n: int, *, name: str = "strict", **extra: str) -> Path:
    (tmp_path / "square.py").write_text(SCRIPT)
    lines = [f"name: {name}", "script: square.py", f"params: {{grid: {{a: {json.dumps(list(range(n)))}}}}}",
             "backend: aws-batch", "aws: {stack: batchsweep, region: us-east-1}",
             "resources: {vcpus: 0.5, memory_mib: 1024}", f"env: {{KILL_FLAG: {tmp_path / 'kill'}}}",
             *(f"{k}: {v}" for k, v in extra.items())]
    path = tmp_path / "sweep.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def play(world: Any, run: Any, **kwargs: Any) -> list[player.Played]:
    """ECS's part: start each child with the job role's credentials, ship its logs with the execution
    role's."""
    return player.play(run, session=world.admin, job_credentials=world.job_keys, log_session=world.execution,
                       **kwargs)


def access_denied(call: Any, **params: Any) -> bool:
    try:
        call(**params)
    except ClientError as e:  # moto answers Batch's refusals as a bare 403 with an XML body
        return e.response["ResponseMetadata"]["HTTPStatusCode"] == 403 and "AccessDenied" in str(e)
    return False


def test_a_submit_policy_user_runs_20_tasks_and_reads_a_killed_tasks_output(
    as_submitter, calls, tmp_path, capsys
):
    world, store = as_submitter, str(tmp_path / "store")
    (tmp_path / "kill").touch()
    run = batchsweep.run(sweep(tmp_path, 20, max_parallel="5"), store=store, detach=True)

    def kill_when(line: str) -> bool:
        if f"thinking about {VICTIM}" in line:  # in the container's log: the task may print on
            (tmp_path / "kill.go").touch()
        return f"halfway a={VICTIM}" in line

    played = play(world, run, kill_when=kill_when)
    assert sorted(p.exit_code for p in played if p.exit_code is not None) == [0, 0, 0, 0]
    assert [p for p in played if p.exit_code is None], "one container was killed mid-task"

    capsys.readouterr()
    assert cli.main(["logs", run.id, str(VICTIM), "--store", store]) == 0
    assert capsys.readouterr().out.splitlines()[-2:] == [f"start a={VICTIM}", f"halfway a={VICTIM}"]
    assert cli.main(["logs", run.id, str(VICTIM), "--stderr", "--store", store]) == 0
    assert capsys.readouterr().out.strip() == f"thinking about {VICTIM}"
    assert cli.main(["status", run.id, "--store", store]) == 0
    out = capsys.readouterr().out
    assert "lost" in out and f"last output: halfway a={VICTIM}" in out

    (tmp_path / "kill").unlink()
    assert cli.main(["resume", run.id, "--detach", "--store", store]) == 0
    assert {p.exit_code for p in play(world, batchsweep.load_run(run.id, store=store))} == {0}
    df = batchsweep.load_run(run.id, store=store).results(refresh=True)
    assert len(df) == 20 and set(df["status"]) == {"succeeded"}
    assert (df["square"] == df["a"] ** 2).all()
    assert cli.main(["report", run.id, "-o", str(tmp_path / "report.html"), "--store", store]) == 0
    assert (tmp_path / "report.html").stat().st_size > 1000
    ops = {op for op, _ in calls}
    assert {
        "batch:SubmitJob",
        "cloudformation:DescribeStacks",
        "logs:GetLogEvents",
        "ecr:DescribeImages",
    } <= ops
    assert_allowed_by_the_real_policy(world, calls)


def test_a_submit_policy_user_can_cancel_but_not_change_the_stack(as_submitter, calls, tmp_path, capsys):
    world, store = as_submitter, str(tmp_path / "store")
    # no daemon: jobs stay queued, the run active
    world.server.post("config", {"batch": {"use_docker": True}})
    try:
        run = batchsweep.run(sweep(tmp_path, 3, name="queued"), store=store, detach=True)
        assert cli.main(["cancel", run.id, "--store", store]) == 0
    finally:
        world.server.post("config", {"batch": {"use_docker": False}})
    assert batchsweep.load_run(run.id, store=store).info["cancelled"] is True
    assert "batch:TerminateJob" in {op for op, _ in calls}
    assert_allowed_by_the_real_policy(world, calls)
    user = world.submitter
    assert access_denied(user.client("cloudformation").delete_stack, StackName="batchsweep")
    assert access_denied(
        user.client("s3").delete_object, Bucket=world.outputs["Bucket"], Key="batchsweep/code/x"
    )
    assert access_denied(user.client("iam").list_users)


def test_the_job_role_reads_code_and_writes_only_under_runs(iam_world, tmp_path):
    s3, bucket = iam_world.job.client("s3"), iam_world.outputs["Bucket"]
    iam_world.admin.client("s3").put_object(Bucket=bucket, Key="batchsweep/code/abc.tar.gz", Body=b"code")
    assert s3.get_object(Bucket=bucket, Key="batchsweep/code/abc.tar.gz")["Body"].read() == b"code"
    s3.put_object(Bucket=bucket, Key="batchsweep/runs/r/tasks/0/status.json", Body=b"{}")
    assert access_denied(s3.put_object, Bucket=bucket, Key="batchsweep/code/abc.tar.gz", Body=b"evil")
    assert access_denied(s3.put_object, Bucket=bucket, Key="elsewhere.txt", Body=b"x")
    assert access_denied(s3.delete_object, Bucket=bucket, Key="batchsweep/runs/r/tasks/0/status.json")
    assert access_denied(
        iam_world.job.client("batch").submit_job, jobName="x", jobQueue="q", jobDefinition="d"
    )
    # no run
    iam_world.admin.client("s3").delete_object(Bucket=bucket, Key="batchsweep/runs/r/tasks/0/status.json")


def test_the_world_answers_403_for_a_missing_key_unless_the_caller_may_list_the_bucket(iam_world):
    """Real S3 hides which keys exist from a caller without an unconditioned s3:ListBucket
    (tests/strict_moto.py)."""
    bucket, key = iam_world.outputs["Bucket"], "batchsweep/runs/nothing/here.json"
    admin = iam_world.admin.client("s3")
    with pytest.raises(ClientError) as missing:
        admin.get_object(Bucket=bucket, Key=key)
    assert missing.value.response["Error"]["Code"] == "NoSuchKey"
    iam = iam_world.admin.client("iam")
    iam.create_user(UserName="prefix-lister")
    iam.put_user_policy(
        UserName="prefix-lister",
        PolicyName="p",
        PolicyDocument=json.dumps(
            moto_view(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "s3:ListBucket",
                            "Resource": f"arn:aws:s3:::{bucket}",
                            "Condition": {"StringLike": {"s3:prefix": ["batchsweep/*"]}},
                        },
                        {
                            "Effect": "Allow",
                            "Action": "s3:GetObject",
                            "Resource": f"arn:aws:s3:::{bucket}/batchsweep/*",
                        },
                    ],
                }
            )
        ),
    )
    keys = iam.create_access_key(UserName="prefix-lister")["AccessKey"]
    lister = boto3.client(
        "s3",
        aws_access_key_id=keys["AccessKeyId"],
        aws_secret_access_key=keys["SecretAccessKey"],
        region_name="us-east-1",
    )
    for call in (lister.get_object, lister.head_object):
        with pytest.raises(ClientError) as denied:
            call(Bucket=bucket, Key=key)
        assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    admin.put_object(Bucket=bucket, Key=key, Body=b"{}")
    assert lister.get_object(Bucket=bucket, Key=key)["Body"].read() == b"{}"
    assert lister.head_object(Bucket=bucket, Key=key)["ContentLength"] == 2
    admin.delete_object(Bucket=bucket, Key=key)  # the store holds runs, not this


PREFIX_SCRIPT = """\
import argparse, json, pathlib
p = argparse.ArgumentParser()
p.add_argument("--a", type=int, required=True)
a = p.parse_args().a
prices = pathlib.Path("prices")
rows = sorted(str(f.relative_to(prices)) for f in prices.rglob("*") if f.is_file())
total = sum(int(f.read_text()) for f in prices.rglob("*.txt"))
json.dump({"files": len(rows), "total": total + a}, open("metrics.json", "w"))
"""


def test_a_submit_policy_user_reads_an_s3_prefix_input_as_a_directory_in_packed_children(
    as_submitter, tmp_path
):
    """`s3://BUCKET/PREFIX/` is a directory: each child lists the prefix (the readable-prefixes policy's
    prefix-scoped ListBucket) and fetches every object under it; children run 3 tasks each."""
    world, store = as_submitter, str(tmp_path / "store")
    s3 = world.admin.client("s3")
    s3.create_bucket(Bucket="ext-data")
    for key, body in {
        "prices/BTC.txt": b"1",
        "prices/2024/ETH.txt": b"20",
        "prices/2024/deep/SOL.txt": b"300",
        "private/secret.txt": b"9000",
    }.items():
        s3.put_object(Bucket="ext-data", Key=key, Body=body)
    world.update_stack(ReadableS3Prefixes="ext-data/prices")
    (tmp_path / "prefix.py").write_text(PREFIX_SCRIPT)
    (tmp_path / "sweep.yaml").write_text(
        "name: prefix\nscript: prefix.py\nparams: {grid: {a: [0, 1, 2, 3, 4, 5, 6]}}\nbackend: aws-batch\n"
        "aws: {stack: batchsweep, region: us-east-1, tasks_per_job: 3}\n"
        "resources: {vcpus: 0.5, memory_mib: 1024}\ninputs: ['s3://ext-data/prices/']\n")
    run = batchsweep.run(tmp_path / "sweep.yaml", store=store, detach=True)
    played = play(world, run)
    assert len(played) == 3 and {p.exit_code for p in played} == {0}, [p.describe() for p in played]
    df = batchsweep.load_run(run.id, store=store).results(refresh=True)
    assert len(df) == 7 and set(df["status"]) == {"succeeded"}
    assert set(df["files"]) == {3} and sorted(df["total"]) == [321 + a for a in range(7)]
    # the prefix scope holds: the job role lists prices/, not the rest of the bucket
    job = world.job.client("s3")
    assert job.list_objects_v2(Bucket="ext-data", Prefix="prices/")["KeyCount"] == 3
    assert access_denied(job.list_objects_v2, Bucket="ext-data", Prefix="private/")
    assert access_denied(job.list_objects_v2, Bucket="ext-data")


ATTEMPTS_SCRIPT = """\
import argparse, json, os, time
p = argparse.ArgumentParser()
p.add_argument("--a", type=int, required=True)
a = p.parse_args().a
print(f"started a={a}", flush=True)
if os.path.exists(os.path.join(os.environ["HANG_DIR"], str(a))):
    time.sleep(120)  # the player stops the container here
json.dump({"twice": 2 * a}, open("metrics.json", "w"))
"""


def test_a_later_attempts_tasks_win_over_an_earlier_attempts_summary_the_job_role_cannot_delete(as_submitter,
                                                                                                  tmp_path):
    """Attempt 1 of a child of 3 tasks is stopped by a Spot SIGTERM in its first task (its summary:
    cancelled); attempt 2 runs two tasks and is killed before its summary. The job role may not delete attempt
    1's summary: the run reads attempt 2's tasks as they are (succeeded, succeeded, lost), and `resume`
    finishes it."""
    import dataclasses

    world, store = as_submitter, str(tmp_path / "store")
    (tmp_path / "attempts.py").write_text(ATTEMPTS_SCRIPT)
    hang = tmp_path / "hang"
    hang.mkdir()
    (hang / "1").touch()
    (tmp_path / "sweep.yaml").write_text(
        "name: attempts\nscript: attempts.py\nparams: {grid: {a: [1, 2, 3]}}\nbackend: aws-batch\naws: "
        "{stack: batchsweep, region: us-east-1, tasks_per_job: 3}\nresources: {vcpus: 0.5, memory_mib: "
        f"1024}}\nenv: {{HANG_DIR: {hang}}}\n"
    )
    run = batchsweep.run(tmp_path / "sweep.yaml", store=store, detach=True)
    (child,) = player.children(run, session=world.admin)
    first = player.play_child(
        child, job_credentials=world.job_keys, term_when=lambda line: "started a=1" in line
    )
    assert first.exit_code == 143, first.describe()
    assert batchsweep.load_run(run.id, store=store).states()[0].value == "cancelled"

    (hang / "1").rename(hang / "3")
    second = dataclasses.replace(child, env={**child.env, "AWS_BATCH_JOB_ATTEMPT": "2"})
    played = player.play_child(
        second, job_credentials=world.job_keys, kill_when=lambda line: "started a=3" in line
    )
    assert played.exit_code is None, played.describe()  # killed: attempt 2 wrote no summary
    states = batchsweep.load_run(run.id, store=store).states()
    assert [states[i].value for i in range(3)] == ["succeeded", "succeeded", "lost"]

    (hang / "3").unlink()
    assert cli.main(["resume", run.id, "--detach", "--store", store]) == 0
    assert {p.exit_code for p in play(world, batchsweep.load_run(run.id, store=store))} == {0}
    df = batchsweep.load_run(run.id, store=store).results(refresh=True)
    assert sorted(df["twice"]) == [2, 4, 6] and set(df["status"]) == {"succeeded"}


def test_deletes_s3_refuses_key_by_key_are_reported_not_taken_as_done(as_submitter, tmp_path, capsys):
    """DeleteObjects answers 200 and names the keys it kept: a SubmitPolicy user's `runs rm` deletes the run
    (runs/ is theirs to delete) and says that the code package it may not delete is still there."""
    world, store = as_submitter, str(tmp_path / "store")
    (tmp_path / "square.py").write_text(SCRIPT + "# only this test's code package\n")
    run = batchsweep.run(sweep(tmp_path, 2, name="doomed"), store=store, detach=True)
    s3, bucket = world.admin.client("s3"), world.outputs["Bucket"]

    def keys(prefix: str) -> list[str]:
        return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]

    code = f"batchsweep/code/{run.record.code_sha256}.tar.gz"
    assert keys(f"batchsweep/runs/{run.id}/") and keys(code)
    capsys.readouterr()
    assert cli.main(["runs", "rm", run.id, "--yes", "--store", store]) == 1
    out = capsys.readouterr().out
    assert (
        f"deleted run {run.id}" in out
        and f"unused code packages and inputs in s3://{bucket}/batchsweep were not deleted (AccessDenied, "
        "e.g. "
        in out
    )
    assert not keys(f"batchsweep/runs/{run.id}/") and keys(code)


def test_infra_status_works_for_a_submit_policy_user_and_names_the_policy_the_access_denied_hint_points_to(
        as_submitter, calls, capsys):
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "SubmitJob")
    assert "`batchsweep infra status` shows it" in str(clients.explain(denied))
    capsys.readouterr()
    assert cli.main(["infra", "status"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    arn = as_submitter.outputs["SubmitPolicyArn"]
    assert f"submit policy {arn} (for a sweep's user: `aws iam attach-user-policy --user-name USER " \
           f"--policy-arn {arn}`)" in out
    assert out.count("queue ") == 2 and "(FARGATE_SPOT): ENABLED, VALID" in out
    assert_allowed_by_the_real_policy(as_submitter, calls)


def test_a_submit_policy_user_naming_their_batch_resources_runs_without_reading_a_stack(as_submitter, calls,
                                                                                        tmp_path, capsys):
    """`aws:` names the bucket, queue and job definition (a user's own resources; here the stack's, named by
    hand): nothing asks CloudFormation, and the job definition's image and log group are read with no more
    than SubmitPolicy grants."""
    world, store, outputs = as_submitter, str(tmp_path / "store"), as_submitter.outputs
    (tmp_path / "square.py").write_text(SCRIPT)
    (tmp_path / "sweep.yaml").write_text(
        "name: named\nscript: square.py\nparams: {grid: {a: [0, 1, 2, 3, 4, 5]}}\nbackend: aws-batch\n"
        f"aws: {{bucket: {outputs['Bucket']}, job_queue: {outputs['JobQueue']}, "
        f"job_definition: '{outputs['JobDefinition']}', region: us-east-1}}\n"
        "resources: {vcpus: 0.5, memory_mib: 1024}\n")
    run = batchsweep.run(tmp_path / "sweep.yaml", store=store, detach=True)
    assert {p.exit_code for p in play(world, run)} == {0}
    df = batchsweep.load_run(run.id, store=store).results(refresh=True)
    assert len(df) == 6 and (df["square"] == df["a"] ** 2).all()
    capsys.readouterr()
    assert cli.main(["logs", run.id, "2", "--store", store]) == 0
    assert "start a=2" in capsys.readouterr().out
    ops = {op for op, _ in calls}
    assert {"batch:DescribeJobDefinitions", "ecr:DescribeImages", "batch:SubmitJob"} <= ops
    assert not [op for op in ops if op.startswith("cloudformation:")]
    assert_allowed_by_the_real_policy(world, calls)
