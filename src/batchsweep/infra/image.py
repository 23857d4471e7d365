"""The task image: a generated Dockerfile, a content-hash tag and a build (docker, podman or buildah); its
push to ECR is `batchsweep.infra.registry`'s.

The tag is a hash of the Dockerfile, which spells out the base image, the user's
requirements and the batchsweep version, plus a hash of the requirements alone (so a run
can check the stack's image has its spec's requirements): an unchanged image is never
rebuilt or pushed. The builder is driven through its CLI with argument lists (no shell).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from batchsweep.errors import SpecError, SweepError
from batchsweep.store.provenance import batchsweep_version

if TYPE_CHECKING:
    from batchsweep.spec.schema import Spec

Echo = Callable[[str], None]

# Public ECR mirrors Docker Hub's official images without its pull rate limit.
# The image's Python matches the one submitting the run, so pickled params and
# `function:` sweeps behave as they do locally.
DEFAULT_BASE = f"public.ecr.aws/docker/library/python:{sys.version_info.major}.{sys.version_info.minor}-slim"
PLATFORM = "linux/amd64"  # Fargate Spot runs x86_64 only
DOCKER_INFO_TIMEOUT_S = 20.0  # a daemon that does not answer `docker info` by then is not used
REQUIREMENTS_FILE = "batchsweep-requirements.txt"  # in the build context, next to the Dockerfile


def read_requirements(path: str | Path, *, field: str = "--requirements") -> list[str]:
    """Lines of a requirements file, without blanks and comments; `-r other.txt` includes are read in place.

    What the image build cannot see is refused: editable installs, constraint files and local paths."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SweepError(f"{field} {path}: cannot read it ({exc.strerror})") from None
    lines: list[str] = []
    for number, raw in enumerate(text.replace("\\\n", " ").splitlines(), 1):
        line = " ".join(raw.split(" #")[0].split())
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise SweepError(f"{field} {path} line {number}: {exc}; fix the quoting") from None
        if words[0] in ("-r", "--requirement") and len(words) == 2:
            lines += read_requirements(path.parent / words[1], field=field)
            continue
        if words[0].startswith(("-r", "--requirement=")) and len(words) == 1:
            lines += read_requirements(
                path.parent / words[0].removeprefix("--requirement=").removeprefix("-r"), field=field
            )
            continue
        if words[0] in ("-e", "--editable", "-c", "--constraint") or words[0].startswith(
            (".", "/", "file:", "~")
        ):
            raise SweepError(
                f"{field} {path} line {number}: {line!r} names a local path, which the image build "
                "cannot see; publish the package or list its own requirements instead"
            )
        lines.append(line)
    return lines


def spec_requirements(spec: Spec) -> tuple[list[str], str]:
    """The pip requirements a spec's tasks need in the image, and where they came from ("" when none).

    `requirements:` is a file relative to the spec or a list of specifiers; without it, a
    `requirements.txt` beside the script (beside the spec for `function:` sweeps) is used. A spec with `stop:`
    needs Optuna in the task image (the worker takes the stop decision): it is added when not listed."""
    found, source = _listed_requirements(spec)
    listed = found
    if spec.stop is not None and not any(re.match(r"optuna\b", r.strip(), re.I) for r in found):
        found, source = [*found, OPTUNA], source or "stop: in the spec (Optuna decides in the task)"
    if spec_metrics_mlflow(spec):
        names = {
            re.split(r"[^A-Za-z0-9_.-]", r.strip(), maxsplit=1)[0].lower().replace("_", "-") for r in found
        }
        extra = [] if "mlflow" in names else [r for r in MLFLOW if r.split(">")[0] not in names]
        if extra:
            found, source = (
                [*found, *extra],
                source or "metrics: {mlflow: true} in the spec (the worker reads MLflow)",
            )
    added = found[len(listed):]
    if added and hash_locked(listed):
        raise SpecError(
            f"requirements: {source} is hash-locked (--hash), so pip would refuse the "
            f"{', '.join(added)} batchsweep adds for this spec; list {' and '.join(added)} there, pinned "
            "with their hashes (e.g. in the .in file of `pip-compile --generate-hashes`)"
        )
    return found, source


