"""Child process: find a script's argparse parser without running its main work.

Run as `python -m batchsweep._introspect SCRIPT OUT.json`. The script runs as `__main__` until it asks its
parser to parse; at that moment we write the parser's actions to OUT.json and exit. A script that never
parses is reported as such.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys


def _kind(action: argparse.Action) -> str:
    names = {
        argparse._StoreTrueAction: "store_true",
        argparse._StoreFalseAction: "store_false",
        argparse._AppendAction: "append",
        argparse._CountAction: "count",
        argparse._HelpAction: "help",
        argparse._VersionAction: "version",
        argparse._StoreAction: "store",
        argparse.BooleanOptionalAction: "boolean_optional",
    }
    for cls, name in names.items():
        if type(action) is cls:
            return name
    return "other"


def _jsonable(value: object) -> object:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return str(value)


def describe(parser: argparse.ArgumentParser) -> dict[str, object]:
    actions = []
    for a in parser._actions:
        kind = _kind(a)
        if kind in ("help", "version"):
            continue
        actions.append({
            "dest": a.dest,
            "option_strings": list(a.option_strings),
            "kind": kind,
            "nargs": a.nargs if isinstance(a.nargs, (int, str, type(None))) else str(a.nargs),
            "required": bool(a.required) or (not a.option_strings and a.nargs not in ("?", "*")),
            "default": _jsonable(a.default) if a.default is not argparse.SUPPRESS else None,
            "help": a.help if isinstance(a.help, str) else None,
            "choices": [_jsonable(c) for c in a.choices] if a.choices is not None else None,
            "type": getattr(a.type, "__name__", None) if a.type else None,
        })
    return {"argparse": True, "prog": parser.prog, "actions": actions}


def main() -> None:
    script, out = sys.argv[1], sys.argv[2]

    def capture(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        with open(out, "w") as f:
            json.dump(describe(self), f)
        sys.stdout.flush()
        os._exit(0)

    argparse.ArgumentParser.parse_args = capture  # type: ignore[method-assign,assignment]
    argparse.ArgumentParser.parse_known_args = capture  # type: ignore[method-assign,assignment]
    argparse.ArgumentParser.parse_intermixed_args = capture  # type: ignore[method-assign,assignment]
    sys.argv = [script]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        with open(out, "w") as f:
            json.dump({"argparse": False}, f)


if __name__ == "__main__":
    main()
