"""Params → a task's argv, in the style of the script's command-line framework (docs/design.md §2), never
through a shell. How each style writes a value; a bool; a list; a subcommand:

    argparse  `--name value`; `--flag` / absent, `--no-flag` (typed flags get a text their type reads);
              repeated values (nargs), a repeated option (append), else JSON; a `command:` param, its flags
              after it
    click     `--max-depth 3`; `--flag` / `--no-flag` (declared names); a repeated option (multiple); as
              argparse
    fire      `--name=value`; `--flag` / `--noflag`; a Python literal; the first argument
    hydra     `key=value`; `key=true` / `key=false`; `key=[1,2]`; `group=option`
    plain     `--name value`; `--flag` / absent (or `--flag true`); JSON; none
    argv      each value at its position (`train.py 0.1 0.5` for `alpha = float(sys.argv[1])`, `l1_ratio =
              float(sys.argv[2])`); a position before a given one that no param sets gets the script's default

Scripts without a parser (docs/design.md §2) get no argv: `env` sets one environment variable per param
(`True`/ `False`, a list as JSON), `globals` runs the script through `batchsweep.task._globalsrun`, which
replaces its module-level literals, and `config` writes the params into the file the script reads
(`config_file`).
"""

from __future__ import annotations

import ast
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchsweep.model import OWN_PARAMS
from batchsweep.scripts.flags import Flag, ScriptFlags

HYDRA_RUN_DIR = "hydra.run.dir=."  # Hydra's output dir is the task's own working directory


@dataclass(frozen=True)
class ArgStyle:
    """The spec's `args:` override, for what detection gets wrong."""

    style: str | None = None  # argparse | optparse | click | fire | hydra | plain | env | globals | config
    dashes: bool = False  # an undeclared `max_depth` becomes `--max-depth`
    upper: bool = False  # env: a param `lr` becomes the variable LR
    file: str | None = None  # config: the file the script reads, written in the task's directory
    template: str | None = None  # config: the file (relative to the spec) the params are merged over
    bool: str = "flag"  # undeclared booleans: `flag` (--x / absent) or `value` (--x true / --x false)

    @classmethod
    def from_spec(cls, data: dict[str, Any] | None) -> ArgStyle:
        return cls(**data) if data else cls()


def build_argv(params: dict[str, Any], flags: ScriptFlags, style: ArgStyle | None = None) -> list[str]:
    """argv for one task, after the script path."""
    style = style or ArgStyle()
    kind = style.style or flags.style
    visible = {k: v for k, v in params.items() if not k.startswith("_")}
    if kind in ("env", "config"):
        return []
    if kind == "globals":
        return [f"{k}={json.dumps(v)}" for k, v in visible.items()
                if not (k in OWN_PARAMS and flags.lookup(k) is None)]
    if kind == "hydra":
        return _hydra(visible, flags)
    if kind == "argv":
        return _by_position(visible, flags)
    sub = flags.subcommand
    chosen = None
    if sub is not None:
        chosen = visible.pop(sub.dest, None)
        if chosen is None and sub.dest != "command":
            chosen = visible.pop("command", None)
    elif "command" in visible and kind in ("fire",) and not flags.known:
        chosen = visible.pop("command")
    sub_flags = (
        sub.subcommands.get(str(chosen), ())
        if sub is not None and sub.subcommands and chosen is not None
        else ()
    )
    top = tuple(f for f in flags.flags if f.kind != "subcommand")
    main = {k: v for k, v in visible.items() if not sub_flags or _find(top, k) is not None}
    rest = {k: v for k, v in visible.items() if k not in main}
    if kind == "fire":
        head = [str(chosen)] if chosen is not None else []
        return (
            head
            + _options(main, flags.flags, flags, style, "fire")
            + _options(rest, sub_flags, flags, style, "fire")
        )
    argv = _options(main, flags.flags, flags, style, kind, positionals_last=chosen is None)
    if chosen is not None:
        argv.append(str(chosen))
        argv += _options(rest, sub_flags, flags, style, kind, positionals_last=True)
    return argv


def _by_position(params: dict[str, Any], flags: ScriptFlags) -> list[str]:
    """The values in the order the script reads sys.argv, up to the last one given (a script reads a missing
    position as its default only when no later one is given, so a gap gets the default written out)."""
    given = [i for i, f in enumerate(flags.flags) if f.dest in params]
    upto = flags.flags[: given[-1] + 1] if given else ()
    return [_text(params[f.dest] if f.dest in params else f.default, f) for f in upto]