def hash_locked(requirements: list[str]) -> bool:
    """Whether pip installs these requirements in hash-checking mode (`--hash=` on a line, or
    `--require-hashes`): then every requirement must be pinned with `==` and its hashes."""
    return any(line.startswith("--require-hashes") or " --hash" in f" {line}" for line in requirements)


def spec_metrics_mlflow(spec: Spec) -> bool:
    from batchsweep.spec.schema import MetricsFromMlflow

    return isinstance(spec.metrics, MetricsFromMlflow)


# What the worker needs to read a task's MLflow store (the `mlflow` extra; the full `mlflow` package has
# them).
MLFLOW = ["mlflow-skinny>=2.10", "sqlalchemy>=1.4", "alembic>=1.8"]


OPTUNA = "optuna>=3.5"


def _listed_requirements(spec: Spec) -> tuple[list[str], str]:
    value = spec.requirements
    if isinstance(value, list):
        return [item.strip() for item in value], "requirements: in the spec"
    if isinstance(value, str):
        path = spec.base_dir / value
        return read_requirements(path, field="requirements:"), str(path)
    beside = (spec.script_path.parent if spec.script_path else spec.base_dir) / "requirements.txt"
    if beside.is_file():
        return read_requirements(beside, field="requirements:"), str(beside)
    return [], ""


def requirements_text(requirements: list[str]) -> str:
    """The requirements.txt that goes into the build context: the lines as read, includes expanded."""
    return "".join(f"{line}\n" for line in requirements)


def requirements_hash(requirements: list[str] | None, *, full: bool = False) -> str | None:
    """sha256 of the requirements.txt (12 hex digits unless `full`); None when there are none."""
    if not requirements:
        return None
    digest = hashlib.sha256(requirements_text(requirements).encode()).hexdigest()
    return digest if full else digest[:12]


def tag_requirements_hash(tag: str) -> str | None:
    """The requirements hash an image tag carries (`bs-<image>-r<requirements>`), None when it has none."""
    parts = tag.split("-")
    return parts[2][1:] if len(parts) == 3 and parts[0] == "bs" and parts[2].startswith("r") else None


def source_checkout() -> Path | None:
    """The project root when batchsweep runs from a source checkout (e.g. `pip install -e .`), else None."""
    root = Path(__file__).resolve().parents[3]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "batchsweep"' in pyproject.read_text(
        encoding="utf-8", errors="replace"
    ):
        return root
    return None


def source_hash(root: Path) -> str:
    """sha256 of the package's source files: what a wheel built from the checkout would contain."""
    h = hashlib.sha256()
    for path in sorted([root / "pyproject.toml", *(root / "src" / "batchsweep").rglob("*")]):
        if path.is_file() and "__pycache__" not in path.parts:
            h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def dockerfile_text(requirements: list[str] | None, *, base: str = DEFAULT_BASE, version: str | None = None,
                    wheel: str | None = None, source_sha256: str | None = None) -> str:
    """The Dockerfile. From a release it installs batchsweep from PyPI; from a source checkout it installs
    `wheel`, built from the checkout into the build context, and names the source's hash so the tag (a hash of
    this text) changes with the code. The requirements go in as a requirements.txt in the build context (so
    pip reads specifiers, markers and options exactly as from a file); this text lists them and their hash."""
    version = version or batchsweep_version()
    pip = ["pip", "install", "--no-cache-dir"]
    lines = [
        f"# Generated by batchsweep {version}: the task image for AWS Batch.",
        "# Its tag is a hash of this text: change a line and `batchsweep image push` rebuilds it.",
        f"ARG BASE={base}",
        "FROM ${BASE}",
        "ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1",
    ]
    if wheel:
        lines += [
            f"# batchsweep from its source checkout, sha256 {source_sha256}",
            f"COPY {wheel} /tmp/{wheel}",
            f"RUN {json.dumps([*pip, f'/tmp/{wheel}'])}",
        ]
    else:
        # Exec form: no shell between the specifiers and pip.
        lines.append(f"RUN {json.dumps([*pip, f'batchsweep=={version}'])}")
    if requirements:
        lines += [
            f"# The sweep's requirements.txt (beside this file in the build context), sha256 "
            f"{requirements_hash(requirements, full=True)}:",
            *(f"#   {line}" for line in requirements),
            f"COPY {REQUIREMENTS_FILE} /tmp/{REQUIREMENTS_FILE}",
            f"RUN {json.dumps([*pip, '-r', f'/tmp/{REQUIREMENTS_FILE}'])}",
        ]
    lines += [
        # Tasks run unprivileged; the worker writes only in its own working directory.
        'RUN ["useradd", "--create-home", "--uid", "1000", "task"]',
        "USER task",
        "WORKDIR /home/task",
        'CMD ["python", "-m", "batchsweep.worker"]',
    ]
    return "\n".join(lines) + "\n"


