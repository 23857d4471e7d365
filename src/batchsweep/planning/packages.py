"""Which distributions, at which versions, provide the modules a task imports, as the Python the tasks run on
sees them: part of a task's code identity (`keys.CodeIdentity.packages`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any


def _versions_here(modules: list[str]) -> dict[str, str]:
    """`package_versions` in this interpreter; another one runs this function's own source
    (`_versions_script`)."""
    import importlib.util
    from importlib.metadata import packages_distributions, version

    dists = packages_distributions()
    out = {}
    for module in modules:
        names = dists.get(module)
        if names:
            out.update({name: version(name) for name in names})
            continue
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        out[module] = "not a distribution" if found else "not installed"
    return out


_versions: dict[tuple[Any, ...], dict[str, str]] = {}


def _versions_script() -> str:
    """`_versions_here` as a script for another interpreter: its modules in argv, the versions as JSON on
    stdout."""
    import inspect

    return ("from __future__ import annotations\nimport json, sys\n" + inspect.getsource(_versions_here)
            + "print(json.dumps(_versions_here(sys.argv[1:])))\n")


def package_versions(modules: Iterable[str], python: str | None = None) -> dict[str, str]:
    """Distribution -> version of each installed package providing one of `modules` (top-level names), as the
    interpreter `python` sees them; a module no distribution provides: "not installed", or "not a
    distribution" when it imports anyway. Remembered in this process while no directory on sys.path changes
    (ours; another interpreter is asked once per process)."""
    import subprocess
    import time

    from batchsweep.store.provenance import RACY_NS, environment_of, package_places

    wanted = sorted(set(modules))
    if not wanted:
        return {}
    ours = python is None or environment_of(python) == environment_of(sys.executable)
    started = time.time_ns()
    places, mtimes = package_places() if ours else ((), [])
    memo = (None if ours else python, tuple(wanted), places)
    found = _versions.get(memo)
    if found is not None:
        return found
    try:
        if ours:
            result = _versions_here(wanted)
        else:
            text = subprocess.run(
                [str(python), "-c", _versions_script(), *wanted],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
            result = {str(k): str(v) for k, v in json.loads(text).items()}
    except (OSError, ValueError, subprocess.SubprocessError):
        result = {m: "unknown" for m in wanted}
    result = dict(sorted(result.items()))
    # as provenance.packages_hash: not a directory just changed
    if all(mtime < started - RACY_NS for mtime in mtimes):
        _versions[memo] = result
    return result
