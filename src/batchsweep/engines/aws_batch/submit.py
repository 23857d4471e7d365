"""Submitting a run to AWS Batch: tasks packed into children, one SubmitJob per <= 10,000 children (array
jobs), the container overrides that point a child at its slice of the manifest, the retry strategy and job
definition."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from batchsweep.engines.aws_batch.core import ArrayJob, AwsRun, Submission
from batchsweep.engines.aws_batch.settings import STORE_PREFIX, _s3, check_pinned_image
from batchsweep.engines.base import write_engine_record
from batchsweep.errors import AwsSetupError, SpecError
from batchsweep.task.arrayslice import OFFSET_VAR, Slicing, tasks_per_child

if TYPE_CHECKING:
    from batchsweep.spec.schema import Spec

MAX_ARRAY = 10_000

# Without a timeout a hung task bills until Batch's 14-day limit; the spec's `timeout:` replaces this default,
# which is per task: a child running k tasks gets k times it, never more than the 14 days a job may live.
DEFAULT_TASK_TIMEOUT_S = 24 * 3600
MAX_CHILD_TIMEOUT_S = 14 * 24 * 3600
MAX_OVERRIDES_CHARS = 8192  # SubmitJob's limit on containerOverrides
# Batch adds its own variables (AWS_BATCH_JOB_ID, _ARRAY_INDEX, _JQ_NAME, _CE_NAME, ...) to the overrides it
# hands to ECS; over the limit the job fails after submit, so ours keep this much of it free.
BATCH_OWN_CHARS = 1024
OVERRIDES_BUDGET = MAX_OVERRIDES_CHARS - BATCH_OWN_CHARS
# without a stack: the lifecycle is unknown, so shared files are copied at most daily
DEFAULT_RETENTION_DAYS = 2.0
SUBMIT_ATTEMPTS = 8  # SubmitJob sent at most this often (throttled, or found not accepted after a failure)
# botocore's throttling error codes (retryhandler) that Batch and its front end answer with.
THROTTLING = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
    }
)


def retry_strategy(*, attempts: int = 3) -> dict[str, Any]:
    """Retry what the infrastructure broke; never the user's own failures (the worker already retried
    those)."""
    return {
        "attempts": attempts,
        "evaluateOnExit": [
            {"onStatusReason": "Host EC2*", "action": "RETRY"},
            {"onStatusReason": "Your Spot Task was interrupted*", "action": "RETRY"},
            {"onStatusReason": "Task failed to start*", "action": "RETRY"},
            {"onReason": "OutOfMemoryError*", "action": "EXIT"},
            {"onReason": "*", "action": "EXIT"},  # without a catch-all, Batch retries anything unmatched
        ],
    }


def child_timeout_s(k: int, timeout_s: float | None, retries: int) -> int:
    """Batch's timeout for a child of k tasks: with `timeout:`, a backstop above the worker's own per-attempt
    timeout (the one that is enforced) for all k tasks and their retries; without, a day per task. At most
    14 days: Batch ends any job then. A child that Batch stops leaves its unstarted tasks without a status:
    they read as lost, and `resume` runs them again."""
    if timeout_s:
        seconds = k * (retries + 1) * (timeout_s + 10) + 120
    else:
        seconds = k * DEFAULT_TASK_TIMEOUT_S
    return max(60, min(MAX_CHILD_TIMEOUT_S, int(seconds)))


class Submitter(AwsRun):
    def submit(self, indices: Sequence[int], *, detach: bool) -> None:
        run, store, spec = self.run, self.run.store, self.run.spec
        record = self._record()
        n = len(record.submissions)
        if n:  # the first submission's image was checked a moment ago (AwsBatchEngine.check)
            check_pinned_image(self.settings, spec, session=self.session)
        k = tasks_per_child(
            len(indices),
            max_parallel=spec.max_parallel,
            tasks_per_job=spec.aws.tasks_per_job,
            task_seconds=run.record.median_task_s,
        )
        slicing = Slicing.of(indices, k)
        store.write_json(store.submission_key(run.id, n), slicing.to_record())
        self._slicings[n] = slicing
        self._refresh_shared_files()
        job_definition = self._job_definition(spec.secrets)
        submission = Submission(n=n, tasks_per_child=k, submitted_at=time.time())
        record.submissions.append(submission)
        jobs = submission.jobs
        try:
            for offset, size in slicing.array_jobs(MAX_ARRAY):
                request = self._request(n=n, offset=offset, size=size, k=k, job_definition=job_definition)
                response = self._submit_job(request)
                jobs.append(ArrayJob(id=response["jobId"], offset=offset, size=size))
                # After every SubmitJob: should this process die before the next, `cancel` still finds the
                # array.
                write_engine_record(run, record)
        except BaseException:
            for job in jobs:  # a half-submitted run is not started: stop what did go out
                self.batch.terminate_job(jobId=job.id, reason=f"batchsweep: submitting {run.id} failed")
            raise
        self._next_poll = 0.0

    def _submit_job(self, request: dict[str, Any]) -> dict[str, Any]:
        """SubmitJob without duplicates. botocore would send it again after a lost response (a read timeout, a
        dropped connection, a 5xx), and an array Batch had accepted would then run twice, the first never
        recorded: it could not be cancelled and would bill too. So it is sent by a client that never retries;
        a throttle is sent again after a pause, and after any other transient failure the job's name (unique
        per run, submission and array) is looked up on the queue first: found, it is the job submitted."""
        from botocore.exceptions import BotoCoreError, ClientError

        from batchsweep.aws.clients import make_client

        client = make_client("batch", session=self.session, total_attempts=1)
        for attempt in range(SUBMIT_ATTEMPTS):
            pause = min(20.0, 0.5 * 2 ** attempt)
            try:
                return dict(client.submit_job(**request))
            except ClientError as e:
                status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if e.response.get("Error", {}).get("Code") in THROTTLING or status == 429:
                    if attempt + 1 == SUBMIT_ATTEMPTS:
                        raise
                    time.sleep(pause)
                    continue
                if status < 500 or attempt + 1 == SUBMIT_ATTEMPTS:
                    raise
            except BotoCoreError:  # no answer: Batch may have accepted it
                if attempt + 1 == SUBMIT_ATTEMPTS:
                    raise
            found = self._submitted(request)
            if found is not None:
                return {"jobId": found}
            time.sleep(pause)
        raise AssertionError("unreachable")

    def _submitted(self, request: dict[str, Any]) -> str | None:
        """The id of the array job of this name on the queue, if Batch accepted it (ListJobs with a JOB_NAME
        filter lists jobs in every state)."""
        name = request["jobName"]
        pages = self.batch.get_paginator("list_jobs").paginate(
            jobQueue=request["jobQueue"], filters=[{"name": "JOB_NAME", "values": [name]}])
        ids = [j["jobId"] for page in pages for j in page["jobSummaryList"]
               if j.get("jobName") == name and ":" not in j["jobId"]]  # the array parent, not its children
        return ids[0] if ids else None

    def _refresh_shared_files(self) -> None:
        """Copy the code package and inputs this run uses onto themselves: the bucket's lifecycle rule expires
        them counted from their last write, so a package uploaded by an old run never expires under a live
        one. Only those written more than half the stack's RunRetentionDays ago: every copy leaves the old
        version in the versioned bucket, and a submit (each search round, each resume) would otherwise double
        them."""
        store, record = self.run.store, self.run.record
        keys = [store.code_key(record.code_sha256)] if record.code_sha256 else []
        keys += [entry.key for entry in (record.inputs_map or {}).values()]
        if not keys:
            return
        backend, older_than_s = _s3(store), self._retention_days() * 86400 / 2
        for key in keys:
            backend.refresh(key, older_than_s=older_than_s, now=self.clock.time())

    def _retention_days(self) -> float:
        """The stack's RunRetentionDays; a bucket batchsweep did not make has a lifecycle it cannot read (the
        submit policy has no s3:GetLifecycleConfiguration), so a day counts there: at most a copy a day."""
        if not self.settings.stack:
            return DEFAULT_RETENTION_DAYS
        from batchsweep.infra.stack import stack_parameters

        try:
            return float(
                stack_parameters(self.settings.stack, session=self.session).get("RunRetentionDays")
                or DEFAULT_RETENTION_DAYS
            )
        except ValueError:
            return DEFAULT_RETENTION_DAYS

    def _request(self, *, n: int, offset: int, size: int, k: int, job_definition: str) -> dict[str, Any]:
        spec, run = self.run.spec, self.run
        resources = spec.resources
        requirements = [
            {"type": "VCPU", "value": f"{float(resources.vcpus):g}"},
            {"type": "MEMORY", "value": str(int(resources.memory_mib))},
        ]
        if resources.gpus:
            requirements.append({"type": "GPU", "value": str(int(resources.gpus))})
        environment = _environment(store_url=run.store.url, run_id=run.id, submission=n, offset=offset,
                                   region=str(self.settings.region), env=spec.env)
        overrides = {"environment": environment, "resourceRequirements": requirements}
        if len(json.dumps(overrides)) > OVERRIDES_BUDGET:
            raise SpecError(_overrides_problem(len(json.dumps(overrides))))
        request: dict[str, Any] = {
            "jobName": f"{run.id}-s{n}-{offset // MAX_ARRAY}"[:128],
            "jobQueue": self.settings.job_queue,
            "jobDefinition": job_definition,
            "containerOverrides": overrides,
            "retryStrategy": retry_strategy(),
            "propagateTags": True,
            "tags": {"batchsweep:run": run.id, "batchsweep:sweep": run.name},
        }
        if size > 1:
            request["arrayProperties"] = {"size": size}
        request["timeout"] = {
            "attemptDurationSeconds": child_timeout_s(k, run.record.timeout_s, spec.retries)
        }
        return request

    def _job_definition(self, secrets: dict[str, str]) -> str:
        """The stack's job definition, or a revision of it carrying `secrets:`, named by a content hash."""
        base = self.settings.job_definition
        if not secrets:
            return str(base)
        import hashlib

        (current,) = self.batch.describe_job_definitions(jobDefinitions=[base])["jobDefinitions"][:1] or [
            None
        ]
        if current is None:
            raise AwsSetupError(f"aws.job_definition: {base!r} not found; run `batchsweep infra up`")
        shape = self.batch.meta.service_model.shape_for("ContainerProperties")
        props = {k: v for k, v in current["containerProperties"].items() if k in shape.members}
        props["resourceRequirements"] = [
            {**r, "value": str(r["value"])} for r in props.get("resourceRequirements", [])
        ]
        props["secrets"] = [{"name": k, "valueFrom": v} for k, v in sorted(secrets.items())]
        digest = hashlib.sha256(
            json.dumps([current["jobDefinitionArn"], props], sort_keys=True).encode()
        ).hexdigest()
        name = f"{current['jobDefinitionName']}-{digest[:12]}"
        found = self.batch.describe_job_definitions(jobDefinitionName=name, status="ACTIVE")["jobDefinitions"]
        if found:
            return str(found[0]["jobDefinitionArn"])
        extra = {
            key: current[key]
            for key in ("platformCapabilities", "timeout", "propagateTags")
            if current.get(key)
        }
        response = self.batch.register_job_definition(jobDefinitionName=name, type="container",
                                                      containerProperties=props, **extra)
        return str(response["jobDefinitionArn"])


