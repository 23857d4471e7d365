"""The task image in a registry: pushed to ECR (a stack's repository, or any `REPOSITORY:TAG` without a
stack), looked up there, and tagged again without moving a layer. Building it is
`batchsweep.infra.image`'s."""

from __future__ import annotations

import base64
import subprocess
from typing import Any

from batchsweep.aws import clients  # make_client looked up per call, so a test's recorder sees every client
from batchsweep.errors import AwsSetupError, SweepError
from batchsweep.infra.image import (
    DEFAULT_BASE,
    Builder,
    Echo,
    ImageRef,
    build_ref,
    build_tagged,
    check_exit,
    choose_builder,
    named_ref,
    pin_base,
    ref_in,
    ref_of,
    run_cli,
)


def ecr_image_tags(ref: ImageRef, *, session: Any) -> list[str] | None:
    """The tags ECR holds for the image `ref` names (by tag or digest); None when ECR has no such image.
    `ref` must be an ECR image (`ref.ecr`)."""
    from botocore.exceptions import ClientError

    account, region, name = ref.ecr or ("", "", "")
    image_id = {"imageDigest": ref.digest} if ref.digest else {"imageTag": ref.tag or "latest"}
    ecr = clients.make_client("ecr", session=session, region=region)
    try:
        found = ecr.describe_images(registryId=account, repositoryName=name, imageIds=[image_id])[
            "imageDetails"
        ]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in (
            "ImageNotFoundException",
            "RepositoryNotFoundException",
        ):
            return None
        raise
    return [str(t) for detail in found for t in detail.get("imageTags") or []] if found else None


def image_exists(session: Any, outputs: dict[str, str], *, tag: str | None = None) -> bool:
    """Whether ECR holds the stack's image (or `tag` in the stack's repository)."""
    from botocore.exceptions import ClientError

    repo_uri, current_tag = outputs["ImageUri"].rsplit(":", 1)
    ecr = clients.make_client("ecr", session=session)
    try:
        found = ecr.describe_images(
            repositoryName=repo_uri.split("/", 1)[1], imageIds=[{"imageTag": tag or current_tag}]
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in (
            "ImageNotFoundException",
            "RepositoryNotFoundException",
        ):
            return False
        raise
    return bool(found.get("imageDetails"))


def push_to(requirements: list[str] | None, target: ImageRef, *, session: Any, echo: Echo,
            base: str = DEFAULT_BASE, builder: str | None = None) -> str:
    """Build and push the image to `target`'s repository, without a stack (see `build_to`). The content-hash
    tag is always pushed: it is how a run finds out that an image has its spec's requirements, whatever the
    job definition calls it. An ECR image that already has the content tag is not rebuilt: the other tag is
    added to it in ECR. Another registry needs the builder logged in already (`docker login`)."""
    if target.digest:
        raise SweepError(f"--tag {target}: name a tag to push to, not a digest")
    chosen, base = _pinned(base, builder, echo=echo)
    content = ref_in(target.repository, requirements, base=base)
    named = named_ref(target, content)
    content_tag = content.rsplit(":", 1)[1]
    if target.ecr is not None and session is not None:
        tags = ecr_image_tags(ImageRef(target.repository, content_tag), session=session)
        if tags is not None:
            if named != content and target.tag not in tags:
                _ecr_add_tag(target, content_tag, session=session)
                echo(f"image {content} already in ECR; tagged it {target.tag}")
            else:
                echo(f"image {named} already in ECR; nothing to push")
            return named
    chosen = chosen or choose_builder(builder)
    build_tagged(requirements, content, named, chosen, echo=echo, base=base)
    if target.ecr is not None:
        _login(chosen, session=session, echo=echo, region=target.ecr[1])
    for ref in dict.fromkeys([content, named]):
        echo(f"pushing {ref}")
        check_exit(run_cli(chosen.push_argv(ref)), f"{chosen.name} push")
    return named


def _ecr_add_tag(target: ImageRef, content_tag: str, *, session: Any) -> None:
    """Tag an image ECR holds under another tag too: its manifest put again (no layer moves)."""
    account, region, name = target.ecr or ("", "", "")
    ecr = clients.make_client("ecr", session=session, region=region)
    (found,) = ecr.batch_get_image(registryId=account, repositoryName=name,
                                   imageIds=[{"imageTag": content_tag}])["images"][:1]
    ecr.put_image(registryId=account, repositoryName=name, imageManifest=found["imageManifest"],
                  imageTag=str(target.tag))


def push(requirements: list[str] | None, *, session: Any, outputs: dict[str, str], echo: Echo,
         base: str = DEFAULT_BASE, builder: str | None = None) -> str:
    """Build and push the image unless ECR already has its tag; return its reference `URI:TAG`."""
    chosen, base = _pinned(base, builder, echo=echo)
    ref = ref_of(requirements, outputs, base=base)
    if image_exists(session, outputs, tag=ref.rsplit(":", 1)[1]):
        echo(f"image {ref} already in ECR; nothing to push")
        return ref
    chosen = chosen or choose_builder(builder)
    build_ref(requirements, ref, chosen, echo=echo, base=base)
    _login(chosen, session=session, echo=echo)
    echo(f"pushing {ref}")
    check_exit(run_cli(chosen.push_argv(ref)), f"{chosen.name} push")
    return ref


def _pinned(base: str, builder: str | None, *, echo: Echo) -> tuple[Builder | None, str]:
    """The builder, when there is one (an image ECR already has needs none), and the base pinned through
    it."""
    try:
        chosen: Builder | None = choose_builder(builder)
    except SweepError:
        if builder is not None:
            raise
        chosen = None  # choose_builder says why once a build turns out to be needed
    return chosen, pin_base(base, chosen, echo=echo)


def _login(builder: Builder, *, session: Any, echo: Echo, region: str | None = None) -> None:
    ecr = clients.make_client("ecr", session=session, region=region)
    data = ecr.get_authorization_token()["authorizationData"][0]
    user, password = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
    registry = data["proxyEndpoint"].removeprefix("https://")
    echo(f"logging in to {registry}")
    # The password goes through stdin, never argv: argv is visible to every local user.
    result = subprocess.run(
        [builder.path, "login", "--username", user, "--password-stdin", registry],
        input=password.encode(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False,
    )
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip().splitlines()
        raise AwsSetupError(f"{builder.name} login to {registry} failed: "
                            f"{detail[-1] if detail else f'exit code {result.returncode}'}")
