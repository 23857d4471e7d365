"""The AWS Batch engine: its checks and uploads before a run, and the run itself (submit, poll, logs)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchsweep.aws.record import AwsEngineSettings
from batchsweep.engines.aws_batch.logs import LogReader
from batchsweep.engines.aws_batch.polling import Poller
from batchsweep.engines.aws_batch.settings import (
    _check_image,
    _expand_refs,
    _s3,
    _session,
    resolve_settings,
)
from batchsweep.engines.aws_batch.submit import Submitter, _check_overrides_size
from batchsweep.engines.base import ship_inputs
from batchsweep.errors import AwsSetupError, SpecError
from batchsweep.spec.schema import Aws
from batchsweep.store.core import Store

if TYPE_CHECKING:
    from batchsweep.engines.base import EngineSettings
    from batchsweep.model import Task
    from batchsweep.report.cost import Durations, Estimate, RightSize
    from batchsweep.spec.schema import Spec
    from batchsweep.store.record import RunRecord

log = logging.getLogger(__name__)


class AwsBatchEngine(Submitter, Poller, LogReader):
    name = "aws-batch"
    # `aws:` is the one block the spec validates itself (with this same model): the commands that run before
    # any engine is chosen (estimate, content keys of s3:// inputs) read its region and profile.
    block = "aws"
    settings_model = Aws
    live_code = False  # every child unpacks the code package uploaded when the run started (a resume too)
    gpus = True
    priced = True  # Fargate's price table (engines/aws_batch/cost.py)
    local_python = False  # tasks run on the task image's Python
    packs_by_duration = True  # submit.py: tasks_per_child(task_seconds=run.record.median_task_s)

    @classmethod
    def check_resources(cls, spec: Spec) -> None:
        if not spec.resources.gpus:
            from batchsweep.aws import fargate

            fargate.check_pair(spec.resources.vcpus, spec.resources.memory_mib)

    @classmethod
    def estimate_cost(cls, spec: Spec, n_tasks: int, durations: Durations) -> Estimate | str:
        from batchsweep.engines.aws_batch.cost import estimate_for

        return estimate_for(spec, n_tasks, durations)

    @classmethod
    def run_cost(cls, record: RunRecord, durations_s: Sequence[float],
                 containers_s: Sequence[float] | None = None) -> Estimate | None:
        from batchsweep.engines.aws_batch.cost import run_cost

        return run_cost(record, durations_s, containers_s=containers_s)

    @classmethod
    def right_size(cls, spec: Spec, usage: Sequence[tuple[float, float, float]],
                   settings: EngineSettings | None = None) -> RightSize | None:
        from batchsweep.engines.aws_batch.cost import right_size_for

        return right_size_for(spec, usage)

    @classmethod
    def resolved(cls, settings: EngineSettings | Mapping[str, Any]) -> AwsEngineSettings:
        found = super().resolved(settings)
        assert isinstance(found, AwsEngineSettings)
        return found

    @classmethod
    def check(cls, spec: Spec, tasks: Sequence[Task]) -> AwsEngineSettings:
        from batchsweep.aws import fargate

        r = spec.resources
        if r.gpus != int(r.gpus):
            raise SpecError(
                f"resources.gpus: {r.gpus:g} — AWS Batch leases whole GPUs; use {max(1, round(r.gpus))}"
            )
        if r.gpus and r.vcpus != int(r.vcpus):
            raise SpecError(f"resources.vcpus: {r.vcpus:g} — GPU tasks run on EC2, which allots whole vCPUs; "
                            f"use {max(1, math.ceil(r.vcpus))}")
        if not r.gpus:
            fargate.check_pair(r.vcpus, r.memory_mib)
        _check_overrides_size(spec)
        _check_code(spec)
        if spec.search:
            list(_expand_refs(spec))  # SpecError when an input names a param only the trials will have
        settings, outputs = resolve_settings(spec)
        if outputs.get("ImageUri"):
            _check_image(spec, outputs, session=_session(settings))
        return settings

    @classmethod
    def key_environment(cls, spec: Spec, settings: EngineSettings) -> dict[str, Any]:
        """The container's image (its tag names its Dockerfile and requirements) and the spec's
        requirements."""
        from batchsweep.infra.image import requirements_hash, spec_requirements

        aws = cls.resolved(settings)
        requirements, _ = spec_requirements(spec)
        return {"image": aws.image_uri, "job_definition": aws.job_definition,
                "requirements": requirements_hash(requirements, full=True)}

    @classmethod
    def run_store(cls, settings: EngineSettings, default: Store) -> Store:
        aws = cls.resolved(settings)
        if not aws.bucket:
            raise AwsSetupError(
                "aws-batch: the S3 store is only known once the stack is read (not in a dry run)"
            )
        return Store.open(f"s3://{aws.bucket}/{aws.prefix}", aws_profile=aws.profile, aws_region=aws.region)

    @classmethod
    def prepare(cls, spec: Spec, store: Store, info: dict[str, Any]) -> dict[str, Any]:
        """Upload the code package and local inputs, content-addressed: only what S3 does not have yet.
        Everything is streamed from disk with the transfer manager (multipart), so a 6 GB input needs no 6 GB
        of memory."""
        import tempfile

        from batchsweep.aws import codepkg

        backend = _s3(store)
        with tempfile.TemporaryDirectory(prefix="batchsweep-pack-") as tmp:
            packed = Path(tmp) / "code.tar.gz"
            sha, contents = codepkg.pack_to_file(Path(info["code_dir"]), packed, exclude=spec.code.exclude,
                                                 include=spec.code.include,
                                                 max_mib=spec.code.max_mib)
            left_out = contents.left_out_line()
            if left_out:
                log.warning("code: left out of the package: %s", left_out)
            if not backend.exists(store.code_key(sha)):
                backend.upload_file(packed, store.code_key(sha))
        inputs = ship_inputs(spec, store)
        return {"code_sha256": sha, "inputs_map": inputs}


def _check_code(spec: Spec) -> None:
    """SpecError before anything is written when a file the code package would hold looks like a
    credential."""
    from batchsweep.aws import codepkg

    root = Path(spec.script_path.parent if spec.script_path else spec.base_dir)
    contents = codepkg.survey(root, exclude=spec.code.exclude, include=spec.code.include)
    if contents.total <= spec.code.max_mib * 2**20:  # over it, packing refuses it before reading a file
        codepkg.check_no_secrets(root, contents)
