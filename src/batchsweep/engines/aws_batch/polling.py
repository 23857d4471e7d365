"""Watching a run on AWS Batch: the array parents' statusSummary (capped backoff), the RUNNABLE advice, the
reasons of failed children mapped to their tasks, and cancel."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from batchsweep.engines.aws_batch.core import ArrayJob, AwsRun
from batchsweep.engines.base import Progress
from batchsweep.model import State
from batchsweep.task.arrayslice import Slicing

TERMINAL = ("SUCCEEDED", "FAILED")
RUNNING_STATES = ("STARTING", "RUNNING")
RUNNABLE_ADVICE = {
    "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT": "no compute environment can fit one task's vCPU/memory; "
    "lower `resources`",
    "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE": "the compute environment's max vCPUs is below one "
    "task's; `batchsweep infra up --param MaxVcpus=N`",
    "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY": "AWS has no spare capacity of this kind now; wait, or set "
    "aws.spot: false",
    "MISCONFIGURATION:SERVICE_ROLE_PERMISSIONS": "the Batch service role lacks permissions; redeploy with "
    "`batchsweep infra up`",
    "MISCONFIGURATION:EC2_INSTANCE_CONFIGURATION_UNSUPPORTED": "no GPU instance type of the stack can run "
    "this job (AMI or type); `batchsweep infra "
    "up --param GpuInstanceTypes=...`",
}
DEFAULT_RUNNABLE_ADVICE = (
    "jobs wait for capacity; the default Fargate quota is 6 vCPUs per account (`batchsweep doctor`)"
)
# GPU tasks run on the stack's EC2 GPU environments: their own limits and quotas.
GPU_RUNNABLE_ADVICE = {
    "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT": "no GPU instance type of the stack fits one task's "
    "GPUs/vCPU/memory; lower `resources` or `batchsweep infra "
    "up --param GpuInstanceTypes=...` with larger types",
    "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE": "the GPU environment's max vCPUs is below one "
    "task's; `batchsweep infra up --param "
    "GpuMaxVcpus=N`",
}
GPU_DEFAULT_ADVICE = (
    "jobs wait for GPU instances; the account's G and VT {kind} vCPU quota is often 0 on a new "
    "account (`batchsweep doctor` reads it)"
)


class Poller(AwsRun):
    def poll(self) -> Progress:
        now = self.clock.monotonic()
        if self._last is not None and now < self._next_poll:
            return self._last
        submissions = self._record().submissions  # one read of engine.json per poll
        jobs = [job for sub in submissions for job in sub.jobs]
        described: list[dict[str, Any]] = []
        for i in range(0, len(jobs), 100):
            ids = [j.id for j in jobs[i:i + 100]]
            described += self.batch.describe_jobs(jobs=ids)["jobs"]
        children: Counter[str] = Counter()
        for job in described:
            summary = job.get("arrayProperties", {}).get("statusSummary")
            if summary:
                children.update({state: count for state, count in summary.items() if count})
            else:
                children[job["status"]] += 1
        active = any(job["status"] not in TERMINAL for job in described)
        k = max([s.tasks_per_child for s in submissions] or [1])
        running = sum(children[state] for state in RUNNING_STATES)
        submitted = min((s.submitted_at for s in submissions), default=self.clock.time())
        notes = self._runnable_notes(described, children, submitted) if active else ()
        counts = None
        if active:  # estimated from children while running; the store's statuses are read once it ends
            done = min(self.run.n_tasks, children["SUCCEEDED"] * k)
            failed = min(self.run.n_tasks - done, children["FAILED"] * k)
            counts = {"succeeded": done, "failed": failed, "running": running,
                      "pending": max(0, self.run.n_tasks - done - failed - running)}
        running_tasks, queues = self._running(submissions, described) if active else (frozenset(), ())
        progress = Progress(active=active, running=running_tasks, queues=queues, notes=notes, counts=counts,
                            missing=State.LOST, units=dict(children), unit_name="child jobs")
        self._last = progress
        # Capped backoff with jitter: a long run costs few DescribeJobs calls.
        self._interval = min(30.0, self._interval * 1.3)
        self._next_poll = now + self._interval * random.uniform(0.8, 1.2)
        return progress

    def _runnable_notes(self, described: list[dict[str, Any]], children: Counter[str],
                        submitted: float) -> tuple[str, ...]:
        waiting = children["RUNNABLE"] and not (
            children["RUNNING"] + children["STARTING"] + children["SUCCEEDED"]
        )
        if not waiting or self.clock.time() - submitted < 120:
            return ()
        # Batch's reason is asked for every 5 minutes
        if self.clock.monotonic() - self._runnable_checked < 300:
            return self._runnable_note
        self._runnable_checked = self.clock.monotonic()
        job = described[0]
        reason = job.get("statusReason")
        if job.get("arrayProperties"):
            summaries = self.batch.list_jobs(arrayJobId=job["jobId"], jobStatus="RUNNABLE", maxResults=1)[
                "jobSummaryList"
            ]
            reason = summaries[0].get("statusReason") if summaries else reason
        reason = reason or "no reason given by Batch"
        gpu = bool(self.run.spec.resources.gpus)
        known = {**RUNNABLE_ADVICE, **GPU_RUNNABLE_ADVICE} if gpu else RUNNABLE_ADVICE
        advice = next((a for key, a in known.items() if reason.startswith(key)), DEFAULT_RUNNABLE_ADVICE)
        if gpu and advice is DEFAULT_RUNNABLE_ADVICE:
            advice = GPU_DEFAULT_ADVICE.format(kind="on-demand" if self.settings.spot is False else "Spot")
        if self.settings.spot is False:  # already on the on-demand queue
            advice = advice.replace("wait, or set aws.spot: false", "wait, or lower `resources`")
            advice = advice.replace("the default Fargate quota", "the default Fargate on-demand quota")
        elif advice is DEFAULT_RUNNABLE_ADVICE:
            advice = advice.replace("the default Fargate quota", "the default Fargate Spot quota")
        self._runnable_note = (f"tasks stuck in RUNNABLE: {reason} — {advice}",)
        return self._runnable_note

    def _slicing(self, n: int) -> Slicing:
        """Which tasks each child of submission `n` runs: read from the store once per engine (the one that
        submitted it has it), so a poll's requests do not depend on which children happen to run."""
        if n not in self._slicings:
            store = self.run.store
            self._slicings[n] = Slicing.from_record(store.read_json(store.submission_key(self.run.id, n)))
        return self._slicings[n]

    def _running(self, submissions: list[Any],
                 described: list[dict[str, Any]]) -> tuple[frozenset[int], tuple[tuple[int, ...], ...]]:
        """The tasks of the running children, from Batch alone: a child of one task is that task; a child of
        packed tasks runs its slice in order, so it is handed over as a queue (`Progress.queues`), resolved
        with the statuses the reader holds. The submissions' slicings are read on the first active poll,
        whether or not a child runs."""
        slicings = {sub.n: self._slicing(sub.n) for sub in submissions}
        by_id = {job.id: (sub.n, job) for sub in submissions for job in sub.jobs}
        running: set[int] = set()
        queues: list[tuple[int, ...]] = []
        for desc in described:
            if desc["jobId"] not in by_id:
                continue
            n, job = by_id[desc["jobId"]]
            summary = desc.get("arrayProperties", {}).get("statusSummary") or {}
            if job.size == 1 and not summary:
                children = [0] if desc.get("status") in RUNNING_STATES else []
            elif any(summary.get(state) for state in RUNNING_STATES):
                children = sorted(c for state in RUNNING_STATES if summary.get(state)
                                  for c in self._children(job, state))
            else:
                continue
            for child in children:
                tasks = slicings[n].tasks_of(job.offset + child)
                if len(tasks) == 1:
                    running.add(tasks[0])
                elif tasks:
                    queues.append(tuple(tasks))
        return frozenset(running), tuple(queues)

    def failure_reasons(self) -> dict[int, str]:
        """Batch's reason for each failed child, mapped to its tasks (only failed children are fetched)."""
        reasons: dict[int, str] = {}
        for sub in self._record().submissions:
            slicing = self._slicing(sub.n)
            for job in sub.jobs:
                failed = self._failed_children(job)
                for child, reason in failed.items():
                    for index in slicing.tasks_of(job.offset + child):
                        reasons[index] = reason
        return reasons

    def _failed_children(self, job: ArrayJob) -> dict[int, str]:
        if job.size == 1:
            (desc,) = self.batch.describe_jobs(jobs=[job.id])["jobs"] or [{}]
            return {0: _reason(desc)} if desc.get("status") == "FAILED" else {}
        return self._children(job, "FAILED")

    def _children(self, job: ArrayJob, state: str) -> dict[int, str]:
        """The children of an array job in `state`, by index, with Batch's reason."""
        out: dict[int, str] = {}
        for page in self.batch.get_paginator("list_jobs").paginate(arrayJobId=job.id, jobStatus=state):
            for summary in page["jobSummaryList"]:
                index = summary.get("arrayProperties", {}).get("index")
                if index is None and ":" in summary["jobId"]:
                    index = int(summary["jobId"].rsplit(":", 1)[1])
                if index is not None:
                    out[int(index)] = _reason(summary)
        return out

    def cancel(self) -> None:
        for job in self._jobs():
            self.batch.terminate_job(jobId=job.id, reason=f"cancelled by batchsweep ({self.run.id})")
        self._next_poll = 0.0


def _reason(desc: dict[str, Any]) -> str:
    container = desc.get("container") or {}
    parts = [desc.get("statusReason"), container.get("reason")]
    if container.get("exitCode") is not None:
        parts.append(f"exit code {container['exitCode']}")
    return "; ".join(p for p in parts if p) or "failed on AWS Batch"
