"""The AWS Batch engine: code and a manifest to S3, one SubmitJob per ≤ 10,000 children (array jobs),
progress from the array parents' statusSummary, logs from S3 or CloudWatch, cancel by terminating the parents.

Each child runs `tasks_per_child` tasks one after another (`batchsweep.remote`), so `max_parallel` caps
concurrency without a client-side loop, and short tasks do not each pay a container start.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchsweep.engines.base import Engine, Progress
from batchsweep.errors import AwsSetupError, SpecError
from batchsweep.model import input_parts
from batchsweep.store import Store

if TYPE_CHECKING:
    from batchsweep.aws.s3store import S3Backend
    from batchsweep.model import Task
    from batchsweep.runs import Run
    from batchsweep.spec import Spec

log = logging.getLogger(__name__)
MAX_ARRAY = 10_000
CHILD_TARGET_S = 180.0  # AWS advises Batch jobs of a few minutes; short tasks are packed up to this
STORE_PREFIX = "batchsweep"
TERMINAL = ("SUCCEEDED", "FAILED")
RUNNABLE_ADVICE = {
    "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT": "no compute environment can fit one task's vCPU/memory; lower `resources`",
    "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE": "the compute environment's max vCPUs is below one task's; "
                                                         "`batchsweep infra up --param MaxVcpus=N`",
    "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY": "AWS has no spare capacity of this kind now; wait, or set aws.spot: false",
    "MISCONFIGURATION:SERVICE_ROLE_PERMISSIONS": "the Batch service role lacks permissions; redeploy with `batchsweep infra up`",
}
DEFAULT_RUNNABLE_ADVICE = "jobs wait for capacity; the default Fargate quota is 6 vCPUs per account (`batchsweep doctor`)"
# Without a timeout a hung task bills until Batch's 14-day limit; the spec's `timeout:` replaces this default.
DEFAULT_CHILD_TIMEOUT_S = 24 * 3600
MAX_OVERRIDES_CHARS = 8192  # SubmitJob's limit on containerOverrides


def retry_strategy(*, attempts: int = 3) -> dict[str, Any]:
    """Retry what the infrastructure broke; never the user's own failures (the worker already retried those)."""
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


