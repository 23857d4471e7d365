"""`infra up|status|down` and `stack_outputs` against moto's server."""

from __future__ import annotations

import ast
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from batchsweep.aws.clients import make_client
from batchsweep.errors import AwsSetupError, SweepError
from batchsweep.infra import stack as infra

STACK = "bs-test"


@pytest.fixture
def lines() -> list[str]:
    return []


@pytest.fixture
def deployed(session: Any, lines: list[str]) -> dict[str, str]:
    outputs = infra.up(STACK, {}, session=session, echo=lines.append, poll_s=0.01)
    lines.clear()
    return outputs


@pytest.fixture
def deployed_in_vpc(session: Any, lines: list[str]) -> dict[str, str]:
    """The stack in an existing VPC: moto cannot delete the VPC the stack makes itself
    (it leaves the internet gateway attached), so the `down` tests use this variant."""
    ec2 = make_client("ec2", session=session)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24")["Subnet"]["SubnetId"] for i in (1, 2)]
    params = {"ExistingVpcId": vpc, "ExistingSubnetIds": ",".join(subnets)}
    outputs = infra.up(STACK, params, session=session, echo=lines.append, poll_s=0.01)
    lines.clear()
    return outputs


def stack_params(session: Any) -> dict[str, str]:
    found = infra.describe_stack(STACK, session=session)
    assert found is not None
    return {p["ParameterKey"]: p["ParameterValue"] for p in found["Parameters"]}


def test_up_creates_the_stack_and_returns_the_engine_outputs(session: Any, lines: list[str]) -> None:
    outputs = infra.up(STACK, {}, session=session, echo=lines.append, poll_s=0.01)
    assert set(infra.ENGINE_OUTPUTS) <= set(outputs)
    assert outputs["Region"] == "us-east-1"
    assert outputs["ImageUri"].endswith(f".amazonaws.com/{STACK}:latest")
    assert outputs["LogGroup"] == f"/batchsweep/{STACK}"
    assert any("CREATE_COMPLETE" in line for line in lines), lines  # events were streamed


def test_stack_outputs_reads_what_up_returned(session: Any, deployed: dict[str, str]) -> None:
    assert infra.stack_outputs(STACK, session=session) == deployed


def test_a_second_up_without_changes_says_so(
    session: Any, deployed: dict[str, str], lines: list[str]
) -> None:
    outputs = infra.up(STACK, {}, session=session, echo=lines.append, poll_s=0.01)
    assert lines == [f"no changes: stack {STACK} is up to date"]
    assert outputs == deployed


def test_up_with_a_new_param_updates_and_keeps_the_others(session: Any, lines: list[str]) -> None:
    infra.up(STACK, {"RunRetentionDays": "7"}, session=session, echo=lines.append, poll_s=0.01)
    infra.up(STACK, {"ImageTag": "bs-0123"}, session=session, echo=lines.append, poll_s=0.01)
    assert f"updating stack {STACK}" in lines
    params = stack_params(session)
    assert (params["ImageTag"], params["RunRetentionDays"]) == ("bs-0123", "7")


def test_up_refuses_an_unknown_param_and_lists_the_valid_ones(session: Any) -> None:
    with pytest.raises(
        SweepError, match=r"MaxVcpu: no such stack parameter; did you mean 'MaxVcpus'\? valid: MaxVcpus, "
    ):
        infra.up(STACK, {"MaxVcpu": "8"}, session=session, echo=print)
    assert infra.describe_stack(STACK, session=session) is None


def test_readable_prefixes_lose_trailing_slashes_and_each_gets_a_list_policy(
    session: Any, lines: list[str]
) -> None:
    infra.up(STACK, {"ReadableS3Prefixes": "s3://market-data/prices/, other-bucket/"}, session=session,
             echo=lines.append, poll_s=0.01)
    assert stack_params(session)["ReadableS3Prefixes"] == "market-data/prices,other-bucket"
    iam = make_client("iam", session=session)
    (role,) = [r["RoleName"] for r in iam.list_roles()["Roles"] if "JobRole" in r["RoleName"]]
    documents = {name: iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
                 for name in iam.list_role_policies(RoleName=role)["PolicyNames"]}
    # moto: a repr
    documents = {k: v if isinstance(v, dict) else ast.literal_eval(v) for k, v in documents.items()}
    reading = [documents[f"readable-prefix-{i}"]["Statement"][0] for i in (0, 1)]
    assert [(s["Action"], s["Resource"]) for s in reading] == [
        ("s3:GetObject", "arn:aws:s3:::market-data/prices/*"),
        ("s3:GetObject", "arn:aws:s3:::other-bucket/*"),
    ]
    listing = [documents[f"readable-prefix-{i}"]["Statement"][1] for i in (0, 1)]
    assert [(s["Resource"], s["Condition"]["StringLike"]["s3:prefix"]) for s in listing] == [
        ("arn:aws:s3:::market-data", ["prices/*", "prices"]), ("arn:aws:s3:::other-bucket", ["*/*", "*"])]
    assert "readable-prefix-2" not in documents


