"""Fixtures that aim every AWS call at moto's standalone server on 127.0.0.1.

Import them from a conftest (`from aws_fixtures import *`). The server itself is
`batchsweep.emulator.server.MotoServer`, which the benchmarks and the README's emulator tour use too.

    moto_endpoint   session-scoped: one `moto_server` process for the whole test session
    aws_env         function-scoped: a wiped server and an environment that points boto3 at it
    session         function-scoped: a boto3 session on that server
    stack           function-scoped: the server as `infra up` (emulator.deploy_stack) leaves it, its outputs
    calls           function-scoped: every AWS call batchsweep's clients make (operation, params)
    jobs_stay_queued function-scoped: Batch's array parents stay SUBMITTED, so a run stays active
    iam_world       module-scoped: a second server, over TLS and enforcing IAM, with the stack deployed by an
                    admin and a user holding only the stack's SubmitPolicyArn (see IamWorld)
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from batchsweep.aws import clients
from batchsweep.emulator.server import MotoServer, deploy_stack

__all__ = [
    "moto_endpoint",
    "aws_env",
    "session",
    "stack",
    "iam_world",
    "IamWorld",
    "iam_allows",
    "policy_document",
    "point_boto3_at",
    "calls",
    "jobs_stay_queued",
]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """URL of a moto server for the session, with Batch's Docker mode off (jobs never execute)."""
    with MotoServer() as server:
        yield server.url


@dataclass
class _Deployed:
    """The stack deployed on this process's server (each pytest-xdist worker has its own server) and what a
    fresh deployment holds, so that the next test needing the stack can have it without deploying it again."""

    outputs: dict[str, str]
    fingerprint: dict[str, Any]
    clean: bool = False  # set by the `stack` fixture's teardown when the world is back as deployed


_DEPLOYED: list[_Deployed] = []  # at most one


