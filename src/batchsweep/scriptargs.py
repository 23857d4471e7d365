"""The job contract's argparse mapping (docs/design.md §2): params → argv, never through a shell.

Before anything runs, the script's flags are read by running it up to its `parse_args()` call
(`batchsweep._introspect`), so an unknown or missing param is bad input, reported before a run exists.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchsweep.errors import SpecError

INTROSPECT_TIMEOUT_S = 60.0
# Params batchsweep adds itself, passed only when the script declares them.
OWN_PARAMS = frozenset({"repeat", "trial", "round"})


@dataclass(frozen=True)
class Flag:
    dest: str
    option_strings: tuple[str, ...]
    kind: str
    nargs: int | str | None = None
    required: bool = False
    default: Any = None
    help: str | None = None
    choices: tuple[Any, ...] | None = None
    type: str | None = None  # the name of argparse's `type=` (int, float, str, a function's name)

    @property
    def positional(self) -> bool:
        return not self.option_strings

    @property
    def option(self) -> str:
        longs = [o for o in self.option_strings if o.startswith("--") and not o.startswith("--no-")]
        return (longs or list(self.option_strings))[0]

    @property
    def takes_many(self) -> bool:
        return self.nargs in ("+", "*") or (isinstance(self.nargs, int) and self.nargs > 1)


@dataclass(frozen=True)
class ScriptFlags:
    """What a script accepts. `known=False`: it does not use argparse, so nothing can be checked."""

    known: bool
    flags: tuple[Flag, ...] = field(default=())

    def lookup(self, name: str) -> Flag | None:
        want = name.replace("-", "_")
        for f in self.flags:
            names = {f.dest} | {o.lstrip("-").replace("-", "_") for o in f.option_strings}
            if want in names:
                return f
        return None

    def listing(self) -> str:
        return ", ".join(f.option if not f.positional else f.dest for f in self.flags) or "(no flags)"


def flags_to_json(flags: ScriptFlags) -> dict[str, Any]:
    from dataclasses import asdict

    return {"known": flags.known, "flags": [asdict(f) for f in flags.flags]}


def flags_from_json(data: dict[str, Any]) -> ScriptFlags:
    return ScriptFlags(
        known=data["known"],
        flags=tuple(
            Flag(**{**f, "option_strings": tuple(f["option_strings"]),
                    "choices": tuple(f["choices"]) if f.get("choices") is not None else None})
            for f in data["flags"]
        ),
    )


def read_flags(script: Path, *, python: str = sys.executable) -> ScriptFlags:
    source = script.read_text(encoding="utf-8", errors="replace")
    if "argparse" not in source:
        return ScriptFlags(known=False)
    with tempfile.TemporaryDirectory(prefix="batchsweep-introspect-") as tmp:
        out = Path(tmp) / "flags.json"
        try:
            subprocess.run(
                [python, "-m", "batchsweep._introspect", str(script), str(out)],
                cwd=tmp, stdin=subprocess.DEVNULL, capture_output=True, timeout=INTROSPECT_TIMEOUT_S, check=False,
            )
        except subprocess.TimeoutExpired:
            return ScriptFlags(known=False)
        if not out.exists():
            return ScriptFlags(known=False)
        data = json.loads(out.read_text())
    if not data.get("argparse"):
        return ScriptFlags(known=False)
    flags = tuple(
        Flag(
            dest=a["dest"], option_strings=tuple(a["option_strings"]), kind=a["kind"], nargs=a["nargs"],
            required=a["required"], default=a["default"], help=a["help"],
            choices=tuple(a["choices"]) if a["choices"] is not None else None, type=a.get("type"),
        )
        for a in data["actions"]
    )
    return ScriptFlags(known=True, flags=flags)


def check_params(script: Path, flags: ScriptFlags, params: dict[str, Any]) -> None:
    """Raise SpecError for a param the script does not accept, a bad choice, or a required flag left out."""
    if not flags.known:
        return
    for name, value in params.items():
        if name.startswith("_") or name in OWN_PARAMS and flags.lookup(name) is None:
            continue
        flag = flags.lookup(name)
        if flag is None:
            raise SpecError(
                f"params.{name}: {script.name} does not accept --{name}; it accepts: {flags.listing()}"
            )
        values = value if isinstance(value, list) and (flag.takes_many or flag.kind == "append") else [value]
        if flag.choices is not None and value is not None and any(_coerce(v, flag) not in flag.choices for v in values):
            raise SpecError(f"params.{name}: {value!r} is not one of {script.name}'s choices {list(flag.choices)}")
        bad = next((v for v in values if v is not None and not _fits_type(v, flag.type)), None)
        if bad is not None:
            raise SpecError(f"params.{name}: {bad!r} is not a valid {flag.type}, which {script.name} expects for "
                            f"{flag.option if not flag.positional else flag.dest}")
    supplied = [flags.lookup(n) for n in params]  # a list: a Flag with a list default is unhashable
    for flag in flags.flags:
        if flag.required and flag not in supplied:
            raise SpecError(
                f"{script.name} requires {flag.option if not flag.positional else flag.dest} but no param supplies it; "
                f"add `{flag.dest}: ...` under params (e.g. in `fixed`)"
            )


def _fits_type(value: Any, type_name: str | None) -> bool:
    """Whether argparse's int()/float() would accept the value as we pass it (other types are not checked)."""
    if type_name not in ("int", "float") or isinstance(value, bool):
        return not isinstance(value, bool) or type_name not in ("int", "float")
    try:
        (int if type_name == "int" else float)(_text(value))
    except ValueError:
        return False
    return True


def _coerce(value: Any, flag: Flag) -> Any:
    # Choices are compared after argparse's own type conversion; our values are YAML-typed already.
    if flag.choices and all(isinstance(c, str) for c in flag.choices):
        return str(value)
    return value


def _text(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    return str(value)


def build_argv(params: dict[str, Any], flags: ScriptFlags) -> list[str]:
    """argv for one task (after the script path): options, then `--` and the positionals in the parser's order."""
    positional: list[tuple[int, list[str]]] = []
    argv: list[str] = []
    order = {f.dest: i for i, f in enumerate(flags.flags)}
    for name, value in params.items():
        if name.startswith("_") or value is None:
            continue
        flag = flags.lookup(name) if flags.known else None
        if flags.known and flag is None:
            continue  # one of our own params (repeat, trial) the script does not take
        if flag is not None and flag.positional:
            values = value if isinstance(value, list) and flag.takes_many else [value]
            positional.append((order[flag.dest], [_text(v) for v in values]))
            continue
        option = flag.option if flag else f"--{name}"
        kind = flag.kind if flag else ("store_true" if isinstance(value, bool) else "store")
        if kind == "boolean_optional":
            argv.append(option if value else "--no-" + option.lstrip("-"))
        elif kind == "store_true":
            if value:
                argv.append(option)
        elif kind == "store_false":
            if not value:
                argv.append(option)
        elif kind == "count":
            argv.extend([option] * int(value))
        elif isinstance(value, list) and flag is not None and flag.kind == "append":
            for v in value:
                argv.extend([option, _text(v)])
        elif isinstance(value, list) and flag is not None and flag.takes_many:
            argv.append(option)
            argv.extend(_text(v) for v in value)
        else:
            text = _text(value)
            # `--x=-5`: argparse would take a bare `-5` that follows a flag for an option of its own.
            argv.extend([f"{option}={text}"] if text.startswith("-") else [option, text])
    if positional:
        argv.append("--")  # so a `nargs='+'` option before them cannot swallow them, and `-1` stays a value
    for _, values in sorted(positional):
        argv.extend(values)
    return argv