def test_up_refuses_more_readable_prefixes_than_the_template_lists(session: Any) -> None:
    with pytest.raises(SweepError, match=r"ReadableS3Prefixes: 9 entries, the stack takes at most 8"):
        infra.up(
            STACK,
            {"ReadableS3Prefixes": ",".join(f"bucket-{i}" for i in range(9))},
            session=session,
            echo=print,
        )
    assert infra.describe_stack(STACK, session=session) is None


def test_up_refuses_a_stack_name_ecr_cannot_use(session: Any) -> None:
    with pytest.raises(SweepError, match="lower-case"):
        infra.up("MyStack", {}, session=session, echo=print)


def test_stack_outputs_without_a_stack_says_how_to_create_it(session: Any) -> None:
    with pytest.raises(
        AwsSetupError,
        match=r"no batchsweep stack 'nope' in us-east-1; run `batchsweep infra up --stack nope`",
    ):
        infra.stack_outputs("nope", session=session)


def test_status_shows_stack_queues_environments_and_image(
    session: Any, deployed: dict[str, str], lines: list[str]
) -> None:
    infra.status(STACK, session=session, echo=lines.append)
    text = "\n".join(lines)
    assert f"stack {STACK} (us-east-1): CREATE_COMPLETE" in text
    assert text.count("queue ") == 2 and "ENABLED, VALID" in text
    assert "(FARGATE_SPOT): ENABLED, VALID" in text and "(FARGATE): ENABLED, VALID" in text
    assert f"not pushed yet; run `batchsweep image push --stack {STACK}`" in text


def put_data(session: Any, outputs: dict[str, str]) -> None:
    s3 = make_client("s3", session=session)
    # moto ignores the template's VersioningConfiguration; AWS applies it.
    s3.put_bucket_versioning(Bucket=outputs["Bucket"], VersioningConfiguration={"Status": "Enabled"})
    for body in (b"one", b"two"):  # two versions of one key
        s3.put_object(Bucket=outputs["Bucket"], Key="batchsweep/runs/r1/run.json", Body=body)
    ecr = make_client("ecr", session=session)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "digest": "sha256:" + "a" * 64,
            "size": 1,
            "mediaType": "application/vnd.docker.container.image.v1+json",
        },
        "layers": [],
    }
    ecr.put_image(
        repositoryName=outputs["EcrRepository"], imageManifest=json.dumps(manifest), imageTag="latest"
    )


def test_down_refuses_to_drop_data_silently(session: Any, deployed_in_vpc: dict[str, str]) -> None:
    put_data(session, deployed_in_vpc)
    with pytest.raises(AwsSetupError, match="still hold data; pass --delete-data"):
        infra.down(STACK, force=False, delete_data=False, session=session, echo=print)
    assert infra.describe_stack(STACK, session=session) is not None


def test_down_with_delete_data_empties_bucket_and_repository_then_deletes(
    session: Any, deployed_in_vpc: dict[str, str], lines: list[str]
) -> None:
    put_data(session, deployed_in_vpc)
    infra.down(STACK, force=False, delete_data=True, session=session, echo=lines.append, poll_s=0.01)
    assert f"emptying s3://{deployed_in_vpc['Bucket']}: 2 objects and versions deleted" in lines
    assert f"emptying repository {STACK}: 1 images deleted" in lines
    assert any(
        line.startswith(f"log group {deployed_in_vpc['LogGroup']}: deleted with the stack") for line in lines
    )
    assert lines[-1] == f"stack {STACK} deleted"
    assert infra.describe_stack(STACK, session=session) is None


def test_down_deregisters_every_revision_and_the_secrets_variants_and_nothing_else(
    session: Any, deployed_in_vpc: dict[str, str], lines: list[str]
) -> None:
    """CloudFormation deletes the current revision only; the earlier ones (kept on update for `resume`) and
    the `secrets:` variants the engine registers as `<name>-<12 hex>` (submit.py) would stay ACTIVE."""
    batch = make_client("batch", session=session)
    (current,) = batch.describe_job_definitions(jobDefinitions=[deployed_in_vpc["JobDefinition"]])[
        "jobDefinitions"
    ]
    base, props = current["jobDefinitionName"], {"image": "busybox", "vcpus": 1, "memory": 512}
    for name in (
        base,
        f"{base}-0123456789ab",
        f"{base}-0123456789ab",
        f"{base}-notavariant",
        "someone-elses",
    ):
        batch.register_job_definition(jobDefinitionName=name, type="container", containerProperties=props)
    infra.down(STACK, force=False, delete_data=True, session=session, echo=lines.append, poll_s=0.01)
    left = sorted(
        d["jobDefinitionName"] for d in batch.describe_job_definitions(status="ACTIVE")["jobDefinitions"]
    )
    assert left == [f"{base}-notavariant", "someone-elses"]
    assert "deregistered 4 job definition revisions (earlier ones and the `secrets:` variants)" in lines


