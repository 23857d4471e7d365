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
import os
import platform
import subprocess
import sys
import time
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


RACY_NS = 2_000_000_000  # a directory changed this recently may change again without its mtime moving
_packages: tuple[tuple[Any, ...], tuple[str, int]] | None = None  # (where distributions were found, their hash)


def package_places() -> tuple[tuple[Any, ...], list[int]]:
    """Where importlib.metadata looks for distributions, as it is now: the meta path finders and every sys.path
    entry (its directory's mtime, size and links: installing or removing a distribution adds or removes its
    *.dist-info there); and those directories' mtimes. A few stat calls, against reading every distribution's
    metadata."""
    places: list[Any] = [tuple(type(finder).__qualname__ for finder in sys.meta_path)]
    mtimes = []
    for entry in sys.path:
        path = os.path.abspath(entry or ".")
        try:
            st = os.stat(path)
        except OSError:
            places.append((path,))
            continue
        places.append((path, st.st_mtime_ns, st.st_size, st.st_nlink, st.st_ino))
        mtimes.append(st.st_mtime_ns)
    return tuple(places), mtimes


def packages_hash() -> tuple[str, int]:
    """sha256 over the sorted `name==version` of every installed distribution, and their count. Computed once per
    process while no directory on sys.path changes: a notebook that pip-installs between two runs gets the new
    hash."""
    global _packages
    from importlib.metadata import distributions

    started = time.time_ns()
    places, mtimes = package_places()
    if _packages is not None and _packages[0] == places:
        return _packages[1]
    names = sorted({f"{(d.metadata['Name'] or '').lower()}=={d.version}" for d in distributions()})
    result = hashlib.sha256("\n".join(names).encode()).hexdigest(), len(names)
    # Kept only if no directory changed just now: a change right after could leave its mtime where it was (the
    # timestamps' granularity), as git's index does with its "racy" entries.
    if all(mtime < started - RACY_NS for mtime in mtimes):
        _packages = (places, result)
    return result


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
