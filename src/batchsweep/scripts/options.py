"""The job contract's command-line mapping (docs/design.md §2): what a script accepts, read before anything
runs.

A script's interface is read by running it in a child process up to the moment it hands its command line to
its framework — argparse, click/typer, python-fire or Hydra (`batchsweep.scripts._introspect`) — or, for the
styles without a parser (env, globals, config), from its source; `batchsweep.scripts.paramchecks` then
checks the params against it, so an unknown or missing param is bad input, reported before a run exists.
`batchsweep.scripts.argv` turns params into the argv.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from batchsweep.errors import SpecError
from batchsweep.scripts.flags import (
    SOURCE_STYLES,
    STYLES,
    Flag,
    ScriptFlags,
    flag_from_dict,
    flags_from_json,
    flags_to_json,
)
from batchsweep.text import last_line

__all__ = [
    "INTROSPECT_TIMEOUT_S",
    "SOURCE_STYLES",
    "STYLES",
    "Flag",
    "ScriptFlags",
    "flags_from_json",
    "flags_to_json",
    "helper_env",
    "load_config",
    "read_flags",
    "search_path",
    "source_flags",
]

INTROSPECT_TIMEOUT_S = 60.0


def _hydra_flags(info: dict[str, Any]) -> tuple[Flag, ...]:
    """A Hydra app's composed config as flags: one per key (dotted for nested ones), one per config group."""
    config = info.get("config") or {}
    flags = []
    defaults = info.get("defaults") or {}
    for name, options in (info.get("groups") or {}).items():
        # A group outside the defaults list is added with `+group=option` (Hydra refuses a plain override).
        flags.append(Flag(dest=name, option_strings=(), kind="group" if name in defaults else "group_new",
                          choices=tuple(options), default=defaults.get(name)))
    groups = {f.dest for f in flags}
    for key in info.get("keys") or ():
        if key in groups:
            continue
        node: Any = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        type_name = None if node is None or node == "???" else type(node).__name__
        flags.append(Flag(dest=key, option_strings=(), kind="store", default=node, type=type_name,
                          required=node == "???"))
    return tuple(flags)


def _style_in(source: str) -> str:
    """The framework a script evidently uses, for one whose interface could not be read."""
    for style, marks in (("hydra", ("@hydra.main",)), ("click", ("@click.", "typer.", "import typer")),
                         ("fire", ("fire.Fire(", "Fire("))):
        if any(m in source for m in marks):
            return style
    return "plain"


