"""The code package: a directory as a deterministic tar.gz named by its sha256.

Same files ⇒ same bytes ⇒ same name, so an unchanged project is never uploaded twice and a code change never
needs an image rebuild. Honours .gitignore (through git when the directory is in a repository) and `code.exclude`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import tarfile
from fnmatch import fnmatch
from pathlib import Path

from batchsweep.errors import SpecError

ALWAYS_EXCLUDED = (".git", "__pycache__", ".batchsweep", ".venv", "venv", ".mypy_cache", ".pytest_cache", ".ruff_cache")


def _git_files(root: Path) -> list[str] | None:
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "."],
            cwd=root, capture_output=True, check=True, timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return [p for p in out.decode().split("\0") if p and (root / p).is_file()]


def _gitignore_patterns(root: Path) -> list[str]:
    path = root / ".gitignore"
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text(errors="replace").splitlines())
    return [line for line in lines if line and not line.startswith(("#", "!"))]


def _ignored(rel: str, patterns: list[str]) -> bool:
    parts = rel.split("/")
    for pattern in patterns:
        p = pattern.rstrip("/").lstrip("/")
        if fnmatch(rel, p) or fnmatch(rel, p + "/*") or any(fnmatch(part, p) for part in parts):
            return True
    return False


def list_files(root: Path, *, exclude: list[str] | tuple[str, ...] = ()) -> list[str]:
    files = _git_files(root)
    if files is None:
        patterns = _gitignore_patterns(root)
        files = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in ALWAYS_EXCLUDED)
            for name in filenames:
                rel = (Path(dirpath) / name).relative_to(root).as_posix()
                if not _ignored(rel, patterns):
                    files.append(rel)
    kept = []
    for rel in files:
        if any(part in ALWAYS_EXCLUDED for part in rel.split("/")[:-1]):
            continue
        if any(fnmatch(rel, pattern) for pattern in exclude):
            continue
        kept.append(rel)
    return sorted(kept)


def build(root: Path, *, exclude: list[str] | tuple[str, ...] = (), max_mib: float = 50.0) -> tuple[str, bytes]:
    """(sha256, tar.gz bytes) of `root`; raises SpecError if larger than max_mib."""
    files = list_files(root, exclude=exclude)
    sizes = {rel: (root / rel).stat().st_size for rel in files}
    total = sum(sizes.values())
    if total > max_mib * 1024 * 1024:
        biggest = ", ".join(f"{rel} ({size / 2**20:.1f} MiB)" for rel, size in sorted(sizes.items(), key=lambda kv: -kv[1])[:3])
        raise SpecError(
            f"code: {root} holds {total / 2**20:.1f} MiB of files (cap {max_mib:g} MiB; largest: {biggest}); "
            "add data to `code: {exclude: [...]}` or .gitignore and pass it as `inputs:`, or raise code.max_mib"
        )
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=6) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in files:
            path = root / rel
            info = tarfile.TarInfo(rel)
            info.size = sizes[rel]
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.mtime = 0
            with open(path, "rb") as f:
                tar.addfile(info, f)
    data = raw.getvalue()
    return hashlib.sha256(data).hexdigest(), data


def extract(data: bytes, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(target, filter="data")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
