"""`batchsweep init SCRIPT`: a starter sweep.yaml from a script's own argparse flags."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from batchsweep.errors import SpecError
from batchsweep.scriptargs import read_flags


def _yaml_value(value: object) -> str:
    return json.dumps(value)


def starter_text(script: Path) -> str:
    flags = read_flags(script)
    if not flags.known:
        raise SpecError(f"{script}: no argparse parser found (it must call parse_args()); write the spec by hand")
    name = re.sub(r"[^a-z0-9_-]+", "-", script.stem.lower()).strip("-_")[:64] or "sweep"
    lines = [
        f"# Starter sweep for {script.name}: each param lists its current default.",
        "# Add values to a list to sweep it (a grid is the cartesian product), then: batchsweep run sweep.yaml",
        f"name: {name}",
        f"script: {json.dumps(script.name)}",
        "params:",
        "  grid:",
    ]
    for flag in flags.flags:
        required = flag.required and flag.default is None
        value = "CHANGE_ME" if required else _yaml_value(flag.default)
        notes = [n for n in (flag.help, "required" if required else None,
                             f"choices: {list(flag.choices)}" if flag.choices else None) if n]
        comment = f"  # {'; '.join(notes)}" if notes else ""
        lines.append(f"    {flag.dest}: [{value}]{comment}")
    lines += [
        "# inputs: [data/{symbol}.csv]     files staged into each task's working directory",
        "# outputs: ['*.png']               files kept from each task (default: every file it creates)",
        "metrics: metrics.json             # or {stdout: last} when the script prints its result",
        "timeout: 10m",
        "retries: 0",
        "max_parallel: 0                   # 0 = one task per core",
    ]
    return "\n".join(lines) + "\n"


def write_starter(script: str, *, output: str | None = None, force: bool = False) -> Path:
    path = Path(script)
    if not path.is_file():
        raise SpecError(f"{script}: script not found; give the path to an argparse script")
    target = Path(output) if output else path.parent / "sweep.yaml"
    if target.exists() and not force:
        raise SpecError(f"{target} already exists; pass --force to overwrite or -o another.yaml")
    text = starter_text(path.resolve())
    relative = os.path.relpath(path.resolve(), target.resolve().parent)
    target.write_text(text.replace(f"script: {json.dumps(path.name)}", f"script: {json.dumps(relative)}", 1))
    return target
