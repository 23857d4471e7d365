"""The job contract's command-line mapping (docs/design.md §2): what a script accepts, checked before anything runs.

A script's interface is read by running it in a child process up to the moment it hands its command line to
its framework — argparse, click/typer, python-fire or Hydra (`batchsweep.scripts._introspect`) — so an unknown or
missing param is bad input, reported before a run exists. `batchsweep.scripts.argv` turns params into the argv.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from batchsweep.errors import SpecError
from batchsweep.model import OWN_PARAMS  # passed to a script only when it declares them

INTROSPECT_TIMEOUT_S = 60.0
STYLES = ("argparse", "optparse", "click", "fire", "hydra", "plain", "env", "globals", "config")
SOURCE_STYLES = ("env", "globals", "config")  # read from the script's source: no parser to run


@dataclass(frozen=True, eq=False)
class Flag:
    dest: str
    option_strings: tuple[str, ...]
    kind: str  # store, store_true, store_false, boolean_optional, append, count, subcommand, group (Hydra)...
    nargs: int | str | None = None
    required: bool = False
    default: Any = None
    help: str | None = None
    choices: tuple[Any, ...] | None = None
    type: str | None = None  # the name of the declared type (int, float, str, bool, a function's name)
    negative: str | None = None  # the option that sets it false (click's `--x/--no-x`, fire's `--nox`)
    bool_text: tuple[str, str] | None = None  # texts the script's own type turns into True and False
    subcommands: dict[str, tuple[Flag, ...]] | None = None

    @property
    def positional(self) -> bool:
        return not self.option_strings

    @property
    def option(self) -> str:
        longs = [o for o in self.option_strings if o.startswith("--") and not o.startswith("--no-")]
        return (longs or list(self.option_strings))[0]

    @property
    def shown(self) -> str:
        return self.dest if self.positional else self.option

    @cached_property
    def names(self) -> frozenset[str]:
        """The names a param may use for this flag: its dest and its options without dashes (`-` read as `_`)."""
        return frozenset({self.dest} | {o.lstrip("-").replace("-", "_") for o in self.option_strings})

    @property
    def takes_many(self) -> bool:
        return self.nargs in ("+", "*") or (isinstance(self.nargs, int) and self.nargs > 1)

    @property
    def numeric(self) -> str | None:
        """int or float when the script converts this flag's text to a number."""
        if self.type in ("int", "float"):
            return self.type
        if self.type == "number":
            return "float"
        if self.type is None and isinstance(self.default, (int, float)) and not isinstance(self.default, bool):
            return type(self.default).__name__
        return None


@dataclass(frozen=True)
class ScriptFlags:
    """What a script accepts. `known=False`: nothing could be read (`reason` says why), so nothing is checked."""

    known: bool
    flags: tuple[Flag, ...] = field(default=())
    style: str = "plain"
    reason: str | None = None
    exclusive: tuple[tuple[bool, tuple[str, ...]], ...] = ()  # mutually exclusive groups: (required, dests)
    open: bool = False  # parse_known_args(): params it does not declare go on the command line unchecked
    target: str | None = None  # config style: the file the params are written to in the task's directory
    template: dict[str, Any] | None = None  # config style: the values the params are merged over
    _found: dict[tuple[str, str | None], Flag | None] = field(default_factory=dict, init=False, repr=False,
                                                              compare=False)

    @cached_property
    def subcommand(self) -> Flag | None:
        return next((f for f in self.flags if f.kind == "subcommand"), None)

    def selected(self, params: dict[str, Any]) -> tuple[Flag, ...]:
        """The selected subcommand's own flags (none without a subcommand param)."""
        sub = self.subcommand
        if sub is None or sub.subcommands is None:
            return ()
        name = params.get(sub.dest, params.get("command"))
        return sub.subcommands.get(str(name), ()) if name is not None else ()

    def lookup(self, name: str, params: dict[str, Any] | None = None) -> Flag | None:
        sub = self.subcommand
        if sub is not None and name in (sub.dest, "command"):
            return sub
        chosen = params.get(sub.dest, params.get("command")) if sub is not None and params else None
        key = (name, None if chosen is None else str(chosen))
        if key not in self._found:  # a 100,000-task grid asks the same few questions again and again
            want = name.replace("-", "_")
            self._found[key] = next((f for f in (*self.flags, *self.selected(params or {}))
                                     if want in f.names or name == f.dest), None)
        return self._found[key]

    def listing(self, params: dict[str, Any] | None = None) -> str:
        shown = [f.shown for f in (*self.flags, *self.selected(params or {})) if f.kind != "subcommand"]
        if self.subcommand is not None:
            shown.append(f"{self.subcommand.dest} ({', '.join(self.subcommand.subcommands or {})})")
        return ", ".join(shown) or "(no flags)"


