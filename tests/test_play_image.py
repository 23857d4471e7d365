"""`emulator play --image`: what a played container sees, with buildah for real on a tiny image made here from
this machine's own /bin/sh and cat (seconds; the full task-image tour is `make test-image`)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchsweep.emulator import player

pytestmark = pytest.mark.skipif(shutil.which("buildah") is None or os.geteuid() != 0,
                                reason="needs buildah and root (`make image-tools`; CI runs as root)")


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(argv[:3])}: {done.stderr[-1000:]}"
    return done.stdout.strip()


@pytest.fixture
def tiny_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An image holding /bin/sh, /bin/cat and the libraries they load, in a container storage of its own."""
    conf = tmp_path / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "vfs"\nrunroot = "{tmp_path / "run"}"\ngraphroot = "{tmp_path / "graph"}"\n'
    )
    monkeypatch.setenv("CONTAINERS_STORAGE_CONF", str(conf))
    files = {os.path.realpath("/bin/sh"): "/bin/sh", os.path.realpath("/bin/cat"): "/bin/cat"}
    for binary in list(files):
        for lib in re.findall(r"(/\S+) \(0x", _run("ldd", binary)):
            files[os.path.realpath(lib)] = lib
    name = _run("buildah", "from", "--quiet", "scratch")
    for source, target in files.items():
        _run("buildah", "copy", "--quiet", name, source, target)
    _run("buildah", "commit", "--quiet", "--rm", name, "localhost/batchsweep-tiny")
    yield "localhost/batchsweep-tiny"
    subprocess.run(
        ["buildah", "rmi", "--force", "localhost/batchsweep-tiny"], capture_output=True, check=False
    )


def test_a_played_container_trusts_the_tls_emulator_through_a_mounted_ca_bundle(
        tiny_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / "cert.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nemulator\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv("AWS_CA_BUNDLE", str(bundle))
    child = player.Child(
        "job:0",
        ["/bin/sh", "-c", 'echo "bundle=$AWS_CA_BUNDLE" >&2; cat "$AWS_CA_BUNDLE" >&2'],
        {"AWS_BATCH_JOB_ARRAY_INDEX": "0"},
        None,
        None,
    )
    played = player.play_child(child, image=tiny_image, timeout_s=120)
    assert played.exit_code == 0, played.describe()
    assert list(played.stderr_tail) == [f"bundle={player.CONTAINER_CA_BUNDLE}", "-----BEGIN CERTIFICATE-----",
                                        "emulator", "-----END CERTIFICATE-----"]

    # a bundle that is not there: said at once
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with pytest.raises(player.SweepError, match="AWS_CA_BUNDLE=.*missing.pem is not a file"):
        player.play_child(child, image=tiny_image)
