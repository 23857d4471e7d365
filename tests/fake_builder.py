"""A recording image builder: plays docker, podman or buildah (by its file name) on PATH, for the image
tests."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

# Records argv (and stdin for login) in $FAKE_DOCKER_LOG, answers `docker info` unless
# FAKE_DOCKER_DAEMON=down, `pull` unless FAKE_DOCKER_OFFLINE is set, and `image inspect --format` with a
# digest, remembers built and `tag`ged references, keeps the last build context's Dockerfile and requirements,
# and on `push` puts a manifest (one per build) into the ECR that AWS_ENDPOINT_URL points at.
FAKE_BUILDER = """#!{python}
import json, os, sys
tool = os.path.basename(sys.argv[0])
args = sys.argv[1:]
entry = {{"tool": tool, "argv": args}}
if args[:1] == ["login"]:
    entry["stdin"] = sys.stdin.read()
with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
    log.write(json.dumps(entry) + "\\n")
if args[:1] == ["pull"] and os.environ.get("FAKE_DOCKER_OFFLINE"):
    sys.exit(1)
if args == ["info"]:
    sys.exit(1 if os.environ.get("FAKE_DOCKER_DAEMON") == "down" else 0)
if args[:3] == ["image", "inspect", "--format"]:  # the base's digest, as pulled
    print(args[-1].rsplit(":", 1)[0] + "@sha256:" + "c" * 64)
    sys.exit(0)
built = os.environ["FAKE_DOCKER_LOG"] + ".built"
known = open(built).read().split() if os.path.exists(built) else []
if args[:2] in (["image", "inspect"], ["image", "exists"]) or args[:3] == ["inspect", "--type", "image"]:
    sys.exit(0 if args[-1] in known else 1)
if args[:1] in (["build"], ["bud"]):
    with open(built, "a") as f:
        f.write(args[args.index("--tag") + 1] + "\\n")
    with open(os.path.join(args[-1], "Dockerfile")) as src, open(os.environ["FAKE_DOCKER_LOG"] + ".Dockerfile", "w") as dst:
        dst.write(src.read())
    reqs = os.path.join(args[-1], "batchsweep-requirements.txt")
    if os.path.exists(reqs):
        with open(reqs) as src, open(os.environ["FAKE_DOCKER_LOG"] + ".requirements", "w") as dst:
            dst.write(src.read())
if args[:1] == ["tag"]:
    with open(built, "a") as f:
        f.write(args[2] + "\\n")
if args[:1] == ["push"]:
    import boto3, hashlib
    repo_uri, tag = args[1].rsplit(":", 1)
    # One image per build: the tags pushed after a build name the same manifest, as a registry sees them.
    dockerfile = os.environ["FAKE_DOCKER_LOG"] + ".Dockerfile"
    digest = hashlib.sha256(open(dockerfile, "rb").read() if os.path.exists(dockerfile) else b"").hexdigest()
    manifest = {{"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {{"digest": "sha256:" + digest, "size": 1}}, "layers": []}}
    boto3.client("ecr").put_image(repositoryName=repo_uri.split("/", 1)[1], imageManifest=json.dumps(manifest), imageTag=tag)
"""  # noqa: E501


def install_fakes(bin_dir: Path, *names: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    for name in names:
        fake = bin_dir / name
        fake.write_text(FAKE_BUILDER.format(python=sys.executable))
        fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
