"""A run's code identity (`CodeIdentity`), the code part of every content key (`batchsweep.planning.keys`):
the script and the project's Python files it imports (found by reading its imports, and theirs), the files
`code.files` lists (`all`: every file of the code package), each by sha256, and the versions of the installed
packages those files import; `CodeWatch` tells when that code changed on disk while a run runs.

Never code, whatever `code.files` says: a batchsweep store, files batchsweep exported (results, reports), spec
files, editor and notebook debris, VCS folders and the usual output folders (`NEVER_CODE_*`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchsweep import registry
from batchsweep.clock import SYSTEM, Clock
from batchsweep.planning.filehash import HashCache, canonical, sha256_text
from batchsweep.planning.packages import package_versions


def code_dir(spec: Any) -> Path:
    return Path(spec.script_path.parent if spec.script_path else spec.base_dir)


# Never code, whatever `code.files` says (a file named literally in `code.files` still counts): folders of
# version control, tools, environments and the usual outputs; editor, notebook and OS debris.
NEVER_CODE_DIRS = (
    ".git",
    ".hg",
    ".svn",
    ".bzr",
    ".jj",
    "__pycache__",
    ".ipynb_checkpoints",
    ".idea",
    ".vscode",
    ".batchsweep",
    ".venv",
    "venv",
    ".tox",
    ".nox",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    "outputs",
    "output",
    "results",
    "runs",
    "mlruns",
    "wandb",
    "lightning_logs",
    "logs",
    "checkpoints",
    "multirun",
)
NEVER_CODE_FILES = ("*~", ".*.swp", ".*.swo", ".*.swx", ".#*", "#*#", ".DS_Store", "Thumbs.db", "desktop.ini",
                    "*.pyc", "*.pyo", "*.orig", "*.rej", "*.log", "nohup.out")


@dataclass(frozen=True)
class CodeIdentity:
    """What a task's code is, as its key sees it: files (relative to the code directory) by sha256, why each
    counts, and the versions of the packages they import (distribution -> version)."""

    files: dict[str, str]
    why: dict[str, str]
    packages: dict[str, str]
    # "imports" (the script and what it imports), "all" (`code.files: all`, or a script not in Python)
    mode: str
    left_out: dict[str, str] = field(default_factory=dict)  # files of the package that do not count, and why

    @property
    def hash(self) -> str:
        return sha256_text(canonical({"v": CODE_VERSION, "files": self.files, "packages": self.packages}))

    def to_json(self) -> dict[str, Any]:
        """run.json `code_identity`: enough for `diff` and the reuse line to name what changed."""
        return {"v": CODE_VERSION, "mode": self.mode, "files": self.files, "packages": self.packages}


CODE_VERSION = 2  # 1: the code package's tree hash (every file of the folder)


def code_hash(spec: Any, *, cache: HashCache | None = None, packages: dict[str, str] | None = None) -> str:
    """The hash of `code_identity` (`packages`, when given, instead of asking the interpreter again)."""
    return code_identity(spec, cache=cache, packages=packages).hash


def code_identity(spec: Any, *, cache: HashCache | None = None, packages: dict[str, str] | None = None,
                  survey: bool = False) -> CodeIdentity:
    """The code identity of a sweep's tasks (module docstring); `survey` also lists the package's files that
    do not count (for `batchsweep explain`)."""
    cache = cache or HashCache()
    root = code_dir(spec)
    wanted = getattr(spec.code, "files", [])
    files: dict[str, str] = {}
    why: dict[str, str] = {}
    modules: set[str] = set()
    start = _start_file(spec, root)
    every = wanted == "all" or (start is None and spec.script_path is not None)
    if start is not None:
        found, modules = imported_files(root, start, search=_import_path(spec))
        for rel, because in found.items():
            files[rel], why[rel] = cache.file(root / rel), because
    left_out: dict[str, str] = {}
    if every or wanted or survey:
        chosen, left_out = _listed_files(spec, root, "all" if every else wanted)
        for rel, because in chosen.items():
            if rel not in files:
                path = root / rel
                files[rel] = "link:" + os.readlink(path) if path.is_symlink() else cache.file(path)
                why[rel] = because
        left_out = {rel: w for rel, w in left_out.items() if rel not in files}
    if packages is None:
        # An engine whose tasks run on another Python (a task image) keys that image instead of this machine's
        # packages.
        packages = (
            package_versions(modules, interpreter(spec))
            if registry.get_engine(spec.backend).local_python
            else {}
        )
    return CodeIdentity(files=dict(sorted(files.items())), why=why, packages=packages,
                        mode="all" if every else "imports", left_out=left_out)


def _start_file(spec: Any, root: Path) -> str | None:
    """The Python file the task starts in, relative to root: the script, or the module of `function:`."""
    if spec.script_path is not None:
        return spec.script_path.name if spec.script_path.suffix == ".py" else None
    module = spec.function.split(":", 1)[0]
    return _resolve(root, module)


def _resolve(root: Path, module: str) -> str | None:
    """The project file of a dotted module name (its .py, or its package's __init__.py), relative to root."""
    rel = module.replace(".", "/")
    for candidate in (f"{rel}.py", f"{rel}/__init__.py"):
        if (root / candidate).is_file():
            return candidate
    return None


def _import_path(spec: Any) -> list[Path]:
    """The directories the spec's `env:` puts on PYTHONPATH (`PYTHONPATH: src`, relative to the spec), where
    the script's own package may live; a value made of params is left out (it differs per task)."""
    from batchsweep.scripts.argv import task_env_values

    value = (getattr(spec, "env", None) or {}).get("PYTHONPATH")
    if not value or "{" in value:
        return []
    resolved = task_env_values({"PYTHONPATH": value}, {}, Path(spec.base_dir))["PYTHONPATH"]
    return [Path(p) for p in resolved.split(os.pathsep) if p and os.path.isabs(p) and Path(p).is_dir()]


def imported_files(root: Path, start: str, *, search: Iterable[Path] = ()) -> tuple[dict[str, str], set[str]]:
    """The project's Python files `start` imports, directly or through each other (every `import` and `from
    ... import` in the file, in functions and `try:` blocks too, and `importlib.import_module("literal")`),
    each with why it counts; and the top-level names of the modules imported from outside the project (the
    standard library left out). A module found under a directory of `search` (the spec's PYTHONPATH) is the
    project's too, named relative to root (`../src/pkg/model.py` when it lies outside it)."""
    import ast

    found: dict[str, str] = {start: "the script"}
    outside: set[str] = set()
    bases = [root, *(Path(p) for p in search)]
    todo = [(root, start)]  # each file as (the directory its dotted name starts in, its path there)
    while todo:
        base, rel = todo.pop()
        shown = _relative(root, base / rel)
        try:
            tree = ast.parse((base / rel).read_bytes(), filename=shown)
        except (SyntaxError, ValueError, OSError):
            continue  # counted by its content; a file Python cannot read fails its task more clearly
        package = rel.rsplit("/", 1)[0] if "/" in rel else ""
        for name in _imports(tree, package):
            where, targets = next(
                ((b, t) for b in dict.fromkeys([base, *bases]) if (t := _project_files(b, name))), (root, [])
            )
            top = name.split(".", 1)[0]
            if (
                not targets
                and top
                and top not in sys.stdlib_module_names
                and top not in sys.builtin_module_names
                and not any((b / top).is_dir() for b in bases)
            ):  # a namespace package of the project
                outside.add(top)
            for target in targets:
                key = _relative(root, where / target)
                if key not in found:
                    found[key] = f"imported by {shown}"
                    todo.append((where, target))
    return found, outside


def _relative(root: Path, path: Path) -> str:
    """A code file's name in the identity: its path relative to the code directory, with forward slashes."""
    return Path(os.path.relpath(path, root)).as_posix()


def _imports(tree: Any, package: str) -> list[str]:
    """Dotted module names a module imports (relative imports resolved against its package directory)."""
    import ast

    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split("/") if package else []
                if node.level - 1 > len(parts):
                    continue
                base = ".".join(parts[:len(parts) - (node.level - 1)])
                module = ".".join(p for p in (base, node.module or "") if p)
            else:
                module = node.module or ""
            if module:
                names.append(module)
            names += [f"{module}.{a.name}" if module else a.name for a in node.names if a.name != "*"]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and (getattr(node.func, "attr", None) == "import_module" or getattr(node.func, "id", None) in
                   ("import_module", "__import__"))):
            names.append(node.args[0].value)
    return names


