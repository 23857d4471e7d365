"""The CloudFormation template, checked by cfn-lint, checkov and by reading it.

moto skips bucket policies and ignores several properties (docs/aws-testing.md), so what
the emulator cannot check is asserted here on the template itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from batchsweep.infra.stack import ENGINE_OUTPUTS
from batchsweep.infra.template import load_template, template_text

TEMPLATE = Path(__file__).resolve().parents[2] / "src" / "batchsweep" / "infra" / "template.yaml"
DEFAULT_CHECKOV = Path(__file__).resolve().parents[2] / ".venv-checkov" / "bin" / "checkov"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == kind}


def policy_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    """Every statement of every identity policy the template grants."""
    statements: list[dict[str, Any]] = []
    for res in template["Resources"].values():
        props = res.get("Properties", {})
        documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
        if res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents.append(props["PolicyDocument"])
        for document in documents:
            statements += document["Statement"]
    return statements


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def wildcard_grants(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Allow statements with Action `*` or `service:*` on Resource `*`."""
    return [
        s for s in statements
        if s.get("Effect") == "Allow"
        and "*" in as_list(s.get("Resource"))
        and any(a == "*" or str(a).endswith(":*") for a in as_list(s.get("Action")))
    ]


def test_the_package_ships_the_template_file() -> None:
    assert template_text() == TEMPLATE.read_text(encoding="utf-8")


def test_the_template_sent_fits_in_a_create_stack_request_body_and_says_what_the_file_says() -> None:
    from batchsweep.infra.template import load_template, template_body

    assert len(template_body().encode()) < 51_200
    assert load_template(template_body()) == load_template(template_text())


