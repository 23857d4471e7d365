"""The CloudFormation stack: create or update it, show it, delete it, read its outputs.

The stack's outputs are the AWS engine's settings (docs/design.md §6): `stack_outputs`
is the one place the engine reads them.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from batchsweep.aws import clients  # make_client looked up per call, so a test's recorder sees every client
from batchsweep.errors import AwsSetupError, SweepError
from batchsweep.infra.template import check_params, readable_prefixes_param, template_body, template_defaults

Echo = Callable[[str], None]

ENGINE_OUTPUTS = ("Bucket", "JobQueue", "JobDefinition", "LogGroup", "ImageUri", "Region")
QUEUE_OUTPUTS = ("JobQueue", "OnDemandJobQueue", "GpuJobQueue", "GpuOnDemandJobQueue")
ACTIVE_JOB_STATES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
# Stack names double as the ECR repository name, which must be lower case.
_STACK_NAME = re.compile(r"^[a-z][a-z0-9-]{0,127}$")
_DONE_OK = {"CREATE_COMPLETE", "UPDATE_COMPLETE"}
_UNUSABLE = {
    "CREATE_IN_PROGRESS",
    "CREATE_FAILED",
    "ROLLBACK_IN_PROGRESS",
    "ROLLBACK_FAILED",
    "ROLLBACK_COMPLETE",
    "REVIEW_IN_PROGRESS",
    "DELETE_IN_PROGRESS",
    "DELETE_FAILED",
    "DELETE_COMPLETE",
}
_NO_CHANGES = ("didn't contain changes", "No updates are to be performed")


def describe_stack(stack: str, *, session: Any) -> dict[str, Any] | None:
    """The stack as DescribeStacks returns it, or None when there is none by that name."""
    from botocore.exceptions import ClientError

    cfn = clients.make_client("cloudformation", session=session)
    try:
        return dict(cfn.describe_stacks(StackName=stack)["Stacks"][0])
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise


def stack_outputs(stack: str, *, session: Any) -> dict[str, str]:
    """The stack's outputs; the engine's settings are among them (ENGINE_OUTPUTS)."""
    region = session.region_name
    found = describe_stack(stack, session=session)
    if found is None:
        raise AwsSetupError(
            f"no batchsweep stack {stack!r} in {region}; run `batchsweep infra up --stack {stack}`"
        )
    status = found["StackStatus"]
    if status in _UNUSABLE:
        raise AwsSetupError(
            f"stack {stack!r} in {region} is {status}; run `batchsweep infra up --stack {stack}` "
            f"(after `batchsweep infra down --stack {stack}` if it failed to create)"
        )
    outputs = {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs") or []}
    missing = [name for name in ENGINE_OUTPUTS if name not in outputs]
    if missing:
        raise AwsSetupError(
            f"stack {stack!r} lacks the outputs {', '.join(missing)}; run `batchsweep infra up --stack "
            f"{stack}` to update it"
        )
    return outputs


def stack_parameters(stack: str, *, session: Any) -> dict[str, str]:
    """The stack's current parameter values (what its roles may read: ReadableS3Prefixes, SecretsPrefix)."""
    found = describe_stack(stack, session=session) or {}
    return {p["ParameterKey"]: p.get("ParameterValue", "") for p in found.get("Parameters") or []}