def _project_files(root: Path, name: str) -> list[str]:
    """The files importing `name` runs from the project: each package's __init__.py on the way, and the
    module. An empty list when its first part is not the project's (then it is a package's, or the standard
    library's)."""
    parts = name.split(".")
    files = []
    for depth in range(1, len(parts) + 1):
        rel = "/".join(parts[:depth])
        if (root / f"{rel}.py").is_file():
            files.append(f"{rel}.py")
            break  # a module: what follows is a name inside it
        if (root / rel).is_dir():
            if (root / rel / "__init__.py").is_file():
                files.append(f"{rel}/__init__.py")
            continue  # a package (or a namespace package): go on
        break  # `from pkg import name`: a name inside pkg/__init__.py
    return files


def interpreter(spec: Any) -> str:
    """The Python the tasks run on: `python:` (a path relative to the spec, or a name on PATH), else ours."""
    import shutil

    if not getattr(spec, "python", None):
        return sys.executable
    python = str(spec.python)
    if "/" in python:
        return os.path.abspath(Path(spec.base_dir) / os.path.expanduser(python))
    return shutil.which(python) or python


def _listed_files(spec: Any, root: Path, wanted: Any) -> tuple[dict[str, str], dict[str, str]]:
    """The code package's files `code.files` counts (`all`: every one), each with why, and the others with why
    not: the never-code rules, spec files, exports batchsweep wrote, stores and the files `inputs:` names."""
    from fnmatch import fnmatch

    from batchsweep.aws import codepkg
    from batchsweep.files import exclude_spec

    contents = codepkg.survey(root, exclude=spec.code.exclude, include=spec.code.include)
    skip = input_globs(root, Path(spec.base_dir), spec.inputs)
    spec_files = inputs_globs_literal(root, Path(spec.spec_file)) if spec.spec_file is not None else []
    literal = set() if wanted == "all" else {w.lstrip("/") for w in wanted if not any(c in w for c in "*?[!")}
    matcher = None if wanted == "all" else exclude_spec(list(wanted))
    chosen, left_out = {}, dict(contents.left_out)
    for rel in sorted([*contents.sizes, *contents.links]):
        parts = rel.split("/")
        if any(fnmatch(rel, g) for g in spec_files):
            left_out[rel] = "the spec file (its fields are keyed one by one)"
        elif any(fnmatch(rel, g) or fnmatch(rel, g.rstrip("/") + "/*") for g in skip):
            left_out[rel] = "an input (keyed per task by content)"
        elif rel in literal:
            chosen[rel] = "code.files"
        elif any(p in NEVER_CODE_DIRS for p in parts[:-1]):
            left_out[rel] = "in a tool's or output folder"
        elif any(fnmatch(parts[-1], g) for g in NEVER_CODE_FILES):
            left_out[rel] = "editor, notebook or OS debris, or a log"
        elif wanted != "all" and (matcher is None or not matcher.match_file(rel)):  # (no lines: none listed)
            left_out[rel] = (
                "not imported by the script"
                if rel.endswith(".py")
                else "a spec file, or written by batchsweep"
                if _written_by_batchsweep(root / rel)
                else "not imported, not in code.files"
            )
        elif _written_by_batchsweep(root / rel):
            left_out[rel] = "a spec file, or written by batchsweep"
        else:
            chosen[rel] = "code.files: all" if wanted == "all" else "code.files"
    return chosen, left_out


