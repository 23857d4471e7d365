"""The task image, built and run for real (`make test-image`; skipped by plain `make test`).

No Docker daemon and no container registry here, so: a Debian base image made by debootstrap from the
machine's own Debian mirror (cached between runs), the project's task image built on it by `batchsweep image
build` with podman, and a 4-task AWS sweep on the moto emulator whose child jobs are played inside that image
with buildah (chroot isolation, host network). Facts: docs/design.md and the README's "Try the whole AWS path"
section.

The sweep is examples/in-image: its script needs a package batchsweep does not depend on (humanize, pure
Python, from PyPI), named in a requirements.txt beside it. The rows come back only if the image really has it,
and each task reports the user, uid and Python it ran as.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import batchsweep
from batchsweep import cli
from batchsweep.emulator import player
from batchsweep.emulator import server as emulator

pytestmark = pytest.mark.image

SUITE = "bookworm"  # Debian 12: its Python is 3.11.2, whose tarfile lacks `filter=`
PACKAGES = "python3,python3-venv,python3-pip,python-is-python3,ca-certificates"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
SWEEP = Path(__file__).resolve().parents[2] / "examples" / "in-image" / "sweep.yaml"


def cache_dir() -> Path:
    root = os.environ.get("BATCHSWEEP_IMAGE_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    )
    path = Path(root) / "batchsweep-tests" if not os.environ.get("BATCHSWEEP_IMAGE_CACHE") else Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def debian_mirror() -> str:
    """The Debian archive this machine's apt already uses for SUITE (never a hard-coded host)."""
    deb822 = Path("/etc/apt/sources.list.d/debian.sources")
    if deb822.is_file():
        for stanza in re.split(r"\n\s*\n", deb822.read_text()):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, flags=re.M))
            if "deb" in fields.get("Types", "").split() and SUITE in fields.get("Suites", "").split():
                return fields["URIs"].split()[0]
    for list_file in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*.list")]:
        if list_file.is_file():
            for line in list_file.read_text().splitlines():
                m = re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+" + SUITE + r"\s", line)
                if m:
                    return m.group(1)
    pytest.fail(f"no Debian {SUITE} mirror in /etc/apt/sources.list*: the base image is made from it")


