"""AWS Batch settings, resolved and checked before anything is written: the stack's outputs, the bucket, the
task image, what the stack's roles may read; and the small store helpers every part of the engine uses."""

from __future__ import annotations

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


def _session(settings: AwsEngineSettings) -> Any:
    from batchsweep.aws.clients import make_session

    return make_session(profile=settings.profile, region=settings.region)


def resolve_settings(spec: Spec) -> tuple[AwsEngineSettings, dict[str, str]]:
    """The spec's `aws:` block with the stack's outputs filled in, checked (credentials, what the stack's roles may
    read, the bucket); and the stack's outputs ({} when the block names everything itself)."""
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
            raise AwsSetupError("aws: give `stack:` (from `batchsweep infra up`) or all of bucket, job_queue, job_definition")
        from batchsweep.infra.stack import stack_outputs

        outputs = stack_outputs(aws.stack, session=session)
        for key, output in (("bucket", "Bucket"), ("job_queue", "JobQueue"), ("job_definition", "JobDefinition"),
                            ("log_group", "LogGroup"), ("image_uri", "ImageUri")):
            found[key] = found[key] or outputs.get(output)
        if spec.resources.gpus:
            if not outputs.get("GpuJobQueue"):
                raise AwsSetupError(f"resources.gpus: stack {aws.stack!r} has no GPU environment; "
                                    f"`batchsweep infra up --stack {aws.stack} --param EnableGpu=true`")
            # spot: false runs on on-demand instances, never on the Spot-only queue
            queue = "GpuJobQueue" if aws.spot else "GpuOnDemandJobQueue"
            if not aws.job_queue and not outputs.get(queue):
                raise AwsSetupError(f"aws.spot: false with resources.gpus: stack {aws.stack!r} has no on-demand GPU "
                                    f"queue yet (made before it existed); `batchsweep infra up --stack {aws.stack}` "
                                    "adds it")
            found["job_queue"] = aws.job_queue or outputs[queue]
            found["job_definition"] = aws.job_definition or outputs["GpuJobDefinition"]
        elif not aws.spot and not aws.job_queue:
            found["job_queue"] = outputs.get("OnDemandJobQueue") or found["job_queue"]
        _check_stack_access(spec, aws.stack, outputs, session=session)
    # spot: which queue runs the tasks; the RUNNABLE advice and the cost follow it
    settings = AwsEngineSettings(profile=aws.profile, region=session.region_name, stack=aws.stack, **found,
                                 prefix=STORE_PREFIX, spot=bool(aws.spot))
    from botocore.exceptions import ClientError

    try:
        make_client("s3", session=session).head_bucket(Bucket=settings.bucket)
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code")
        raise AwsSetupError(
            f"aws.bucket: bucket {settings.bucket!r} is not reachable ({code}); "
            "create the stack with `batchsweep infra up` or fix aws.bucket"
        ) from None
    return settings, outputs


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


def check_pinned_image(settings: AwsEngineSettings, spec: Spec, *, session: Any) -> None:
    """Before a run's later submission (resume, a search round): the image it pinned is still in ECR. The job
    definition revision names it by tag, and the repository's lifecycle keeps only the newest images; without it
    every child would fail to start (CannotPullContainerError) after being billed for the attempt."""
    import re

    from botocore.exceptions import ClientError

    from batchsweep.aws.clients import make_client

    found = re.fullmatch(r"\d+\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?/([^:@]+):([^:@]+)",
                         settings.image_uri or "")
    if found is None:  # not an ECR image of a stack (a job definition of the user's own): nothing to ask
        return
    repository, tag = found.groups()
    try:
        make_client("ecr", session=session).describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
        return
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("ImageNotFoundException", "RepositoryNotFoundException"):
            raise
    push = f"batchsweep image push {spec.spec_file or 'SPEC'}" + (
        f" --stack {settings.stack}" if settings.stack and settings.stack != "batchsweep" else "")
    raise AwsSetupError(f"the task image this run pinned ({repository}:{tag}) is no longer in ECR (the repository "
                        f"keeps its 10 newest images); `{push}` with the same batchsweep version and requirements "
                        "rebuilds it under the same tag, or start a new run")


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


def _expand_refs(spec: Spec) -> Iterator[tuple[str, ...]]:
    """The inputs of every task. A search's trials are not known yet: its inputs may name `fixed` params only."""
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