@pytest.fixture
def aws_env(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A wiped moto server and env vars that send boto3 there with dummy credentials. A test that uses `stack`
    gets the server as a fresh deployment leaves it (see `stack`)."""
    if not (_DEPLOYED and _DEPLOYED[0].clean and _uses_stack(request)):
        _DEPLOYED.clear()
        urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", data=b"{}",
                                                      method="POST")).read()
    elif _DEPLOYED:
        _DEPLOYED[0].clean = False  # until this test's `stack` teardown finds the world as deployed
    point_boto3_at(moto_endpoint, monkeypatch)
    yield moto_endpoint


def point_boto3_at(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Env vars that send boto3 to `endpoint` with dummy credentials, and nothing of the developer's
    ~/.aws."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    # A developer's ~/.aws must not leak into a test (a profile, an SSO session).
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


@pytest.fixture
def session(aws_env: str) -> Any:
    """A boto3 session aimed at the wiped moto server."""
    from batchsweep.aws.clients import make_session

    return make_session(region="us-east-1")


def _uses_stack(request: pytest.FixtureRequest) -> bool:
    """Whether the test asks for `stack`, by name or as the conformance suite's aws-batch engine."""
    callspec = getattr(request.node, "callspec", None)
    return "stack" in request.fixturenames or (
        callspec is not None and callspec.params.get("engine") == "aws-batch"
    )


@pytest.fixture
def stack(session: Any) -> Iterator[dict[str, str]]:
    """The stack's outputs, on a server as `emulator.deploy_stack` (`infra up`) leaves it. Deploying takes
    seconds (most of an AWS test that plays no container), so the stack is deployed once per server and each
    test using it gets it back as deployed: the bucket emptied (every version), the job definitions runs
    registered deregistered. A test that changes anything else (the stack's parameters or image, another
    bucket, ...) leaves the world to be wiped and deployed again for the next one: `_fingerprint` compares
    what a test could change."""
    from batchsweep.emulator import server as emulator

    if not _DEPLOYED:
        outputs = emulator.deploy_stack(session)
        _DEPLOYED.append(_Deployed(outputs, _fingerprint(session, outputs)))
    deployed = _DEPLOYED[0]
    yield dict(deployed.outputs)
    try:
        _restore(session, deployed)
        deployed.clean = _fingerprint(session, deployed.outputs) == deployed.fingerprint
    except Exception:  # noqa: BLE001 - a world that cannot be checked is wiped for the next test
        deployed.clean = False


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every AWS call the engine makes (operation, params), recorded by a botocore event hook on its real
    clients."""
    recorded: list[tuple[str, dict[str, Any]]] = []
    real = clients.make_client

    def recording(service: str, **kwargs: Any) -> Any:
        client = real(service, **kwargs)

        def hook(params: dict[str, Any], model: Any, **_: Any) -> None:
            recorded.append((f"{service}.{model.name}", params))

        client.meta.events.register("provide-client-params.*.*", hook)
        return client

    monkeypatch.setattr(clients, "make_client", recording)
    yield recorded


@pytest.fixture
def jobs_stay_queued(aws_env: str) -> Iterator[None]:
    """Moto's Docker mode without a daemon leaves array parents SUBMITTED: a run that is still active."""
    def use_docker(on: bool) -> None:
        request = urllib.request.Request(f"{aws_env}/moto-api/config", method="POST",
                                         data=json.dumps({"batch": {"use_docker": on}}).encode(),
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=10).read()

    use_docker(True)
    yield
    use_docker(False)


def _fingerprint(session: Any, outputs: dict[str, str]) -> dict[str, Any]:
    """What a test could change in the deployed world that a later test would see: the stack (status,
    parameters, outputs), the images in its repository, the buckets, the bucket's contents, the active job
    definitions, the Batch config switch `jobs_stay_queued` turns on."""
    cfn, ecr, s3, batch = (session.client(n) for n in ("cloudformation", "ecr", "s3", "batch"))
    (described,) = cfn.describe_stacks(StackName="batchsweep")["Stacks"]
    images = ecr.list_images(repositoryName=outputs["EcrRepository"])["imageIds"]
    versions = s3.list_object_versions(Bucket=outputs["Bucket"])
    definitions = [d["jobDefinitionArn"] for page in batch.get_paginator("describe_job_definitions").paginate(
        status="ACTIVE") for d in page["jobDefinitions"]]
    return {
        "stack": (
            described["StackStatus"],
            described.get("LastUpdatedTime"),
            sorted((p["ParameterKey"], p.get("ParameterValue")) for p in described.get("Parameters", [])),
            sorted((o["OutputKey"], o["OutputValue"]) for o in described.get("Outputs", [])),
        ),
        "images": sorted(str(sorted(i.items())) for i in images),
        "buckets": sorted(b["Name"] for b in s3.list_buckets()["Buckets"]),
        "objects": len(versions.get("Versions", [])) + len(versions.get("DeleteMarkers", [])),
        "job_definitions": sorted(definitions),
    }


def _restore(session: Any, deployed: _Deployed) -> None:
    """Take back what every run adds to the deployed world: the objects in the stack's bucket (all versions:
    the bucket is versioned) and the job definitions registered for a run's settings."""
    s3, batch = session.client("s3"), session.client("batch")
    bucket = deployed.outputs["Bucket"]
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                  for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]]
        for start in range(0, len(doomed), 1000):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed[start:start + 1000], "Quiet": True})
    kept = set(deployed.fingerprint["job_definitions"])
    for page in batch.get_paginator("describe_job_definitions").paginate(status="ACTIVE"):
        for definition in page["jobDefinitions"]:
            if definition["jobDefinitionArn"] not in kept:
                batch.deregister_job_definition(jobDefinition=definition["jobDefinitionArn"])


# ---------------------------------------------------------------- the IAM-enforcing world
ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


