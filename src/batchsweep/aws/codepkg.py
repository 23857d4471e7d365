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


class UnsafeArchive(ValueError):
    """A member would land outside the target, or is not a plain file, directory or inside link."""


def extract(data: bytes, target: Path) -> None:
    """Unpack a code package or staged directory into `target`, refusing anything that could leave it."""
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        safe_extractall(tar, target)


def safe_extractall(tar: tarfile.TarFile, target: Path, *, use_filter: bool | None = None) -> None:
    """tarfile's "data" filter where this Python has it (3.10.12+, 3.11.4+), the same rules by hand before.

    Refused: absolute names, `..`, device and FIFO members, and links whose target resolves outside `target`
    (checked member by member, so a link extracted earlier cannot be used as a way out). Set-uid/gid bits are
    dropped and files get their owner's read/write bits, as the data filter does.
    """
    if use_filter is None:
        use_filter = hasattr(tarfile, "data_filter")
    if use_filter:
        for member in tar.getmembers():
            _check_name(member.name)
        try:
            tar.extractall(target, filter="data")
        except tarfile.FilterError as exc:  # type: ignore[attr-defined]
            raise UnsafeArchive(str(exc)) from exc
        return
    root = os.path.realpath(target)
    for member in tar:
        _check_member(member, root)
        tar.extract(member, root, set_attrs=False)
        if member.isfile() or member.isdir():
            dest = os.path.join(root, member.name)
            os.chmod(dest, (member.mode & 0o777 & ~0o7000) | (0o700 if member.isdir() else 0o600))


def _inside(root: str, path: str) -> bool:
    return os.path.commonpath([root, path]) == root


def _check_name(name: str) -> None:
    if name.startswith(("/", "\\")) or os.path.isabs(name) or ".." in Path(name).parts:
        raise UnsafeArchive(f"{name!r}: absolute path or '..' in an archive member")


def _check_member(member: tarfile.TarInfo, root: str) -> None:
    name = member.name
    _check_name(name)
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise UnsafeArchive(f"{name!r}: a device or FIFO in an archive")
    dest = os.path.realpath(os.path.join(root, name))
    if not _inside(root, dest):
        raise UnsafeArchive(f"{name!r} would be written outside {root}")
    if member.issym():
        link = os.path.join(os.path.dirname(os.path.join(root, name)), member.linkname)
        if os.path.isabs(member.linkname) or not _inside(root, os.path.realpath(link)):
            raise UnsafeArchive(f"{name!r} links to {member.linkname!r}, outside the target")
    elif member.islnk():
        if os.path.isabs(member.linkname) or not _inside(root, os.path.realpath(os.path.join(root, member.linkname))):
            raise UnsafeArchive(f"{name!r} hard-links to {member.linkname!r}, outside the target")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
