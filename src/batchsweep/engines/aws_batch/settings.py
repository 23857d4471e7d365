"""AWS Batch settings, resolved and checked before anything is written: the stack's outputs, the bucket, the
task image, what the stack's roles may read; and the small store helpers every part of the engine uses."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from batchsweep.aws.record import STORE_PREFIX, AwsEngineSettings
from batchsweep.errors import AwsSetupError, SpecError
from batchsweep.model import input_parts
from batchsweep.store.core import Store

if TYPE_CHECKING:
    from batchsweep.aws.s3store import S3Backend
    from batchsweep.spec.schema import Spec

__all__ = ["STORE_PREFIX", "resolve_settings"]

log = logging.getLogger(__name__)


def _session(settings: AwsEngineSettings) -> Any:
    from batchsweep.aws.clients import make_session

    return make_session(profile=settings.profile, region=settings.region)


def resolve_settings(spec: Spec) -> tuple[AwsEngineSettings, dict[str, str]]:
    """The spec's `aws:` block with the stack's outputs filled in, checked (credentials, what the stack's
    roles may read, the bucket); and the stack's outputs ({} when the block names everything itself)."""
    from batchsweep.aws.clients import check_credentials, make_client, make_session

    aws = spec.aws
    session = make_session(profile=aws.profile, region=aws.region)
    check_credentials(session)
    found: dict[str, str | None] = {"bucket": aws.bucket, "job_queue": aws.job_queue,
                                    "job_definition": aws.job_definition, "log_group": aws.log_group,
                                    "image_uri": None}
    outputs: dict[str, str] = {}
    if not (aws.bucket and aws.job_queue and aws.job_definition):
        if not aws.stack:
            raise AwsSetupError(
                "aws: give `stack:` (from `batchsweep infra up`) or all of bucket, job_queue, job_definition"
            )
        from batchsweep.infra.stack import stack_outputs

        outputs = stack_outputs(aws.stack, session=session)
        for key, output in (
            ("bucket", "Bucket"),
            ("job_queue", "JobQueue"),
            ("job_definition", "JobDefinition"),
            ("log_group", "LogGroup"),
            ("image_uri", "ImageUri"),
        ):
            found[key] = found[key] or outputs.get(output)
        if spec.resources.gpus:
            if not outputs.get("GpuJobQueue"):
                raise AwsSetupError(f"resources.gpus: stack {aws.stack!r} has no GPU environment; "
                                    f"`batchsweep infra up --stack {aws.stack} --param EnableGpu=true`")
            # spot: false runs on on-demand instances, never on the Spot-only queue
            queue = "GpuJobQueue" if aws.spot else "GpuOnDemandJobQueue"
            if not aws.job_queue and not outputs.get(queue):
                raise AwsSetupError(
                    f"aws.spot: false with resources.gpus: stack {aws.stack!r} has no on-demand GPU "
                    f"queue yet (made before it existed); `batchsweep infra up --stack {aws.stack}` "
                    "adds it"
                )
            found["job_queue"] = aws.job_queue or outputs[queue]
            found["job_definition"] = aws.job_definition or outputs["GpuJobDefinition"]
        elif not aws.spot and not aws.job_queue:
            found["job_queue"] = outputs.get("OnDemandJobQueue") or found["job_queue"]
        _check_stack_access(spec, aws.stack, outputs, session=session)
    from botocore.exceptions import ClientError

    try:
        make_client("s3", session=session).head_bucket(Bucket=str(found["bucket"]))
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code")
        raise AwsSetupError(
            f"aws.bucket: bucket {found['bucket']!r} is not reachable ({code}); "
            "create the stack with `batchsweep infra up` or fix aws.bucket"
        ) from None
    if not outputs:  # the user's own Batch resources: the job definition names the image and the log group
        found["image_uri"], group = _own_job_definition(spec, session=session)
        found["log_group"] = aws.log_group or group
    # spot: which queue runs the tasks; the RUNNABLE advice and the cost follow it
    settings = AwsEngineSettings(profile=aws.profile, region=session.region_name,
                                 stack=aws.stack if outputs else None, **found, prefix=STORE_PREFIX,
                                 spot=bool(aws.spot))
    return settings, outputs


def _check_image(spec: Spec, outputs: dict[str, str], *, session: Any) -> None:
    """The stack's current image exists and was built with the spec's requirements (its tag carries their
    hash)."""
    from batchsweep.infra.image import requirements_hash, spec_requirements, tag_requirements_hash
    from batchsweep.infra.registry import image_exists

    requirements, origin = spec_requirements(spec)
    push = f"batchsweep image push {spec.spec_file or 'SPEC'}"
    if spec.aws.stack and spec.aws.stack != "batchsweep":
        push += f" --stack {spec.aws.stack}"
    repo, tag = outputs["ImageUri"].rsplit(":", 1)
    if not image_exists(session, outputs):
        raise AwsSetupError(
            f"no task image in {repo} yet; build and push one with `{push}` (needs docker or podman)"
        )
    if requirements and tag_requirements_hash(tag) != requirements_hash(requirements):
        raise AwsSetupError(
            f"the stack's task image ({tag}) was built without this sweep's requirements ({origin}); "
            f"build and push one that has them with `{push}`"
        )


BATCH_LOG_GROUP = "/aws/batch/job"  # where the awslogs driver writes when a job definition names no group