@dataclass
class IamWorld:
    """moto over TLS with IAM enforced: every request is signed by a user or an assumed role and checked
    against its policies (and the bucket policy). `admin` deployed the stack; `submitter` holds only
    SubmitPolicyArn; `job` and `execution` are sessions on the job role's and the execution role's temporary
    credentials."""

    server: MotoServer
    outputs: dict[str, str]
    admin: Any
    submitter_keys: dict[str, str]
    job_keys: dict[str, str]
    execution: Any

    def env(self, keys: dict[str, str]) -> dict[str, str]:
        return {**self.server.env(), **keys}

    def update_stack(self, **params: str) -> None:
        """Change stack parameters as the admin (`infra up --param` does), then give moto the roles' new
        policies in a shape it can check, as after the first deployment."""
        from batchsweep.infra.stack import describe_stack
        from batchsweep.infra.template import template_text

        current = describe_stack("batchsweep", session=self.admin) or {}
        kept = [{"ParameterKey": p["ParameterKey"], "UsePreviousValue": True}
                for p in current.get("Parameters", []) if p["ParameterKey"] not in params]
        self.admin.client("cloudformation").update_stack(
            StackName="batchsweep", TemplateBody=template_text(), Capabilities=["CAPABILITY_IAM"],
            Parameters=[*kept, *({"ParameterKey": k, "ParameterValue": v} for k, v in params.items())])
        _stand_in_for_aws(self.admin, self.outputs)

    @property
    def submitter(self) -> Any:
        return _session(self.submitter_keys)

    @property
    def job(self) -> Any:
        return _session(self.job_keys)


def _session(keys: dict[str, str]) -> Any:
    import boto3

    return boto3.Session(
        aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=keys.get("AWS_SESSION_TOKEN"),
        region_name="us-east-1",
    )


def _keys(access_key: dict[str, Any]) -> dict[str, str]:
    keys = {
        "AWS_ACCESS_KEY_ID": access_key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": access_key["SecretAccessKey"],
    }
    if access_key.get("SessionToken"):
        keys["AWS_SESSION_TOKEN"] = access_key["SessionToken"]
    return keys


