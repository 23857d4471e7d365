"""Params checked against what a script accepts (`ScriptFlags`) before anything runs: an unknown or missing
param, a value outside the choices or of the wrong type, is one `SpecError` naming the script and the fix;
`convert_params` gives a param the type its option declares.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchsweep.errors import SpecError
from batchsweep.model import OWN_PARAMS
from batchsweep.scripts.flags import SOURCE_STYLES, Flag, ScriptFlags


def convert_params(flags: ScriptFlags, params: dict[str, Any]) -> dict[str, Any]:
    """Values YAML 1.1 reads as text (`1e-22`, `1_000`) become the number the script's declared type
    expects."""
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
    """Raise SpecError for a param the script does not accept, a bad choice or type, a boolean the script
    cannot receive, a required flag left out, or a mutually exclusive group broken."""
    if not flags.known:
        return
    sub = flags.subcommand
    if sub is not None and sub.subcommands is not None:
        chosen = params.get(sub.dest, params.get("command"))
        if chosen is None and sub.required:
            raise SpecError(
                f"{script.name} has subcommands ({', '.join(sub.subcommands)}); choose one with a "
                f"`{sub.dest}:` param"
            )
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
                raise SpecError(
                    f"params.{name}: not a key of {script.name}'s config; its keys: {flags.listing()} "
                    f"(write `+{name}` to add a new key)"
                )
            if flags.style in SOURCE_STYLES:
                what = {"globals": "has no module-level value", "env": "reads no environment variable",
                        "config": f"'s {flags.target} template has no key",
                        "argv": "assigns no sys.argv position to"}[flags.style]
                theirs = {"globals": "its module-level values", "env": "it reads",
                          "config": "its keys", "argv": "its positions, in order"}[flags.style]
                listed = [f.dest for f in flags.flags]
                raise SpecError(
                    f"params.{name}: {script.name}{'' if flags.style == 'config' else ' '}{what} "
                    f"{name!r}; {theirs}: {', '.join(listed[:30])}{', ...' if len(listed) > 30 else ''}"
                )
            raise SpecError(
                f"params.{name}: {script.name} does not accept --{name}; it accepts: {flags.listing(params)}"
            )
        if flag.kind == "subcommand":
            continue
        if flag.kind == "argv":
            _check_position(script, flags, flag, name, value, params)
            continue
        if flag.kind in ("global", "env", "config"):
            _check_literal(script, flag, name, value)
            continue
        # A Hydra config of plain YAML takes any type for any key (only structured configs are typed: Hydra
        # checks)
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
            raise SpecError(
                f"params: {', '.join(given)} are mutually exclusive in {script.name}; give only one"
            )
        if required and not given:
            raise SpecError(f"{script.name} requires one of {', '.join(group)}; add one of them under params")


def _check_position(script: Path, flags: ScriptFlags, flag: Flag, name: str, value: Any,
                    params: dict[str, Any]) -> None:
    """A value for `sys.argv[N]`: one text its conversion reads (a number where it calls float()), and every
    position before it either given or with a default the script's own."""
    if flag.numeric and not fits_type(value, flag.numeric):
        raise SpecError(f"params.{name}: {value!r} is not a number, but {script.name} reads its sys.argv "
                        f"position as {flag.numeric}(...)")
    if isinstance(value, (list, dict)):
        raise SpecError(f"params.{name}: {script.name} reads one value at its sys.argv position, not a "
                        f"{type(value).__name__}; give one value per task")
    for before in flags.flags[: flags.flags.index(flag)]:
        if before.dest not in params and before.default is None:
            raise SpecError(f"params.{name}: {script.name} reads it after {before.dest} (sys.argv position "
                            f"{flags.flags.index(before) + 1}), which has no default to pass; add "
                            f"`{before.dest}: ...` under params")


def _check_literal(script: Path, flag: Flag, name: str, value: Any) -> None:
    """A value for a module-level literal, an environment variable or a config key: of the type of the
    script's own value (an int where it has an int, a list where it has a list); any value where it has None
    or text."""
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
        raise SpecError(
            f"params.{name}: {value!r} does not fit {where}, which is {default!r} "
            f"({type(default).__name__}); give {'an' if type(default).__name__[0] in 'aeiou' else 'a'} "
            f"{type(default).__name__}"
        )


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
        raise SpecError(
            f"params.{name}: {value!r} is a list but {script.name}'s {flag.shown} takes one value; "
            "give one value per task (a grid's list is written under params.grid)"
        )
    if flag.kind in ("store_true", "store_false") and not isinstance(value, bool):
        raise SpecError(
            f"params.{name}: {flag.shown} of {script.name} is an on/off flag; give true or false, "
            f"not {value!r}"
        )
    if flag.kind == "store_true" and value is False and flag.default is True:
        raise SpecError(
            f"params.{name}: {flag.shown} of {script.name} is on by default and has no off switch; "
            "false cannot be passed"
        )
    # argparse's type=bool; Hydra reads true/false
    if typed and flag.kind in ("store", "append") and any(isinstance(v, bool) for v in values) \
            and (flag.bool_text is None and _wants_bool(flag)):
        why = (
            f"has choices {list(flag.choices or ())} but no type= to turn its text into True or False, so no "
            "value passes argparse's check"
            if flag.type is None
            else f"(type={flag.type}) turns every text it is given into the same truth value"
        )
        raise SpecError(
            f"params.{name}: {script.name}'s {flag.shown} {why}, so a boolean cannot be passed; change "
            "the script's type to a converter such as `lambda s: s.lower() == 'true'`, or use "
            "action='store_true'"
        )
    if flag.choices is not None and value is not None and flag.kind not in ("store_true", "store_false"):
        if any(_choice_form(v, flag) not in flag.choices for v in values):
            raise SpecError(
                f"params.{name}: {value!r} is not one of {script.name}'s choices {list(flag.choices)}"
            )
    bad = next((v for v in values if typed and v is not None and not fits_type(v, flag.numeric)), None)
    if bad is not None:
        raise SpecError(
            f"params.{name}: {bad!r} is not a valid {flag.numeric}, which {script.name} expects for "
            f"{flag.shown}"
        )
    if flag.bounds and typed:
        _check_bounds(script, flag, name, values)


def _check_bounds(script: Path, flag: Flag, name: str, values: list[Any]) -> None:
    low, high, low_open, high_open = flag.bounds or (None, None, False, False)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if (low is not None and (v < low or low_open and v == low)) or \
                (high is not None and (v > high or high_open and v == high)):
            shown = " ".join(x for x in (
                f"{low} {'<' if low_open else '<='}" if low is not None else "", "x",
                f"{'<' if high_open else '<='} {high}" if high is not None else "") if x)
            raise SpecError(f"params.{name}: {v!r} is outside the range {script.name} accepts for "
                            f"{flag.shown} ({shown})")


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
        return (
            str(value).lower()
            if isinstance(value, bool) and str(value).lower() in flag.choices
            else str(value)
        )
    return value