def test_cfn_lint_reports_no_errors_or_warnings() -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run([str(cfn_lint), str(TEMPLATE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_checkov_finds_no_failed_checks() -> None:
    checkov = Path(os.environ.get("CHECKOV") or DEFAULT_CHECKOV)
    if not checkov.exists():
        if os.environ.get("CHECKOV"):
            pytest.fail(f"CHECKOV={checkov} does not exist")
        pytest.skip(f"checkov not installed at {checkov} (make .venv-checkov/.installed)")
    result = subprocess.run(
        [
            str(checkov),
            "--skip-download",
            "--framework",
            "cloudformation",
            "--output",
            "json",
            "--file",
            str(TEMPLATE),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    report = json.loads(result.stdout)
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == []
    # checkov passes a file it cannot parse with 0/0: passing checks prove it read the template.
    assert report["summary"]["passed"] > 0
    assert report["summary"]["parsing_errors"] == 0


def test_every_checkov_skip_gives_a_reason(template: dict[str, Any]) -> None:
    for name, res in template["Resources"].items():
        for skip in res.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert len(skip.get("comment", "")) > 20, f"{name}: skip {skip['id']} needs a reason"


def test_no_iam_statement_grants_a_wildcard_action_on_every_resource(template: dict[str, Any]) -> None:
    statements = policy_statements(template)
    assert statements, "the template should grant something"
    assert wildcard_grants(statements) == []


@pytest.mark.parametrize("action", ["*", "s3:*", ["ecr:GetAuthorizationToken", "iam:*"]])
def test_the_wildcard_check_catches_broad_grants(action: Any) -> None:
    assert wildcard_grants([{"Effect": "Allow", "Action": action, "Resource": "*"}])


def test_the_job_role_reads_code_inputs_and_runs_and_writes_only_runs(template: dict[str, Any]) -> None:
    role = template["Resources"]["JobRole"]["Properties"]
    statements = {s["Sid"]: s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]}
    assert statements["ListTheStore"]["Resource"] == {"Fn::GetAtt": ["Bucket", "Arn"]}
    # S3 answers a missing key with 404 only to a caller whose ListBucket holds for a request with no prefix.
    assert "Condition" not in statements["ListTheStore"]
    assert [r["Fn::Sub"] for r in statements["ReadCodeInputsAndRuns"]["Resource"]] == [
        "${Bucket.Arn}/batchsweep/code/*",
        "${Bucket.Arn}/batchsweep/inputs/*",
        "${Bucket.Arn}/batchsweep/runs/*",
    ]
    assert statements["WriteRunsAndTheReuseIndex"]["Resource"] == [
        {"Fn::Sub": "${Bucket.Arn}/batchsweep/runs/*"}, {"Fn::Sub": "${Bucket.Arn}/batchsweep/index/*"}]
    actions = {a for s in statements.values() for a in as_list(s["Action"])}
    assert actions == {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"}
    assert "ManagedPolicyArns" not in role


def test_no_policy_lets_a_task_delete_from_the_store(template: dict[str, Any]) -> None:
    job_role_policies = [r for r in template["Resources"].values()
                         if {"Ref": "JobRole"} in r.get("Properties", {}).get("Roles", [])]
    statements = [
        s
        for p in template["Resources"]["JobRole"]["Properties"]["Policies"]
        for s in p["PolicyDocument"]["Statement"]
    ]
    statements += [s for r in job_role_policies for s in r["Properties"]["PolicyDocument"]["Statement"]]
    assert not [a for s in statements for a in as_list(s["Action"]) if "Delete" in a or a.endswith("*")]


def test_the_submit_policy_is_an_output_and_cannot_change_the_stack(template: dict[str, Any]) -> None:
    policy = template["Resources"]["SubmitPolicy"]
    assert policy["Type"] == "AWS::IAM::ManagedPolicy"
    assert template["Outputs"]["SubmitPolicyArn"]["Value"] == {"Ref": "SubmitPolicy"}
    actions = {a for s in policy["Properties"]["PolicyDocument"]["Statement"] for a in as_list(s["Action"])}
    assert not [
        a for a in actions if a.startswith("cloudformation:") and a != "cloudformation:DescribeStacks"
    ]
    assert not [a for a in actions if a.startswith("iam:") and a != "iam:PassRole"]
    assert {"batch:SubmitJob", "batch:TerminateJob", "logs:GetLogEvents", "s3:GetObject"} <= actions


def test_the_bucket_is_encrypted_private_and_expires_old_runs(template: dict[str, Any]) -> None:
    bucket = template["Resources"]["Bucket"]["Properties"]
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    rules = {r["Id"]: r for r in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-old-runs"]["Prefix"] == "batchsweep/runs/"
    assert rules["expire-old-runs"]["ExpirationInDays"] == {"Ref": "RunRetentionDays"}


def test_the_bucket_policy_refuses_requests_without_tls(template: dict[str, Any]) -> None:
    (policy,) = resources_of(template, "AWS::S3::BucketPolicy").values()
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert policy["Properties"]["Bucket"] == {"Ref": "Bucket"}


def test_the_repository_scans_on_push_and_expires_old_images(template: dict[str, Any]) -> None:
    repo = template["Resources"]["Repository"]["Properties"]
    assert repo["ImageScanningConfiguration"] == {"ScanOnPush": True}
    rules = json.loads(repo["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
    assert {r["action"]["type"] for r in rules} == {"expire"}


def test_the_log_group_has_a_retention(template: dict[str, Any]) -> None:
    assert template["Resources"]["LogGroup"]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_the_job_definition_runs_the_worker_on_fargate(template: dict[str, Any]) -> None:
    job = template["Resources"]["JobDefinition"]["Properties"]
    container = job["ContainerProperties"]
    assert job["PlatformCapabilities"] == ["FARGATE"]
    assert container["Command"] == ["python", "-m", "batchsweep.worker"]
    assert container["ExecutionRoleArn"] == {"Fn::GetAtt": ["ExecutionRole", "Arn"]}
    assert container["JobRoleArn"] == {"Fn::GetAtt": ["JobRole", "Arn"]}
    assert container["NetworkConfiguration"] == {
        "AssignPublicIp": {"Fn::If": ["Private", "DISABLED", "ENABLED"]}
    }
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"
    assert container["LogConfiguration"]["Options"]["awslogs-group"] == {"Ref": "LogGroup"}
    assert "${Repository}:${ImageTag}" in container["Image"]["Fn::Sub"]
    assert "Environment" not in container  # no keys or passwords in a job's environment


def test_compute_scales_to_zero_with_fargate_spot_first(template: dict[str, Any]) -> None:
    queue = template["Resources"]["JobQueue"]["Properties"]
    order = sorted(queue["ComputeEnvironmentOrder"], key=lambda e: e["Order"])
    kinds = [
        template["Resources"][e["ComputeEnvironment"]["Ref"]]["Properties"]["ComputeResources"]["Type"]
        for e in order
    ]
    assert kinds == ["FARGATE_SPOT", "FARGATE"]
    for env in resources_of(template, "AWS::Batch::ComputeEnvironment").values():
        resources = env["Properties"]["ComputeResources"]
        assert resources.get("MinvCpus", 0) == 0
        assert "MaxvCpus" in resources


# The blocked reasons Batch's jobStateTimeLimitActions accept (user guide, "Automatic remediation with
# jobStateTimeLimitActions"); MISCONFIGURATION:SERVICE_ROLE_PERMISSIONS is reported but not remediable.
BLOCKED_REASONS = {
    "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT",
    "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE",
    "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY",
}
EC2_ONLY_REASONS = {"MISCONFIGURATION:EC2_INSTANCE_CONFIGURATION_UNSUPPORTED"}


def test_every_queue_cancels_jobs_stuck_in_runnable_once_per_real_blocked_reason(
    template: dict[str, Any],
) -> None:
    for name, queue in resources_of(template, "AWS::Batch::JobQueue").items():
        actions = queue["Properties"]["JobStateTimeLimitActions"]
        assert {(a["State"], a["Action"]) for a in actions} == {("RUNNABLE", "CANCEL")}, name
        reasons = [a["Reason"] for a in actions]
        expected = BLOCKED_REASONS | (EC2_ONLY_REASONS if name.startswith("Gpu") else set())
        assert sorted(reasons) == sorted(expected), name  # Batch matches these; free text never fires


def test_job_definitions_keep_their_old_revisions_on_update(template: dict[str, Any]) -> None:
    for name, job in resources_of(template, "AWS::Batch::JobDefinition").items():
        assert job["Properties"]["ResourceRetentionPolicy"] == {"SkipDeregisterOnUpdate": True}, name


def test_gpu_instances_use_the_current_ecs_gpu_ami(template: dict[str, Any]) -> None:
    config = template["Resources"]["GpuEnvironment"]["Properties"]["ComputeResources"]["Ec2Configuration"]
    assert config == [{"ImageType": "ECS_AL2023_NVIDIA"}]


def test_on_aws_compute_uses_the_batch_service_linked_role(template: dict[str, Any]) -> None:
    assert template["Parameters"]["BatchServiceRoleMode"]["Default"] == "service-linked"
    assert template["Resources"]["BatchServiceRole"]["Condition"] == "ExplicitServiceRole"
    for name, env in resources_of(template, "AWS::Batch::ComputeEnvironment").items():
        assert env["Properties"]["ServiceRole"]["Fn::If"][2] == {"Ref": "AWS::NoValue"}, name


def test_inputs_expire_like_code_packages(template: dict[str, Any]) -> None:
    rules = {
        r["Id"]: r for r in template["Resources"]["Bucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    }
    assert rules["expire-old-inputs"]["Prefix"] == "batchsweep/inputs/"
    assert rules["expire-old-inputs"]["ExpirationInDays"] == {"Ref": "RunRetentionDays"}


def test_gpu_tasks_get_their_own_ec2_spot_queue_only_when_enabled(template: dict[str, Any]) -> None:
    gpu = template["Resources"]["GpuEnvironment"]
    assert gpu["Condition"] == "GpuEnabled"
    assert gpu["Properties"]["ComputeResources"]["Type"] == "SPOT"
    assert template["Resources"]["GpuJobQueue"]["Condition"] == "GpuEnabled"
    assert template["Resources"]["GpuJobDefinition"]["Properties"]["PlatformCapabilities"] == ["EC2"]


def test_gpu_sweeps_that_must_not_be_interrupted_get_an_on_demand_ec2_queue(template: dict[str, Any]) -> None:
    env = template["Resources"]["GpuOnDemandEnvironment"]
    assert env["Condition"] == "GpuEnabled" and env["Properties"]["ComputeResources"]["Type"] == "EC2"
    queue = template["Resources"]["GpuOnDemandJobQueue"]
    assert queue["Properties"]["ComputeEnvironmentOrder"] == [
        {"Order": 1, "ComputeEnvironment": {"Ref": "GpuOnDemandEnvironment"}}]
    assert template["Outputs"]["GpuOnDemandJobQueue"] == {"Condition": "GpuEnabled",
                                                          "Value": {"Ref": "GpuOnDemandJobQueue"}}
    submit = {
        s["Sid"]: s
        for s in template["Resources"]["SubmitPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    }
    assert {"Fn::If": ["GpuEnabled", {"Ref": "GpuOnDemandJobQueue"}, {"Ref": "AWS::NoValue"}]} in \
        submit["SubmitToTheStackQueues"]["Resource"]


def test_containers_on_gpu_instances_cannot_reach_the_instance_metadata(template: dict[str, Any]) -> None:
    """One hop: the instance's own processes reach IMDS (v2 only), a container behind the docker bridge does
    not, so a task cannot take the instance role's credentials."""
    options = template["Resources"]["GpuLaunchTemplate"]["Properties"]["LaunchTemplateData"][
        "MetadataOptions"
    ]
    assert options["HttpPutResponseHopLimit"] == 1 and options["HttpTokens"] == "required"
    for name in ("GpuEnvironment", "GpuOnDemandEnvironment"):
        launch = template["Resources"][name]["Properties"]["ComputeResources"]["LaunchTemplate"]
        assert launch["LaunchTemplateId"] == {"Ref": "GpuLaunchTemplate"}, name


def test_the_security_group_allows_no_inbound_traffic(template: dict[str, Any]) -> None:
    """Nothing reaches a task; only the private network's VPC endpoints take HTTPS, from the tasks alone."""
    for name, group in resources_of(template, "AWS::EC2::SecurityGroup").items():
        ingress = group["Properties"].get("SecurityGroupIngress", [])
        assert all(r.get("SourceSecurityGroupId") == {"Ref": "TaskSecurityGroup"} and "CidrIp" not in r
                   for r in ingress), name
        assert not ingress or name == "EndpointSecurityGroup"
    assert resources_of(template, "AWS::EC2::SecurityGroupIngress") == {}


def test_nothing_is_retained_when_the_stack_is_deleted(template: dict[str, Any]) -> None:
    kept = [
        name
        for name, res in template["Resources"].items()
        if res.get("DeletionPolicy") in ("Retain", "RetainExceptOnCreate")
    ]
    assert kept == []


def test_outputs_include_what_the_engine_reads(template: dict[str, Any]) -> None:
    assert set(ENGINE_OUTPUTS) <= set(template["Outputs"])
    assert ENGINE_OUTPUTS == ("Bucket", "JobQueue", "JobDefinition", "LogGroup", "ImageUri", "Region")


def test_every_arn_the_template_writes_names_its_partition(template: dict[str, Any]) -> None:
    """`arn:aws:` is wrong in aws-cn and aws-us-gov: every ARN is built with ${AWS::Partition}."""
    assert "arn:aws:" not in json.dumps(template)
    assert "arn:${AWS::Partition}:s3:::${Entry}/*" in json.dumps(template["Resources"]["ReadablePrefix7"])


def test_reuse_index_entries_and_lone_delete_markers_expire(template: dict[str, Any]) -> None:
    rules = {
        r["Id"]: r for r in template["Resources"]["Bucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    }
    assert rules["expire-old-index"]["Prefix"] == "batchsweep/index/"
    assert rules["expire-old-index"]["ExpirationInDays"] == {"Ref": "RunRetentionDays"}
    assert rules["tidy"]["ExpiredObjectDeleteMarker"] is True
    assert "ExpirationInDays" not in rules["tidy"]  # S3 refuses a rule with both
    covered = {r.get("Prefix") for r in rules.values() if "ExpirationInDays" in r}
    assert {"batchsweep/runs/", "batchsweep/code/", "batchsweep/inputs/", "batchsweep/index/"} == covered


def test_every_job_definition_runs_an_init_process_as_pid_1(template: dict[str, Any]) -> None:
    for name, job in resources_of(template, "AWS::Batch::JobDefinition").items():
        assert job["Properties"]["ContainerProperties"]["LinuxParameters"] == {"InitProcessEnabled": True}, (
            name
        )


def test_the_submit_policy_grants_only_the_log_calls_batchsweep_makes(template: dict[str, Any]) -> None:
    import re

    statements = template["Resources"]["SubmitPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    granted = {a for s in statements for a in as_list(s["Action"]) if a.startswith("logs:")}
    source = "\n".join(
        p.read_text() for p in (TEMPLATE.parent.parent).rglob("*.py") if "emulator" not in p.parts
    )
    used = {
        "logs:" + "".join(w.title() for w in m.split("_")) for m in re.findall(r"\blogs\.(\w+)\(", source)
    }
    assert granted == used == {"logs:GetLogEvents"}


def test_a_private_network_reaches_aws_only_through_endpoints_the_tasks_alone_may_use(
    template: dict[str, Any],
) -> None:
    """PrivateNetwork=true: every Fargate job definition asks for no public IP, the internet route exists only
    without it, and each interface endpoint resolves the service's own name in the VPC for the tasks alone."""
    resources = template["Resources"]
    for name, res in resources_of(template, "AWS::Batch::JobDefinition").items():
        network = res["Properties"]["ContainerProperties"].get("NetworkConfiguration")
        if res["Properties"].get("PlatformCapabilities") == ["FARGATE"]:
            assert network == {"AssignPublicIp": {"Fn::If": ["Private", "DISABLED", "ENABLED"]}}, name
    for name in ("InternetGateway", "GatewayAttachment", "DefaultRoute"):
        assert resources[name]["Condition"] == "CreatePublicNetwork"
    endpoints = resources_of(template, "AWS::EC2::VPCEndpoint")
    services = {
        res["Properties"]["ServiceName"]["Fn::Sub"].rsplit(".", 1)[-1]
        if "ecr" not in str(res)
        else res["Properties"]["ServiceName"]["Fn::Sub"].split("}.", 1)[1]: res
        for res in endpoints.values()
    }
    assert {s: r["Condition"] for s, r in services.items()} == {
        "s3": "CreatePrivateNetwork", "ecr.api": "CreatePrivateNetwork", "ecr.dkr": "CreatePrivateNetwork",
        "logs": "CreatePrivateNetwork", "ssm": "PrivateSecrets", "secretsmanager": "PrivateSecrets",
        "ecs": "PrivateGpu", "ecs-agent": "PrivateGpu", "ecs-telemetry": "PrivateGpu"}
    for service, res in services.items():
        props = res["Properties"]
        if service == "s3":
            assert props["VpcEndpointType"] == "Gateway" and props["RouteTableIds"] == [
                {"Ref": "PublicRouteTable"}
            ]
        else:
            assert props["VpcEndpointType"] == "Interface" and props["PrivateDnsEnabled"] is True
            assert props["SecurityGroupIds"] == [{"Ref": "EndpointSecurityGroup"}]
    (ingress,) = resources["EndpointSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert ingress["SourceSecurityGroupId"] == {"Ref": "TaskSecurityGroup"} and ingress["FromPort"] == 443