def image_tag(dockerfile: str, requirements: list[str] | None = None) -> str:
    """`bs-<hash of the Dockerfile>`, plus `-r<hash of the requirements>` when there are any, so a run can
    tell from the stack's current tag alone whether its image was built with the spec's requirements."""
    tag = "bs-" + hashlib.sha256(dockerfile.encode()).hexdigest()[:16]
    reqs = requirements_hash(requirements)
    return f"{tag}-r{reqs}" if reqs else tag


def repository_uri(outputs: dict[str, str]) -> str:
    """`ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME`, from the stack's ImageUri output."""
    return outputs["ImageUri"].rsplit(":", 1)[0]


_ECR = re.compile(r"(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/([^:@]+)")


@dataclass(frozen=True)
class ImageRef:
    """An image reference split as registries need it: `repository` (with its registry), a `tag` or a
    `digest`."""

    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, ref: str, *, field: str = "--tag") -> ImageRef:
        """`REPOSITORY[:TAG]` or `REPOSITORY@sha256:DIGEST`; a registry's port (`host:5000/repo`) is no
        tag."""
        repository, at, digest = ref.partition("@")
        slash = repository.rfind("/")
        colon = repository.rfind(":")
        tag = None
        if colon > slash:
            repository, tag = repository[:colon], repository[colon + 1:]
        if not repository or (at and not digest) or tag == "" or " " in ref:
            raise SweepError(f"{field} {ref!r}: expected REPOSITORY[:TAG], e.g. "
                             "123456789012.dkr.ecr.us-east-1.amazonaws.com/my-sweeps:v1")
        return cls(repository, tag, digest or None)

    @property
    def ecr(self) -> tuple[str, str, str] | None:
        """(account, region, repository name) of an Amazon ECR repository, else None."""
        found = _ECR.fullmatch(self.repository)
        return (found.group(1), found.group(2), found.group(3)) if found else None

    def __str__(self) -> str:
        return (
            self.repository
            + (f":{self.tag}" if self.tag else "")
            + (f"@{self.digest}" if self.digest else "")
        )


def _wheel_name() -> str:
    return f"batchsweep-{batchsweep_version()}-py3-none-any.whl"


def current_dockerfile(requirements: list[str] | None, *, base: str = DEFAULT_BASE) -> str:
    """The Dockerfile for this installation: from PyPI for a release, from the source for a checkout."""
    root = source_checkout()
    if root is None:
        return dockerfile_text(requirements, base=base)
    return dockerfile_text(requirements, base=base, wheel=_wheel_name(), source_sha256=source_hash(root))


# -- builders -------------------------------------------------------------------------------------
BUILDERS = ("docker", "podman", "buildah")
INSTALL_HINT = (
    "install podman (Debian/Ubuntu: `sudo apt-get install podman`; Fedora: `sudo dnf install podman`; "
    "macOS: `brew install podman`, then `podman machine init && podman machine start`) or start Docker"
)


