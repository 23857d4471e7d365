"""The commands for the AWS side: `infra` (the stack), `image` (the task image) and `doctor`.

Handlers return the exit code; bad input raises SweepError, which the main CLI prints
on one line (exit 2).
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any

from batchsweep.errors import AwsSetupError, SweepError

DEFAULT_STACK = "batchsweep"


def _aws_errors(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """AWS refusing a call (permissions, limits, a resource in use) is not a bug: one line, no traceback."""

    @functools.wraps(handler)
    def wrapper(args: argparse.Namespace) -> int:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return handler(args)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise AwsSetupError(
                f"AWS refused {exc.operation_name}: {error.get('Code')}: {error.get('Message')}"
            ) from None
        except BotoCoreError as exc:
            raise AwsSetupError(f"AWS call failed: {exc}") from None

    return wrapper


def register(subparsers: Any) -> None:
    aws = argparse.ArgumentParser(add_help=False)
    aws.add_argument(
        "--stack", default=DEFAULT_STACK, help=f"CloudFormation stack name (default: {DEFAULT_STACK})"
    )
    aws.add_argument("--profile", help="AWS profile (default: the usual AWS resolution)")
    aws.add_argument("--region", help="AWS region (default: the profile's or AWS_REGION)")

    infra = subparsers.add_parser(
        "infra", help="the AWS stack: bucket, image repository, roles, compute, queue"
    )
    actions = infra.add_subparsers(dest="infra_command", metavar="{template,up,status,down}", required=True)
    actions.add_parser("template", help="print the CloudFormation template").set_defaults(
        func=_infra_template
    )
    up = actions.add_parser("up", parents=[aws], help="create or update the stack, print its outputs")
    up.add_argument("--param", action="append", default=[], metavar="K=V",
                    help="a stack parameter, e.g. MaxVcpus=64 (repeatable; others keep their current values)")
    up.set_defaults(func=_infra_up)
    actions.add_parser("status", parents=[aws], help="stack, queue, compute environment and image state") \
        .set_defaults(func=_infra_status)
    down = actions.add_parser("down", parents=[aws], help="delete the stack")
    down.add_argument("--force", action="store_true", help="terminate active jobs instead of refusing")
    down.add_argument(
        "--delete-data", action="store_true", help="also delete every object in the bucket and every image"
    )
    down.set_defaults(func=_infra_down)

    image = subparsers.add_parser("image", help="the task image in the stack's ECR repository")
    image_actions = image.add_subparsers(
        dest="image_command", metavar="{dockerfile,build,push}", required=True
    )
    reqs = argparse.ArgumentParser(add_help=False)
    reqs.add_argument(
        "spec",
        nargs="?",
        metavar="SPEC",
        help="a sweep.yaml: its `requirements:` (or the requirements.txt beside its script) go into the "
        "image, and its aws: block names the stack",
    )
    reqs.add_argument(
        "--requirements",
        metavar="FILE",
        help="pip requirements to install into the image (instead of SPEC's)",
    )
    reqs.add_argument("--base", metavar="IMAGE", help="the base image, a Python image with pip "
                      "(default: the stock slim Python image of this Python's version)")
    builder = argparse.ArgumentParser(add_help=False)
    builder.add_argument(
        "--builder",
        choices=("docker", "podman", "buildah"),
        help="the image builder (default: docker if its daemon answers, else podman, else buildah)",
    )
    # The image commands take their stack from SPEC's aws: block unless given here.
    image_aws = argparse.ArgumentParser(add_help=False)
    image_aws.add_argument(
        "--stack", help=f"CloudFormation stack name (default: SPEC's aws.stack, else {DEFAULT_STACK})"
    )
    image_aws.add_argument(
        "--profile", help="AWS profile (default: SPEC's aws.profile, else the usual AWS resolution)"
    )
    image_aws.add_argument(
        "--region", help="AWS region (default: SPEC's aws.region, else the profile's or AWS_REGION)"
    )
    # Without a stack (your own bucket, queue and job definition): the repository to build and push to.
    image_aws.add_argument(
        "--tag",
        metavar="REPO[:TAG]",
        help="build/push to this repository (ECR or any registry) instead of the stack's; its "
        "content-hash tag always, TAG too when given; no stack needed",
    )
    image_actions.add_parser("dockerfile", parents=[reqs], help="print the generated Dockerfile") \
        .set_defaults(func=_image_dockerfile)
    image_actions.add_parser(
        "build", parents=[reqs, builder, image_aws], help="build the image (skipped when unchanged)"
    ).set_defaults(func=_image_build)
    image_actions.add_parser(
        "push", parents=[reqs, builder, image_aws], help="build and push the image, point the stack at it"
    ).set_defaults(func=_image_push)

    doctor = subparsers.add_parser("doctor", parents=[aws], help="check everything a run on AWS Batch needs")
    doctor.set_defaults(func=_doctor)


def parse_params(pairs: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SweepError(f"--param {pair!r}: expected KEY=VALUE, e.g. --param MaxVcpus=64")
        params[key.strip()] = value
    return params


def _session(args: argparse.Namespace) -> Any:
    from batchsweep.aws.clients import check_credentials, make_session

    session = make_session(profile=args.profile, region=args.region)
    check_credentials(session)
    return session


def _requirements(args: argparse.Namespace) -> list[str] | None:
    """The requirements to install: --requirements FILE, else SPEC's. Fills in the stack, profile and region
    from SPEC's aws: block where the command line left them out."""
    from batchsweep.infra.image import read_requirements, spec_requirements

    spec = None
    if getattr(args, "spec", None):
        from batchsweep.spec.reader import load

        spec = load(args.spec)
        if hasattr(args, "stack"):
            args.stack = args.stack or spec.aws.stack
            args.profile = args.profile or spec.aws.profile
            args.region = args.region or spec.aws.region
    if hasattr(args, "stack"):
        args.stack = args.stack or DEFAULT_STACK
    if args.requirements:
        if spec is not None and (spec.requirements or spec_requirements(spec)[0]):
            raise SweepError(f"--requirements {args.requirements}: {args.spec} names its own requirements; "
                             "give one or the other")
        return read_requirements(args.requirements)
    if spec is not None:
        return spec_requirements(spec)[0] or None
    return None