def up(
    stack: str, params: dict[str, str], *, session: Any, echo: Echo, poll_s: float = 2.0
) -> dict[str, str]:
    """Create the stack, or update it through a change set; stream its events; return its outputs."""
    from botocore.exceptions import ClientError

    if not _STACK_NAME.match(stack):
        raise SweepError(f"--stack {stack!r}: use lower-case letters, digits and '-', starting with a letter")
    check_params(params)
    if "ReadableS3Prefixes" in params:
        params = {**params, "ReadableS3Prefixes": readable_prefixes_param(params["ReadableS3Prefixes"])}
    cfn = clients.make_client("cloudformation", session=session)
    current = describe_stack(stack, session=session)
    if current is not None and current["StackStatus"] not in _DONE_OK | {"UPDATE_ROLLBACK_COMPLETE"}:
        raise AwsSetupError(
            f"stack {stack!r} is {current['StackStatus']}; wait for it to settle, or delete it with "
            f"`batchsweep infra down --stack {stack}` and run `up` again"
        )
    # Every parameter is sent with an explicit value, the stack's current one unless
    # given: an update never silently resets a parameter to its default.
    previous = {p["ParameterKey"]: p.get("ParameterValue", "") for p in (current or {}).get("Parameters", [])}
    if "BatchServiceRoleMode" not in params and "BatchServiceRoleMode" not in previous and _is_emulator(cfn):
        # AWS uses Batch's service-linked role; an emulator (moto) needs an explicit one.
        params = {**params, "BatchServiceRoleMode": "explicit"}
    values = {
        name: params.get(name, previous.get(name, default)) for name, default in template_defaults().items()
    }
    cfn_params = [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]
    common = {"TemplateBody": template_body(), "Parameters": cfn_params, "Capabilities": ["CAPABILITY_IAM"],
              "Tags": [{"Key": "batchsweep:stack", "Value": stack}]}

    if current is None:
        # A new stack has nothing to review: create it directly. A failed create deletes
        # itself, so the next `up` starts clean instead of meeting ROLLBACK_COMPLETE.
        echo(f"creating stack {stack} in {session.region_name}")
        stack_id = cfn.create_stack(StackName=stack, OnFailure="DELETE", **common)["StackId"]
        seen: set[str] = set()
    else:
        stack_id = current["StackId"]
        seen = _recent_event_ids(cfn, stack_id)
        name = f"batchsweep-{uuid.uuid4().hex[:12]}"
        try:
            change_set = cfn.create_change_set(
                StackName=stack, ChangeSetName=name, ChangeSetType="UPDATE", **common
            )
        except ClientError as exc:
            if any(text in str(exc) for text in _NO_CHANGES):
                echo(f"no changes: stack {stack} is up to date")
                return stack_outputs(stack, session=session)
            raise
        described = _wait_for_change_set(cfn, change_set["Id"], poll_s=poll_s)
        if described["Status"] == "FAILED":
            reason = described.get("StatusReason", "")
            cfn.delete_change_set(ChangeSetName=change_set["Id"])
            if any(text in reason for text in _NO_CHANGES):
                echo(f"no changes: stack {stack} is up to date")
                return stack_outputs(stack, session=session)
            raise AwsSetupError(f"stack {stack!r}: the change set failed: {reason}")
        for change in described.get("Changes", []):
            rc = change.get("ResourceChange", {})
            replace = " (replaced)" if rc.get("Replacement") == "True" else ""
            echo(
                f"  {rc.get('Action', '?'):<7} {rc.get('ResourceType', '')} "
                f"{rc.get('LogicalResourceId', '')}{replace}"
            )
        echo(f"updating stack {stack}")
        cfn.execute_change_set(ChangeSetName=change_set["Id"])

    final, events = _watch(cfn, stack_id, seen=seen, echo=echo, poll_s=poll_s)
    if final not in _DONE_OK:
        raise AwsSetupError(_failure_message(stack, final, events))
    return stack_outputs(stack, session=session)


