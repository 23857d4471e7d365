"""Provenance of a run (run.json `provenance`): what produced it, so `status` can show it and `diff` compare two.

    git        commit, dirty (uncommitted changes to tracked files, or untracked files), sha256 of `git diff HEAD`
               plus the untracked files' names and contents (when dirty)
    python     implementation and version of the interpreter the tasks run on (`python:` when the spec names one)
    platform   `platform.platform()` and machine of the submitting host
    batchsweep its version
    packages   sha256 over the sorted `name==version` of every installed distribution, and their count
    requirements / image   on remote engines: the requirements hash and the image the tasks run in
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
from pathlib import Path
from typing import Any


def _git(args: list[str], cwd: Path) -> bytes | None:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def git_state(code_dir: Path) -> dict[str, Any] | None:
    """The repository holding code_dir: its commit and whether (and how) the work tree differs from it."""
    head = _git(["rev-parse", "HEAD"], code_dir)
    if head is None:
        return None
    status = _git(["status", "--porcelain", "--untracked-files=normal", "."], code_dir) or b""
    state: dict[str, Any] = {"commit": head.decode().strip(), "dirty": bool(status.strip())}
    if state["dirty"]:
        h = hashlib.sha256(_git(["diff", "HEAD", "--", "."], code_dir) or b"")
        untracked = _git(["ls-files", "--others", "--exclude-standard", "-z", "."], code_dir) or b""
        for name in sorted(p for p in untracked.decode(errors="replace").split("\0") if p):
            h.update(f"\0untracked {name}\0".encode())
            try:
                h.update((code_dir / name).read_bytes())
            except OSError:
                pass
        state["diff_sha256"] = h.hexdigest()
    return state


def packages_hash() -> tuple[str, int]:
    from importlib.metadata import distributions

    names = sorted({f"{(d.metadata['Name'] or '').lower()}=={d.version}" for d in distributions()})
    return hashlib.sha256("\n".join(names).encode()).hexdigest(), len(names)


def batchsweep_version() -> str:
    """The installed version; `0+unknown` (a valid version, for the image's pip pin) when not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("batchsweep")
    except PackageNotFoundError:
        return "0+unknown"


def collect(code_dir: Path, *, environment: dict[str, Any]) -> dict[str, Any]:
    """Provenance for a new run; `environment` is the key's environment part (interpreter, or image/requirements)."""
    digest, count = packages_hash()
    return {
        "git": git_state(code_dir),
        "python": environment.get("python") or f"{platform.python_implementation()} {platform.python_version()}",
        "platform": f"{platform.platform()} {platform.machine()}",
        "batchsweep": batchsweep_version(),
        "packages_sha256": digest,
        "packages": count,
        **{k: environment[k] for k in ("image", "requirements") if environment.get(k)},
    }


def describe(prov: dict[str, Any] | None) -> str:
    """One line for `status`."""
    if not prov:
        return "not recorded (a run from before provenance)"
    git = prov.get("git")
    if git:
        where = f"git {git['commit'][:10]}" + (f" + uncommitted changes (diff {git['diff_sha256'][:10]})"
                                              if git.get("dirty") else " (clean)")
    else:
        where = "not in a git repository"
    parts = [where, prov.get("python", "?"), prov.get("platform", "?"), f"batchsweep {prov.get('batchsweep', '?')}",
             f"{prov.get('packages', '?')} packages ({str(prov.get('packages_sha256', ''))[:10]})"]
    if prov.get("image"):
        parts.append(f"image {prov['image']}")
    if prov.get("requirements"):
        parts.append(f"requirements {str(prov['requirements'])[:10]}")
    return " · ".join(parts)