def run_tool(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    assert done.returncode == 0, f"{' '.join(argv[:3])} failed ({done.returncode}): {done.stderr[-2000:]}"
    return done


@pytest.fixture(scope="module")
def containers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """podman and buildah on a storage of their own (vfs: no overlay needed; in the cache, so the base image
    survives between runs), chroot isolation, no intermediate layers (vfs copies each one whole)."""
    missing = [tool for tool in ("podman", "buildah", "debootstrap") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed; `make test-image` installs them")
    if os.geteuid() != 0:
        pytest.fail("debootstrap and the vfs storage need root; run `make test-image` as root (as CI does)")
    cache = cache_dir()
    conf = cache / "storage.conf"
    # replaced whole, never rewritten in place: another session's podman on this machine may be reading it
    written = conf.with_name(f"{conf.name}.{os.getpid()}")
    written.write_text(
        f'[storage]\ndriver = "vfs"\nrunroot = "{cache / "run"}"\ngraphroot = "{cache / "storage"}"\n'
    )
    written.replace(conf)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CONTAINERS_STORAGE_CONF", str(conf))
        mp.setenv("BUILDAH_ISOLATION", "chroot")
        mp.setenv("BUILDAH_LAYERS", "false")
        yield cache


@pytest.fixture(scope="module")
def base_image(containers: Path) -> str:
    """A Debian SUITE image with Python and pip, made by debootstrap (a few minutes, once per machine: the
    root filesystem's tarball and the imported image are both kept in the cache, keyed by what went into
    them)."""
    mirror = debian_mirror()
    ca = HOST_CA.read_bytes() if HOST_CA.is_file() else b""
    key = hashlib.sha256(f"{SUITE}\0{PACKAGES}\0{mirror}\0".encode() + ca).hexdigest()[:12]
    name = f"localhost/batchsweep-test-base:{SUITE}-{key}"
    if subprocess.run(["podman", "image", "exists", name], check=False).returncode == 0:
        return name
    tarball = containers / f"debootstrap-{SUITE}-{key}.tar"
    if not tarball.is_file():
        with tempfile.TemporaryDirectory(dir=containers, prefix="rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            run_tool(
                ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", SUITE, str(rootfs), mirror],
                timeout=1800,
            )
            # Like the stock python:*-slim images: a plain `pip install` works (Debian marks its Python as
            # externally managed, PEP 668), and pip trusts what this machine's network needs (a proxy's CA).
            for marker in rootfs.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
                marker.unlink()
            if ca:
                (rootfs / "etc/ssl/certs/ca-certificates.crt").write_bytes(ca)
            (rootfs / "var/cache/apt/archives").mkdir(parents=True, exist_ok=True)
            for deb in (rootfs / "var/cache/apt/archives").glob("*.deb"):
                deb.unlink()
            # its own name: another session's test on this machine may be writing the same tarball right now
            partial = tarball.with_name(f"{tarball.name}.{os.getpid()}.partial")
            run_tool(["tar", "-C", str(rootfs), "-cf", str(partial), "."])
            partial.rename(tarball)
    run_tool(["podman", "import", str(tarball), name])
    return name


@pytest.fixture(scope="module")
def deps_image(base_image: str, containers: Path) -> str:
    """The base plus batchsweep's runtime dependencies (pandas, pyarrow, boto3...), cached like the base: the
    task image built on it still installs batchsweep, its requirements and its user, but does not download
    ~100 MB of wheels each run. Keyed by the dependency specifiers, so a change to pyproject.toml makes a new
    one."""
    from importlib.metadata import requires

    deps = sorted(r for r in requires("batchsweep") or [] if "extra ==" not in r)
    name = f"{base_image}-deps-{hashlib.sha256(chr(0).join(deps).encode()).hexdigest()[:8]}"
    if subprocess.run(["podman", "image", "exists", name], check=False).returncode == 0:
        return name
    with tempfile.TemporaryDirectory(prefix="deps-context-") as context:
        Path(context, "Dockerfile").write_text(
            f"FROM {base_image}\nRUN {json.dumps(['pip', 'install', '--no-cache-dir', *deps])}\n")
        run_tool(["podman", "build", "--tag", name, context], timeout=1800)
    return name


def leftover_containers() -> list[str]:
    out = run_tool(["buildah", "containers", "--format", "{{.ContainerName}}"]).stdout
    return [name for name in out.split() if name.startswith("batchsweep-play-")]


def test_a_sweep_needing_an_extra_package_runs_inside_the_built_task_image(
    deps_image: str, session: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.deploy_stack(session)
    # containers another run on this machine has (one killed mid-play keeps its own): not this test's
    others = set(leftover_containers())
    spec = SWEEP
    store = str(tmp_path / "store")
    # The stack's stand-in image lacks the requirements: the run is refused before anything is submitted.
    assert cli.main(["run", str(spec), "--store", store]) == 2
    assert "was built without this sweep's requirements" in capsys.readouterr().err

    assert cli.main(["image", "build", str(spec), "--builder", "podman", "--base", deps_image]) == 0
    ref = capsys.readouterr().out.strip().splitlines()[-1]
    try:
        assert re.fullmatch(
            r"\d{12}\.dkr\.ecr\.us-east-1\.amazonaws\.com/batchsweep:bs-[0-9a-f]{16}-r[0-9a-f]{12}", ref
        )
        assert emulator.main(["push", ref]) == 0
        run = batchsweep.run(spec, store=store, detach=True)
        played = player.play(run, image=ref)
        assert len(played) == 4 and all(p.exit_code == 0 for p in played), [p.describe() for p in played]
        df = batchsweep.load_run(run.id, store=store).results().sort_values("gigabytes")
        assert list(df["status"]) == ["succeeded"] * 4
        assert list(df["size"]) == ["1.0 GB", "2.0 GB", "3.0 GB", "4.0 GB"]  # humanize, from requirements.txt
        assert list(df["binary"]) == ["953.7 MiB", "1.9 GiB", "2.8 GiB", "3.7 GiB"]
        assert set(df["user"]) == {"task"} and set(df["uid"]) == {1000}  # the image's non-root user
        assert set(df["python"]) == {"3.11.2"}  # the base image's Python (Debian 12), not the host's
        assert set(leftover_containers()) - others == set()  # each played child's container removed
        # Built again unchanged: found, not rebuilt.
        assert cli.main(["image", "build", str(spec), "--builder", "podman", "--base", deps_image]) == 0
        assert f"image {ref} already built (podman)" in capsys.readouterr().out
    finally:
        remove_images_of(ref.rsplit(":", 1)[0])
    assert subprocess.run(["podman", "image", "exists", ref], check=False).returncode == 1


def remove_images_of(repository: str) -> None:
    """Every image this test built (all tagged in the emulated stack's repository); the cached bases stay."""
    out = run_tool(["podman", "images", "--format", "{{.Repository}}:{{.Tag}}"]).stdout.split()
    built = [ref for ref in out if ref.rsplit(":", 1)[0] == repository]
    if built:
        subprocess.run(["podman", "rmi", "--force", *built], capture_output=True, check=False)