@dataclass(frozen=True)
class Builder:
    """An image builder driven through its CLI with argument lists. podman and buildah read their own
    configuration (containers/storage.conf, containers.conf; BUILDAH_ISOLATION), which batchsweep leaves
    alone."""

    name: str
    path: str

    def has(self, ref: str) -> bool:
        argv = {"docker": ["image", "inspect", ref], "podman": ["image", "exists", ref],
                "buildah": ["inspect", "--type", "image", ref]}[self.name]
        return run_cli([self.path, *argv], quiet=True) == 0

    def build_argv(self, ref: str, context: str, *, base: str) -> list[str]:
        verb = ["bud"] if self.name == "buildah" else ["build"]
        # Docker's image format for podman and buildah too: what every registry and runtime accepts.
        fmt = [] if self.name == "docker" else ["--format", "docker"]
        return [
            self.path,
            *verb,
            "--platform",
            PLATFORM,
            *fmt,
            "--build-arg",
            f"BASE={base}",
            "--tag",
            ref,
            context,
        ]

    def digest_of(self, ref: str) -> str | None:
        """`REPOSITORY@sha256:…` of a local image as pulled from its registry; None when the builder cannot
        say."""
        if self.name == "buildah":
            return None
        result = subprocess.run([self.path, "image", "inspect", "--format", "{{index .RepoDigests 0}}", ref],
                                capture_output=True, text=True, check=False)
        found = result.stdout.strip() if result.returncode == 0 else ""
        return found if re.fullmatch(r"\S+@sha256:[0-9a-f]{64}", found) else None

    def pull_argv(self, ref: str) -> list[str]:
        return [self.path, "pull", "--platform", PLATFORM, ref]

    def tag_argv(self, ref: str, other: str) -> list[str]:
        return [self.path, "tag", ref, other]

    def push_argv(self, ref: str) -> list[str]:
        return [self.path, "push", ref, *([f"docker://{ref}"] if self.name == "buildah" else [])]


def choose_builder(forced: str | None = None) -> Builder:
    """Docker when its daemon answers, else podman, else buildah; `forced` names one. One line when none
    fits."""
    if forced is not None:
        if forced not in BUILDERS:
            raise SweepError(f"--builder {forced}: choose one of {', '.join(BUILDERS)}")
        path = shutil.which(forced)
        if path is None:
            hint = (INSTALL_HINT if forced != "docker"
                    else "install Docker (https://docs.docker.com/get-docker/)")
            raise SweepError(f"--builder {forced}: {forced} not found on PATH; {hint}")
        if forced == "docker" and not _docker_answers(path):
            raise SweepError("--builder docker: the Docker daemon does not answer (`docker info` failed); "
                             "start Docker, or leave out --builder to use podman or buildah")
        return Builder(forced, path)
    docker = shutil.which("docker")
    if docker is not None and _docker_answers(docker):
        return Builder("docker", docker)
    for name in ("podman", "buildah"):
        path = shutil.which(name)
        if path is not None:
            return Builder(name, path)
    why = "docker is installed but its daemon does not answer" if docker else "no docker"
    raise SweepError(f"no image builder found ({why}, no podman, no buildah); {INSTALL_HINT}, "
                     "or build elsewhere from `batchsweep image dockerfile`")