def _infra_template(args: argparse.Namespace) -> int:
    from batchsweep.infra.template import template_text

    print(template_text(), end="")
    return 0


@_aws_errors
def _infra_up(args: argparse.Namespace) -> int:
    from batchsweep.infra import stack
    from batchsweep.infra.template import check_params

    params = parse_params(args.param)
    check_params(params)  # before credentials: a typo should not need AWS
    outputs = stack.up(args.stack, params, session=_session(args), echo=print)
    width = max(map(len, outputs), default=0)
    print(f"stack {args.stack} outputs:")
    for key, value in outputs.items():
        print(f"  {key:<{width}}  {value}")
    return 0


@_aws_errors
def _infra_status(args: argparse.Namespace) -> int:
    from batchsweep.infra import stack

    stack.status(args.stack, session=_session(args), echo=print)
    return 0


@_aws_errors
def _infra_down(args: argparse.Namespace) -> int:
    from batchsweep.infra import stack

    stack.down(args.stack, force=args.force, delete_data=args.delete_data, session=_session(args), echo=print)
    return 0


def _base(args: argparse.Namespace) -> str:
    from batchsweep.infra.image import DEFAULT_BASE

    return str(args.base or DEFAULT_BASE)


def _image_dockerfile(args: argparse.Namespace) -> int:
    from batchsweep.infra.image import current_dockerfile

    print(current_dockerfile(_requirements(args), base=_base(args)), end="")
    return 0


@_aws_errors
def _image_build(args: argparse.Namespace) -> int:
    from batchsweep.infra import image, stack

    requirements = _requirements(args)
    if args.tag:  # no stack, no AWS call: a build is local
        print(image.build_to(requirements, image.ImageRef.parse(args.tag), echo=print, base=_base(args),
                             builder=args.builder))
        return 0
    session = _session(args)
    print(image.build(requirements, outputs=stack.stack_outputs(args.stack, session=session), echo=print,
                      base=_base(args), builder=args.builder))
    return 0


@_aws_errors
def _image_push(args: argparse.Namespace) -> int:
    from batchsweep.infra import image, registry, stack

    requirements = _requirements(args)
    if args.tag:
        target = image.ImageRef.parse(args.tag)
        ref = registry.push_to(
            requirements,
            target,
            session=_session(args) if target.ecr else None,
            echo=print,
            base=_base(args),
            builder=args.builder,
        )
        print(f"name it as the image of your job definition (aws.job_definition), e.g. a new revision by "
              f"`aws batch register-job-definition` with \"image\": \"{ref}\"")
        print(ref)
        return 0
    session = _session(args)
    outputs = stack.stack_outputs(args.stack, session=session)
    ref = registry.push(requirements, session=session, outputs=outputs, echo=print, base=_base(args),
                     builder=args.builder)
    if outputs["ImageUri"] != ref:
        # The job definitions name the image; a new tag means a new job definition revision.
        print(f"pointing stack {args.stack} at {ref}")
        stack.up(args.stack, {"ImageTag": ref.rsplit(":", 1)[1]}, session=session, echo=print)
    print(ref)
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from batchsweep.infra.doctor import doctor

    return doctor(args.stack, profile=args.profile, region=args.region, echo=print)