def _written_by_batchsweep(path: Path) -> bool:
    """A sweep spec, or a table or report batchsweep exported, told by its first bytes."""
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".csv", ".json", ".html", ".parquet"):
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    import re

    if suffix in (".yaml", ".yml"):
        return bool(
            re.search(rb"^(script|function):", head, re.M) and re.search(rb"^(params|search):", head, re.M)
        )
    if suffix == ".csv":
        columns = head.split(b"\n", 1)[0].strip().split(b",")
        return b"task" in columns and b"status" in columns
    if suffix == ".json":
        return bool(re.match(rb'\s*\[\s*\{"task":', head))
    if suffix == ".html":
        return b"batchsweep" in head
    return b"PAR1" == head[:4] and b"reused_from" in _tail(path)


def _tail(path: Path, size: int = 65536) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - size))
            return f.read()
    except OSError:
        return b""


class CodeWatch:
    """Whether the code a run's tasks were keyed by is still the code on disk, for engines whose tasks run the
    code directory as it is when each starts. A script edited while its sweep runs is new code for the tasks
    that start after the edit: they run, and once `fresh()` is False the engine gives them no key (their
    results are never offered for reuse under the old code's key). Looked at once per `every_s` at most (a
    walk over cached hashes), so an edit is noticed within that time; a tree that takes longer than every_s/20
    to walk (a monorepo's `git ls-files`) is looked at less often, so the watch never takes more than 5% of a
    core. A change is final (an edit undone later is not trusted). Thread-safe."""

    def __init__(self, spec: Any, code: str, *, every_s: float = 1.0, clock: Clock = SYSTEM) -> None:
        import threading

        self.spec, self.code, self.every_s, self.clock = spec, code, every_s, clock
        self.cache = HashCache()
        self._packages: dict[str, str] | None = None  # asked once: the watch is for edits, not installs
        self.changed_to: str | None = None
        self._checked = float("-inf")  # the first task looks (planning may have been a while ago)
        self._wait = every_s
        self._lock = threading.Lock()

    def fresh(self) -> bool:
        with self._lock:
            if self.changed_to is not None:
                return False
            now = self.clock.monotonic()
            if now - self._checked < self._wait:
                return True
            try:
                if self._packages is None:
                    self._packages = code_identity(self.spec, cache=self.cache).packages
                    now = self.clock.monotonic()  # (asked once: the walk alone sets the pace)
                current = code_hash(self.spec, cache=self.cache, packages=self._packages)
            except Exception:  # noqa: BLE001 - an unreadable directory fails the task itself, more clearly
                return True
            finally:
                self._checked = self.clock.monotonic()
                self._wait = max(self.every_s, 20 * (self._checked - now))
            if current != self.code:
                self.changed_to = current
                import logging

                logging.getLogger("batchsweep").warning(
                    "the code in %s changed while the run runs (%s at the start, %s now): tasks that start "
                    "from now run it as it is, and are not recorded for reuse",
                    code_dir(self.spec),
                    self.code[:12],
                    current[:12],
                )
            return self.changed_to is None