def _find(declared: tuple[Flag, ...], name: str) -> Flag | None:
    want = name.replace("-", "_")
    for f in declared:
        if f.kind == "subcommand":
            continue
        if name == f.dest or want in {f.dest} | {o.lstrip("-").replace("-", "_") for o in f.option_strings}:
            return f
    return None


def _options(
    params: dict[str, Any],
    declared: tuple[Flag, ...],
    flags: ScriptFlags,
    style: ArgStyle,
    kind: str,
    *,
    positionals_last: bool = True,
) -> list[str]:
    positional: list[tuple[int, list[str]]] = []
    argv: list[str] = []
    order = {f.dest: i for i, f in enumerate(declared)}
    fire = kind == "fire"
    for name, value in params.items():
        if value is None:
            continue
        flag = _find(declared, name) if flags.known else None
        if flags.known and flag is None and not flags.open:
            continue  # one of our own params (repeat, trial) the script does not take
        if flag is not None and flag.positional:
            values = value if isinstance(value, list) and flag.takes_many else [value]
            positional.append((order[flag.dest], [_text(v, flag, fire) for v in values]))
            continue
        undeclared = "--" + (name.replace("_", "-") if style.dashes else name)
        option = flag.option if flag else undeclared
        fkind = (
            flag.kind
            if flag
            else ("store_true" if isinstance(value, bool) and style.bool == "flag" else "store")
        )
        if fkind == "boolean_optional":
            negative = flag.negative if flag and flag.negative else "--no-" + option.lstrip("-")
            argv.append(option if value else negative)
        elif fkind == "store_true":
            if value:
                argv.append(option)
        elif fkind == "store_false":
            if not value:
                argv.append(option)
        elif fkind == "count":
            argv.extend([option] * int(value))
        elif isinstance(value, list) and flag is not None and flag.kind == "append":
            for v in value:
                argv.extend(_pair(option, _text(v, flag, fire), fire))
        elif isinstance(value, list) and flag is not None and flag.takes_many and not fire:
            argv.append(option)
            argv.extend(_text(v, flag, fire) for v in value)
        else:
            argv.extend(_pair(option, _text(value, flag, fire), fire))
    if positional and positionals_last:
        argv.append("--")  # so a `nargs='+'` option before them cannot swallow them, and `-1` stays a value
    for _, values in sorted(positional):
        argv.extend(values)
    return argv


def _pair(option: str, text: str, fire: bool) -> list[str]:
    # `--x=-5`: argparse would take a bare `-5` that follows a flag for an option of its own.
    if fire or (text.startswith("-") and option.startswith("-")):
        return [f"{option}={text}"]
    return [option, text]


def _text(value: Any, flag: Flag | None, fire: bool = False) -> str:
    if isinstance(value, bool) and flag is not None and flag.bool_text is not None:
        return flag.bool_text[0 if value else 1]
    if fire:
        return _fire_text(value)
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    return str(value)


def _fire_text(value: Any) -> str:
    """Fire reads a value as a Python literal when it can: quote text that would read as something else."""
    if isinstance(value, str):
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return value
        return value if isinstance(parsed, str) and parsed == value else repr(value)
    return repr(value)


# -- Hydra ------------------------------------------------------------------------------------------
_PLAIN = re.compile(r"^[A-Za-z_][\w./-]*$")
_HYDRA_WORDS = {"true", "false", "null", "none", "nan", "inf"}


def _hydra_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_hydra_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _HYDRA_WORDS:
        return text
    return "'" + _HYDRA_ESCAPES.sub(_hydra_escape, text) + "'"


# In a quoted Hydra value `\'` is a quote, `\${` a literal `${` (not an interpolation such as ${oc.env:HOME}),
# and a run of backslashes is halved only where it stands before a quote, a `${` or the end: only there is it
# doubled, so that every value arrives as written.
_HYDRA_ESCAPES = re.compile(r"(\\+)(?='|\$\{|\Z)|'|\$\{")


def _hydra_escape(m: re.Match[str]) -> str:
    found = m.group(0)
    return found * 2 if found.startswith("\\") else "\\" + found