# -- reading ------------------------------------------------------------------------------------------
def _flag(a: dict[str, Any]) -> Flag:
    subs = a.get("subcommands")
    return Flag(
        dest=a["dest"], option_strings=tuple(a["option_strings"]), kind=a["kind"], nargs=a.get("nargs"),
        required=a.get("required", False), default=a.get("default"), help=a.get("help"),
        choices=tuple(a["choices"]) if a.get("choices") is not None else None, type=a.get("type"),
        negative=a.get("negative"), bool_text=tuple(a["bool_text"]) if a.get("bool_text") else None,
        subcommands={k: tuple(_flag(x) for x in v) for k, v in subs.items()} if subs is not None else None,
    )


def _flag_json(f: Flag) -> dict[str, Any]:
    from dataclasses import asdict

    d = asdict(f)
    if f.subcommands is not None:
        d["subcommands"] = {k: [_flag_json(x) for x in v] for k, v in f.subcommands.items()}
    return d


def flags_to_json(flags: ScriptFlags) -> dict[str, Any]:
    return {"known": flags.known, "style": flags.style, "reason": flags.reason, "open": flags.open,
            "exclusive": [[r, list(d)] for r, d in flags.exclusive], "flags": [_flag_json(f) for f in flags.flags],
            **({"target": flags.target, "template": flags.template} if flags.target else {})}


def flags_from_json(data: dict[str, Any]) -> ScriptFlags:
    return ScriptFlags(
        known=data["known"], flags=tuple(_flag(f) for f in data["flags"]), style=data.get("style") or "plain",
        reason=data.get("reason"), open=data.get("open", False),
        exclusive=tuple((bool(r), tuple(d)) for r, d in data.get("exclusive") or ()),
        target=data.get("target"), template=data.get("template"),
    )


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


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def search_path(env: dict[str, str] | None) -> list[Path]:
    """The directories the spec's `env:` puts on PYTHONPATH, where a script's imported package may live."""
    return [Path(p) for p in ((env or {}).get("PYTHONPATH") or "").split(os.pathsep) if p and Path(p).is_dir()]


