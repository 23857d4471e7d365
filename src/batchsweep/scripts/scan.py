"""How a script without a command-line parser takes its parameters, read from its source without running it.

A script that parses no command line would ignore `--kernel linear` and exit 0, and every task would "succeed"
with the script's own values. What its source shows decides where params can reach it instead: the environment
variables it reads (`os.environ[...]`, `os.getenv(...)`), its module-level literal assignments (`kernel =
"rbf"`), the params file it opens (`open("params.yaml")`), or its own reading of `sys.argv`.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchsweep.metrics import METRICS_FILE

CONFIG_SUFFIXES = (".json", ".yaml", ".yml", ".toml")
PARSER_WORDS = (
    "argparse",
    "optparse",
    "click",
    "typer",
    "fire",
    "hydra",
    "configargparse",
    "HfArgumentParser",
)
# Command-line libraries batchsweep does not read, which parse sys.argv themselves: their scripts get
# `--name value` as before (unchecked), never a refusal.
ARGV_LIBRARIES = frozenset(
    {
        "absl",
        "docopt",
        "tyro",
        "jsonargparse",
        "simple_parsing",
        "tap",
        "plac",
        "defopt",
        "clize",
        "argh",
        "cyclopts",
        "hydra_zen",
        "lightning",
        "pytorch_lightning",
        "tensorflow",
        "gflags",
    }
)
MAX_SOURCE = 2 << 20
_ENV_WORDS = ("environ", "getenv")


@dataclass
class ScriptSource:
    """What a script's source (and that of the modules it imports from beside it) shows about its inputs."""

    text: str  # the script's and its local modules' text, to look for parser frameworks
    reads_argv: bool = False
    # reads BATCHSWEEP_PARAMS or imports batchsweep: it takes params its own way
    batchsweep_aware: bool = False
    # variable -> its default when a literal (None otherwise)
    env: dict[str, Any] = field(default_factory=dict)
    env_dynamic: bool = False  # it reads a variable whose name is computed: not every name is known
    # read as os.environ["X"], which fails when X is unset
    env_required: set[str] = field(default_factory=set)
    # module-level literal assignments of the script itself
    globals: dict[str, Any] = field(default_factory=dict)
    declared: dict[str, str] = field(default_factory=dict)  # their declared types (`C: float = 1`)
    files: list[str] = field(default_factory=list)  # params files it names (params.yaml, config.json)
    # `alpha = float(sys.argv[1]) if len(sys.argv) > 1 else 0.5`: the names its positions 1, 2... are
    # assigned to, in order, with the literal default and the type the value is converted to
    positions: list[tuple[str, Any, str | None]] = field(default_factory=list)

    def fits(self) -> list[str]:
        """The `args.style` values this script could take params through, with what shows it."""
        out = []
        if self.positions:
            out.append(f"`args: {{style: argv}}` (it reads sys.argv by position: {positions_text(self)})")
        if self.env:
            out.append(f"`args: {{style: env}}` (it reads os.environ: {_names(self.env)})")
        if self.globals:
            out.append(f"`args: {{style: globals}}` (module-level values: {_names(self.globals)})")
        if self.files:
            out.append(
                f"`args: {{style: config, file: {self.files[0]}}}` (it opens {', '.join(self.files[:3])})"
            )
        return out


def _names(d: dict[str, Any], limit: int = 6) -> str:
    names = list(d)
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def positions_text(seen: ScriptSource) -> str:
    return ", ".join(f"{name} = sys.argv[{i}]" for i, (name, _, _) in enumerate(seen.positions, 1))


def _is_argv(node: ast.AST) -> bool:
    """`sys.argv`, or `argv` after `from sys import argv`."""
    return (isinstance(node, ast.Attribute) and node.attr == "argv" and isinstance(node.value, ast.Name)
            and node.value.id == "sys") or (isinstance(node, ast.Name) and node.id == "argv")


def argv_aliases(tree: ast.Module) -> dict[str, int]:
    """Names the script gives its argv (`args = sys.argv`, or `args = sys.argv[1:]`), each with the position
    its first item is: `args[0]` of the second reads position 1."""
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            continue
        value, start = node.value, 0
        cut = value.slice if isinstance(value, ast.Subscript) else None
        if isinstance(value, ast.Subscript) and isinstance(cut, ast.Slice) and cut.upper is cut.step is None:
            lower = cut.lower
            start = 0 if lower is None else (
                lower.value if isinstance(lower, ast.Constant) and type(lower.value) is int else -1)
            value = value.value
        if _is_argv(value) and start >= 0:
            found.setdefault(node.targets[0].id, start)
    return found


