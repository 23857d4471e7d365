"""A user who brings their own AWS Batch resources, as the tutorials build them by hand: a bucket, a compute
environment, a queue and a job definition, and no batchsweep stack. `image push SPEC --tag REPO` builds the
task image into their repository; `run` reads the image and log group from their job definition and checks the
image has the spec's requirements. moto's server on 127.0.0.1; a recording docker (tests/fake_builder.py) on
PATH."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from aws_batch_helpers import write_spec
from fake_builder import install_fakes

import batchsweep
from batchsweep import cli
from batchsweep.aws.record import AwsEngineSettings
from batchsweep.emulator import player
from batchsweep.infra.image import requirements_hash

SCRIPT = """\
import argparse, json
p = argparse.ArgumentParser()
p.add_argument("--a", type=int, required=True)
a = p.parse_args().a
print(f"squaring {a}", flush=True)
json.dump({"square": a * a}, open("metrics.json", "w"))
"""


@pytest.fixture
def docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A recording docker whose daemon answers, alone on PATH; its log."""
    install_fakes(tmp_path / "bin", "docker")
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(tmp_path / "docker.log"))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    return tmp_path / "docker.log"


@pytest.fixture
def own(session: Any) -> dict[str, str]:
    """What a tutorial makes by hand (no CloudFormation): a bucket, an ECR repository, a Fargate compute
    environment and its queue, Batch's default log group. The job definition comes once the image is
    pushed."""
    iam, ec2, batch = session.client("iam"), session.client("ec2"), session.client("batch")
    session.client("s3").create_bucket(Bucket="my-sweeps")
    repo = session.client("ecr").create_repository(repositoryName="my-task")["repository"]["repositoryUri"]
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    role = iam.create_role(RoleName="my-batch-role", AssumeRolePolicyDocument=json.dumps(trust))["Role"][
        "Arn"
    ]
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="my-batch", Description="batch", VpcId=vpc)["GroupId"]
    env = batch.create_compute_environment(
        computeEnvironmentName="my-fargate",
        type="MANAGED",
        state="ENABLED",
        serviceRole=role,
        computeResources={
            "type": "FARGATE",
            "maxvCpus": 16,
            "subnets": [subnet],
            "securityGroupIds": [group],
        },
    )
    batch.create_job_queue(
        jobQueueName="my-queue",
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env["computeEnvironmentArn"]}],
    )
    session.client("logs").create_log_group(logGroupName="/aws/batch/job")
    return {"repository": repo, "role": role}


def register(session: Any, own: dict[str, str], image: str, **container: Any) -> str:
    """`aws batch register-job-definition` as the tutorials write it: Fargate, the image's worker as
    command."""
    return str(session.client("batch").register_job_definition(
        jobDefinitionName="my-job", type="container", platformCapabilities=["FARGATE"],
        containerProperties={"image": image, "command": ["python", "-m", "batchsweep.worker"],
                             "jobRoleArn": own["role"], "executionRoleArn": own["role"],
                             "resourceRequirements": [{"type": "VCPU", "value": "1"},
                                                      {"type": "MEMORY", "value": "2048"}], **container},
    )["jobDefinitionArn"])


def spec(tmp_path: Path, *extra: str) -> Path:
    (tmp_path / "square.py").write_text(SCRIPT)
    return write_spec(tmp_path, "\n".join([
        "name: own", "script: square.py", "params: {grid: {a: [1, 2, 3, 4, 5]}}", "backend: aws-batch",
        "aws: {bucket: my-sweeps, job_queue: my-queue, job_definition: my-job, region: us-east-1}",
        "resources: {vcpus: 1, memory_mib: 2048}", *extra]) + "\n")


