"""`batchsweep doctor`: one line per thing a run on AWS Batch needs, ✓ or ✗ with the fix.

Warnings (`!`) point at something that limits a run without breaking it; they do not
change the exit code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from batchsweep.aws import clients  # make_client looked up per call, so a test's recorder sees every client
from batchsweep.aws.clients import check_credentials, make_session
from batchsweep.errors import SweepError

Echo = Callable[[str], None]

# The stack's queue runs on both: Fargate Spot first, on-demand Fargate next (and alone for `spot: false`).
FARGATE_VCPU_QUOTAS = (
    ("Fargate On-Demand", "fargate", "L-3032A538"),
    ("Fargate Spot", "fargate", "L-36FBB829"),
)
# With EnableGpu: the GPU environments' EC2 instances count against these (vCPUs; new accounts often have 0,
# and then GPU jobs wait in RUNNABLE until the queue cancels them).
GPU_VCPU_QUOTAS = (("G and VT Spot instances", "ec2", "L-3819A6DF"),
                   ("Running On-Demand G and VT instances", "ec2", "L-DB2E81BA"))


class _Report:
    def __init__(self, echo: Echo) -> None:
        self.echo = echo
        self.failed = False

    def ok(self, what: str) -> None:
        self.echo(f"✓ {what}")

    def bad(self, what: str, fix: str) -> None:
        self.failed = True
        self.echo(f"✗ {what} — fix: {fix}")

    def warn(self, what: str, fix: str) -> None:
        self.echo(f"! {what} — {fix}")


def doctor(stack: str, *, profile: str | None = None, region: str | None = None, echo: Echo = print) -> int:
    """Check everything in order; stop at the first failure later checks depend on. Returns the exit code."""
    from botocore.exceptions import BotoCoreError, ClientError

    report = _Report(echo)
    try:
        session = make_session(profile=profile, region=region)
        check_credentials(session)
    except SweepError as exc:
        report.bad("credentials and region", str(exc))
        return 1
    report.ok(
        f"credentials and region resolved: {session.region_name}"
        + (f" (profile {profile})" if profile else "")
    )

    try:
        identity = clients.make_client("sts", session=session).get_caller_identity()
        report.ok(f"caller identity: {identity['Arn']} (account {identity['Account']})")
    except (ClientError, BotoCoreError) as exc:
        report.bad(f"caller identity: {_short(exc)}", "check the credentials (`aws sts get-caller-identity`)")
        return 1

    try:
        _stack_checks(stack, session=session, report=report)
    except (ClientError, BotoCoreError) as exc:
        report.bad(f"AWS call failed: {_short(exc)}", "check the permissions of the identity above")
    return 1 if report.failed else 0


def _stack_checks(stack: str, *, session: Any, report: _Report) -> None:
    from batchsweep.infra.registry import image_exists
    from batchsweep.infra.stack import describe_stack, stack_outputs

    found = describe_stack(stack, session=session)
    if found is None:
        report.bad(
            f"stack {stack} not found in {session.region_name}", f"batchsweep infra up --stack {stack}"
        )
        return
    try:
        outputs = stack_outputs(stack, session=session)
    except SweepError as exc:
        report.bad(f"stack {stack}: {found['StackStatus']}", str(exc))
        return
    report.ok(f"stack {stack} in {session.region_name}: {found['StackStatus']}")

    batch = clients.make_client("batch", session=session)
    queues = batch.describe_job_queues(jobQueues=[outputs["JobQueue"]]).get("jobQueues", [])
    if not queues:
        report.bad(f"job queue {outputs['JobQueue']} not found", f"batchsweep infra up --stack {stack}")
        env_arns: list[str] = []
    else:
        queue = queues[0]
        env_arns = [e["computeEnvironment"] for e in queue.get("computeEnvironmentOrder", [])]
        state = f"{queue.get('state')}, {queue.get('status')}"
        if queue.get("state") == "ENABLED" and queue.get("status") == "VALID":
            report.ok(f"job queue {queue['jobQueueName']}: {state}")
        else:
            reason = queue.get("statusReason") or "no reason given"
            report.bad(f"job queue {queue['jobQueueName']}: {state} ({reason})",
                       f"`aws batch update-job-queue --job-queue {queue['jobQueueName']} --state ENABLED`, "
                       f"or `batchsweep infra up --stack {stack}` to repair it")

    envs = (
        batch.describe_compute_environments(computeEnvironments=env_arns).get("computeEnvironments", [])
        if env_arns
        else []
    )
    for env in envs:
        name, state = env["computeEnvironmentName"], f"{env.get('state')}, {env.get('status')}"
        if env.get("state") == "ENABLED" and env.get("status") == "VALID":
            report.ok(f"compute environment {name}: {state}")
        else:
            report.bad(
                f"compute environment {name}: {state} ({env.get('statusReason') or 'no reason given'})",
                f"`batchsweep infra up --stack {stack}`; if it stays INVALID, read the reason in the Batch "
                "console",
            )

    if image_exists(session, outputs):
        report.ok(f"image {outputs['ImageUri']} pushed")
    else:
        report.bad(f"image {outputs['ImageUri']} not in ECR", f"batchsweep image push --stack {stack}")

    _bucket_check(outputs["Bucket"], session=session, report=report)
    _quota_check(outputs.get("MaxVcpus"), session=session, report=report)
    if outputs.get("GpuJobQueue"):
        params = {p["ParameterKey"]: p.get("ParameterValue") for p in found.get("Parameters", [])}
        _quota_check(params.get("GpuMaxVcpus"), session=session, report=report, quotas=GPU_VCPU_QUOTAS,
                     what="GpuMaxVcpus")


def _bucket_check(bucket: str, *, session: Any, report: _Report) -> None:
    from botocore.exceptions import ClientError

    try:
        clients.make_client("s3", session=session).head_bucket(Bucket=bucket)
        report.ok(f"bucket s3://{bucket} reachable")
    except ClientError as exc:
        report.bad(
            f"bucket s3://{bucket}: {_short(exc)}",
            "check that this identity may use the bucket (s3:ListBucket)",
        )


def _quota_check(
    max_vcpus: str | None,
    *,
    session: Any,
    report: _Report,
    quotas: tuple[tuple[str, str, str], ...] = FARGATE_VCPU_QUOTAS,
    what: str = "MaxVcpus",
) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    client = clients.make_client("service-quotas", session=session)
    wanted = float(max_vcpus) if max_vcpus else 0.0
    for label, service, code in quotas:
        try:
            value = float(client.get_service_quota(ServiceCode=service, QuotaCode=code)["Quota"]["Value"])
        except (ClientError, BotoCoreError, KeyError, ValueError) as exc:
            report.warn(f"could not read the {label} vCPU quota ({_short(exc)})",
                        f"check it in the Service Quotas console ({service} {code})")
            continue
        if value >= wanted:
            report.ok(f"{label} vCPU quota {value:g} covers the stack's {what} {wanted:g}")
        else:
            # Not a failure: runs work, they just never get more than `value` vCPUs at once.
            report.warn(
                f"{label} vCPU quota {value:g} is below the stack's {what} {wanted:g}: "
                f"at most {value:g} vCPUs run at once",
                f"request more: `aws service-quotas request-service-quota-increase --service-code {service} "
                f"--quota-code {code} --desired-value {wanted:g}`",
            )


def _short(exc: BaseException) -> str:
    error = getattr(exc, "response", {}).get("Error", {})
    if error.get("Code"):
        return f"{error['Code']}: {error.get('Message', '')}"[:160]
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__
