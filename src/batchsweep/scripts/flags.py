"""What a script accepts (`ScriptFlags`, a `Flag` per option or positional), as read from its parser by
`batchsweep.scripts.options` and recorded in run.json (`flags_to_json` / `flags_from_json`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

STYLES = ("argparse", "optparse", "click", "fire", "hydra", "plain", "argv", "env", "globals", "config")
SOURCE_STYLES = ("argv", "env", "globals", "config")  # read from the script's source: no parser to run


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
    # click's IntRange/FloatRange, typer's min=/max=: (min, max, min_open, max_open), either end None
    bounds: tuple[Any, ...] | None = None

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
        """The names a param may use for this flag: its dest and its options without dashes (`-` read as
        `_`)."""
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
        if (
            self.type is None
            and isinstance(self.default, (int, float))
            and not isinstance(self.default, bool)
        ):
            return type(self.default).__name__
        return None


@dataclass(frozen=True)
class ScriptFlags:
    """What a script accepts. `known=False`: nothing could be read (`reason` says why), so nothing is
    checked."""

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
def flag_from_dict(a: dict[str, Any]) -> Flag:
    subs = a.get("subcommands")
    return Flag(
        dest=a["dest"],
        option_strings=tuple(a["option_strings"]),
        kind=a["kind"],
        nargs=a.get("nargs"),
        required=a.get("required", False),
        default=a.get("default"),
        help=a.get("help"),
        choices=tuple(a["choices"]) if a.get("choices") is not None else None,
        type=a.get("type"),
        negative=a.get("negative"),
        bool_text=tuple(a["bool_text"]) if a.get("bool_text") else None,
        bounds=tuple(a["bounds"]) if a.get("bounds") else None,
        subcommands={k: tuple(flag_from_dict(x) for x in v) for k, v in subs.items()}
        if subs is not None
        else None,
    )


def _flag_json(f: Flag) -> dict[str, Any]:
    from dataclasses import asdict

    d = asdict(f)
    if f.subcommands is not None:
        d["subcommands"] = {k: [_flag_json(x) for x in v] for k, v in f.subcommands.items()}
    return d


def flags_to_json(flags: ScriptFlags) -> dict[str, Any]:
    return {
        "known": flags.known,
        "style": flags.style,
        "reason": flags.reason,
        "open": flags.open,
        "exclusive": [[r, list(d)] for r, d in flags.exclusive],
        "flags": [_flag_json(f) for f in flags.flags],
        **({"target": flags.target, "template": flags.template} if flags.target else {}),
    }


def flags_from_json(data: dict[str, Any]) -> ScriptFlags:
    return ScriptFlags(
        known=data["known"],
        flags=tuple(flag_from_dict(f) for f in data["flags"]),
        style=data.get("style") or "plain",
        reason=data.get("reason"),
        open=data.get("open", False),
        exclusive=tuple((bool(r), tuple(d)) for r, d in data.get("exclusive") or ()),
        target=data.get("target"),
        template=data.get("template"),
    )