def tasks_per_child(n: int, *, max_parallel: int, tasks_per_job: int | None, task_seconds: float | None) -> int:
    if tasks_per_job:
        k = tasks_per_job
    elif task_seconds:
        k = max(1, int(CHILD_TARGET_S // max(task_seconds, 0.001)))
    else:
        k = 1
    if max_parallel:
        k = max(k, math.ceil(n / max_parallel))
    return max(1, min(k, n))


# -- settings (before anything is written) -----------------------------------------------------
def _session(settings: dict[str, Any]) -> Any:
    from batchsweep.aws.clients import make_session

    return make_session(profile=settings.get("profile"), region=settings.get("region"))


def resolve_settings(spec: Spec) -> dict[str, Any]:
    from batchsweep.aws.clients import check_credentials, make_client, make_session

    aws = spec.aws
    session = make_session(profile=aws.profile, region=aws.region)
    check_credentials(session)
    settings: dict[str, Any] = {
        "profile": aws.profile, "region": session.region_name, "stack": aws.stack, "bucket": aws.bucket,
        "job_queue": aws.job_queue, "job_definition": aws.job_definition, "log_group": aws.log_group,
        "image_uri": None, "prefix": STORE_PREFIX,
    }
    if not (aws.bucket and aws.job_queue and aws.job_definition):
        if not aws.stack:
            raise AwsSetupError("aws: give `stack:` (from `batchsweep infra up`) or all of bucket, job_queue, job_definition")
        from batchsweep.infra.stack import stack_outputs

        outputs = stack_outputs(aws.stack, session=session)
        for key, output in (("bucket", "Bucket"), ("job_queue", "JobQueue"), ("job_definition", "JobDefinition"),
                            ("log_group", "LogGroup"), ("image_uri", "ImageUri")):
            settings[key] = settings[key] or outputs.get(output)
        if spec.resources.gpus:
            if not outputs.get("GpuJobQueue"):
                raise AwsSetupError(f"resources.gpus: stack {aws.stack!r} has no GPU environment; "
                                    f"`batchsweep infra up --stack {aws.stack} --param EnableGpu=true`")
            settings["job_queue"] = aws.job_queue or outputs["GpuJobQueue"]
            settings["job_definition"] = aws.job_definition or outputs["GpuJobDefinition"]
        elif not aws.spot and not aws.job_queue:
            settings["job_queue"] = outputs.get("OnDemandJobQueue") or settings["job_queue"]
        settings["outputs"] = outputs
        _check_stack_access(spec, aws.stack, outputs, session=session)
    settings["spot"] = bool(aws.spot)  # which queue runs the tasks: the RUNNABLE advice and the cost follow it
    from botocore.exceptions import ClientError

    try:
        make_client("s3", session=session).head_bucket(Bucket=settings["bucket"])
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code")
        raise AwsSetupError(
            f"aws.bucket: bucket {settings['bucket']!r} is not reachable ({code}); "
            "create the stack with `batchsweep infra up` or fix aws.bucket"
        ) from None
    return settings


class AwsBatchEngine(Engine):
    name = "aws-batch"

    @classmethod
    def check(cls, spec: Spec, tasks: Sequence[Task]) -> dict[str, Any]:
        from batchsweep.aws import fargate

        r = spec.resources
        if r.gpus != int(r.gpus):
            raise SpecError(f"resources.gpus: {r.gpus:g} — AWS Batch leases whole GPUs; use {max(1, round(r.gpus))}")
        if r.gpus and r.vcpus != int(r.vcpus):
            raise SpecError(f"resources.vcpus: {r.vcpus:g} — GPU tasks run on EC2, which allots whole vCPUs; "
                            f"use {max(1, math.ceil(r.vcpus))}")
        if not r.gpus:
            fargate.check_pair(r.vcpus, r.memory_mib)
        _check_overrides_size(spec)
        if spec.search:
            list(_expand_refs(spec))  # SpecError when an input names a param only the trials will have
        settings = resolve_settings(spec)
        outputs = settings.pop("outputs", None)
        if outputs and outputs.get("ImageUri"):
            _check_image(spec, outputs, session=_session(settings))
        return settings

    @classmethod
    def key_environment(cls, spec: Spec, settings: dict[str, Any]) -> dict[str, Any]:
        """The container's image (its tag names its Dockerfile and requirements) and the spec's requirements."""
        from batchsweep.infra.image import requirements_hash, spec_requirements

        requirements, _ = spec_requirements(spec)
        return {"image": settings.get("image_uri"), "job_definition": settings.get("job_definition"),
                "requirements": requirements_hash(requirements, full=True)}

    @classmethod
    def run_store(cls, settings: dict[str, Any], default: Store) -> Store:
        if not settings.get("bucket"):
            raise AwsSetupError("aws-batch: the S3 store is only known once the stack is read (not in a dry run)")
        return Store.open(f"s3://{settings['bucket']}/{settings['prefix']}", aws_profile=settings.get("profile"),
                          aws_region=settings.get("region"))

    @classmethod
    def prepare(cls, spec: Spec, store: Store, info: dict[str, Any]) -> dict[str, Any]:
        """Upload the code package and local inputs, content-addressed: only what S3 does not have yet. Everything
        is streamed from disk with the transfer manager (multipart), so a 6 GB input needs no 6 GB of memory."""
        import tempfile

        from batchsweep.aws import codepkg

        backend = _s3(store)
        inputs: dict[str, dict[str, Any]] = {}
        with tempfile.TemporaryDirectory(prefix="batchsweep-pack-") as tmp:
            packed = Path(tmp) / "code.tar.gz"
            sha, contents = codepkg.pack_to_file(Path(info["code_dir"]), packed, exclude=spec.code.exclude,
                                                 max_mib=spec.code.max_mib)
            left_out = contents.left_out_line()
            if left_out:
                log.warning("code: left out of the package: %s", left_out)
            if not backend.exists(store.code_key(sha)):
                backend.upload_file(packed, store.code_key(sha))
            refs = sorted({src for t in _expand_refs(spec) for src, _ in map(input_parts, t) if not src.startswith("s3://")})
            for n, ref in enumerate(refs):
                path = spec.base_dir / ref
                if path.is_dir():
                    archive = Path(tmp) / f"input-{n}.tar.gz"
                    digest, _ = codepkg.pack_to_file(path, archive, max_mib=10_000_000)
                    key = store.input_key(digest, path.name + ".tar.gz")
                    if not backend.exists(key):
                        backend.upload_file(archive, key)
                    archive.unlink()
                    inputs[ref] = {"key": key, "dir": True}
                else:
                    key = store.input_key(codepkg.file_sha256(path), path.name)
                    if not backend.exists(key):
                        backend.upload_file(path, key)
                    inputs[ref] = {"key": key}
        stats = _sweep_stats(store, spec.name)
        return {"code_sha256": sha, "inputs_map": inputs, "median_task_s": stats.get("median_task_s")}

    # -- a run --------------------------------------------------------------------------------
    def __init__(self, run: Run) -> None:
        super().__init__(run)
        self.settings: dict[str, Any] = run.info.get("engine") or {}
        self._next_poll = 0.0
        self._interval = 2.0
        self._last: Progress | None = None
        self._runnable_checked = 0.0

    @cached_property
    def session(self) -> Any:
        return _session(self.settings)

    @cached_property
    def batch(self) -> Any:
        from batchsweep.aws.clients import make_client

        return make_client("batch", session=self.session)

    def _record(self) -> dict[str, Any]:
        record = self.run.store.read_record(self.run.store.run_key(self.run.id, "engine.json"))
        if record is None or not isinstance(record.get("submissions"), list):
            return {"engine": self.name, "submissions": []}
        return record

    def submit(self, indices: Sequence[int], *, detach: bool) -> None:
        run, store, spec = self.run, self.run.store, self.run.info["spec"]
        record = self._record()
        n = len(record["submissions"])
        aws = spec.get("aws") or {}
        k = tasks_per_child(len(indices), max_parallel=spec.get("max_parallel") or 0,
                            tasks_per_job=aws.get("tasks_per_job"), task_seconds=run.info.get("median_task_s"))
        store.write_json(store.run_key(run.id, "submissions", f"{n}.json"),
                         {"indices": list(indices), "tasks_per_child": k})
        children = math.ceil(len(indices) / k)
        self._refresh_shared_files()
        job_definition = self._job_definition(spec.get("secrets") or {})
        jobs: list[dict[str, Any]] = []
        record["submissions"].append({"n": n, "tasks_per_child": k, "jobs": jobs, "submitted_at": time.time()})
        try:
            for offset in range(0, children, MAX_ARRAY):
                size = min(MAX_ARRAY, children - offset)
                request = self._request(n=n, offset=offset, size=size, k=k, job_definition=job_definition)
                response = self.batch.submit_job(**request)
                jobs.append({"id": response["jobId"], "offset": offset, "size": size})
                # After every SubmitJob: should this process die before the next, `cancel` still finds the array.
                store.write_json(store.run_key(run.id, "engine.json"), record)
        except BaseException:
            for job in jobs:  # a half-submitted run is not started: stop what did go out
                self.batch.terminate_job(jobId=job["id"], reason=f"batchsweep: submitting {run.id} failed")
            raise
        self._next_poll = 0.0

    def _refresh_shared_files(self) -> None:
        """Copy the code package and inputs this run uses onto themselves: the bucket's lifecycle rule expires
        them counted from their last write, so a package uploaded by an old run never expires under a live one."""
        store, info = self.run.store, self.run.info
        keys = [store.code_key(info["code_sha256"])] if info.get("code_sha256") else []
        keys += [entry["key"] for entry in (info.get("inputs_map") or {}).values()]
        backend = _s3(store)
        for key in keys:
            backend.refresh(key)

    def _request(self, *, n: int, offset: int, size: int, k: int, job_definition: str) -> dict[str, Any]:
        spec, run = self.run.info["spec"], self.run
        resources = spec.get("resources") or {}
        requirements = [
            {"type": "VCPU", "value": f"{float(resources.get('vcpus', 1)):g}"},
            {"type": "MEMORY", "value": str(int(resources.get("memory_mib", 2048)))},
        ]
        if resources.get("gpus"):
            requirements.append({"type": "GPU", "value": str(int(resources["gpus"]))})
        environment = _environment(store_url=run.store.url, run_id=run.id, submission=n, offset=offset,
                                   region=str(self.settings.get("region")), env=spec.get("env") or {})
        overrides = {"environment": environment, "resourceRequirements": requirements}
        if len(json.dumps(overrides)) > MAX_OVERRIDES_CHARS:
            raise SpecError(_overrides_problem(len(json.dumps(overrides))))
        request: dict[str, Any] = {
            "jobName": f"{run.id}-s{n}-{offset // MAX_ARRAY}"[:128],
            "jobQueue": self.settings["job_queue"],
            "jobDefinition": job_definition,
            "containerOverrides": overrides,
            "retryStrategy": retry_strategy(),
            "propagateTags": True,
            "tags": {"batchsweep:run": run.id, "batchsweep:sweep": run.name},
        }
        if size > 1:
            request["arrayProperties"] = {"size": size}
        timeout_s = run.info.get("timeout_s")
        if timeout_s:
            # A backstop above the worker's own per-attempt timeout, which is the one that is enforced.
            attempts = int(spec.get("retries") or 0) + 1
            request["timeout"] = {"attemptDurationSeconds": max(60, int(k * attempts * (timeout_s + 10) + 120))}
        else:
            request["timeout"] = {"attemptDurationSeconds": DEFAULT_CHILD_TIMEOUT_S}
        return request

    def _job_definition(self, secrets: dict[str, str]) -> str:
        """The stack's job definition, or a revision of it carrying `secrets:`, named by a content hash."""
        base = self.settings["job_definition"]
        if not secrets:
            return str(base)
        import hashlib

        (current,) = self.batch.describe_job_definitions(jobDefinitions=[base])["jobDefinitions"][:1] or [None]
        if current is None:
            raise AwsSetupError(f"aws.job_definition: {base!r} not found; run `batchsweep infra up`")
        shape = self.batch.meta.service_model.shape_for("ContainerProperties")
        props = {k: v for k, v in current["containerProperties"].items() if k in shape.members}
        props["resourceRequirements"] = [{**r, "value": str(r["value"])} for r in props.get("resourceRequirements", [])]
        props["secrets"] = [{"name": k, "valueFrom": v} for k, v in sorted(secrets.items())]
        digest = hashlib.sha256(json.dumps([current["jobDefinitionArn"], props], sort_keys=True).encode()).hexdigest()
        name = f"{current['jobDefinitionName']}-{digest[:12]}"
        found = self.batch.describe_job_definitions(jobDefinitionName=name, status="ACTIVE")["jobDefinitions"]
        if found:
            return str(found[0]["jobDefinitionArn"])
        extra = {key: current[key] for key in ("platformCapabilities", "timeout", "propagateTags") if current.get(key)}
        response = self.batch.register_job_definition(jobDefinitionName=name, type="container",
                                                      containerProperties=props, **extra)
        return str(response["jobDefinitionArn"])

    # -- watch --------------------------------------------------------------------------------
    def _jobs(self) -> list[dict[str, Any]]:
        return [job for sub in self._record()["submissions"] for job in sub["jobs"]]

    def poll(self) -> Progress:
        now = time.monotonic()
        if self._last is not None and now < self._next_poll:
            return self._last
        submissions = self._record()["submissions"]  # one read of engine.json per poll
        jobs = [job for sub in submissions for job in sub["jobs"]]
        described: list[dict[str, Any]] = []
        for i in range(0, len(jobs), 100):
            ids = [j["id"] for j in jobs[i:i + 100]]
            described += self.batch.describe_jobs(jobs=ids)["jobs"]
        children: Counter[str] = Counter()
        for job in described:
            summary = job.get("arrayProperties", {}).get("statusSummary")
            if summary:
                children.update({state: count for state, count in summary.items() if count})
            else:
                children[job["status"]] += 1
        active = any(job["status"] not in TERMINAL for job in described)
        k = max([s["tasks_per_child"] for s in submissions] or [1])
        running = (children["RUNNING"] + children["STARTING"])
        submitted = min((s["submitted_at"] for s in submissions), default=time.time())
        notes = self._runnable_notes(described, children, submitted) if active else ()
        counts = None
        if active:  # estimated from children while running; the store's statuses are read once it ends
            done = min(self.run.n_tasks, children["SUCCEEDED"] * k)
            failed = min(self.run.n_tasks - done, children["FAILED"] * k)
            counts = {"succeeded": done, "failed": failed, "running": running,
                      "pending": max(0, self.run.n_tasks - done - failed - running)}
        progress = Progress(active=active, running=running, notes=notes, counts=counts,
                            extra={"missing": "lost", "batch_states": dict(children), "tasks_per_child": k})
        self._last = progress
        # Capped backoff with jitter: a long run costs few DescribeJobs calls.
        self._interval = min(30.0, self._interval * 1.3)
        self._next_poll = now + self._interval * random.uniform(0.8, 1.2)
        return progress

    def _runnable_notes(self, described: list[dict[str, Any]], children: Counter[str],
                        submitted: float) -> tuple[str, ...]:
        waiting = children["RUNNABLE"] and not (children["RUNNING"] + children["STARTING"] + children["SUCCEEDED"])
        if not waiting or time.time() - submitted < 120 or time.monotonic() - self._runnable_checked < 300:
            return ()
        self._runnable_checked = time.monotonic()
        job = described[0]
        reason = job.get("statusReason")
        if job.get("arrayProperties"):
            summaries = self.batch.list_jobs(arrayJobId=job["jobId"], jobStatus="RUNNABLE", maxResults=1)["jobSummaryList"]
            reason = summaries[0].get("statusReason") if summaries else reason
        reason = reason or "no reason given by Batch"
        advice = next((a for key, a in RUNNABLE_ADVICE.items() if reason.startswith(key)), DEFAULT_RUNNABLE_ADVICE)
        if not self.settings.get("spot", True):  # already on the on-demand queue
            advice = advice.replace("wait, or set aws.spot: false", "wait, or lower `resources`")
            advice = advice.replace("the default Fargate quota", "the default Fargate on-demand quota")
        elif advice is DEFAULT_RUNNABLE_ADVICE:
            advice = advice.replace("the default Fargate quota", "the default Fargate Spot quota")
        return (f"tasks stuck in RUNNABLE: {reason} — {advice}",)

    def failure_reasons(self) -> dict[int, str]:
        """Batch's reason for each failed child, mapped to its tasks (only failed children are fetched)."""
        reasons: dict[int, str] = {}
        for sub in self._record()["submissions"]:
            submission = self.run.store.read_json(self.run.store.run_key(self.run.id, "submissions", f"{sub['n']}.json"))
            k = submission["tasks_per_child"]
            for job in sub["jobs"]:
                failed = self._failed_children(job)
                for child, reason in failed.items():
                    for index in submission["indices"][(job["offset"] + child) * k:(job["offset"] + child + 1) * k]:
                        reasons[index] = reason
        return reasons

    def _failed_children(self, job: dict[str, Any]) -> dict[int, str]:
        if job["size"] == 1:
            (desc,) = self.batch.describe_jobs(jobs=[job["id"]])["jobs"] or [{}]
            return {0: _reason(desc)} if desc.get("status") == "FAILED" else {}
        out: dict[int, str] = {}
        for page in self.batch.get_paginator("list_jobs").paginate(arrayJobId=job["id"], jobStatus="FAILED"):
            for summary in page["jobSummaryList"]:
                index = summary.get("arrayProperties", {}).get("index")
                if index is None and ":" in summary["jobId"]:
                    index = int(summary["jobId"].rsplit(":", 1)[1])
                if index is not None:
                    out[int(index)] = _reason(summary)
        return out

    def cancel(self) -> None:
        for job in self._jobs():
            self.batch.terminate_job(jobId=job["id"], reason=f"cancelled by batchsweep ({self.run.id})")
        self._next_poll = 0.0

    def logs(self, index: int, *, stderr: bool = False) -> Iterator[str] | None:
        """A task's output from its child job's CloudWatch log streams (every attempt), filtered to that task:
        what a running task printed so far, or all a killed container's task printed before it died."""
        lines = self._task_lines(index)
        if lines is None:
            return None
        return (text + "\n" for from_stderr, text in lines if from_stderr == stderr)

    def last_output(self, index: int) -> str | None:
        """The last line the task printed (stdout or stderr), from CloudWatch."""
        last = None
        for _, text in self._task_lines(index) or ():
            if text.strip():
                last = text.strip()
        return last

    def _task_lines(self, index: int) -> Iterator[tuple[bool, str]] | None:
        """(from stderr, line) of one task, in the order its container wrote them."""
        child_id = self._child_job_id(index)
        if child_id is None or not self.settings.get("log_group"):
            return None
        from batchsweep.aws.clients import make_client
        from batchsweep.logprefix import parse

        (desc,) = self.batch.describe_jobs(jobs=[child_id])["jobs"] or [{}]
        streams = _log_streams(desc)
        logs = make_client("logs", session=self.session)

        def lines() -> Iterator[tuple[bool, str]]:
            for stream in streams:
                for line in _log_lines(logs, self.settings["log_group"], stream):
                    parsed = parse(line)
                    if parsed is not None and parsed[0] == index:
                        yield parsed[1], parsed[2]

        return lines()

    def _child_job_id(self, index: int) -> str | None:
        for sub in reversed(self._record()["submissions"]):
            submission = self.run.store.read_json(self.run.store.run_key(self.run.id, "submissions", f"{sub['n']}.json"))
            if index not in submission["indices"]:
                continue
            child = submission["indices"].index(index) // submission["tasks_per_child"]
            for job in sub["jobs"]:
                if job["offset"] <= child < job["offset"] + job["size"]:
                    return str(job["id"]) if job["size"] == 1 else f"{job['id']}:{child - job['offset']}"
        return None


def _check_image(spec: Spec, outputs: dict[str, str], *, session: Any) -> None:
    """The stack's current image exists and was built with the spec's requirements (its tag carries their hash)."""
    from batchsweep.infra.image import (
        image_exists,
        requirements_hash,
        spec_requirements,
        tag_requirements_hash,
    )

    requirements, origin = spec_requirements(spec)
    push = f"batchsweep image push {spec.spec_file or 'SPEC'}"
    if spec.aws.stack and spec.aws.stack != "batchsweep":
        push += f" --stack {spec.aws.stack}"
    repo, tag = outputs["ImageUri"].rsplit(":", 1)
    if not image_exists(session, outputs):
        raise AwsSetupError(f"no task image in {repo} yet; build and push one with `{push}` (needs docker or podman)")
    if requirements and tag_requirements_hash(tag) != requirements_hash(requirements):
        raise AwsSetupError(f"the stack's task image ({tag}) was built without this sweep's requirements ({origin}); "
                            f"build and push one that has them with `{push}`")


def _environment(*, store_url: str, run_id: str, submission: int, offset: int, region: str,
                 env: dict[str, Any]) -> list[dict[str, str]]:
    return [
        {"name": "BATCHSWEEP_STORE", "value": store_url},
        {"name": "BATCHSWEEP_RUN_ID", "value": run_id},
        {"name": "BATCHSWEEP_SUBMISSION", "value": str(submission)},
        {"name": "BATCHSWEEP_CHILD_OFFSET", "value": str(offset)},
        {"name": "BATCHSWEEP_REGION", "value": region},
        *({"name": key, "value": str(value)} for key, value in env.items()),
    ]


def _overrides_problem(size: int) -> str:
    return (f"env: the job's container overrides would be {size:,} characters, over AWS Batch's limit of "
            f"{MAX_OVERRIDES_CHARS:,}; move large values out of `env:` (into a file passed as `inputs:`, or params)")


def _check_overrides_size(spec: Spec) -> None:
    """Before anything is written: the largest container overrides a submit of this spec can make."""
    environment = _environment(store_url=f"s3://{'b' * 63}/{STORE_PREFIX}", run_id=f"{spec.name}-{'0' * 22}",
                               submission=999, offset=MAX_ARRAY * 99, region="ap-southeast-99", env=spec.env)
    requirements = [{"type": t, "value": "0" * 8} for t in ("VCPU", "MEMORY", "GPU")]
    size = len(json.dumps({"environment": environment, "resourceRequirements": requirements}))
    if size > MAX_OVERRIDES_CHARS:
        raise SpecError(_overrides_problem(size))


def _check_stack_access(spec: Spec, stack: str, outputs: dict[str, str], *, session: Any) -> None:
    """What the stack's roles cannot read is refused before submit: `s3://` inputs outside the stack's readable
    prefixes (the job role), secrets outside its secrets prefix (the execution role)."""
    s3_inputs = sorted({src for t in _expand_refs(spec) for src, _ in map(input_parts, t) if src.startswith("s3://")})
    if not s3_inputs and not spec.secrets:
        return
    from batchsweep.infra.stack import stack_parameters

    params = stack_parameters(stack, session=session)
    readable = [p.strip().strip("/") for p in params.get("ReadableS3Prefixes", "").split(",") if p.strip()]
    for url in s3_inputs:
        path = url.removeprefix("s3://")
        if not any(path == p or path.startswith(p + "/") for p in readable):
            current = ",".join(readable) or "empty"
            wanted = ",".join([*readable, path.rsplit("/", 1)[0] if "/" in path else path])
            raise SpecError(f"inputs: {url} is outside what the stack's tasks may read (ReadableS3Prefixes: "
                            f"{current}); `batchsweep infra up --stack {stack} --param ReadableS3Prefixes={wanted}`")
    prefix = params.get("SecretsPrefix", "").strip("/")
    for name, source in sorted(spec.secrets.items()):
        if not prefix or not _under_secrets_prefix(source, prefix):
            fix = (f"store it under {prefix}/" + " or " if prefix else "") + \
                f"`batchsweep infra up --stack {stack} --param SecretsPrefix=PREFIX`"
            raise SpecError(f"secrets.{name}: {source} is outside the stack's SecretsPrefix "
                            f"({prefix or 'empty: no secrets'}), so the job could not read it; {fix}")


def _under_secrets_prefix(source: str, prefix: str) -> bool:
    """Whether an SSM parameter or Secrets Manager secret (ARN or SSM name) is under `prefix`/."""
    if source.startswith("arn:"):
        parts = source.split(":", 5)
        if len(parts) < 6:
            return False
        service, resource = parts[2], parts[5]
        if service == "ssm" and resource.startswith("parameter/"):
            return resource.removeprefix("parameter").startswith(f"/{prefix}/")
        if service == "secretsmanager" and resource.startswith("secret:"):
            return resource.removeprefix("secret:").startswith(f"{prefix}/")
        return False
    return source.lstrip("/").startswith(f"{prefix}/")


def _reason(desc: dict[str, Any]) -> str:
    container = desc.get("container") or {}
    parts = [desc.get("statusReason"), container.get("reason")]
    if container.get("exitCode") is not None:
        parts.append(f"exit code {container['exitCode']}")
    return "; ".join(p for p in parts if p) or "failed on AWS Batch"


def _log_streams(desc: dict[str, Any]) -> list[str]:
    """The log streams of a job's attempts, oldest first (each retry runs in a new container)."""
    streams = [a.get("container", {}).get("logStreamName") for a in desc.get("attempts") or []]
    streams.append((desc.get("container") or {}).get("logStreamName"))
    return list(dict.fromkeys(s for s in streams if s))


def _log_lines(logs: Any, group: str, stream: str) -> Iterator[str]:
    """Every event of a stream, oldest first. The end is a repeated nextForwardToken: an empty page is not."""
    token = None
    while True:
        kwargs: dict[str, Any] = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
        if token:
            kwargs["nextToken"] = token
        try:
            page = logs.get_log_events(**kwargs)
        except logs.exceptions.ResourceNotFoundException:
            return  # the stream appears when the container first writes: no output yet
        for event in page["events"]:
            yield event["message"].rstrip("\n")
        if page.get("nextForwardToken") in (None, token):
            return
        token = page["nextForwardToken"]


def _expand_refs(spec: Spec) -> Iterator[tuple[str, ...]]:
    """The inputs of every task. A search's trials are not known yet: its inputs may name `fixed` params only."""
    from batchsweep import space

    if spec.search:
        yield space.resolve(dict(spec.params.fixed if spec.params else {}), spec.inputs)[1]
        return
    for raw in space.iter_params(spec):
        yield space.resolve(raw, spec.inputs)[1]


def _s3(store: Store) -> S3Backend:
    from batchsweep.aws.s3store import S3Backend

    if not isinstance(store.backend, S3Backend):
        raise AwsSetupError(f"aws-batch needs an S3 store, not {store.url}")
    return store.backend


def _sweep_stats(store: Store, name: str) -> dict[str, Any]:
    try:
        return dict(store.read_json(store.sweep_stats_key(name)))
    except FileNotFoundError:
        return {}
    except Exception:  # noqa: BLE001 - stats only size the chunks; never block a submit on them
        return {}
