"""Credentials never reach the code package: well-known credential files are left out, and a file that
looks like it holds a key, or an archive (gzip, xz, bzip2, zip) holding one, is refused with its path and
the fix."""

from __future__ import annotations

import bz2
import io
import json
import lzma
import re
import struct
import subprocess
import sys
import tarfile
import zipfile

import pytest

from batchsweep.aws import codepkg, credentials
from batchsweep.errors import SpecError

# -- issue 30, item 3: credentials never reach the code package ----------------------------------
CREDENTIAL_FILES = [
    ".s3cfg",
    ".boto",
    "kaggle.json",
    "service-account-prod.json",
    "client_secret_42.json",
    "token.pickle",
    ".pgpass",
    ".my.cnf",
    "putty.ppk",
    ".vault-token",
    ".streamlit/secrets.toml",
    ".huggingface/token",
    ".dockercfg",
    ".docker/config.json",
    ".ENV.production",
    "ID_RSA",
    "id_work",
    "tls/Server.PEM",
    "tls.KEY",
    ".netrc",
    ".pypirc",
    ".git-credentials",
    ".npmrc",
    "terraform.tfstate",
    "infra/terraform.tfstate.backup",
    "terraform.tfstate.d/prod/state.json",
    "deploy/prod.env",
    "Staging.ENV",
    "app/secrets.toml",
    "SECRETS.TOML",
]


@pytest.mark.parametrize("name", CREDENTIAL_FILES)
def test_a_well_known_credential_file_is_never_packed_whatever_its_case(tmp_path, name):
    root = tmp_path / "proj"
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_text("not even secret-looking\n")
    (root / "train.py").write_text("print(1)\n")
    (root / "id_utils.py").write_text("X = 1\n")  # a module, not a key
    package = codepkg.pack(root)
    with tarfile.open(fileobj=io.BytesIO(package.data), mode="r:gz") as tar:
        assert tar.getnames() == ["id_utils.py", "train.py"]
    assert f"{name} (looks like a secret)" in package.contents.left_out_line()


PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\n"
CREDENTIAL_CONTENTS = {
    "a private key": ("conf/settings.py", f'TLS = """\n{PEM}"""\n', 2),
    "an AWS access key id": ("notes.md", "# setup\n\nkey: AKIA2E0A8F3B244C9986\n", 3),
    "an AWS secret access key": ("settings.ini", "[default]\naws_secret_access_key = "
                                 "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzz2xampl9K\n", 2),
    "a Google API key": ("maps.py", "KEY = 'AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW'\n", 1),
    "Google credentials": ("creds-prod.json", '{"type": "service_account", "project_id": "p"}\n', 1),
    "a Hugging Face token": ("hub.py", "login(token='hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ01234567')\n", 1),
}