def status(stack: str, *, session: Any, echo: Echo) -> None:
    """The stack, its queues and compute environments, and whether the image is pushed."""
    from batchsweep.infra.registry import image_exists

    outputs = stack_outputs(stack, session=session)
    found = describe_stack(stack, session=session) or {}
    echo(f"stack {stack} ({session.region_name}): {found.get('StackStatus', '?')}")
    if outputs.get("SubmitPolicyArn"):
        echo(f"submit policy {outputs['SubmitPolicyArn']} (for a sweep's user: "
             f"`aws iam attach-user-policy --user-name USER --policy-arn {outputs['SubmitPolicyArn']}`)")
    batch = clients.make_client("batch", session=session)
    # The queues from the outputs, not the stack's resource list: a SubmitPolicy user may read only the
    # outputs.
    queues = [outputs[name] for name in QUEUE_OUTPUTS if outputs.get(name)]
    envs: list[str] = []
    for queue in batch.describe_job_queues(jobQueues=queues).get("jobQueues", []) if queues else []:
        echo(f"queue {queue['jobQueueName']}: {queue.get('state')}, {queue.get('status')}")
        # From the queues rather than the stack's resource list: what jobs actually use.
        envs += [
            e["computeEnvironment"]
            for e in queue.get("computeEnvironmentOrder", [])
            if e["computeEnvironment"] not in envs
        ]
    for env in (
        batch.describe_compute_environments(computeEnvironments=envs).get("computeEnvironments", [])
        if envs
        else []
    ):
        kind = env.get("computeResources", {}).get("type", "")
        echo(
            f"compute environment {env['computeEnvironmentName']} ({kind}): {env.get('state')}, "
            f"{env.get('status')}"
        )
    echo(f"bucket s3://{outputs['Bucket']}")
    if image_exists(session, outputs):
        echo(f"image {outputs['ImageUri']}: pushed")
    else:
        echo(f"image {outputs['ImageUri']}: not pushed yet; run `batchsweep image push --stack {stack}`")


def down(
    stack: str, *, force: bool, delete_data: bool, session: Any, echo: Echo, poll_s: float = 2.0
) -> None:
    """Delete the stack; refuse while jobs are active (unless force) or data would be lost silently."""
    cfn = clients.make_client("cloudformation", session=session)
    current = describe_stack(stack, session=session)
    if current is None:
        echo(f"no stack {stack} in {session.region_name}; nothing to delete")
        return
    by_type = _resources_by_type(cfn, stack)
    batch = clients.make_client("batch", session=session)
    active = _active_jobs(batch, by_type.get("AWS::Batch::JobQueue", []))
    if active and not force:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(_count(active).items()))
        raise AwsSetupError(
            f"stack {stack!r} still has {len(active)} active jobs ({counts}); wait for the run, "
            "`batchsweep cancel RUN`, or pass --force to terminate them"
        )
    for job_id, _ in active:
        # Deleting a queue would end its jobs eventually; terminating them first stops billing now.
        batch.terminate_job(jobId=job_id, reason=f"batchsweep infra down --force ({stack})")
    if active:
        echo(f"terminated {len(active)} active jobs")

    buckets = by_type.get("AWS::S3::Bucket", [])
    repos = by_type.get("AWS::ECR::Repository", [])
    s3, ecr = clients.make_client("s3", session=session), clients.make_client("ecr", session=session)
    if delete_data:
        for bucket in buckets:
            echo(f"emptying s3://{bucket}: {_empty_bucket(s3, bucket)} objects and versions deleted")
        for repo in repos:
            echo(f"emptying repository {repo}: {_delete_images(ecr, repo)} images deleted")
    else:
        # CloudFormation cannot delete a bucket or repository that holds data: the delete
        # would fail halfway. Say so now, before anything is gone.
        holding = [f"s3://{b}" for b in buckets if _bucket_has_objects(s3, b)]
        holding += [f"repository {r}" for r in repos if _image_ids(ecr, r)]
        if holding:
            raise AwsSetupError(
                f"{' and '.join(holding)} still hold data; pass --delete-data to delete it with the stack "
                "(copy what you need first, e.g. `aws s3 sync s3://BUCKET ./backup`)"
            )

    for group in by_type.get("AWS::Logs::LogGroup", []):
        # The log group has no Retain policy: it goes with the stack, and with it every task's CloudWatch
        # output.
        echo(f"log group {group}: deleted with the stack, and the task output in it (copy it first with "
             f"`aws logs tail {group} --since 30d` if you need it)")
    seen = _recent_event_ids(cfn, current["StackId"])
    echo(f"deleting stack {stack}")
    cfn.delete_stack(StackName=current["StackId"])
    final, events = _watch(cfn, current["StackId"], seen=seen, echo=echo, poll_s=poll_s)
    if final != "DELETE_COMPLETE":
        raise AwsSetupError(_failure_message(stack, final, events))
    gone = _deregister_job_definitions(batch, by_type.get("AWS::Batch::JobDefinition", []))
    if gone:
        echo(f"deregistered {gone} job definition revisions (earlier ones and the `secrets:` variants)")
    echo(f"stack {stack} deleted")