def _hydra(params: dict[str, Any], flags: ScriptFlags) -> list[str]:
    argv = []
    for name, value in params.items():
        if flags.known and name in OWN_PARAMS and flags.lookup(name) is None:
            continue
        flag = flags.lookup(name) if flags.known else None
        group = flag is not None and flag.kind.startswith("group")
        prefix = "+" if flag is not None and flag.kind == "group_new" else ""
        argv.append(f"{prefix}{name.replace('.', '/') if group else name}={_hydra_value(value)}")
    return argv if "hydra.run.dir" in params else [*argv, HYDRA_RUN_DIR]


# -- scripts without a parser ---------------------------------------------------------------------------
_PLACEHOLDER = re.compile(r"(?<!\$)\{([A-Za-z_]\w*)\}")  # `${HOME}` is the shell's, not a placeholder
PATH_VARS = ("PYTHONPATH", "PATH", "LD_LIBRARY_PATH")


def fill_env(text: str, params: dict[str, Any], *, where: str) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in params:
            from batchsweep.errors import SpecError

            raise SpecError(
                f"{where}: placeholder {{{m.group(1)}}} names no param; params are: {', '.join(params)}"
            )
        value = params[m.group(1)]
        return json.dumps(value) if isinstance(value, (list, dict)) else str(value)

    return _PLACEHOLDER.sub(sub, text)


def task_env_values(env: dict[str, str], params: dict[str, Any], base_dir: Path | None) -> dict[str, str]:
    """The spec's `env:` for one task: `{param}` placeholders filled; a relative value that names a directory
    under the spec's directory (each part of a PATH-like list) made absolute, since a task runs in its own."""
    out = {}
    for name, value in env.items():
        if "{" in value:
            value = fill_env(value, params, where=f"env.{name}")
        if base_dir is not None:
            parts = value.split(os.pathsep) if name in PATH_VARS else [value]
            value = os.pathsep.join(_absolute(p, base_dir) for p in parts)
        out[name] = value
    return out


def _absolute(part: str, base_dir: Path) -> str:
    if not part or os.path.isabs(part) or "://" in part or part.startswith("~"):
        return part
    candidate = base_dir / part
    try:
        return str(candidate.resolve()) if candidate.is_dir() else part
    except OSError:  # a value that is no path at all (too long a name)
        return part


def env_vars(params: dict[str, Any], flags: ScriptFlags, style: ArgStyle) -> dict[str, str]:
    """`env` style: each param as the variable the script reads (its own name, the upper-case one it reads, or
    every name upper-cased with `upper: true`)."""
    out = {}
    for name, value in params.items():
        if name.startswith("_") or value is None or (name in OWN_PARAMS and flags.lookup(name) is None):
            continue
        flag = flags.lookup(name) if flags.flags else None
        var = flag.dest if flag is not None else (name.upper() if style.upper else name)
        out[var] = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return out


def config_file(params: dict[str, Any], flags: ScriptFlags) -> tuple[str, str]:
    """`config` style: (the file's name, its text): the template with each param set (`model.lr` sets a nested
    key), in the file's own format (JSON, YAML or TOML by its suffix)."""
    import copy

    data: dict[str, Any] = copy.deepcopy(flags.template) if flags.template else {}
    for name, value in params.items():
        if name.startswith("_") or (name in OWN_PARAMS and flags.lookup(name) is None):
            continue
        node = data
        parts = name.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    target = flags.target
    assert target, "a config-style run records the file its params are written to"
    if target.endswith(".toml"):
        return target, _toml(data)
    if target.endswith((".yaml", ".yml")):
        import yaml

        return target, yaml.safe_dump(data, sort_keys=False)
    return target, json.dumps(data, indent=2) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return (
            repr(value)
            if value == value and abs(value) != float("inf")
            else ("nan" if value != value else ("inf" if value > 0 else "-inf"))
        )
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml(data: dict[str, Any], prefix: str = "") -> str:
    plain = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    lines = ([f"[{prefix}]"] if prefix and plain else []) + plain
    for k, v in data.items():
        if isinstance(v, dict):
            lines += ["", _toml(v, f"{prefix}.{_toml_key(k)}" if prefix else _toml_key(k))]
    return "\n".join(lines).strip("\n") + "\n"