def _own_job_definition(spec: Spec, *, session: Any) -> tuple[str | None, str | None]:
    """The image and log group of the spec's own job definition (its newest ACTIVE revision unless it names
    one), after checking that the image has batchsweep's worker and the spec's requirements where that can be
    told: an image batchsweep built carries their hash in a tag (`image push SPEC --tag REPO`)."""
    from batchsweep.aws.clients import make_client

    name = str(spec.aws.job_definition)
    batch = make_client("batch", session=session)
    if name.startswith("arn:") or ":" in name:
        revisions = batch.describe_job_definitions(jobDefinitions=[name])["jobDefinitions"]
    else:
        revisions = [d for page in batch.get_paginator("describe_job_definitions").paginate(
            jobDefinitionName=name, status="ACTIVE") for d in page["jobDefinitions"]]
    revisions = [d for d in revisions if d.get("status", "ACTIVE") == "ACTIVE"]
    if not revisions:
        raise AwsSetupError(
            f"aws.job_definition: no ACTIVE job definition {name!r} in {session.region_name}; "
            "register one whose image `batchsweep image push SPEC --tag REPO` built"
        )
    definition = max(revisions, key=lambda d: int(d.get("revision", 0)))
    container = definition.get("containerProperties") or {}
    log_config = container.get("logConfiguration") or {"logDriver": "awslogs"}
    group = (log_config.get("options") or {}).get("awslogs-group", BATCH_LOG_GROUP) \
        if log_config.get("logDriver") == "awslogs" else None
    image = container.get("image")
    if image:
        _check_own_image(spec, f"{definition['jobDefinitionName']}:{definition.get('revision')}", str(image),
                         session=session)
    return image, group


def _check_own_image(spec: Spec, definition: str, image: str, *, session: Any) -> None:
    """The job definition's image exists (in ECR) and was built with the spec's requirements (a `bs-` tag
    carries their hash); an image batchsweep did not build is one warning, since nothing can be told of it."""
    from botocore.exceptions import ClientError

    from batchsweep.infra.image import ImageRef, requirements_hash, spec_requirements, tag_requirements_hash
    from batchsweep.infra.registry import ecr_image_tags

    ref = ImageRef.parse(image, field="image")
    push = f"batchsweep image push {spec.spec_file or 'SPEC'} --tag {ref.repository}"
    tags = [ref.tag] if ref.tag else []
    if ref.ecr is not None:
        try:
            held = ecr_image_tags(ref, session=session)
        except ClientError:  # a policy without ecr:DescribeImages on that repository: the tag alone tells
            held = tags
        if held is None:
            raise AwsSetupError(
                f"aws.job_definition {definition}: its image {image} is not in ECR; `{push}` builds "
                "and pushes it (then name it in a new revision of the job definition)"
            )
        tags = held
    built = [t for t in tags if t.startswith("bs-")]
    if not built:
        log.warning("aws.job_definition %s: its image %s was not built by batchsweep, so whether it has "
                    "batchsweep and this sweep's requirements is not checked; `%s` builds one that has them",
                    definition, image, push)
        return
    requirements, origin = spec_requirements(spec)
    if requirements and requirements_hash(requirements) not in {tag_requirements_hash(t) for t in built}:
        raise AwsSetupError(
            f"aws.job_definition {definition}: its image {image} was built without this sweep's "
            f"requirements ({origin}); `{push}` builds one that has them, then name it in a new "
            "revision of the job definition"
        )


def check_pinned_image(settings: AwsEngineSettings, spec: Spec, *, session: Any) -> None:
    """Before a run's later submission (resume, a search round): the image it pinned is still in ECR. The job
    definition revision names it by tag, and the repository's lifecycle keeps only the newest images; without
    it every child would fail to start (CannotPullContainerError) after being billed for the attempt."""
    from batchsweep.infra.image import ImageRef
    from batchsweep.infra.registry import ecr_image_tags

    ref = ImageRef.parse(settings.image_uri or "", field="image") if settings.image_uri else None
    if ref is None or ref.ecr is None or not ref.tag:  # not an ECR image by tag: nothing to ask
        return
    if ecr_image_tags(ref, session=session) is not None:
        return
    push = f"batchsweep image push {spec.spec_file or 'SPEC'}" + (
        f" --tag {ref}" if not settings.stack else
        f" --stack {settings.stack}" if settings.stack != "batchsweep" else "")
    why = " (the repository keeps its 10 newest images)" if settings.stack else ""
    raise AwsSetupError(
        f"the task image this run pinned ({ref.ecr[2]}:{ref.tag}) is no longer in ECR{why}; "
        f"`{push}` with the same batchsweep version and requirements rebuilds it under the same "
        "tag, or start a new run"
    )


def _check_stack_access(spec: Spec, stack: str, outputs: dict[str, str], *, session: Any) -> None:
    """What the stack's roles cannot read is refused before submit: `s3://` inputs outside the stack's
    readable prefixes (the job role), secrets outside its secrets prefix (the execution role)."""
    s3_inputs = sorted({src for t in _expand_refs(spec) for src, _ in map(input_parts, t)
                        if src.startswith("s3://")})
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
            raise SpecError(
                f"inputs: {url} is outside what the stack's tasks may read (ReadableS3Prefixes: "
                f"{current}); `batchsweep infra up --stack {stack} --param ReadableS3Prefixes={wanted}`"
            )
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


def _expand_refs(spec: Spec) -> Iterator[tuple[str, ...]]:
    """The inputs of every task. A search's trials are not known yet: its inputs may name `fixed` params
    only."""
    from batchsweep.planning import space

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