def _stand_in_for_aws(admin: Any, outputs: dict[str, str]) -> dict[str, str]:
    """What real AWS would have done and moto does not (docs/aws-testing.md, "An IAM-enforcing emulator"):
    store the roles' inline policies in a shape its access check can read (`_moto_view`), and let the harness
    assume the task roles as ECS would (their permissions untouched). Returns the stack's role names by
    logical id.

    The bucket's TLS-only policy is not applied: moto 5.2.5 skips AWS::S3::BucketPolicy, and when the policy
    is put by hand it ignores the `Bool` condition, so its Deny refuses every request, over TLS too
    (measured). Every request here goes over TLS all the same: the server speaks nothing else."""
    cfn, iam = admin.client("cloudformation"), admin.client("iam")
    roles = {r["LogicalResourceId"]: r["PhysicalResourceId"]
             for r in cfn.list_stack_resources(StackName="batchsweep")["StackResourceSummaries"]
             if r["ResourceType"] == "AWS::IAM::Role"}
    trust_anyone = {"Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}
    for name in ("JobRole", "ExecutionRole"):
        iam.update_assume_role_policy(RoleName=roles[name], PolicyDocument=json.dumps(trust_anyone))
        for policy in iam.list_role_policies(RoleName=roles[name])["PolicyNames"]:
            raw = iam.get_role_policy(RoleName=roles[name], PolicyName=policy)["PolicyDocument"]
            doc = _moto_view(raw if isinstance(raw, dict) else ast.literal_eval(raw))
            iam.put_role_policy(RoleName=roles[name], PolicyName=policy, PolicyDocument=json.dumps(doc))
    # The managed policy keeps its real version v1; moto checks a second one, made default.
    submit = outputs["SubmitPolicyArn"]
    iam.create_policy_version(
        PolicyArn=submit,
        PolicyDocument=json.dumps(_moto_view(policy_document(iam, submit, "v1"))),
        SetAsDefault=True,
    )
    return roles


def policy_document(iam: Any, arn: str, version: str | None = None) -> dict[str, Any]:
    version = version or iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    raw = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
    return dict(raw if isinstance(raw, dict) else json.loads(raw))


def _moto_view(document: dict[str, Any]) -> dict[str, Any]:
    """A policy as moto can check it. moto checks S3 requests against resource ARNs but every other service's
    against resource "*", so an ARN there never matches: those resources read "*" (moto also leaves a null
    where AWS::NoValue was). IAM matches actions case-insensitively, moto does not and names some REST calls
    in lower case (`batch:submitjob`); and it checks some S3 requests under their operation's name instead of
    the IAM action AWS checks (`MOTO_S3_NAMES`). Actions and S3 resources are otherwise unchanged; the tests
    check the real actions and ARNs against the calls made (`iam_allows`)."""
    for statement in document["Statement"]:
        actions = as_list(statement["Action"])
        if not any(str(a).startswith("s3:") for a in actions):
            statement["Resource"] = "*"
            statement.pop("Condition", None)
        actions = [*actions, *(name for a in actions for name in MOTO_S3_NAMES.get(a, ()))]
        statement["Action"] = list(dict.fromkeys([*actions, *(a.lower() for a in actions)]))
    return document


# The operation names moto checks beside the IAM action AWS checks for the same request: HeadBucket (every
# moto 5.x), and since moto 5.2.6 HeadObject, ListObjectsV2 and CopyObject (whose target AWS checks as
# PutObject, its source as GetObject). Granting both keeps the world passing on 5.2.5 and 5.2.6
# (../shared/AWS_TESTING.md).
MOTO_S3_NAMES = {
    "s3:ListBucket": ("s3:HeadBucket", "s3:ListObjectsV2"),
    "s3:GetObject": ("s3:HeadObject",),
    "s3:PutObject": ("s3:CopyObject",),
}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def iam_allows(document: dict[str, Any], action: str, resource: str) -> bool:
    """Whether an Allow statement grants `action` on `resource`, with IAM's `*` and `?` wildcards (no Deny,
    no conditions: enough for the identity policies the stack writes)."""
    def match(pattern: str, value: str) -> bool:
        return re.fullmatch(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", "."), value) is not None

    return any(s["Effect"] == "Allow" and any(match(a, action) for a in as_list(s["Action"]))
               and any(r is not None and match(r, resource) for r in as_list(s["Resource"]))
               for s in document["Statement"])


@pytest.fixture(scope="module")
def iam_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IamWorld]:
    import boto3

    strict = [sys.executable, str(Path(__file__).with_name("strict_moto.py"))]  # S3's 403 for a missing key
    with MotoServer(tls_dir=tmp_path_factory.mktemp("tls"), unchecked_calls=3, program=strict) as server, \
            pytest.MonkeyPatch.context() as mp:
        for name, value in server.env().items():
            if not name.startswith(("AWS_ACCESS", "AWS_SECRET")):
                mp.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                     "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_CONFIG_FILE", os.devnull)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        # The three unchecked calls make the admin; from then on every request is checked.
        iam = boto3.client(
            "iam", aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        iam.create_user(UserName="admin")
        iam.put_user_policy(UserName="admin", PolicyName="admin", PolicyDocument=json.dumps(ADMIN_POLICY))
        admin = _session(_keys(iam.create_access_key(UserName="admin")["AccessKey"]))
        outputs = deploy_stack(admin)
        roles = _stand_in_for_aws(admin, outputs)
        admin_iam, sts = admin.client("iam"), admin.client("sts")
        admin_iam.create_user(UserName="submitter")
        admin_iam.attach_user_policy(UserName="submitter", PolicyArn=outputs["SubmitPolicyArn"])
        submitter = _keys(admin_iam.create_access_key(UserName="submitter")["AccessKey"])

        def assume(role: str) -> dict[str, str]:
            arn = admin_iam.get_role(RoleName=roles[role])["Role"]["Arn"]
            return _keys(sts.assume_role(RoleArn=arn, RoleSessionName=f"ecs-{role}")["Credentials"])

        yield IamWorld(server=server, outputs=outputs, admin=admin, submitter_keys=submitter,
                       job_keys=assume("JobRole"), execution=_session(assume("ExecutionRole")))