def read_flags(script: Path, *, python: str = sys.executable, env: dict[str, str] | None = None,
               force: bool = False) -> ScriptFlags:
    """Run the script up to its command-line parsing (with the spec's `env:` set) and read what it accepts.
    Without `force`, a script whose source (and that of the local modules it imports) names no parser framework
    is not run: it is plain (`known=False`, no reason)."""
    from batchsweep.scripts import scan as scriptscan

    script = script.resolve()  # the child runs in a scratch directory
    source = scriptscan.scan(script, search=search_path(env)).text
    if not force and not scriptscan.mentions_parser(source):
        return ScriptFlags(known=False, reason=None)  # a plain script: sys.argv, or no arguments at all
    with tempfile.TemporaryDirectory(prefix="batchsweep-introspect-") as tmp:
        out = Path(tmp) / "flags.json"
        run_env = {**os.environ, **(env or {})}
        run_env.update(helper_env(python, run_env))
        # Its own session, its stderr in a file: a process the script's imports start (a helper server, `sleep`)
        # must neither hold the wait open (a pipe stays open while any holder lives) nor outlive the reading.
        with open(Path(tmp) / "stderr", "w+b") as err:
            try:
                proc = subprocess.Popen([python, "-m", "batchsweep.scripts._introspect", str(script), str(out)],
                                        cwd=tmp, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                        env=run_env, start_new_session=True)
            except OSError as e:
                return ScriptFlags(known=False, reason=f"could not start {python}: {e.strerror}")
            try:
                returncode = proc.wait(timeout=INTROSPECT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                returncode = None
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # what it started and left running in its session
                except (ProcessLookupError, PermissionError):
                    pass
                proc.wait()
            if returncode is None:
                return ScriptFlags(known=False, reason=f"it did not reach its argument parsing within {INTROSPECT_TIMEOUT_S:g}s")
            err.seek(0)
            stderr = err.read().decode(errors="replace")
        data = json.loads(out.read_text()) if out.exists() else {}
    if not data.get("style"):
        reason = data.get("reason") or "it stopped before parsing its command line"
        if returncode != 0 and _last_line(stderr) and not data.get("kind"):
            reason = f"{reason if data else 'it failed'}: {_last_line(stderr)}"
        return ScriptFlags(known=False, reason=reason, style=data.get("kind") or _style_in(source))
    style = data["style"]
    flags = _hydra_flags(data["hydra"]) if style == "hydra" else tuple(_flag(a) for a in data["actions"])
    exclusive = tuple((bool(g["required"]), tuple(g["dests"])) for g in data.get("groups") or () if len(g["dests"]) > 1)
    return ScriptFlags(known=True, flags=flags, style=style, exclusive=exclusive, open=bool(data.get("open")))


def _type_name(value: Any) -> str | None:
    return None if value is None else type(value).__name__


def _loose_type(value: Any) -> str | None:
    """An undeclared number takes any number (`gamma = 10` may be swept over 0.5); other values their own type."""
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else _type_name(value)


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping's leaves by dotted key (`model.lr`); a mapping's own key too, so it can be replaced whole."""
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
        raise SpecError(f"args.template: {path} is over {CONFIG_MAX >> 20} MiB; a params template should be small")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        elif path.suffix == ".toml":
            data = _toml_loads(text)
        else:
            data = yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        raise SpecError(f"args.template: {path} cannot be read ({str(e).splitlines()[0]}); fix the file") from None
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


def source_flags(script: Path, style: str, *, base_dir: Path, file: str | None = None, template: str | None = None,
                 upper: bool = False, search: list[Path] | None = None) -> ScriptFlags:
    """What a script without a parser takes in the `env`, `globals` or `config` style, read from its source:
    the environment variables it reads, its module-level literals, or the keys of the params template."""
    from batchsweep.scripts import scan as scriptscan

    seen = scriptscan.scan(script, search=search)
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
    # the file the script reads when run by hand: beside it, or in the directory it is run from (the spec's, as
    # DVC's `python stages/train.py` reads the params.yaml at the repository's root)
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
    """For a `python:` other than ours: a PYTHONPATH that lets it import batchsweep's own helper modules (which
    use the standard library only) and nothing else of this environment."""
    if python == sys.executable:
        return {}
    package = Path(__file__).resolve().parents[1]
    import hashlib

    root = Path(tempfile.gettempdir()) / f"batchsweep-path-{hashlib.sha256(str(package).encode()).hexdigest()[:12]}"
    link = root / "batchsweep"
    if not link.exists():
        root.mkdir(exist_ok=True)
        try:
            link.symlink_to(package, target_is_directory=True)
        except FileExistsError:
            pass
    rest = (env if env is not None else os.environ).get("PYTHONPATH")  # the spec's own (`PYTHONPATH: src`) kept
    return {"PYTHONPATH": str(root) + (os.pathsep + rest if rest else "")}


# -- checking -----------------------------------------------------------------------------------------
def convert_params(flags: ScriptFlags, params: dict[str, Any]) -> dict[str, Any]:
    """Values YAML 1.1 reads as text (`1e-22`, `1_000`) become the number the script's declared type expects."""
    if not flags.known:
        return params
    out = dict(params)
    for name, value in params.items():
        flag = flags.lookup(name, params)
        if flag is None or flag.numeric is None:
            continue
        values = value if isinstance(value, list) else [value]
        converted = [_as_number(v, flag.numeric) for v in values]
        if converted != values:
            out[name] = converted if isinstance(value, list) else converted[0]
    return out


def _as_number(value: Any, type_name: str) -> Any:
    if not isinstance(value, str):
        return value
    for cast in ((int, float) if type_name == "int" else (float,)):
        try:
            return cast(value.strip())
        except ValueError:
            continue
    return value