def _argv_index(node: ast.AST, aliases: dict[str, int]) -> int | None:
    """N of `sys.argv[N]` (or `argv[N]` after `from sys import argv`, or `args[N - k]` after `args =
    sys.argv[k:]`), a whole number of at least 1."""
    if not (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)):
        return None
    base = node.value
    index = node.slice.value
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        return None
    if _is_argv(base):
        start = 0
    elif isinstance(base, ast.Name) and base.id in aliases:
        start = aliases[base.id]
    else:
        return None
    return index + start if index + start >= 1 else None


def argv_positions(tree: ast.Module) -> list[tuple[str, Any, str | None]]:
    """The names the script assigns its positional arguments to (`alpha = float(sys.argv[1]) if
    len(sys.argv) > 1 else 0.5`), positions 1, 2... without a gap, each with its literal default (the
    `else` of a conditional, else None) and the type it converts the text to (`int`, `float`, else None)."""
    found: dict[int, tuple[str, Any, str | None]] = {}
    aliases = argv_aliases(tree)
    for node in ast.walk(tree):
        if not (isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if len(targets) != 1:
            continue
        pairs: list[tuple[ast.expr, ast.expr]] = [(targets[0], node.value)]
        if isinstance(targets[0], ast.Tuple) and isinstance(node.value, ast.Tuple) \
                and len(targets[0].elts) == len(node.value.elts):
            # lr, n = float(sys.argv[1]), int(sys.argv[2])
            pairs = list(zip(targets[0].elts, node.value.elts))
        for target, value in pairs:
            if isinstance(target, ast.Name):
                _note_position(target.id, value, found, aliases)
    out: list[tuple[str, Any, str | None]] = []
    while len(out) + 1 in found:
        out.append(found[len(out) + 1])
    return out


def _note_position(name: str, value: ast.expr, found: dict[int, tuple[str, Any, str | None]],
                   aliases: dict[str, int]) -> None:
    for sub in ast.walk(value):
        index = _argv_index(sub, aliases)
        if index is None or index in found:
            continue
        default = _literal(value.orelse)[1] if isinstance(value, ast.IfExp) else None
        convert = next((c.func.id for c in ast.walk(value) if isinstance(c, ast.Call)
                        and isinstance(c.func, ast.Name) and c.func.id in ("int", "float")
                        and c.args and c.args[0] is sub), None)
        found[index] = (name, default, convert)
        return


def _literal(node: ast.expr | None) -> tuple[bool, Any]:
    if node is None:
        return False, None
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def module_globals(tree: ast.Module) -> dict[str, Any]:
    """Names assigned a literal at module level (also inside a top-level `if`/`try`, e.g. the main guard), in
    order, with the first literal value; dunder names are left out."""
    found: dict[str, Any] = {}
    for node in top_level(tree.body):
        for name, value in literal_assignments(node):
            if not (name.startswith("__") and name.endswith("__")):
                found.setdefault(name, value)
    return found


def declared_types(tree: ast.Module) -> dict[str, str]:
    """The declared types of module-level `name: int = ...` assignments (a plain type name only)."""
    return {node.target.id: node.annotation.id for node in top_level(tree.body)
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
            and isinstance(node.annotation, ast.Name)}


def top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """A module's statements, with those of its top-level `if`, `try` and `with` blocks (run at import
    too)."""
    out: list[ast.stmt] = []
    for node in body:
        out.append(node)
        if isinstance(node, ast.If):
            out += top_level(node.body) + top_level(node.orelse)
        elif isinstance(node, ast.Try):
            out += top_level(node.body) + top_level(node.orelse) + top_level(node.finalbody)
        elif isinstance(node, ast.With):
            out += top_level(node.body)
    return out


def literal_assignments(node: ast.stmt) -> list[tuple[str, Any]]:
    """`name = literal` and `name: type = literal` (one plain name as the target)."""
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        ok, value = _literal(node.value)
        return [(node.targets[0].id, value)] if ok else []
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
        ok, value = _literal(node.value)
        return [(node.target.id, value)] if ok else []
    return []


def _is_environ(node: ast.expr) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ")


def _scan_tree(tree: ast.Module, scan: ScriptSource, literals: dict[str, Any]) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "argv" and isinstance(node.value, ast.Name) \
                and node.value.id == "sys":
            scan.reads_argv = True
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module == "sys"
            and any(a.name == "argv" for a in node.names)
        ):
            scan.reads_argv = True
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(m.split(".")[0] == "batchsweep" for m in mods):
                scan.batchsweep_aware = True
            if any(m.split(".")[0] in ARGV_LIBRARIES for m in mods):
                scan.reads_argv = True
        elif isinstance(node, ast.Subscript) and _is_environ(node.value):
            key = node.slice
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                scan.env.setdefault(key.value, None)
                if isinstance(node.ctx, ast.Load):
                    scan.env_required.add(key.value)
            else:
                scan.env_dynamic = True
        elif isinstance(node, ast.Call):
            _scan_call(node, scan, literals)