def _docker_answers(docker: str) -> bool:
    try:
        return subprocess.run([docker, "info"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=DOCKER_INFO_TIMEOUT_S, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def pin_base(base: str, builder: Builder | None, *, echo: Echo) -> str:
    """The default base as `TAG@sha256:…`, its digest read through the builder after a pull, so the
    Dockerfile, and with it the image's content-hash tag, follows what the base's tag names today. A base the
    user named is used as given; without a digest (offline, buildah, no builder) the tag, said in one line."""
    if base != DEFAULT_BASE:
        return base
    if builder is not None and run_cli(builder.pull_argv(base), quiet=True) == 0:
        found = builder.digest_of(base)
        if found:
            return f"{base}@{found.rsplit('@', 1)[1]}"
    how = (
        f"{builder.name} could not pull it or name its digest" if builder is not None else "no image builder"
    )
    echo(f"{base} is not pinned by digest ({how}): the image is built on its tag as it is")
    return base


def build(requirements: list[str] | None, *, outputs: dict[str, str], echo: Echo, base: str = DEFAULT_BASE,
          builder: str | None = None) -> str:
    """Build the image unless the builder already has it; return its reference `URI:TAG`."""
    chosen = choose_builder(builder)
    base = pin_base(base, chosen, echo=echo)
    return build_ref(requirements, ref_of(requirements, outputs, base=base), chosen, echo=echo, base=base)


def ref_of(requirements: list[str] | None, outputs: dict[str, str], *, base: str = DEFAULT_BASE) -> str:
    """`URI:TAG` of the image for these requirements and base in the stack's repository."""
    return ref_in(repository_uri(outputs), requirements, base=base)


def ref_in(repository: str, requirements: list[str] | None, *, base: str = DEFAULT_BASE) -> str:
    """`REPOSITORY:TAG` of the image for these requirements and base, its tag batchsweep's content hash."""
    return f"{repository}:{image_tag(current_dockerfile(requirements, base=base), requirements)}"


def build_to(requirements: list[str] | None, target: ImageRef, *, echo: Echo, base: str = DEFAULT_BASE,
             builder: str | None = None) -> str:
    """Build the image into `target`'s repository, without a stack: under its content-hash tag and, when
    `target` has a tag of its own, under that one too. Returns `target` (the content-hash reference when it
    has no tag)."""
    chosen = choose_builder(builder)
    base = pin_base(base, chosen, echo=echo)
    content = ref_in(target.repository, requirements, base=base)
    return build_tagged(requirements, content, named_ref(target, content), chosen, echo=echo, base=base)


def build_tagged(requirements: list[str] | None, content: str, named: str, builder: Builder, *, echo: Echo,
                  base: str) -> str:
    build_ref(requirements, content, builder, echo=echo, base=base)
    if named != content:
        check_exit(run_cli(builder.tag_argv(content, named)), f"{builder.name} tag")
    return named


def named_ref(target: ImageRef, content: str) -> str:
    return f"{target.repository}:{target.tag}" if target.tag else content


@contextlib.contextmanager
def _source_build_lock(root: Path) -> Iterator[None]:
    """One wheel build of a source checkout at a time on this machine: setuptools builds in the checkout's own
    build/ directory, and two at once fail ("Directory not empty": two `image push` in two shells)."""
    import fcntl

    name = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"batchsweep-wheel-{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build_ref(requirements: list[str] | None, ref: str, builder: Builder, *, echo: Echo, base: str) -> str:
    if builder.has(ref):
        echo(f"image {ref} already built ({builder.name})")
        return ref
    with tempfile.TemporaryDirectory(prefix="batchsweep-image-") as context:
        (Path(context) / "Dockerfile").write_text(
            current_dockerfile(requirements, base=base), encoding="utf-8"
        )
        if requirements:
            (Path(context) / REQUIREMENTS_FILE).write_text(requirements_text(requirements), encoding="utf-8")
        root = source_checkout()
        if root is not None:
            echo(f"building a batchsweep wheel from {root}")
            with _source_build_lock(root):
                check_exit(
                    run_cli(
                        [
                            sys.executable,
                            "-m",
                            "pip",
                            "wheel",
                            "--no-deps",
                            "--quiet",
                            "--wheel-dir",
                            context,
                            str(root),
                        ]
                    ),
                    "pip wheel",
                )
        echo(f"building {ref} with {builder.name} on {base}")
        check_exit(run_cli(builder.build_argv(ref, context, base=base)), f"{builder.name} build")
    if "@sha256:" not in base:
        pinned = builder.digest_of(base)
        if pinned:
            echo(f"built on {base}, which is {pinned} today; `--base {pinned}` rebuilds on exactly that base "
                 "(the tag follows it)")
    return ref


def run_cli(argv: list[str], *, quiet: bool = False) -> int:
    out = subprocess.DEVNULL if quiet else None
    return subprocess.run(argv, stdout=out, stderr=out, check=False).returncode


def check_exit(returncode: int, what: str) -> None:
    if returncode != 0:
        raise SweepError(f"`{what}` failed with exit code {returncode} (see its output above)")