def _kill_session(pgid: int, *, wait_s: float = 2.0) -> None:
    """SIGKILL a process group and wait (up to `wait_s`) until it is gone: a helper the script started must
    not be seen alive after the reading returns. A member that is already a zombie may remain until its
    adopter reaps it; the wait then ends at its limit."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.01)


def search_path(env: dict[str, str] | None) -> list[Path]:
    """The directories the spec's `env:` puts on PYTHONPATH, where a script's imported package may live."""
    return [
        Path(p) for p in ((env or {}).get("PYTHONPATH") or "").split(os.pathsep) if p and Path(p).is_dir()
    ]


def read_flags(script: Path, *, python: str = sys.executable, env: dict[str, str] | None = None,
               force: bool = False) -> ScriptFlags:
    """Run the script up to its command-line parsing (with the spec's `env:` set) and read what it accepts.
    Without `force`, a script whose source (and that of the local modules it imports) names no parser
    framework is not run: it is plain (`known=False`, no reason)."""
    from batchsweep.scripts import scan as scriptscan

    script = script.resolve()  # the child runs in a scratch directory
    source = scriptscan.scan(script, search=search_path(env)).text
    if not force and not scriptscan.mentions_parser(source):
        return ScriptFlags(known=False, reason=None)  # a plain script: sys.argv, or no arguments at all
    with tempfile.TemporaryDirectory(prefix="batchsweep-introspect-") as tmp:
        out = Path(tmp) / "flags.json"
        run_env = {**os.environ, **(env or {})}
        run_env.update(helper_env(python, run_env))
        # Its own session, its stderr in a file: a process the script's imports start (a helper server,
        # `sleep`) must neither hold the wait open (a pipe stays open while any holder lives) nor outlive the
        # reading.
        with open(Path(tmp) / "stderr", "w+b") as err:
            try:
                proc = subprocess.Popen(
                    [python, "-m", "batchsweep.scripts._introspect", str(script), str(out)],
                    cwd=tmp,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    env=run_env,
                    start_new_session=True,
                )
            except OSError as e:
                return ScriptFlags(known=False, reason=f"could not start {python}: {e.strerror}")
            try:
                returncode = proc.wait(timeout=INTROSPECT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                returncode = None
            finally:
                _kill_session(proc.pid)  # what it started and left running in its session
                proc.wait()
            if returncode is None:
                return ScriptFlags(
                    known=False,
                    reason=f"it did not reach its argument parsing within {INTROSPECT_TIMEOUT_S:g}s",
                )
            err.seek(0)
            stderr = err.read().decode(errors="replace")
        data = json.loads(out.read_text()) if out.exists() else {}
    if not data.get("style"):
        reason = data.get("reason") or "it stopped before parsing its command line"
        if returncode != 0 and last_line(stderr, limit=300) and not data.get("kind"):
            reason = f"{reason if data else 'it failed'}: {last_line(stderr, limit=300)}"
        return ScriptFlags(known=False, reason=reason, style=data.get("kind") or _style_in(source))
    style = data["style"]
    flags = (
        _hydra_flags(data["hydra"]) if style == "hydra" else tuple(flag_from_dict(a) for a in data["actions"])
    )
    exclusive = tuple(
        (bool(g["required"]), tuple(g["dests"])) for g in data.get("groups") or () if len(g["dests"]) > 1
    )
    return ScriptFlags(known=True, flags=flags, style=style, exclusive=exclusive, open=bool(data.get("open")))


def _type_name(value: Any) -> str | None:
    return None if value is None else type(value).__name__


def _loose_type(value: Any) -> str | None:
    """An undeclared number takes any number (`gamma = 10` may be swept over 0.5); other values their own
    type."""
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else _type_name(value)


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping's leaves by dotted key (`model.lr`); a mapping's own key too, so it can be replaced
    whole."""
    out: dict[str, Any] = {}
    for k, v in node.items():
        out[f"{prefix}{k}"] = v
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
    return out


CONFIG_MAX = 1 << 20


def load_config(path: Path) -> dict[str, Any]:
    """A JSON, YAML or TOML file's top-level mapping (a params template)."""
    import yaml

    if path.stat().st_size > CONFIG_MAX:
        raise SpecError(
            f"args.template: {path} is over {CONFIG_MAX >> 20} MiB; a params template should be small"
        )
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        elif path.suffix == ".toml":
            data = _toml_loads(text)
        else:
            data = yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        raise SpecError(
            f"args.template: {path} cannot be read ({str(e).splitlines()[0]}); fix the file"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError(f"args.template: {path} holds a {type(data).__name__}, not a mapping of params; "
                        "give a file of name: value pairs")
    return data


def _toml_loads(text: str) -> Any:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[import-not-found,no-redef]
        except ImportError:
            raise SpecError("args.template: reading a TOML template needs Python 3.11 or the tomli package "
                            "(pip install tomli)") from None
    return tomllib.loads(text)


def source_flags(
    script: Path,
    style: str,
    *,
    base_dir: Path,
    file: str | None = None,
    template: str | None = None,
    upper: bool = False,
    search: list[Path] | None = None,
) -> ScriptFlags:
    """What a script without a parser takes in the `argv`, `env`, `globals` or `config` style, read from its
    source: the names it assigns sys.argv[1], [2]... to, the environment variables it reads, its module-level
    literals, or the keys of the params template."""
    from batchsweep.scripts import scan as scriptscan

    seen = scriptscan.scan(script, search=search)
    if style == "argv":
        flags = tuple(Flag(dest=name, option_strings=(), kind="argv", default=_jsonable(default),
                           type=convert or _type_name(default)) for name, default, convert in seen.positions)
        return ScriptFlags(known=bool(flags), flags=flags, style="argv")
    if style == "globals":
        flags = tuple(Flag(dest=k, option_strings=(), kind="global", default=_jsonable(v),
                           type=seen.declared.get(k) or _loose_type(v)) for k, v in seen.globals.items())
        return ScriptFlags(known=True, flags=flags, style="globals")
    if style == "env":
        names = {k: v for k, v in seen.env.items() if not k.startswith("BATCHSWEEP_")}
        flags = tuple(Flag(dest=k, option_strings=() if upper or k.lower() == k else (k.lower(),), kind="env",
                           default=_jsonable(v), type=_type_name(v)) for k, v in names.items())
        # a computed name (os.environ[name]) or none found: the names cannot be checked
        return ScriptFlags(known=bool(names) and not seen.env_dynamic, flags=flags, style="env")
    name = file or (seen.files[0] if len(seen.files) == 1 else None)
    if name is None:
        found = f"it names {', '.join(seen.files)}" if seen.files else "none found in its source"
        raise SpecError(f"args.file: which file does {script.name} read its params from ({found})? "
                        "set `args: {style: config, file: params.yaml}`")
    if Path(name).is_absolute() or ".." in Path(name).parts or not name.endswith(scriptscan.CONFIG_SUFFIXES):
        raise SpecError(f"args.file: {name!r} must be a .json, .yaml, .yml or .toml name inside the task's "
                        "directory (e.g. params.yaml)")
    # the file the script reads when run by hand: beside it, or in the directory it is run from (the spec's,
    # as DVC's `python stages/train.py` reads the params.yaml at the repository's root)
    source = base_dir / template if template else next(
        (p for p in (script.parent / name, base_dir / name) if p.is_file()), script.parent / name)
    if template and not source.is_file():
        raise SpecError(f"args.template: {template} not found relative to {base_dir}; fix the path")
    data = load_config(source) if source.is_file() else None
    flags = tuple(Flag(dest=k, option_strings=(), kind="config", default=_jsonable(v), type=_type_name(v))
                  for k, v in _flat(data or {}).items())
    return ScriptFlags(known=data is not None, flags=flags, style="config", target=name, template=data)


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return list(value) if isinstance(value, (tuple, set, frozenset)) else str(value)


def helper_env(python: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """For a `python:` other than ours: a PYTHONPATH that lets it import batchsweep's own helper modules
    (which use the standard library only) and nothing else of this environment."""
    if python == sys.executable:
        return {}
    package = Path(__file__).resolve().parents[1]
    import hashlib

    root = (
        Path(tempfile.gettempdir())
        / f"batchsweep-path-{hashlib.sha256(str(package).encode()).hexdigest()[:12]}"
    )
    link = root / "batchsweep"
    if not link.exists():
        root.mkdir(exist_ok=True)
        try:
            link.symlink_to(package, target_is_directory=True)
        except FileExistsError:
            pass
    # the spec's own (`PYTHONPATH: src`) kept
    rest = (env if env is not None else os.environ).get("PYTHONPATH")
    return {"PYTHONPATH": str(root) + (os.pathsep + rest if rest else "")}


# -- checking -----------------------------------------------------------------------------------------