def _deregister_job_definitions(batch: Any, arns: list[str]) -> int:
    """Every ACTIVE revision of the stack's job definitions and of the `secrets:` variants the engine
    registered beside them (`<name>-<12 hex>`): CloudFormation deletes only the current revision, and the
    earlier ones (kept on update for `resume`) and the variants would stay ACTIVE, each naming the deleted
    roles and image."""
    names = {arn.split("job-definition/", 1)[-1].rsplit(":", 1)[0] for arn in arns}
    if not names:
        return 0
    ours = re.compile("(" + "|".join(map(re.escape, sorted(names))) + r")(-[0-9a-f]{12})?")
    doomed = [
        d["jobDefinitionArn"]
        for page in batch.get_paginator("describe_job_definitions").paginate(status="ACTIVE")
        for d in page.get("jobDefinitions", [])
        if ours.fullmatch(d.get("jobDefinitionName", ""))
    ]
    for arn in doomed:
        batch.deregister_job_definition(jobDefinition=arn)
    return len(doomed)


# ---------------------------------------------------------------- helpers


def _is_emulator(client: Any) -> bool:
    """A client aimed (through AWS_ENDPOINT_URL) at something other than AWS's own endpoints."""
    from urllib.parse import urlparse

    host = urlparse(client.meta.endpoint_url).hostname or ""
    return not host.endswith((".amazonaws.com", ".amazonaws.com.cn", ".api.aws"))


def _wait_for_change_set(cfn: Any, change_set_id: str, *, poll_s: float) -> dict[str, Any]:
    delay = min(0.2, poll_s)
    while True:
        described = dict(cfn.describe_change_set(ChangeSetName=change_set_id))
        if described["Status"] not in ("CREATE_PENDING", "CREATE_IN_PROGRESS"):
            return described
        time.sleep(delay)
        delay = min(delay * 2, poll_s)


def _recent_event_ids(cfn: Any, stack_id: str) -> set[str]:
    """The newest page of events: enough to tell the next operation's events from old ones."""
    return {e["EventId"] for e in cfn.describe_stack_events(StackName=stack_id).get("StackEvents", [])}


def _new_events(cfn: Any, stack_id: str, seen: set[str]) -> list[dict[str, Any]]:
    """Events not printed yet, oldest first (the API pages newest first)."""
    fresh: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = cfn.describe_stack_events(StackName=stack_id, **({"NextToken": token} if token else {}))
        for event in page.get("StackEvents", []):
            if event["EventId"] in seen:
                return fresh[::-1]
            fresh.append(event)
        token = page.get("NextToken")
        if not token:
            return fresh[::-1]