def test_a_user_with_their_own_batch_resources_builds_pushes_and_runs_without_a_stack(
        tmp_path, session, own, docker, calls, capsys):
    sweep = spec(tmp_path, "requirements: [humanize==4.9.0]")
    assert cli.main(["image", "push", str(sweep), "--tag", f"{own['repository']}:v1"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"{own['repository']}:v1"
    (detail,) = session.client("ecr").describe_images(repositoryName="my-task")["imageDetails"]
    wanted = "-r" + str(requirements_hash(["humanize==4.9.0"]))
    assert "v1" in detail["imageTags"] and any(
        t.startswith("bs-") and t.endswith(wanted) for t in detail["imageTags"]
    )
    assert Path(f"{docker}.requirements").read_text() == "humanize==4.9.0\n"
    register(session, own, f"{own['repository']}:v1")

    run = batchsweep.run(sweep, store=tmp_path / "store", detach=True)
    assert {p.exit_code for p in player.play(run)} == {0}
    df = batchsweep.load_run(run.id, store=tmp_path / "store").results()
    assert len(df) == 5 and set(df["status"]) == {"succeeded"} and (df["square"] == df["a"] ** 2).all()
    capsys.readouterr()
    assert cli.main(["logs", run.id, "2", "--store", str(tmp_path / "store")]) == 0
    assert capsys.readouterr().out.strip() == "squaring 3"  # from the job definition's log group
    assert run.record.engine_as(AwsEngineSettings).image_uri == f"{own['repository']}:v1"
    assert not [op for op, _ in calls if op.startswith("cloudformation.")]  # no stack was ever asked for


def test_image_build_with_a_tag_needs_neither_a_stack_nor_aws(tmp_path, docker, capsys, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing answers: no AWS call may be made
    assert (
        cli.main(["image", "build", str(spec(tmp_path)), "--tag", "registry.example:5000/team/task:v2"]) == 0
    )
    assert capsys.readouterr().out.splitlines()[-1] == "registry.example:5000/team/task:v2"
    argvs = [json.loads(line)["argv"] for line in docker.read_text().splitlines()]
    (build,) = [a for a in argvs if a[0] == "build"]
    content = build[build.index("--tag") + 1]
    assert content.startswith("registry.example:5000/team/task:bs-")
    assert ["tag", content, "registry.example:5000/team/task:v2"] in argvs


def test_pushing_a_pushed_image_under_another_tag_only_tags_it_in_ecr(tmp_path, session, own, docker, capsys):
    sweep = str(spec(tmp_path))
    assert cli.main(["image", "push", sweep, "--tag", own["repository"]]) == 0
    content = capsys.readouterr().out.splitlines()[-1]
    assert content.startswith(f"{own['repository']}:bs-")
    before = docker.read_text()
    assert cli.main(["image", "push", sweep, "--tag", f"{own['repository']}:stable"]) == 0
    added = [json.loads(line)["argv"] for line in docker.read_text()[len(before):].splitlines()]
    # no build, no push: ECR tagged the image it has (the builder only named the base's digest)
    assert {a[0] for a in added} <= {"info", "pull", "image"}, added
    (detail,) = session.client("ecr").describe_images(repositoryName="my-task")["imageDetails"]
    assert sorted(detail["imageTags"]) == sorted([content.rsplit(":", 1)[1], "stable"])


def test_a_job_definition_whose_image_lacks_the_requirements_is_refused_in_one_line(
        tmp_path, session, own, docker, calls, capsys):
    sweep = spec(tmp_path)
    assert cli.main(["image", "push", str(sweep), "--tag", f"{own['repository']}:plain"]) == 0
    register(session, own, f"{own['repository']}:plain")
    with_requirements = spec(tmp_path, "requirements: [humanize==4.9.0]")
    capsys.readouterr()
    assert cli.main(["run", str(with_requirements), "--store", str(tmp_path / "store")]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert (
        "aws.job_definition my-job:1: its image" in err and "built without this sweep's requirements" in err
    )
    assert f"`batchsweep image push {with_requirements} --tag {own['repository']}`" in err
    assert not [p for op, p in calls if op == "batch.SubmitJob"]


def test_a_job_definition_whose_image_is_not_in_ecr_is_refused_with_the_push_command(
        tmp_path, session, own, calls, capsys):
    register(session, own, f"{own['repository']}:never-pushed")
    assert cli.main(["run", str(spec(tmp_path)), "--store", str(tmp_path / "store")]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert f"its image {own['repository']}:never-pushed is not in ECR" in err and "--tag" in err
    assert not [p for op, p in calls if op == "batch.SubmitJob"]


def test_an_image_batchsweep_did_not_build_is_one_warning_and_its_log_group_is_the_job_definitions(
        tmp_path, session, own, calls, caplog):
    """Nothing can be told of an image from another registry that batchsweep did not build: a warning, and the
    run goes on. (The emulator runs no image, so that a task would fail in it is not shown here.)"""
    session.client("logs").create_log_group(logGroupName="/team/sweeps")
    register(session, own, "docker.io/library/python:3.12-slim",
             logConfiguration={"logDriver": "awslogs", "options": {"awslogs-group": "/team/sweeps"}})
    with caplog.at_level(logging.WARNING, logger="batchsweep"):
        run = batchsweep.run(spec(tmp_path), store=tmp_path / "store", detach=True)
    assert any("was not built by batchsweep" in r.getMessage() for r in caplog.records)
    assert [p for op, p in calls if op == "batch.SubmitJob"]
    assert run.record.engine_as(AwsEngineSettings).log_group == "/team/sweeps"


def test_resume_after_the_job_definitions_image_left_ecr_names_the_push_to_your_repository(
        tmp_path, session, own, docker, calls, capsys):
    sweep = spec(tmp_path)
    assert cli.main(["image", "push", str(sweep), "--tag", f"{own['repository']}:v1"]) == 0
    register(session, own, f"{own['repository']}:v1")
    run = batchsweep.run(sweep, store=tmp_path / "store", detach=True)
    ecr = session.client("ecr")
    ids = [{"imageDigest": i["imageDigest"]} for i in ecr.list_images(repositoryName="my-task")["imageIds"]]
    ecr.batch_delete_image(repositoryName="my-task", imageIds=ids)  # a lifecycle rule of your own expired it
    submitted = len([p for op, p in calls if op == "batch.SubmitJob"])
    capsys.readouterr()
    assert cli.main(["resume", run.id, "--detach", "--store", str(tmp_path / "store")]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert "the task image this run pinned (my-task:v1) is no longer in ECR;" in err
    assert f"`batchsweep image push {sweep} --tag {own['repository']}:v1`" in err
    assert len([p for op, p in calls if op == "batch.SubmitJob"]) == submitted
