"""A task's output from its child job's CloudWatch log streams (every attempt), filtered to that task."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from batchsweep.engines.aws_batch.core import AwsRun
from batchsweep.task.arrayslice import Slicing


class LogReader(AwsRun):
    def logs(self, index: int, *, stderr: bool = False) -> Iterator[str] | None:
        """A task's output from its child job's CloudWatch log streams (every attempt), filtered to that task:
        what a running task printed so far, or all a killed container's task printed before it died."""
        lines = self._task_lines(index)
        if lines is None:
            return None
        return (text + "\n" for from_stderr, text in lines if from_stderr == stderr)

    def last_output(self, index: int) -> str | None:
        """The last line the task printed (stdout or stderr), from CloudWatch."""
        from batchsweep.text import said

        last = None
        for _, text in self._task_lines(index) or ():
            if line := said(text):
                last = line
        return last

    def _task_lines(self, index: int) -> Iterator[tuple[bool, str]] | None:
        """(from stderr, line) of one task, in the order its container wrote them."""
        child_id, group = self._child_job_id(index), self.settings.log_group
        if child_id is None or not group:
            return None
        from batchsweep.aws.clients import make_client
        from batchsweep.task.logprefix import parse

        (desc,) = self.batch.describe_jobs(jobs=[child_id])["jobs"] or [{}]
        streams = _log_streams(desc)
        logs = make_client("logs", session=self.session)

        def lines() -> Iterator[tuple[bool, str]]:
            for stream in streams:
                for line in _log_lines(logs, group, stream):
                    parsed = parse(line)
                    if parsed is not None and parsed[0] == index:
                        yield parsed[1], parsed[2]

        return lines()

    def _child_job_id(self, index: int) -> str | None:
        for sub in reversed(self._record().submissions):
            slicing = Slicing.from_record(
                self.run.store.read_json(self.run.store.submission_key(self.run.id, sub.n))
            )
            child = slicing.child_of(index)
            if child is None:
                continue
            for job in sub.jobs:
                if job.offset <= child < job.offset + job.size:
                    return job.id if job.size == 1 else f"{job.id}:{child - job.offset}"
        return None


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