def inputs_globs_literal(root: Path, path: Path) -> list[str]:
    """A single file as a glob relative to root (none when it lies outside root)."""
    from glob import escape

    real_root, full = os.path.realpath(root), os.path.realpath(path)
    if os.path.commonpath([real_root, full]) != real_root or full == real_root:
        return []
    return [escape(os.path.relpath(full, real_root).replace(os.sep, "/"))]


def input_globs(root: Path, base_dir: Path, templates: Iterable[Any]) -> list[str]:
    """The `inputs:` templates that point inside root, as globs relative to root (`{param}` becomes `*`)."""
    import re

    real_root = os.path.realpath(root)
    globs = []
    for item in templates:
        template = item if isinstance(item, str) else item["src"] if isinstance(item, dict) else item.src
        if template.startswith("s3://"):
            continue
        marker = "\0STAR\0"
        full = os.path.normpath(
            os.path.join(os.path.realpath(base_dir), re.sub(r"\{[A-Za-z_]\w*\}", marker, template))
        )
        if os.path.commonpath([real_root, full]) == real_root and full != real_root:
            globs.append(os.path.relpath(full, real_root).replace(os.sep, "/").replace(marker, "*"))
    return globs


def code_changes(old: dict[str, Any] | None, new: dict[str, Any] | None) -> tuple[list[str], list[str]]:
    """What differs between two runs' code identities (run.json `code_identity`): the files (`helper.py`,
    `notes.txt (new)`, `old.py (gone)`) and the packages (`pandas 2.2.2 → 2.3.0`, `polars 1.0 (new)`)."""
    if not old or not new:
        return [], []
    fa, fb = old.get("files") or {}, new.get("files") or {}
    files = [f"{rel}{' (new)' if rel not in fa else ' (gone)' if rel not in fb else ''}"
             for rel in sorted(set(fa) | set(fb)) if fa.get(rel) != fb.get(rel)]
    pa, pb = old.get("packages") or {}, new.get("packages") or {}
    packages = [
        f"{name} {pb[name]} (new)"
        if name not in pa
        else f"{name} {pa[name]} (gone)"
        if name not in pb
        else f"{name} {pa[name]} → {pb[name]}"
        for name in sorted(set(pa) | set(pb))
        if pa.get(name) != pb.get(name)
    ]
    return files, packages
