"""Provenance of a run (run.json `provenance`): what produced it, so `status` can show it and `diff` compare
two.

    git        commit, dirty (tracked files differ from it: untracked ones, a store or an exported table
               beside the script, never count), sha256 of `git diff HEAD` (when dirty), and `untracked_code`:
               the code identity's files git does not track
    python     implementation and version of the interpreter the tasks run on (`python:` when the spec names
               one)
    platform   `platform.platform()` and machine of the submitting host; host: its name
    batchsweep its version
    packages   sha256 over the sorted `name==version` of every distribution installed where the tasks run
               (`python:`'s environment when the spec names one), and their count;
               package_versions: name -> version of each (once per run; `diff` names the ones that changed)
    requirements / image   on remote engines: the requirements hash and the image the tasks run in
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
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


def git_state(code_dir: Path, code_files: list[str] | None = None) -> dict[str, Any] | None:
    """The repository holding code_dir: its commit, whether its tracked files differ from it (and the sha256
    of `git diff HEAD`), and which of `code_files` (the code identity's, relative to code_dir) git does not
    track. Untracked files are not "dirty": a store, an exported table or a notes file beside the script is no
    change to the code."""
    head = _git(["rev-parse", "HEAD"], code_dir)
    if head is None:
        return None
    diff = _git(["diff", "HEAD", "--", "."], code_dir) or b""
    state: dict[str, Any] = {"commit": head.decode().strip(), "dirty": bool(diff.strip())}
    if state["dirty"]:
        state["diff_sha256"] = hashlib.sha256(diff).hexdigest()
    if code_files:
        listed = _git(["ls-files", "-z", "--", *code_files], code_dir)
        if listed is not None:
            tracked = set(listed.decode(errors="replace").split("\0"))
            state["untracked_code"] = [f for f in code_files if f not in tracked]
    return state


RACY_NS = 2_000_000_000  # a directory changed this recently may change again without its mtime moving
# (where distributions were found, name -> version)
_packages: tuple[tuple[Any, ...], dict[str, str]] | None = None


def package_places() -> tuple[tuple[Any, ...], list[int]]:
    """Where importlib.metadata looks for distributions, as it is now: the meta path finders and every
    sys.path entry (its directory's mtime, size and links: installing or removing a distribution adds or
    removes its *.dist-info there); and those directories' mtimes. A few stat calls, against reading every
    distribution's metadata."""
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


def installed_versions() -> dict[str, str]:
    """name -> version of every installed distribution (names lowercased). Read once per process while no
    directory on sys.path changes: a notebook that pip-installs between two runs gets the new list."""
    global _packages
    from importlib.metadata import distributions

    started = time.time_ns()
    places, mtimes = package_places()
    if _packages is not None and _packages[0] == places:
        return _packages[1]
    # the last one of a name wins
    result = dict(sorted(dict(_name_and_version(d) for d in distributions()).items()))
    # Kept only if no directory changed just now: a change right after could leave its mtime where it was (the
    # timestamps' granularity), as git's index does with its "racy" entries.
    if all(mtime < started - RACY_NS for mtime in mtimes):
        _packages = (places, result)
    return result


def _name_and_version(dist: Any) -> tuple[str, str]:
    """A distribution's (name lowercased, version) as `dist.metadata["Name"]` and `dist.version` give them,
    from its metadata's headers alone: `dist.metadata` parses the whole file (the long description too) with
    the email parser, and `dist.version` parses it again; for ~150 installed packages that was ~0.5-1 s of
    every run's start."""
    import email

    try:
        text = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
    except Exception:  # noqa: BLE001 - a distribution of another kind: its own way
        text = None
    if not text:
        meta = dist.metadata
        return (meta["Name"] or "").lower(), meta["Version"]
    head = email.message_from_string(re.split(r"\r?\n\r?\n", text, maxsplit=1)[0] + "\n")
    return (head["Name"] or "").lower(), head["Version"]


def packages_hash(versions: dict[str, str] | None = None) -> tuple[str, int]:
    """sha256 over the sorted `name==version` of every installed distribution (or of `versions`), and their
    count."""
    names = sorted(f"{name}=={version}" for name, version in (
        installed_versions() if versions is None else versions).items())
    return hashlib.sha256("\n".join(names).encode()).hexdigest(), len(names)


def batchsweep_version() -> str:
    """The installed version; `0+unknown` (a valid version, for the image's pip pin) when not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("batchsweep")
    except PackageNotFoundError:
        return "0+unknown"


def environment_of(python: str) -> str:
    """The environment an interpreter runs in: its venv's directory (a venv's python is a link to the base
    interpreter, which other venvs share), else the interpreter itself."""
    root = Path(os.path.abspath(python)).parent.parent
    return str(root.resolve()) if (root / "pyvenv.cfg").is_file() else os.path.realpath(python)


_LIST_SCRIPT = """import json
from importlib.metadata import distributions
print(json.dumps({(d.metadata["Name"] or "").lower(): d.version for d in distributions()}))
"""


def versions_of(python: str | None) -> dict[str, str]:
    """`installed_versions()` of the interpreter `python` (None: this one), {} when it cannot be asked."""
    if python is None or environment_of(python) == environment_of(sys.executable):
        return installed_versions()
    try:
        text = subprocess.run([python, "-c", _LIST_SCRIPT], capture_output=True, text=True, timeout=60,
                              check=True).stdout
        return dict(sorted((str(k), str(v)) for k, v in json.loads(text).items()))
    except (OSError, ValueError, subprocess.SubprocessError):
        return {}


def collect(
    code_dir: Path, *, environment: dict[str, Any], code_files: list[str] | None = None,
    python: str | None = None,
) -> dict[str, Any]:
    """Provenance for a new run; `environment` is the key's environment part (interpreter, or
    image/requirements); `code_files` the code identity's files (which of them git does not track is
    noted); `python` the interpreter the tasks run on when the spec names one (its packages are the run's)."""
    import socket

    versions = versions_of(python)
    digest, count = packages_hash(versions)
    return {
        "git": git_state(code_dir, code_files),
        "python": environment.get("python")
        or f"{platform.python_implementation()} {platform.python_version()}",
        "platform": f"{platform.platform()} {platform.machine()}",
        "host": socket.gethostname(),
        "batchsweep": batchsweep_version(),
        "packages_sha256": digest,
        "packages": count,
        "package_versions": versions,
        **{k: environment[k] for k in ("image", "requirements") if environment.get(k)},
    }


def describe(prov: dict[str, Any] | None) -> str:
    """One line for `status`."""
    if not prov:
        return "not recorded (a run from before provenance)"
    git = prov.get("git")
    if git:
        where = f"git {git['commit'][:10]}" + (
            f" + uncommitted changes to tracked files (diff {git['diff_sha256'][:10]})"
            if git.get("dirty")
            else " (clean)"
        )
        untracked = git.get("untracked_code") or []
        if untracked:
            where += (f" + {len(untracked)} untracked code file{'s' if len(untracked) != 1 else ''} "
                      f"({', '.join(untracked[:3])}{', …' if len(untracked) > 3 else ''})")
    else:
        where = "not in a git repository"
    parts = [
        where,
        prov.get("python", "?"),
        prov.get("platform", "?"),
        *([f"host {prov['host']}"] if prov.get("host") else []),
        f"batchsweep {prov.get('batchsweep', '?')}",
        f"{prov.get('packages', '?')} packages ({str(prov.get('packages_sha256', ''))[:10]})",
    ]
    if prov.get("image"):
        parts.append(f"image {prov['image']}")
    if prov.get("requirements"):
        parts.append(f"requirements {str(prov['requirements'])[:10]}")
    return " · ".join(parts)
