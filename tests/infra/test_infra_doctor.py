"""`batchsweep doctor` against moto's server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from batchsweep.aws.clients import make_client
from batchsweep.infra import doctor as doctor_module
from batchsweep.infra import stack as infra
from batchsweep.infra.doctor import doctor

STACK = "bs-doctor"


@pytest.fixture
def outputs(session: Any) -> dict[str, str]:
    return infra.up(STACK, {}, session=session, echo=lambda _: None, poll_s=0.01)


def push_stack_image(session: Any, outputs: dict[str, str]) -> None:
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"digest": "sha256:" + "c" * 64, "size": 1}, "layers": []}
    make_client("ecr", session=session).put_image(
        repositoryName=outputs["EcrRepository"], imageManifest=json.dumps(manifest), imageTag="latest")


def test_everything_in_place_gives_check_marks_and_exit_0(session: Any, outputs: dict[str, str]) -> None:
    push_stack_image(session, outputs)
    lines: list[str] = []
    assert doctor(STACK, echo=lines.append) == 0
    marks = [line[0] for line in lines]
    assert "✗" not in marks
    text = "\n".join(lines)
    for expected in (
        "credentials and region resolved: us-east-1",
        "caller identity: arn:aws:",
        f"stack {STACK} in us-east-1",
        "job queue ",
        "compute environment ",
        f"image {outputs['ImageUri']} pushed",
        f"bucket s3://{outputs['Bucket']} reachable",
    ):
        assert expected in text
    assert marks.count("✓") == 8  # credentials, identity, stack, queue, 2 environments, image, bucket


def test_an_unreadable_quota_is_a_warning_not_a_failure(session: Any, outputs: dict[str, str]) -> None:
    push_stack_image(session, outputs)
    lines: list[str] = []
    assert doctor(STACK, echo=lines.append) == 0
    # moto has no fargate quotas
    assert lines[-2].startswith("! could not read the Fargate On-Demand vCPU quota")
    assert lines[-1].startswith("! could not read the Fargate Spot vCPU quota")


def test_a_missing_image_fails_with_the_push_command(outputs: dict[str, str]) -> None:
    lines: list[str] = []
    assert doctor(STACK, echo=lines.append) == 1
    assert f"✗ image {outputs['ImageUri']} not in ECR — fix: batchsweep image push --stack {STACK}" in lines


def test_without_a_stack_it_fails_with_the_fix(aws_env: str) -> None:
    lines: list[str] = []
    assert doctor("nope", echo=lines.append) == 1
    assert lines[-1] == "✗ stack nope not found in us-east-1 — fix: batchsweep infra up --stack nope"
    assert [line[0] for line in lines] == ["✓", "✓", "✗"]


def test_without_credentials_it_fails_on_the_first_line(
    aws_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setattr("botocore.credentials.InstanceMetadataProvider.load", lambda self: None)
    monkeypatch.setattr("botocore.credentials.ContainerProvider.load", lambda self: None)
    lines: list[str] = []
    assert doctor(STACK, echo=lines.append) == 1
    assert lines[0].startswith("✗ credentials and region — fix: AWS credentials not found")


def test_each_fargate_quota_below_max_vcpus_warns_with_its_request_command(session: Any) -> None:
    def fake_quota(params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        from botocore.awsrequest import AWSResponse

        value = {"L-3032A538": 6.0, "L-36FBB829": 32.0}[json.loads(params["body"])["QuotaCode"]]
        return AWSResponse("https://quota", 200, {}, None), {"Quota": {"Value": value}}

    session.events.register("before-call.service-quotas.GetServiceQuota", fake_quota)
    report = doctor_module._Report(echo=(lines := []).append)
    doctor_module._quota_check("16", session=session, report=report)
    assert not report.failed
    assert lines[0].startswith("! Fargate On-Demand vCPU quota 6 is below the stack's MaxVcpus 16")
    assert "--quota-code L-3032A538 --desired-value 16" in lines[0]
    assert lines[1] == "✓ Fargate Spot vCPU quota 32 covers the stack's MaxVcpus 16"


def test_a_stack_with_gpus_has_its_g_and_vt_quotas_checked_against_gpu_max_vcpus(session: Any) -> None:
    def fake_quota(params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        from botocore.awsrequest import AWSResponse

        value = {"L-3032A538": 16.0, "L-36FBB829": 16.0, "L-3819A6DF": 0.0,
                 "L-DB2E81BA": 64.0}[json.loads(params["body"])["QuotaCode"]]
        return AWSResponse("https://quota", 200, {}, None), {"Quota": {"Value": value}}

    outputs = infra.up(
        STACK, {"EnableGpu": "true", "GpuMaxVcpus": "32"}, session=session, echo=lambda _: None, poll_s=0.01
    )
    push_stack_image(session, outputs)
    session.events.register("before-call.service-quotas.GetServiceQuota", fake_quota)
    report = doctor_module._Report(echo=(lines := []).append)
    doctor_module._stack_checks(STACK, session=session, report=report)
    assert not report.failed
    assert lines[-2].startswith("! G and VT Spot instances vCPU quota 0 is below the stack's GpuMaxVcpus 32")
    assert "--service-code ec2 --quota-code L-3819A6DF --desired-value 32" in lines[-2]
    assert (
        lines[-1] == "✓ Running On-Demand G and VT instances vCPU quota 64 covers the stack's GpuMaxVcpus 32"
    )


def test_a_stack_without_gpus_has_no_gpu_quota_lines(session: Any, outputs: dict[str, str]) -> None:
    push_stack_image(session, outputs)
    lines: list[str] = []
    doctor(STACK, echo=lines.append)
    assert not [line for line in lines if "G and VT" in line]