def _scan_call(node: ast.Call, scan: ScriptSource, literals: dict[str, Any]) -> None:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    env_get = (name == "getenv") or (name in ("get", "setdefault", "pop") and isinstance(func, ast.Attribute)
                                     and _is_environ(func.value))
    if env_get:
        if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            default: Any = None
            # `environ.get("EPOCHS", 200)` or `environ.get("EPOCHS", default=200)`
            arg = node.args[1] if len(node.args) > 1 else next(
                (k.value for k in node.keywords if k.arg == "default"), None)
            if arg is not None:
                ok, value = _literal(arg)
                default = value if ok else literals.get(arg.id) if isinstance(arg, ast.Name) else None
            scan.env.setdefault(node.args[0].value, default)
        else:
            scan.env_dynamic = True
        return
    if name == "open" and _writes(node):
        return  # a file it writes (metrics.json, a report) is no params file
    for arg in (*node.args, *(k.value for k in node.keywords)):
        if (
            isinstance(arg, ast.Constant)
            and isinstance(arg.value, str)
            and arg.value.endswith(CONFIG_SUFFIXES)
            and "\n" not in arg.value
            and len(arg.value) < 200
            and arg.value not in scan.files
            and os.path.basename(arg.value) != METRICS_FILE
        ):
            scan.files.append(arg.value)


def _writes(call: ast.Call) -> bool:
    mode = (
        call.args[1]
        if len(call.args) > 1
        else next((k.value for k in call.keywords if k.arg == "mode"), None)
    )
    return (
        isinstance(mode, ast.Constant) and isinstance(mode.value, str) and any(c in mode.value for c in "wax")
    )


# Calls that read the file their first argument names (open in a reading mode, pandas' and numpy's readers).
READERS = {"open", "read_csv", "read_table", "read_parquet", "read_json", "read_excel", "read_pickle",
           "read_feather", "loadtxt", "genfromtxt", "load", "fromfile", "imread"}


def read_paths(script: Path) -> list[str]:
    """The relative paths the script reads by a literal name (`open("data/prices.csv")`,
    `pd.read_csv("data/prices.csv")`), in order, each once."""
    try:
        tree = ast.parse(_read(script))
    except (SyntaxError, ValueError):
        return []
    found: list[str] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
            continue
        func, path = node.func, node.args[0].value
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in READERS and isinstance(path, str) and 0 < len(path) < 200 and "\n" not in path \
                and not os.path.isabs(path) and not (name == "open" and _writes(node)) and path not in found:
            found.append(path)
    return found


def _local_modules(script: Path, tree: ast.Module, search: list[Path]) -> list[Path]:
    """The files of the modules the script imports that live beside it (or under a directory of `search`):
    `import cfg` → cfg.py, `from pkg.train import main` → pkg/__init__.py and pkg/train.py."""
    dotted: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            dotted.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            dotted.add(node.module)
            dotted.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = node.module + "." if node.module else ""
            dotted.update(f"{base}{a.name}" for a in node.names)
    found = []
    for name in sorted(dotted):
        parts = name.split(".")
        for root in (script.parent, *search):
            for i in range(1, len(parts) + 1):
                stem = root.joinpath(*parts[:i])
                for candidate in (stem.with_suffix(".py"), stem / "__init__.py"):
                    if candidate.is_file() and candidate not in found:
                        found.append(candidate)
    return found


def imported_names(script: Path) -> set[str]:
    """The top-level names of the modules the script imports by absolute name (`from pkg.train import main` →
    pkg)."""
    try:
        tree = ast.parse(_read(script))
    except (SyntaxError, ValueError):
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def scan(script: Path, *, search: list[Path] | None = None, depth: int = 3) -> ScriptSource:
    """Read the script (and, for the parser words, the local modules it imports, `depth` imports deep)."""
    source = _read(script)
    result = ScriptSource(text=source)
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return result
    result.globals = module_globals(tree)
    result.declared = declared_types(tree)
    result.positions = argv_positions(tree)
    _scan_tree(tree, result, result.globals)
    if "BATCHSWEEP_PARAMS" in source:
        result.batchsweep_aware = True
    seen = {script.resolve()}
    todo = [(p, 1) for p in _local_modules(script, tree, search or [])]
    parts = [source]
    while todo:
        path, level = todo.pop(0)
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        text = _read(path)
        parts.append(text)
        try:
            sub = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        _scan_tree(sub, result, module_globals(sub))  # what an imported module reads counts as the script's
        if level < depth:
            todo += [(p, level + 1) for p in _local_modules(path, sub, search or [])]
    result.text = "\n".join(parts)
    return result


def _read(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_SOURCE:
            return ""
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def mentions_parser(text: str) -> bool:
    return any(re.search(rf"\b{w}\b", text) for w in PARSER_WORDS)