def _watch(cfn: Any, stack_id: str, *, seen: set[str], echo: Echo, poll_s: float,
           timeout_s: float = 3 * 3600) -> tuple[str, list[dict[str, Any]]]:
    """Print events as they come until the stack settles; return its final status and the events."""
    events: list[dict[str, Any]] = []
    delay, deadline = min(0.2, poll_s), time.monotonic() + timeout_s
    while True:
        # Status first, events second: a settled status guarantees its events are printed.
        stack_status = cfn.describe_stacks(StackName=stack_id)["Stacks"][0]["StackStatus"]
        for event in _new_events(cfn, stack_id, seen):
            seen.add(event["EventId"])
            events.append(event)
            echo(_format_event(event))
        if not stack_status.endswith("_IN_PROGRESS"):
            return stack_status, events
        if time.monotonic() > deadline:
            raise AwsSetupError(
                f"stack {stack_id} still {stack_status} after {timeout_s / 3600:.0f} h; see the AWS console"
            )
        time.sleep(delay)
        delay = min(delay * 2, poll_s)


def _format_event(event: dict[str, Any]) -> str:
    stamp = event["Timestamp"].strftime("%H:%M:%S") if hasattr(event.get("Timestamp"), "strftime") else ""
    reason = event.get("ResourceStatusReason") or ""
    line = (
        f"  {stamp}  {event.get('ResourceStatus', ''):<20} {event.get('ResourceType', ''):<34} "
        f"{event.get('LogicalResourceId', '')}"
    )
    return f"{line}  {reason}" if reason else line


def _failure_message(stack: str, final: str, events: list[dict[str, Any]]) -> str:
    failed = [
        e
        for e in events
        if str(e.get("ResourceStatus", "")).endswith("_FAILED") and e.get("ResourceStatusReason")
    ]
    # Later failures are usually "Resource creation cancelled" knock-ons of the first.
    root = next(
        (e for e in failed if "cancelled" not in e["ResourceStatusReason"].lower()),
        failed[0] if failed else None,
    )
    cause = (
        f"first failure: {root['LogicalResourceId']} ({root.get('ResourceType', '')}): "
        f"{root['ResourceStatusReason']}"
        if root
        else "no resource reported a reason; see the stack's events in the AWS console"
    )
    return f"stack {stack!r} ended {final}; {cause}"


def _resources_by_type(cfn: Any, stack: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack):
        for res in page.get("StackResourceSummaries", []):
            if res.get("PhysicalResourceId") and not res.get("ResourceStatus", "").startswith(
                "DELETE_COMPLETE"
            ):
                found.setdefault(res["ResourceType"], []).append(res["PhysicalResourceId"])
    return found


def _active_jobs(batch: Any, queues: list[str]) -> list[tuple[str, str]]:
    active: list[tuple[str, str]] = []
    for queue in queues:
        for state in ACTIVE_JOB_STATES:
            for page in batch.get_paginator("list_jobs").paginate(jobQueue=queue, jobStatus=state):
                # Filter again: emulators may ignore jobStatus.
                active += [
                    (j["jobId"], j["status"])
                    for j in page.get("jobSummaryList", [])
                    if j.get("status") == state
                ]
    return active


def _count(jobs: list[tuple[str, str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, state in jobs:
        counts[state] = counts.get(state, 0) + 1
    return counts


def _bucket_has_objects(s3: Any, bucket: str) -> bool:
    page = s3.list_object_versions(Bucket=bucket, MaxKeys=1)
    return bool(page.get("Versions") or page.get("DeleteMarkers"))


def _empty_bucket(s3: Any, bucket: str) -> int:
    """Delete every object version and delete marker (the bucket is versioned)."""
    deleted = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        keys = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys[start:start + 1000], "Quiet": True})
        deleted += len(keys)
    return deleted


def _image_ids(ecr: Any, repo: str) -> list[dict[str, str]]:
    ids: list[dict[str, str]] = []
    for page in ecr.get_paginator("list_images").paginate(repositoryName=repo):
        ids += page.get("imageIds", [])
    return ids


def _delete_images(ecr: Any, repo: str) -> int:
    ids = _image_ids(ecr, repo)
    for start in range(0, len(ids), 100):  # BatchDeleteImage takes at most 100 ids
        ecr.batch_delete_image(repositoryName=repo, imageIds=ids[start:start + 100])
    return len(ids)