def check_params(script: Path, flags: ScriptFlags, params: dict[str, Any]) -> None:
    """Raise SpecError for a param the script does not accept, a bad choice or type, a boolean the script cannot
    receive, a required flag left out, or a mutually exclusive group broken."""
    if not flags.known:
        return
    sub = flags.subcommand
    if sub is not None and sub.subcommands is not None:
        chosen = params.get(sub.dest, params.get("command"))
        if chosen is None and sub.required:
            raise SpecError(f"{script.name} has subcommands ({', '.join(sub.subcommands)}); choose one with a "
                            f"`{sub.dest}:` param")
        if chosen is not None and str(chosen) not in sub.subcommands:
            raise SpecError(f"params.{sub.dest}: {chosen!r} is not a subcommand of {script.name}; "
                            f"its subcommands: {', '.join(sub.subcommands)}")
    for name, value in params.items():
        if name.startswith("_") or name in OWN_PARAMS and flags.lookup(name, params) is None:
            continue
        if flags.style == "hydra" and (name.startswith(("+", "~", "hydra.")) or _in_group(flags, name)):
            continue  # a group's keys depend on the option chosen: Hydra itself checks them
        flag = flags.lookup(name, params)
        if flag is None:
            if flags.open:
                continue
            if flags.style == "hydra":
                raise SpecError(f"params.{name}: not a key of {script.name}'s config; its keys: {flags.listing()} "
                                f"(write `+{name}` to add a new key)")
            if flags.style in SOURCE_STYLES:
                what = {"globals": "has no module-level value", "env": "reads no environment variable",
                        "config": f"'s {flags.target} template has no key"}[flags.style]
                theirs = {"globals": "its module-level values", "env": "it reads",
                          "config": "its keys"}[flags.style]
                listed = [f.dest for f in flags.flags]
                raise SpecError(f"params.{name}: {script.name}{'' if flags.style == 'config' else ' '}{what} "
                                f"{name!r}; {theirs}: {', '.join(listed[:30])}{', ...' if len(listed) > 30 else ''}")
            raise SpecError(f"params.{name}: {script.name} does not accept --{name}; it accepts: {flags.listing(params)}")
        if flag.kind == "subcommand":
            continue
        if flag.kind in ("global", "env", "config"):
            _check_literal(script, flag, name, value)
            continue
        # A Hydra config of plain YAML takes any type for any key (only structured configs are typed: Hydra checks)
        _check_value(script, flag, name, value, typed=flags.style != "hydra")
    supplied = {flags.lookup(n, params) for n, v in params.items() if _given(flags.lookup(n, params), v)}
    for flag in (*flags.flags, *flags.selected(params)):
        if flag.required and flag not in supplied and flag.kind != "subcommand":
            raise SpecError(
                f"{script.name} requires {flag.shown} but no param supplies it; "
                f"add `{flag.dest}: ...` under params (e.g. in `fixed`)"
            )
    dests = {f.dest for f in supplied if f is not None}
    for required, group in flags.exclusive:
        given = [d for d in group if d in dests]
        if len(given) > 1:
            raise SpecError(f"params: {', '.join(given)} are mutually exclusive in {script.name}; give only one")
        if required and not given:
            raise SpecError(f"{script.name} requires one of {', '.join(group)}; add one of them under params")


def _check_literal(script: Path, flag: Flag, name: str, value: Any) -> None:
    """A value for a module-level literal, an environment variable or a config key: of the type of the script's
    own value (an int where it has an int, a list where it has a list); any value where it has None or text."""
    where = {"global": f"{script.name}'s module-level {flag.dest}",
             "env": f"{flag.dest} (read by {script.name} with a default of {flag.default!r})",
             "config": f"{flag.dest} in {script.name}'s params template"}[flag.kind]
    default = flag.default
    if default is None or value is None or isinstance(default, str):
        if isinstance(default, str) and isinstance(value, (list, dict)) and flag.kind != "env":
            raise SpecError(f"params.{name}: {value!r} is a {type(value).__name__} but {where} is text; "
                            "give one value per task")
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, (int, float)):
        strict = flag.type == "int" or (isinstance(default, int) and flag.kind == "config")
        ok = fits_type(value, "int" if strict else "float")
        if isinstance(value, float) and strict:
            ok = value.is_integer()
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
    elif isinstance(default, dict):
        ok = isinstance(value, dict)
    else:
        ok = True
    if not ok:
        raise SpecError(f"params.{name}: {value!r} does not fit {where}, which is {default!r} "
                        f"({type(default).__name__}); give {'an' if type(default).__name__[0] in 'aeiou' else 'a'} "
                        f"{type(default).__name__}")