def _environment(*, store_url: str, run_id: str, submission: int, offset: int, region: str,
                 env: dict[str, Any]) -> list[dict[str, str]]:
    return [
        {"name": "BATCHSWEEP_STORE", "value": store_url},
        {"name": "BATCHSWEEP_RUN_ID", "value": run_id},
        {"name": "BATCHSWEEP_SUBMISSION", "value": str(submission)},
        {"name": OFFSET_VAR, "value": str(offset)},
        {"name": "BATCHSWEEP_REGION", "value": region},
        *({"name": key, "value": str(value)} for key, value in env.items()),
    ]


def _overrides_problem(size: int) -> str:
    return (
        f"env: the job's container overrides would be {size:,} characters, over the {OVERRIDES_BUDGET:,} "
        f"that AWS Batch's limit of {MAX_OVERRIDES_CHARS:,} leaves beside its own variables; move large "
        "values out of `env:` (into a file passed as `inputs:`, or params)"
    )


def _check_overrides_size(spec: Spec) -> None:
    """Before anything is written: the largest container overrides a submit of this spec can make."""
    environment = _environment(store_url=f"s3://{'b' * 63}/{STORE_PREFIX}", run_id=f"{spec.name}-{'0' * 22}",
                               submission=999, offset=MAX_ARRAY * 99, region="ap-southeast-99", env=spec.env)
    requirements = [{"type": t, "value": "0" * 8} for t in ("VCPU", "MEMORY", "GPU")]
    size = len(json.dumps({"environment": environment, "resourceRequirements": requirements}))
    if size > OVERRIDES_BUDGET:
        raise SpecError(_overrides_problem(size))
