"""What an AWS Batch run records: its resolved settings (run.json `engine`) and its submissions' array jobs
(engine.json). Below the engines, so that the AWS emulator's player reads a run through the same models as the
engine that wrote it (`RunRecord.engine_as`, `read_engine_record`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from batchsweep.store.record import EngineRecord, StoreAccess

STORE_PREFIX = "batchsweep"  # the run store's prefix in the stack's bucket: s3://BUCKET/batchsweep


class AwsEngineSettings(StoreAccess):
    """The AWS Batch engine's resolved settings: the spec's `aws:` block with the stack's outputs filled
    in."""

    stack: str | None = None
    bucket: str | None = None
    job_queue: str | None = None
    job_definition: str | None = None
    log_group: str | None = None
    image_uri: str | None = None
    prefix: str = STORE_PREFIX
    # which queue runs the tasks; None: a run recorded before it was (Spot, the default)
    spot: bool | None = None


class ArrayJob(BaseModel):
    """One SubmitJob of a submission: its id and the children (array indices) it holds."""

    model_config = ConfigDict(extra="allow")
    id: str
    offset: int  # the submission's child index of its first child
    size: int  # its children (1: a plain job, not an array)


class Submission(BaseModel):
    """One submit (the run's first, a resume's, a search round's): tasks per child, and its array jobs."""

    model_config = ConfigDict(extra="allow")
    n: int  # its number: submissions/<n>.json holds its task indices
    tasks_per_child: int = 1
    jobs: list[ArrayJob] = []
    submitted_at: float = 0.0


class AwsRecord(EngineRecord):
    """engine.json of an AWS Batch run: every submission's array jobs (written after each SubmitJob)."""

    submissions: list[Submission] = []