@pytest.mark.parametrize("what", list(CREDENTIAL_CONTENTS))
def test_a_file_holding_a_credential_refuses_the_package_naming_it_and_the_fix(tmp_path, capsys, what):
    """A careless user keeps a key in an ordinary file of the project: an aws-batch run is refused before
    anything is written (one line, exit 2, the file, the line and both fixes); `run --dry-run` lists what
    would be packed and what is refused; code.include packs it when it is no credential after all."""
    from batchsweep import cli

    rel, text, line = CREDENTIAL_CONTENTS[what]
    root = tmp_path / "proj"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text)
    (root / "train.py").write_text("print(1)\n")
    spec = root / "sweep.yaml"
    spec.write_text("name: pkg\nscript: train.py\nparams: {grid: {_x: [1]}}\nbackend: aws-batch\n")
    store = tmp_path / "s"
    assert cli.main(["run", str(spec), "--store", str(store)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"{root / rel} line {line} holds what looks like {what}" in err
    assert f"`code: {{exclude: [{rel}]}}`" in err and f"`code: {{include: [{rel}]}}`" in err
    assert not store.exists()
    with pytest.raises(SpecError, match=f"line {line} holds what looks like {what}"):
        codepkg.pack(root)
    assert cli.main(["run", str(spec), "--dry-run", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert f"packs: {', '.join(sorted([rel, 'sweep.yaml', 'train.py']))}" in out
    assert f"refused: {rel} line {line} holds what looks like {what}" in out
    with tarfile.open(fileobj=io.BytesIO(codepkg.pack(root, include=[rel]).data), mode="r:gz") as tar:
        assert rel in tar.getnames()
    assert codepkg.pack(root, exclude=[rel]).contents.sizes.keys() == {"sweep.yaml", "train.py"}


_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzz2xampl9K"
CREDENTIAL_FORMS = {  # issue 30, round 2: where a careless user keeps a key, and how a language writes it
    "os.environ[...] = in a script": (
        "train.py",
        f'import os\nos.environ["AWS_SECRET_ACCESS_KEY"] = "{_SECRET}"\n',
        2,
        "an AWS secret access key",
    ),
    "os.environ.setdefault": (
        "setup_aws.py",
        f'os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "{_SECRET}")\n',
        1,
        "an AWS secret access key",
    ),
    "a notebook cell (JSON-escaped quotes)": (
        "explore.ipynb",
        json.dumps(
            {
                "cells": [
                    {
                        "cell_type": "code",
                        "source": ["import os\n", f'os.environ["AWS_SECRET_ACCESS_KEY"] = "{_SECRET}"\n'],
                    }
                ]
            },
            indent=1,
        ),
        7,
        "an AWS secret access key",
    ),
    "a notebook assignment": (
        "nb.ipynb",
        json.dumps(
            {"cells": [{"source": [f's3 = boto3.client("s3", aws_secret_access_key="{_SECRET}")']}]}, indent=1
        ),
        5,
        "an AWS secret access key",
    ),
    "a YAML config beside the script": (
        "conf/storage.yaml",
        f"s3:\n  bucket: b\n  aws_secret_access_key: {_SECRET}\n",
        3,
        "an AWS secret access key",
    ),
    "STS output": ("creds.out.json", json.dumps({"SecretAccessKey": _SECRET}), 1, "an AWS secret access key"),
    "a GitHub token": ("gh.py", "TOKEN = 'ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789'\n", 1, "a GitHub token"),
}


@pytest.mark.parametrize("form", list(CREDENTIAL_FORMS))
def test_a_credential_written_the_way_code_writes_it_refuses_the_package(tmp_path, form):
    rel, text, line, what = CREDENTIAL_FORMS[form]
    root = tmp_path / "proj"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text)
    with pytest.raises(SpecError, match=f"{re.escape(rel)} line {line} holds what looks like {what}"):
        codepkg.pack(root)


def test_a_private_key_inside_gzip_data_refuses_the_package(tmp_path):
    """A backup of someone's home as a .tar.gz (and the same key gzip'ed twice over, as a second member) in
    the project: the scan reads what the gzip data holds, not only its compressed bytes."""
    import gzip

    root = tmp_path / "proj"
    root.mkdir()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        info = tarfile.TarInfo("home/.ssh/id_rsa")
        info.size = len(PEM)
        tar.addfile(info, io.BytesIO(PEM.encode()))
    (root / "backup.tgz").write_bytes(raw.getvalue())
    with pytest.raises(
        SpecError, match="backup.tgz line 1 holds what looks like a private key in its gzip-compressed"
    ):
        codepkg.pack(root)
    (root / "backup.tgz").unlink()
    (root / "data.bin").write_bytes(gzip.compress(b"x" * 1000) + gzip.compress(b"\n" + PEM.encode()))
    with pytest.raises(SpecError, match="data.bin line 2 holds what looks like a private key in its gzip"):
        codepkg.pack(root)
    # damaged: packed, not a traceback
    (root / "data.bin").write_bytes(gzip.compress(b"only numbers\n" * 10)[:-20])
    assert "data.bin" in codepkg.pack(root).contents.sizes


def test_the_documented_example_keys_are_not_taken_for_credentials(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "README.md").write_text("export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n"
                                    "export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n")
    assert credentials.scan(root, codepkg.survey(root).scanned()) == []


AWS_CREDENTIALS = b"[default]\naws_access_key_id = AKIA2E0A8F3B244C9986\n"


def _zip(members: dict[str, bytes], method: int) -> bytes:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", compression=method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return raw.getvalue()


ZIP_METHODS = {"stored": zipfile.ZIP_STORED, "deflated": zipfile.ZIP_DEFLATED, "bzip2": zipfile.ZIP_BZIP2,
               "lzma": zipfile.ZIP_LZMA}


@pytest.mark.parametrize("method", list(ZIP_METHODS))
def test_a_zip_holding_a_credential_refuses_the_package_naming_the_member_and_the_fix(tmp_path, method):
    """A careless user zips their home's credentials into the project: each member is read as it would be
    unpacked, whatever its compression, and the refusal names the zip, the member, its line and both fixes."""
    root = tmp_path / "proj"
    root.mkdir()
    members = {"notes.txt": b"nothing here\n" * 50, ".aws/credentials": AWS_CREDENTIALS}
    (root / "creds.zip").write_bytes(_zip(members, ZIP_METHODS[method]))
    with pytest.raises(SpecError) as caught:
        codepkg.pack(root)
    message = str(caught.value)
    assert f"{root / 'creds.zip'} line 2 holds what looks like an AWS access key id in its zip member " \
           ".aws/credentials" in message
    assert "`code: {exclude: [creds.zip]}`" in message and "`code: {include: [creds.zip]}`" in message
    assert "creds.zip" in codepkg.pack(root, include=["creds.zip"]).contents.sizes
    (root / "creds.zip").write_bytes(_zip({"id_rsa": PEM.encode()}, ZIP_METHODS[method]))
    expected = "creds.zip line 1 holds what looks like a private key in its zip member id_rsa"
    with pytest.raises(SpecError, match=expected):
        codepkg.pack(root)


@pytest.mark.parametrize("kind", ["xz", "bzip2"])
def test_a_tar_xz_or_bz2_backup_holding_a_private_key_refuses_the_package(tmp_path, kind):
    root = tmp_path / "proj"
    root.mkdir()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:xz" if kind == "xz" else "w:bz2") as tar:
        info = tarfile.TarInfo("home/.ssh/id_rsa")
        info.size = len(PEM)
        tar.addfile(info, io.BytesIO(PEM.encode()))
    (root / "backup.tar.x").write_bytes(raw.getvalue())
    expected = f"backup.tar.x line 1 holds what looks like a private key in its {kind}-compressed data"
    with pytest.raises(SpecError, match=expected):
        codepkg.pack(root)


def _bz2_bomb() -> bytes:
    """Over 30 GiB of zeros in a fifth of a MiB: a bzip2 stream of 8 MiB, repeated."""
    return bz2.compress(bytes(8 << 20)) * 4_000


def _as_bzip2_member(stored_zip: bytes) -> bytes:
    """A one-member zip whose stored bytes are declared bzip2 (method 12), in both of its headers."""
    data = bytearray(stored_zip)
    struct.pack_into("<H", data, 8, zipfile.ZIP_BZIP2)
    struct.pack_into("<H", data, data.index(b"PK\x01\x02") + 10, zipfile.ZIP_BZIP2)
    return bytes(data)


def test_a_compression_bomb_is_scanned_only_so_far_and_then_packed(tmp_path):
    """What an archive holds is read up to ARCHIVE_SCAN_BYTES, then no further: a bomb as a .bz2 file, as a
    zip member, or xz data with a key past that bound does not hang packing and is packed."""
    root = tmp_path / "proj"
    root.mkdir()
    bomb = _bz2_bomb()
    (root / "zeros.bz2").write_bytes(bomb)
    (root / "zeros.zip").write_bytes(_as_bzip2_member(_zip({"zeros": bomb}, zipfile.ZIP_STORED)))
    late = bytes(credentials.ARCHIVE_SCAN_BYTES) + PEM.encode()
    (root / "late.xz").write_bytes(lzma.compress(late))
    assert credentials.scan(root, ["zeros.bz2", "zeros.zip", "late.xz"]) == []
    assert codepkg.pack(root).contents.sizes.keys() == {"zeros.bz2", "zeros.zip", "late.xz"}
    # within the bound, the same key is found
    (root / "late.xz").write_bytes(lzma.compress(late[-len(PEM) - 10:]))
    assert credentials.scan(root, ["late.xz"]) == [("late.xz", 1, "a private key in its xz-compressed data")]


def test_a_damaged_or_encrypted_archive_is_packed_not_a_traceback(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "cut.zip").write_bytes(_zip({"a.txt": b"x" * 5000}, zipfile.ZIP_DEFLATED)[:200])
    (root / "cut.xz").write_bytes(lzma.compress(b"only numbers\n" * 100)[:-30])
    (root / "junk.bz2").write_bytes(b"BZh9" + bytes(100))
    encrypted = bytearray(_zip({"secret": AWS_CREDENTIALS}, zipfile.ZIP_DEFLATED))
    struct.pack_into("<H", encrypted, encrypted.index(b"PK\x01\x02") + 8, 0x1)  # its flags: encrypted
    (root / "locked.zip").write_bytes(bytes(encrypted))
    assert codepkg.pack(root).contents.sizes.keys() == {"cut.zip", "cut.xz", "junk.bz2", "locked.zip"}


def test_a_big_file_is_scanned_without_being_read_into_memory(tmp_path):
    """A data file beside the script far bigger than the memory the scan may use: the scan finds the key at
    its end all the same (before, the whole file was read into memory first)."""
    (tmp_path / "data.bin").write_bytes(b"")
    with open(tmp_path / "data.bin", "r+b") as f:
        f.truncate(40 << 20)
        f.seek((40 << 20) - 100)
        f.write(b"\nkey = AKIAABCDEFGHIJKLMNOP\n")
    probe = (
        "import re, resource, sys\n"
        "from pathlib import Path\n"
        "from batchsweep.aws import credentials\n"
        "data = int(re.search(r'VmData:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) << 10\n"
        "resource.setrlimit(resource.RLIMIT_DATA, (data + (16 << 20),) * 2)\n"
        "print(credentials.scan(Path(sys.argv[1]), ['data.bin']))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True,
                         timeout=300)
    assert out.stdout.strip() == "[('data.bin', 2, 'an AWS access key id')]", out.stderr[-500:]


def test_a_package_over_its_cap_is_refused_for_its_size_without_its_files_being_read(tmp_path, capsys,
                                                                                    monkeypatch):
    """Over code.max_mib the package is refused whole: neither the run nor its dry run reads its files for
    credentials first (a data file of gigabytes beside the script was read before the size refusal)."""
    from batchsweep import cli

    root = tmp_path / "proj"
    root.mkdir()
    (root / "notes.txt").write_text("key = AKIAABCDEFGHIJKLMNOP\n" + "x" * 4000)
    (root / "train.py").write_text("print(1)\n")
    spec = root / "sweep.yaml"
    spec.write_text("name: pkg\nscript: train.py\nparams: {grid: {_x: [1]}}\nbackend: aws-batch\n"
                    "code: {max_mib: 0.001}\n")
    read: list[str] = []
    real_scan = credentials.scan
    monkeypatch.setattr(credentials, "scan", lambda root, rels: read.extend(rels) or real_scan(root, rels))
    store = tmp_path / "s"
    assert cli.main(["run", str(spec), "--dry-run", "--store", str(store)]) == 0
    assert "refused: over code.max_mib (0.001 MiB)" in capsys.readouterr().out
    assert cli.main(["run", str(spec), "--store", str(store)]) == 2  # the run stops at what comes next
    assert "AWS access key" not in capsys.readouterr().err
    assert read == [] and not store.exists()
    with pytest.raises(SpecError, match="cap 0.001 MiB"):  # what packing says, before any upload
        codepkg.pack(root, max_mib=0.001)
    assert read == []