def _in_group(flags: ScriptFlags, name: str) -> bool:
    parts = name.split(".")
    groups = {f.dest for f in flags.flags if f.kind.startswith("group")}
    return any(".".join(parts[:i]) in groups for i in range(1, len(parts)))


def _given(flag: Flag | None, value: Any) -> bool:
    """Whether the value puts the flag on the command line (a false store_true flag is left out)."""
    if value is None or flag is None:
        return False
    return not (flag.kind == "store_true" and value is False or flag.kind == "store_false" and value is True)


def _check_value(script: Path, flag: Flag, name: str, value: Any, *, typed: bool = True) -> None:
    many = isinstance(value, list) and (flag.takes_many or flag.kind == "append")
    values = value if many else [value]
    if isinstance(value, list) and not many and flag.numeric is not None and typed:
        # (an untyped argparse flag gets a list as its JSON text, a documented behaviour)
        raise SpecError(f"params.{name}: {value!r} is a list but {script.name}'s {flag.shown} takes one value; "
                        "give one value per task (a grid's list is written under params.grid)")
    if flag.kind in ("store_true", "store_false") and not isinstance(value, bool):
        raise SpecError(f"params.{name}: {flag.shown} of {script.name} is an on/off flag; give true or false, "
                        f"not {value!r}")
    if flag.kind == "store_true" and value is False and flag.default is True:
        raise SpecError(f"params.{name}: {flag.shown} of {script.name} is on by default and has no off switch; "
                        "false cannot be passed")
    if typed and flag.kind in ("store", "append") and any(isinstance(v, bool) for v in values) \
            and (flag.bool_text is None and _wants_bool(flag)):  # argparse's type=bool; Hydra reads true/false
        why = (f"has choices {list(flag.choices or ())} but no type= to turn its text into True or False, so no value "
               "passes argparse's check" if flag.type is None else
               f"(type={flag.type}) turns every text it is given into the same truth value")
        raise SpecError(f"params.{name}: {script.name}'s {flag.shown} {why}, so a boolean cannot be passed; change "
                        "the script's type to a converter such as `lambda s: s.lower() == 'true'`, or use "
                        "action='store_true'")
    if flag.choices is not None and value is not None and flag.kind not in ("store_true", "store_false"):
        if any(_choice_form(v, flag) not in flag.choices for v in values):
            raise SpecError(f"params.{name}: {value!r} is not one of {script.name}'s choices {list(flag.choices)}")
    bad = next((v for v in values if typed and v is not None and not fits_type(v, flag.numeric)), None)
    if bad is not None:
        raise SpecError(f"params.{name}: {bad!r} is not a valid {flag.numeric}, which {script.name} expects for "
                        f"{flag.shown}")


def _wants_bool(flag: Flag) -> bool:
    return (flag.type == "bool" or isinstance(flag.default, bool)
            or (flag.choices is not None and any(isinstance(c, bool) for c in flag.choices)))


def fits_type(value: Any, type_name: str | None) -> bool:
    """Whether int()/float() would accept the value as we pass it (other types are not checked)."""
    if type_name not in ("int", "float"):
        return True
    if isinstance(value, bool):
        return False
    if type_name == "float" and isinstance(value, (int, float)):
        return True
    try:
        (int if type_name == "int" else float)(str(value))
    except ValueError:
        return False
    return True


def _choice_form(value: Any, flag: Flag) -> Any:
    # Choices are compared after the script's own type conversion; our values are YAML-typed already.
    if isinstance(value, bool) and flag.bool_text is not None:
        return value
    if flag.choices and all(isinstance(c, str) for c in flag.choices):
        return str(value).lower() if isinstance(value, bool) and str(value).lower() in flag.choices else str(value)
    return value
