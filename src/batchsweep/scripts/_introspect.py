"""Child process: read a script's command-line interface without running its main work.

Run as `python -m batchsweep.scripts._introspect SCRIPT OUT.json`. The script runs as `__main__` until it
hands control to its CLI framework: argparse's `parse_args()` (or `parse_known_args()`), optparse's
`parse_args()`, a click or typer command's `main()` (also called as `command(sys.argv[1:])` from a module the
script imports), `fire.Fire(...)`, or a `@hydra.main` task function. At that moment the interface is written
to OUT.json and the process exits. click, typer, fire and Hydra are hooked when the script (or anything it
imports) imports them, wherever that happens, and never imported otherwise, so reading a plain argparse script
stays fast.
"""

from __future__ import annotations

import argparse
import importlib.abc
import inspect
import json
import os
import runpy
import sys
from collections.abc import Callable
from typing import Any

BOOL_SPELLINGS = (("True", "False"), ("true", "false"), ("1", "0"), ("1", ""), ("yes", "no"))


def _jsonable(value: object) -> object:
    """The value as JSON keeps it: a dict or list item by item, so one Path or Enum inside a config (a
    structured config's `dir: Path`) is that item's text and every other value stays what it is."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return str(value)


def _write(out: str, data: dict[str, Any]) -> None:
    with open(out, "w") as f:
        json.dump(data, f, default=str)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# -- argparse -------------------------------------------------------------------------------------
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
        argparse._SubParsersAction: "subcommand",
    }
    for cls, name in names.items():
        if isinstance(action, cls):
            return name
    return "other"


def _bool_text(convert: Any, choices: Any) -> list[str] | None:
    """The spellings of true and false that this flag's own `type=` turns into True and False (and that its
    choices accept): `type=bool` needs '1' and '' (argparse's bool('False') is True)."""
    for yes, no in BOOL_SPELLINGS:
        try:
            t, f = (convert(yes), convert(no)) if convert else (yes, no)
        except Exception:  # noqa: BLE001 - the script's own converter rejected this spelling; try the next
            continue
        if t is True and f is False or (t == 1 and f == 0 and not isinstance(t, str)):
            if choices is None or (t in choices and f in choices):
                return [yes, no]
    return None


def _describe_actions(parser: argparse.ArgumentParser) -> list[dict[str, Any]]:
    actions = []
    for a in parser._actions:
        kind = _kind(a)
        if kind in ("help", "version"):
            continue
        entry: dict[str, Any] = {
            "dest": a.dest,
            "option_strings": list(a.option_strings),
            "kind": kind,
            "nargs": a.nargs if isinstance(a.nargs, (int, str, type(None))) else str(a.nargs),
            "required": bool(a.required) or (not a.option_strings and a.nargs not in ("?", "*")),
            "default": _jsonable(a.default) if a.default is not argparse.SUPPRESS else None,
            "help": a.help if isinstance(a.help, str) and a.help is not argparse.SUPPRESS else None,
            "choices": None,
            "type": getattr(a.type, "__name__", None) if a.type else None,
        }
        if kind == "subcommand":
            assert isinstance(a, argparse._SubParsersAction)
            entry["subcommands"] = {name: _describe_actions(p) for name, p in a.choices.items()}
            entry["dest"] = a.dest if a.dest and a.dest != argparse.SUPPRESS else "command"
        else:
            entry["choices"] = [_jsonable(c) for c in a.choices] if a.choices is not None else None
        wants_bool = (a.type is bool or "bool" in (entry["type"] or "").lower() or isinstance(a.default, bool)
                      or (a.choices is not None and any(isinstance(c, bool) for c in a.choices)))
        if kind in ("store", "append") and wants_bool:
            entry["bool_text"] = _bool_text(a.type, a.choices)
        actions.append(entry)
    return actions


def describe_argparse(parser: argparse.ArgumentParser, *, known_only: bool = False) -> dict[str, Any]:
    groups = [{"required": bool(g.required), "dests": [a.dest for a in g._group_actions]}
              for g in parser._mutually_exclusive_groups]
    return {"style": "argparse", "prog": parser.prog, "actions": _describe_actions(parser), "groups": groups,
            "open": known_only}


def _hook_argparse(out: str) -> None:
    parse_args, parse_known_args = (
        argparse.ArgumentParser.parse_args,
        argparse.ArgumentParser.parse_known_args,
    )

    def capture(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        if self.description == "Hydra":  # @hydra.main's own parser: the hydra hook reads the app
            return parse_args(self, *args, **kwargs)
        _write(out, describe_argparse(self))

    def capture_known(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        if self.description == "Hydra":
            return parse_known_args(self, *args, **kwargs)
        _write(out, describe_argparse(self, known_only=True))

    argparse.ArgumentParser.parse_args = capture  # type: ignore[method-assign]
    argparse.ArgumentParser.parse_known_args = capture_known  # type: ignore[method-assign]
    argparse.ArgumentParser.parse_intermixed_args = capture  # type: ignore[method-assign]


# -- optparse ---------------------------------------------------------------------------------------
OPTPARSE_KINDS = {
    "store": "store",
    "store_true": "store_true",
    "store_false": "store_false",
    "append": "append",
    "count": "count",
    "store_const": "flag_value",
    "append_const": "flag_value",
    "callback": "other",
}
OPTPARSE_TYPES = {
    "int": "int",
    "long": "int",
    "float": "float",
    "string": "str",
    "choice": "str",
    "complex": "complex",
}


def describe_optparse(parser: Any) -> dict[str, Any]:
    actions = []
    for o in parser._get_all_options():
        if o.action in ("help", "version") or o.dest is None:
            continue
        default = parser.defaults.get(o.dest)
        actions.append({
            "dest": o.dest, "option_strings": [*o._long_opts, *o._short_opts],
            "kind": OPTPARSE_KINDS.get(o.action, "other"), "nargs": o.nargs if (o.nargs or 1) > 1 else None,
            "required": False, "default": _jsonable(default) if not isinstance(default, tuple) else None,
            "help": o.help if isinstance(o.help, str) else None,
            "choices": [_jsonable(c) for c in o.choices] if o.choices else None,
            "type": OPTPARSE_TYPES.get(o.type or "", o.type) if o.takes_value() else None,
        })
    return {"style": "optparse", "prog": parser.prog, "actions": actions, "groups": [], "open": False}


def _hook_optparse(out: str) -> None:
    import optparse

    def capture(self: optparse.OptionParser, *args: Any, **kwargs: Any) -> Any:
        _write(out, describe_optparse(self))

    optparse.OptionParser.parse_args = capture  # type: ignore[method-assign]


# -- click and typer (typer builds click commands) ------------------------------------------------------
CLICK_TYPES = {"integer": "int", "float": "float", "boolean": "bool", "text": "str", "choice": "str"}


def _click_type(p: Any) -> tuple[str | None, list[Any] | None]:
    """The declared type's name and choices: click's `type` object, or typer's own type descriptor."""
    import enum
    import typing

    choices: Any = None
    t = getattr(p, "type", None)
    if t is not None:
        name = CLICK_TYPES.get(getattr(t, "name", ""), getattr(t, "name", None))
        choices = getattr(t, "choices", None)
    else:
        td = getattr(p, "type_descriptor", None)
        ann = getattr(td, "annotation", None)
        args = typing.get_args(ann)
        if args and typing.get_origin(ann) in (list, tuple, set, typing.Union):
            ann = next((a for a in args if a is not type(None)), ann)
        if isinstance(ann, type) and issubclass(ann, enum.Enum):
            choices = list(ann)
            name = "str"
        else:
            name = getattr(ann, "__name__", None)
        choices = choices or getattr(td, "choices", None)
    if choices is not None:
        choices = [c.value if isinstance(c, enum.Enum) else c for c in choices]
    return name, choices


def _bounds(p: Any) -> list[Any] | None:
    """click's IntRange/FloatRange (or typer's min=/max=) as [min, max, min_open, max_open]; a clamping range
    takes any number."""
    info = getattr(p, "type", None) or getattr(getattr(p, "type_descriptor", None), "parameter_info", None)
    low, high = getattr(info, "min", None), getattr(info, "max", None)
    if getattr(info, "clamp", False) or not any(isinstance(b, (int, float)) for b in (low, high)):
        return None
    return [low, high, bool(getattr(info, "min_open", False)), bool(getattr(info, "max_open", False))]


def _click_params(command: Any) -> list[dict[str, Any]]:
    # Duck-typed: typer ships its own copy of click (`typer._click`), whose classes are not click's.
    actions = []
    for p in command.params:
        if p.name in ("install_completion", "show_completion") or getattr(p, "hidden", False) is True \
                and p.name in ("help", "version"):
            continue
        type_name, choices = _click_type(p)
        default = p.default if not callable(p.default) and "UNSET" not in repr(p.default) else None
        if p.param_type_name == "option":
            if p.count:
                kind = "count"
            elif p.is_flag and p.is_bool_flag:
                kind = "boolean_optional" if p.secondary_opts else (
                    "store_false" if default is True else "store_true")
            elif p.is_flag:
                kind = "flag_value"
            else:
                kind = "append" if p.multiple else "store"
            entry: dict[str, Any] = {
                "dest": p.name,
                "option_strings": list(p.opts),
                "negative": p.secondary_opts[0] if p.secondary_opts else None,
                "kind": kind,
                "nargs": p.nargs if p.nargs != 1 else None,
                "required": bool(p.required),
                "help": p.help,
            }
        else:
            entry = {"dest": p.name, "option_strings": [], "kind": "store",
                     "nargs": "*" if p.nargs == -1 else (p.nargs if p.nargs != 1 else None),
                     "required": bool(p.required), "help": None}
        if entry["kind"] in ("store", "append") and type_name == "bool":
            entry["bool_text"] = ["true", "false"]
        entry.update(
            {
                "default": _jsonable(default),
                "choices": [_jsonable(c) for c in choices] if choices else None,
                "type": type_name,
                "bounds": _bounds(p),
            }
        )
        actions.append(entry)
    return actions


def describe_click(command: Any) -> dict[str, Any]:
    actions = _click_params(command)
    if isinstance(getattr(command, "commands", None), dict):
        actions.append({"dest": "command", "option_strings": [], "kind": "subcommand", "nargs": None,
                        "required": True, "default": None, "help": None, "choices": None, "type": None,
                        "subcommands": {name: _click_params(c) for name, c in command.commands.items()}})
    return {"style": "click", "prog": command.name, "actions": actions, "groups": [], "open": False}


def _hook_click_core(out: str, core: Any) -> None:
    def capture(self: Any, *args: Any, **kwargs: Any) -> None:
        _write(out, describe_click(self))

    for name in ("Command", "TyperCommand", "TyperGroup"):
        if hasattr(core, name):
            getattr(core, name).main = capture


# -- python-fire -------------------------------------------------------------------------------------
def _signature_actions(func: Any, *, skip_self: bool = False) -> list[dict[str, Any]]:
    actions: list[dict[str, Any]] = []
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return actions
    for p in params[1 if skip_self else 0:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        has_default = p.default is not p.empty
        ann = (
            p.annotation
            if p.annotation is not p.empty
            else (type(p.default) if has_default and p.default is not None else None)
        )
        type_name = (
            getattr(ann, "__name__", None)
            if isinstance(ann, type)
            else (ann if isinstance(ann, str) else None)
        )
        is_bool = type_name == "bool"
        actions.append(
            {
                "dest": p.name,
                "option_strings": ["--" + p.name],
                "negative": "--no" + p.name if is_bool else None,
                "kind": "boolean_optional" if is_bool else "store",
                "nargs": None,
                "required": not has_default,
                "default": _jsonable(p.default) if has_default else None,
                "help": None,
                "choices": None,
                "type": type_name,
            }
        )
    return actions


def describe_fire(component: Any) -> dict[str, Any]:
    if inspect.isroutine(component):
        actions = _signature_actions(component)
    else:  # a class, an object or a dict: its public members are commands
        members = component.items() if isinstance(component, dict) else [
            (n, getattr(component, n)) for n in dir(component) if not n.startswith("_")]
        init = _signature_actions(component.__init__, skip_self=True) if inspect.isclass(component) else []
        subs = {n: _signature_actions(m, skip_self=inspect.isclass(component) and inspect.isfunction(m))
                for n, m in members if callable(m)}
        actions = [*init, {"dest": "command", "option_strings": [], "kind": "subcommand", "nargs": None,
                           "required": True, "default": None, "help": None, "choices": None, "type": None,
                           "subcommands": subs}]
    return {"style": "fire", "prog": getattr(component, "__name__", None), "actions": actions, "groups": [],
            "open": False}


def _hook_fire(out: str, fire: Any) -> None:
    def capture(component: Any = None, *args: Any, **kwargs: Any) -> None:
        if component is None:  # Fire() exposes the calling module's globals
            caller = inspect.currentframe().f_back  # type: ignore[union-attr]
            component = {k: v for k, v in (caller.f_globals if caller else {}).items()
                         if not k.startswith("_") and inspect.isfunction(v)}
        _write(out, describe_fire(component))

    fire.Fire = capture


# -- Hydra -------------------------------------------------------------------------------------------
def _flat_keys(node: Any, prefix: str = "") -> list[str]:
    keys = []
    if isinstance(node, dict):
        for k, v in node.items():
            name = f"{prefix}{k}"
            keys.append(name)
            keys.extend(_flat_keys(v, name + "."))
    return keys


def _hook_hydra(out: str, tmp: str, hydra: Any) -> None:
    original = hydra.main

    def main(*dargs: Any, **dkwargs: Any) -> Any:
        decorate = original(*dargs, **dkwargs)

        def decorator(task_function: Any) -> Any:
            import functools

            @functools.wraps(task_function)
            def capture(cfg: Any) -> None:
                from hydra.core.global_hydra import GlobalHydra
                from hydra.core.hydra_config import HydraConfig
                from omegaconf import OmegaConf

                config = OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)
                loader = GlobalHydra.instance().config_loader()
                chosen = {
                    k: v for k, v in HydraConfig.get().runtime.choices.items() if not k.startswith("hydra/")
                }
                names = set(chosen)
                todo = [g for g in loader.list_groups("") if g != "hydra"]
                while todo:  # every config group in the search path, nested ones as `db/engine`
                    group = todo.pop()
                    names.add(group)
                    todo += [f"{group}/{g}" for g in loader.list_groups(group)]
                groups = {g.replace("/", "."): sorted(loader.get_group_options(g)) for g in sorted(names)}
                _write(
                    out,
                    {
                        "style": "hydra",
                        "prog": task_function.__name__,
                        "actions": [],
                        "groups": [],
                        "open": False,
                        "hydra": {
                            "keys": _flat_keys(config),
                            "groups": groups,
                            "defaults": {g.replace("/", "."): v for g, v in chosen.items()},
                            "config": _jsonable(config),
                        },
                    },
                )

            return decorate(capture)

        return decorator

    hydra.main = main

    import hydra._internal.utils as hydra_utils

    def run_and_report(func: Any) -> Any:
        try:
            return func()
        # BLE001: Hydra's own error (config not found, bad override): its first line
        except Exception as e:  # noqa: BLE001
            message = " ".join(str(e).strip().splitlines()[:1]) or type(e).__name__
            with open(out, "w") as f:
                json.dump({"style": None, "kind": "hydra", "reason": f"Hydra: {message}"}, f)
            os._exit(1)

    hydra_utils.run_and_report = run_and_report
    # Reading the options never applies the app's logging config (a file handler under its run dir, or one
    # that `hydra/job_logging=disabled` would leave half-merged): nothing is configured while reading.
    import hydra.core.utils as hydra_core_utils

    hydra_core_utils.configure_log = lambda *args, **kwargs: None
    sys.argv += [f"hydra.run.dir={tmp}", "hydra.output_subdir=null"]


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Runs a patch right after a watched module is first imported, by whichever module imports it (a click
    command may live in a package the script imports), without importing anything the script does not."""

    def __init__(self, patches: dict[str, Callable[[Any], None]]) -> None:
        self.patches = patches

    @staticmethod
    def _patched(execute: Callable[[Any], None], patch: Callable[[Any], None]) -> Callable[[Any], None]:
        def exec_module(module: Any) -> None:
            execute(module)
            patch(module)

        return exec_module

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in self.patches:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                patched = self._patched(spec.loader.exec_module, self.patches.pop(name))
                spec.loader.exec_module = patched  # type: ignore[method-assign,assignment]
                return spec
        return None


def main() -> None:
    script, out = sys.argv[1:3]
    _hook_argparse(out)
    _hook_optparse(out)
    sys.argv = [script]
    hydra_run = os.path.join(os.path.dirname(out), "hydra-run")
    patches: dict[str, Callable[[Any], None]] = {
        "click.core": lambda m: _hook_click_core(out, m),
        "typer.core": lambda m: _hook_click_core(out, m),
        "typer._click.core": lambda m: _hook_click_core(out, m),
        "fire": lambda m: _hook_fire(out, m),
        "hydra": lambda m: _hook_hydra(out, hydra_run, m),
    }
    sys.meta_path.insert(0, _PatchOnImport(patches))
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        with open(out, "w") as f:
            json.dump(
                {"style": None, "reason": f"it exited (code {e.code}) before parsing its command line"}, f
            )
        raise
    with open(out, "w") as f:
        json.dump({"style": None, "reason": "it ran to the end without parsing its command line"}, f)


if __name__ == "__main__":
    main()