def test_down_without_a_stack_says_there_is_nothing_to_delete(session: Any, lines: list[str]) -> None:
    infra.down("nope", force=False, delete_data=False, session=session, echo=lines.append)
    assert lines == ["no stack nope in us-east-1; nothing to delete"]


@pytest.fixture
def stuck_job(aws_env: str, session: Any, deployed_in_vpc: dict[str, str]) -> Iterator[str]:
    """An array job whose parent stays SUBMITTED: moto's Docker mode without a daemon does that."""
    def use_docker(on: bool) -> None:
        body = json.dumps({"batch": {"use_docker": on}}).encode()
        request = urllib.request.Request(f"{aws_env}/moto-api/config", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=10).read()

    use_docker(True)
    try:
        batch = make_client("batch", session=session)
        job = batch.submit_job(
            jobName="sweep",
            jobQueue=deployed_in_vpc["JobQueue"],
            jobDefinition=deployed_in_vpc["JobDefinition"],
            arrayProperties={"size": 2},
        )
        yield job["jobId"]
    finally:
        use_docker(False)


def test_down_refuses_while_a_job_is_active(session: Any, stuck_job: str) -> None:
    # The parent stays SUBMITTED; its children may still be counted for a few ms before moto fails them.
    with pytest.raises(AwsSetupError, match=r"still has \d+ active jobs \(.*SUBMITTED.*\).*pass --force"):
        infra.down(STACK, force=False, delete_data=True, session=session, echo=print)
    assert infra.describe_stack(STACK, session=session) is not None


def test_down_with_force_terminates_active_jobs_and_deletes(
    session: Any, stuck_job: str, lines: list[str]
) -> None:
    terminated: list[str] = []
    session.events.register(
        "provide-client-params.batch.TerminateJob", lambda params, **_: terminated.append(params["jobId"])
    )
    infra.down(STACK, force=True, delete_data=True, session=session, echo=lines.append, poll_s=0.01)
    assert terminated == [stuck_job]
    assert infra.describe_stack(STACK, session=session) is None


def test_a_private_network_gives_tasks_no_public_ip_and_vpc_endpoints_instead(
    session: Any, lines: list[str]
) -> None:
    """PrivateNetwork=true: private subnets (no internet gateway, no public IPs), S3 through a gateway
    endpoint on their route table and ECR and Logs through interface endpoints only the tasks may reach; the
    job definition asks for no public IP. (Whether a Fargate task really pulls its image that way moto cannot
    show: it runs none; the endpoints' service names and the job definition are what it can.)"""
    outputs = infra.up(STACK, {"PrivateNetwork": "true", "SecretsPrefix": "team"}, session=session,
                       echo=lines.append, poll_s=0.01)
    ec2, batch = make_client("ec2", session=session), make_client("batch", session=session)
    cfn = make_client("cloudformation", session=session)
    resources = {r["LogicalResourceId"]: r["PhysicalResourceId"]
                 for r in cfn.list_stack_resources(StackName=STACK)["StackResourceSummaries"]}
    assert "InternetGateway" not in resources and "DefaultRoute" not in resources
    vpc = resources["Vpc"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    assert len(subnets) == 2 and not any(s["MapPublicIpOnLaunch"] for s in subnets)
    endpoints = [e for e in ec2.describe_vpc_endpoints()["VpcEndpoints"] if e["VpcId"] == vpc]
    kinds = {
        e["ServiceName"].removeprefix("com.amazonaws.us-east-1."): e["VpcEndpointType"] for e in endpoints
    }
    assert kinds == {"s3": "Gateway", "ecr.api": "Interface", "ecr.dkr": "Interface", "logs": "Interface",
                     "ssm": "Interface", "secretsmanager": "Interface"}
    (group,) = ec2.describe_security_groups(GroupIds=[resources["EndpointSecurityGroup"]])["SecurityGroups"]
    (rule,) = group["IpPermissions"]
    assert (rule["FromPort"], rule["ToPort"], rule["IpRanges"]) == (443, 443, [])
    assert [p["GroupId"] for p in rule["UserIdGroupPairs"]] == [resources["TaskSecurityGroup"]]
    (definition,) = batch.describe_job_definitions(jobDefinitions=[outputs["JobDefinition"]])[
        "jobDefinitions"
    ]
    assert definition["containerProperties"]["networkConfiguration"] == {"assignPublicIp": "DISABLED"}


def test_the_default_network_keeps_public_ips_and_makes_no_endpoint(
    session: Any, deployed: dict[str, str]
) -> None:
    ec2, batch = make_client("ec2", session=session), make_client("batch", session=session)
    assert ec2.describe_vpc_endpoints()["VpcEndpoints"] == []
    (definition,) = batch.describe_job_definitions(jobDefinitions=[deployed["JobDefinition"]])[
        "jobDefinitions"
    ]
    assert definition["containerProperties"]["networkConfiguration"] == {"assignPublicIp": "ENABLED"}
