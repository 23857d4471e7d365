"""`batchsweep init SCRIPT`: a starter sweep.yaml from a script's own command line (argparse, click, typer,
fire, or a Hydra app's config)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from batchsweep.errors import SpecError
from batchsweep.scripts.options import Flag, read_flags


def _yaml_value(value: object) -> str:
    return json.dumps(value)


def _param_line(flag: Flag, indent: str = "    ", commented: bool = False) -> str:
    required = flag.required and flag.default in (None, "???")
    value = "CHANGE_ME" if required else _yaml_value(flag.default)
    notes = [n for n in ((flag.help or "").splitlines()[0] if flag.help else None, "required" if required else None,
                         f"choices: {list(flag.choices)}" if flag.choices else None) if n]
    comment = f"  # {'; '.join(notes)}" if notes else ""
    return f"{indent}{'# ' if commented else ''}{flag.dest}: [{value}]{comment}"


def starter_text(script: Path) -> str:
    flags = read_flags(script)
    if not flags.known:
        why = f"could not read its command line ({flags.reason})" if flags.reason else "no command-line parser found"
        raise SpecError(f"{script}: {why}; init reads argparse, click, typer, fire and @hydra.main scripts; "
                        "write the spec by hand (params become --name value)")
    name = re.sub(r"[^a-z0-9_-]+", "-", script.stem.lower()).strip("-_")[:64] or "sweep"
    lines = [
        f"# Starter sweep for {script.name} ({flags.style}): each param lists its current default.",
        "# Add values to a list to sweep it (a grid is the cartesian product), then: batchsweep run sweep.yaml",
        f"name: {name}",
        f"script: {json.dumps(script.name)}",
        "params:",
        "  grid:",
    ]
    sub = flags.subcommand
    groups = [f.dest + "." for f in flags.flags if f.kind.startswith("group")]
    for flag in flags.flags:
        if flag is sub or flags.style == "hydra" and flag.kind == "store" and (
                isinstance(flag.default, (dict, list)) or flag.dest.startswith(tuple(groups))):
            continue  # a whole node, or a key that comes with the group's chosen option
        lines.append(_param_line(flag))
    if sub is not None and sub.subcommands:
        first = next(iter(sub.subcommands))
        lines.append(f"    {sub.dest}: [{json.dumps(first)}]  # subcommands: {', '.join(sub.subcommands)}")
        for command, sub_flags in sub.subcommands.items():
            lines.append(f"    # flags of `{command}`:")
            lines += [_param_line(f, commented=command != first) for f in sub_flags]
    metrics = ("metrics: metrics.json             # the task function's return value (a number or dict) is kept too"
               if flags.style == "hydra" else
               "metrics: metrics.json             # or {stdout: last}, {stderr: 'loss=(?P<loss>\\S+)'} when it prints them")
    if _logs_to_mlflow(script):
        metrics = "metrics: {mlflow: true}           # what the script logs to MLflow, values and steps (batchsweep[mlflow])"
    lines += [
        "# inputs: ['data/{symbol}.csv']   files staged into each task's working directory",
        "# outputs: ['*.png']               files kept from each task (default: every file it creates)",
        metrics,
        "timeout: 10m",
        "retries: 0",
        "max_parallel: 0                   # 0 = one task per core",
    ]
    return "\n".join(lines) + "\n"


def _logs_to_mlflow(script: Path) -> bool:
    """Whether the script logs metrics to MLflow (imports it and calls log_metric(s) or an autolog)."""
    try:
        source = script.read_text(errors="replace")
    except OSError:
        return False
    return (re.search(r"^\s*(import|from)\s+mlflow\b", source, re.M) is not None
            and re.search(r"\b(log_metrics?|autolog)\s*\(", source) is not None)


def write_starter(script: str, *, output: str | None = None, force: bool = False) -> Path:
    path = Path(script)
    if not path.is_file():
        raise SpecError(f"{script}: script not found; give the path to a Python script")
    target = Path(output) if output else path.parent / "sweep.yaml"
    if target.exists() and not force:
        raise SpecError(f"{target} already exists; pass --force to overwrite or -o another.yaml")
    text = starter_text(path.resolve())
    relative = os.path.relpath(path.resolve(), target.resolve().parent)
    target.write_text(text.replace(f"script: {json.dumps(path.name)}", f"script: {json.dumps(relative)}", 1))
    return target
