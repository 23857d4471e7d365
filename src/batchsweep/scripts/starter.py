"""`batchsweep init SCRIPT`: a starter sweep.yaml from a script's own command line (argparse, click, typer,
fire, or a Hydra app's config)."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

from batchsweep.errors import SpecError
from batchsweep.metrics import METRICS_FILE
from batchsweep.scripts.flags import Flag
from batchsweep.scripts.options import read_flags
from batchsweep.scripts.paramchecks import fits_type


def _yaml_value(value: object) -> str:
    return json.dumps(value)


def _param_line(flag: Flag, indent: str = "    ", commented: bool = False) -> str:
    required = flag.required and flag.default in (None, "???")
    value = "CHANGE_ME" if required else _yaml_value(flag.default)
    notes = [
        n
        for n in (
            (flag.help or "").splitlines()[0] if flag.help else None,
            "required" if required else None,
            f"choices: {list(flag.choices)}" if flag.choices else None,
        )
        if n
    ]
    comment = f"  # {'; '.join(notes)}" if notes else ""
    return f"{indent}{'# ' if commented else ''}{flag.dest}: [{value}]{comment}"


OUTPUT_NAMES = ("save", "out", "output", "tag", "run", "exp", "prefix")


# a `{param}` placeholder, as the run fills them (planning.space)
PLACEHOLDER = re.compile(r"\{([A-Za-z_]\w*)\}")


def _templated_line(flag: Flag, names: set[str]) -> str:
    """A text default with `{name}` in it, under `fixed:`: filled per task when every name is a param here,
    else left to the script (commented out), since the run would refuse a placeholder that names no param."""
    missing = [n for n in PLACEHOLDER.findall(flag.default) if n not in names]
    if missing:
        return (
            f"    # {flag.dest}: {json.dumps(flag.default)}  # the script's default, left to it: "
            f"{{{missing[0]}}} would be read as a placeholder naming no param"
        )
    return f"    {flag.dest}: {json.dumps(flag.default)}  # {{param}} placeholders are filled per task"


def _fixed_line(flag: Flag, grid: list[str]) -> str:
    """A required param's line under `fixed:`: a name each task gets its own of (`run_{a}_{b}`) for a text
    param that names an output, else CHANGE_ME (the run refuses it until it is filled)."""
    words = set(re.split(r"[_-]", flag.dest.lower()))
    if flag.type in (None, "str") and not flag.choices and words & set(OUTPUT_NAMES) and grid:
        value = json.dumps(flag.dest.split("_")[0] + "_" + "_".join(f"{{{g}}}" for g in grid[:3]))
        note = "required; {param} placeholders give each task its own"
    else:
        value, note = "CHANGE_ME", "required"
    help_text = (flag.help or "").splitlines()[0] if flag.help else ""
    return f"    {flag.dest}: {value}  # {'; '.join(n for n in (help_text, note) if n)}"


def _metrics_rule(script: Path, style: str, search: list[Path]) -> str:
    """The rule matching what the script's source (and its local modules') shows it produces: MLflow, a
    metrics.json it writes, or a JSON object it prints."""
    from batchsweep.scripts import scan as scriptscan

    source = scriptscan.scan(script, search=search).text
    if _logs_to_mlflow(source):
        return (
            "metrics: {mlflow: true}           # what the script logs to MLflow, values and steps "
            "(batchsweep[mlflow])"
        )
    if re.search(rf"(?<![\w.-]){re.escape(METRICS_FILE)}\b", source) or re.search(
        r"\blog_metrics\s*\(", source
    ):
        return "metrics: metrics.json             # the file it writes in its working directory"
    if re.search(r"\bprint\s*\(\s*json\.dumps\s*\(", source):
        return "metrics: {stdout: last}            # the JSON object it prints last"
    written = _json_written(source)
    if written:
        return f"metrics: {json.dumps(written)}   # the JSON file it writes its results to"
    labels, logged = _printed_metrics(source)
    if labels:
        pattern = "|".join(re.sub(r"([.-])", r"[\1]", label) + (
            f"=(?P<{_snake(label)}>[^\\s,;]+)" if sep == "=" else f": (?P<{_snake(label)}>\\S+)")
            for label, sep in labels)
        stream = "output" if logged else "stdout"  # logging writes to stderr unless configured otherwise
        return (
            f"metrics: {{{stream}: '{pattern}'}}   # the values it prints; check the names against its output"
        )
    if style == "hydra":
        return (
            "metrics: metrics.json             # the task function's return value (a number or dict) is "
            "kept too"
        )
    return (
        "metrics: metrics.json             # none found in its source: write metrics.json, or use {stdout: "
        "last}, {stderr: 'loss=(?P<loss>\\S+)'} for what it prints"
    )


def _json_written(source: str) -> str | None:
    """The one relative `.json` path a script that calls json.dump names (`open("results/summary.json", "w")`,
    or an output flag's default): the file its results go to, which a `metrics:` file rule reads."""
    if not re.search(r"\bjson\.dump\s*\(", source):
        return None
    names = set(re.findall(r"""["']([\w./-]+\.json)["']""", source))
    names = {n for n in names if not n.startswith("/") and ".." not in n.split("/")}
    return names.pop() if len(names) == 1 else None


LOG_CALLS = ("debug", "info", "warning", "error", "critical", "log")


def _printed_metrics(source: str) -> tuple[list[tuple[str, str]], bool]:
    """The labels of values the source prints or logs as `Label: value` (`print("Test accuracy: %f" % acc)`,
    `print(" rmse:", rmse)`, `log.info(f"Test score: {s}")`) or `name=value` (`print(f"epoch={e},
    accuracy={acc}")`) whose label names a metric (accuracy, loss, rmse, score...), each with its separator,
    at most 6; and whether one of them goes through logging (stderr by default)."""
    from batchsweep.metrics import MAXIMIZE_NAMES, MINIMIZE_NAMES

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return [], False
    metric_words = set(MAXIMIZE_NAMES + MINIMIZE_NAMES) - {"value", "time", "duration", "return"}
    labels: list[tuple[str, str]] = []
    logged = False
    calls = sorted(
        (n for n in ast.walk(tree) if isinstance(n, ast.Call)), key=lambda n: (n.lineno, n.col_offset)
    )
    for node in calls:  # in the source's order
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if not node.args or name != "print" and name not in LOG_CALLS:
            continue
        text = _template(node)
        found = [
            (m.group(1).strip(), ":")
            for m in [re.match(r"\s*([A-Za-z][\w .-]{0,40}?)\s*:\s*(%|\{|$)", text)]
            if m
        ]
        found += [
            (m.group(1), "=") for m in re.finditer(r"(?<![\w.-])([A-Za-z][\w.-]{0,40})=(?=%|\{|$)", text)
        ]
        for label, sep in found:
            words = set(re.split(r"[^a-z0-9]+", label.lower()))
            if words & metric_words and _snake(label) not in (_snake(known) for known, _ in labels):
                labels.append((label, sep))
                logged = logged or name != "print"
    return labels[:6], logged


def _template(call: ast.Call) -> str:
    """A print or log call's text with `{}` for each value it formats in (`f"loss={loss}"` → `loss={}`), or ""
    when it formats none (a plain message has no value to read)."""
    first = call.args[0]
    while isinstance(first, ast.BinOp):  # "Test accuracy: %f" % acc
        first = first.left
    if isinstance(first, ast.Call) and isinstance(first.func, ast.Attribute) and first.func.attr == "format":
        first = first.func.value  # "rmse: {}".format(rmse)
    if isinstance(first, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "{}"
                       for v in first.values)
    if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
        return ""
    text = first.value
    return text if len(call.args) > 1 or "%" in text or "{" in text else ""


def _snake(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_") or "value"


def _no_parser(script: Path, search: list[Path], spec_dir: Path) -> tuple[str, list[Flag], list[str]]:
    """The style and params of a script without a parser (what it reads), or SpecError naming what was looked
    for."""
    from batchsweep.scripts import scan as scriptscan
    from batchsweep.scripts.options import source_flags

    seen = scriptscan.scan(script, search=search)
    if seen.positions:  # `alpha = float(sys.argv[1]) if len(sys.argv) > 1 else 0.5`: the way it reads params
        flags = source_flags(script, "argv", base_dir=script.parent, search=search)
        return "argv", list(flags.flags), [
            f"args: {{style: argv}}   # each value at its position: {scriptscan.positions_text(seen)}"]
    env = [k for k in seen.env if not k.startswith("BATCHSWEEP_")]
    file = seen.files[0] if len(seen.files) == 1 else None
    if file and (script.parent / file).is_file():
        flags = source_flags(script, "config", base_dir=script.parent, file=file, search=search)
        leaves = [f for f in flags.flags if not isinstance(f.default, dict)]
        return "config", leaves, [f"args: {{style: config, file: {file}}}   # written in each task's "
                                  f"directory, merged over {file} beside the script"]
    # else the one where it is run by hand: the spec's directory or the current one (DVC: `python
    # stages/train.py` reads the params.yaml at the repository's root)
    found = next((d / file for d in (spec_dir, Path.cwd()) if file and (d / file).is_file()), None)
    if file and found:
        template = os.path.relpath(found, spec_dir)
        flags = source_flags(script, "config", base_dir=spec_dir, file=file, template=template, search=search)
        leaves = [f for f in flags.flags if not isinstance(f.default, dict)]
        return (
            "config",
            leaves,
            [
                f"args: {{style: config, file: {file}, template: {json.dumps(template)}}}   # "
                f"written in each task's directory, merged over the template (relative to the spec)"
            ],
        )
    if env:
        flags = source_flags(script, "env", base_dir=script.parent, search=search)
        # os.environ["EPOCHS"] with no default anywhere: required, under fixed: as CHANGE_ME (an empty value
        # would fail every task at int(""))
        return (
            "env",
            [
                dataclasses.replace(f, required=f.default is None and f.dest in seen.env_required)
                for f in flags.flags
            ],
            ["args: {style: env}   # each param is an environment variable of the task"],
        )
    if seen.globals:
        flags = source_flags(script, "globals", base_dir=script.parent, search=search)
        return (
            "globals",
            list(flags.flags),
            [
                "args: {style: globals}   # each param replaces the script's module-level value (the file "
                "is not changed)"
            ],
        )
    if seen.files:  # a params file it opens that is not here: the params alone are written under its name
        return (
            "config",
            [],
            [
                f"args: {{style: config, file: {seen.files[0]}}}   # written in each task's directory; "
                f"{seen.files[0]} was not found beside the script or in the current directory: name the file "
                "whose values the params are merged over with template:"
            ],
        )
    raise SpecError(
        f"{script}: no command-line parser found, and it reads no environment variable, params file or "
        "module-level value; init reads argparse, optparse, click, typer, fire and @hydra.main scripts "
        "and those; write the spec by hand"
    )


def _package_roots(script: Path) -> list[Path]:
    """Where the script's own package may be imported from, as a run with `env: {PYTHONPATH: ...}` would: a
    `src/` beside it, and the parent of each folder above it whose name it imports (`src/pkg/cli.py` importing
    `pkg`, or `wine_quality/main_train.py` importing `wine_quality`)."""
    from batchsweep.scripts import scan as scriptscan

    roots = [script.parent / "src"] if (script.parent / "src").is_dir() else []
    imported = scriptscan.imported_names(script)
    roots += [folder.parent for folder in list(script.parents)[:3] if folder.name in imported]
    return roots


HYDRA_KEYS = 50  # a Hydra app's config keys listed at most: a large config would bury the grid


def _group_keys(listed: list[Flag], groups: list[str]) -> tuple[dict[str, list[Flag]], set[Flag]]:
    """A Hydra app's keys that come with a config group's chosen option (`optimizer.lr` of `optimizer=adam`),
    by group, to be listed commented under it (sweeping the group to an option without the key would fail),
    and the keys left out past HYDRA_KEYS of them all."""
    by_group: dict[str, list[Flag]] = {}
    keys = [f for f in listed if f.kind == "store" and not isinstance(f.default, (dict, list))
            and not (isinstance(f.default, str) and "${" in f.default)]
    # the app's own keys (in the grid) before those of the groups' options
    keys.sort(key=lambda f: f.dest.startswith(tuple(groups)))
    left = set(keys[HYDRA_KEYS:])
    for key in keys[:HYDRA_KEYS]:
        owners = [g for g in groups if key.dest.startswith(g)]
        if owners:  # the innermost group: `db.engine.pool` comes with `db/engine`'s option
            by_group.setdefault(max(owners, key=len)[:-1], []).append(key)
    return by_group, left


def starter_text(script: Path, *, spec_dir: Path | None = None, python: str | None = None) -> str:
    """The starter spec for `script`, as written into `spec_dir` (default: beside the script); `python` reads
    the script's options with that interpreter (a path as given relative to `spec_dir`, or a name on PATH)."""
    from batchsweep.scripts.options import search_path

    spec_dir = spec_dir or script.parent
    interpreter = (
        sys.executable
        if python is None
        else (
            os.path.abspath(spec_dir / os.path.expanduser(python))
            if "/" in python
            else shutil.which(python) or python
        )
    )
    env: dict[str, str] = {}
    flags = read_flags(script, python=interpreter)
    if not flags.known:
        for root in _package_roots(script):
            # its own package: read it as a run with `env: {PYTHONPATH: ...}` (relative to the spec) will
            retry = read_flags(script, python=interpreter, env={"PYTHONPATH": str(root)})
            if retry.known or retry.reason and not flags.reason:
                flags, env = retry, {"PYTHONPATH": os.path.relpath(root, spec_dir)}
            if retry.known:
                break
    extra: list[str] = [f"python: {json.dumps(python)}"] if python else []
    extra += (
        [
            f"env: {{PYTHONPATH: {json.dumps(env['PYTHONPATH'])}}}"
            + "   # resolved against the spec's directory"
        ]
        if env
        else []
    )
    style = flags.style
    listed: list[Flag] = list(flags.flags)
    if not flags.known:
        if flags.reason:
            hint = (
                ""
                if python
                else (
                    " (if it needs packages batchsweep's Python lacks, give the Python that "
                    "runs it: init --python .venv-ml/bin/python)"
                )
            )
            raise SpecError(f"{script}: could not read its command line ({flags.reason}){hint}; init reads "
                            "argparse, optparse, click, typer, fire and @hydra.main scripts")
        style, listed, more = _no_parser(script, search_path({k: str(spec_dir / v) for k, v in env.items()}),
                                         spec_dir)
        extra += more
    name = re.sub(r"[^a-z0-9_-]+", "-", script.stem.lower()).strip("-_")[:64] or "sweep"
    lines = [
        f"# Starter sweep for {script.name} ({style}): each param lists its current default.",
        "# Add values to a list to sweep it (a grid is the cartesian product), then: batchsweep run "
        "sweep.yaml",
        f"name: {name}",
        f"script: {json.dumps(script.name)}",
        *extra,
        "params:",
        "  grid:",
    ]
    sub = flags.subcommand
    groups = [f.dest + "." for f in listed if f.kind.startswith("group")]
    required: list[Flag] = []
    templated: list[Flag] = []
    grid: list[str] = []
    in_group, keys_left = _group_keys(listed, groups) if style == "hydra" else ({}, set())
    for flag in listed:
        if flag is sub or style == "hydra" and flag.kind == "store" and (
                isinstance(flag.default, (dict, list)) or flag.dest.startswith(tuple(groups))
                or isinstance(flag.default, str) and "${" in flag.default or flag in keys_left):
            continue  # a whole node, a key that comes with the group's chosen option, or one made of others
        if flag.required and flag.default in (None, "???"):
            required.append(flag)  # one value for every task, under fixed:
            continue
        if style in ("env", "globals", "config") and flag.dest.startswith("_"):
            # `_prefix = "Flags:"`: a param named `_...` is a placeholder, never passed to the script
            continue
        if style == "env" and flag.default is None:  # os.environ.get("TAG"): unset unless the spec sets it
            lines.append(
                _param_line(dataclasses.replace(flag, default=""), commented=True)
                + "  # read without a default"
            )
            continue
        if style in ("argparse", "optparse") and flag.numeric and flag.default is not None \
                and not isinstance(flag.default, list) and not fits_type(flag.default, flag.numeric):
            # `default=0.5, type="int"`: the parser never converts a default, but passed as text it fails the
            # type
            lines.append(
                _param_line(flag, commented=True) + f"  # not an {flag.numeric}: the script's own default"
            )
            continue
        if isinstance(flag.default, str) and PLACEHOLDER.search(flag.default):
            # `model_{lr}.pt`: the spec fills it per task; under fixed:, never a grid value
            templated.append(flag)
            continue
        lines.append(_param_line(flag))
        grid.append(flag.dest)
        if flag.dest in in_group:
            lines.append(f"    # {flag.dest}={flag.default}'s keys; uncomment one to sweep it "
                         f"(each {flag.dest} swept must have it):")
            lines += [_param_line(key, commented=True) for key in in_group[flag.dest]]
    if keys_left:
        lines.append(f"    # … and {len(keys_left)} more keys of its config: python {script.name} --cfg job "
                     "shows them all")
    if sub is not None and sub.subcommands:
        first = next(iter(sub.subcommands))
        lines.append(f"    {sub.dest}: [{json.dumps(first)}]  # subcommands: {', '.join(sub.subcommands)}")
        for command, sub_flags in sub.subcommands.items():
            lines.append(f"    # flags of `{command}`:")
            lines += [_param_line(f, commented=command != first) for f in sub_flags]
    if not grid and not (sub is not None and sub.subcommands):
        lines[lines.index("  grid:")] = "  grid: {}"
    if required or templated:
        lines.append("  fixed:")
        lines += [_fixed_line(f, grid) for f in required]
        lines += [_templated_line(f, set(grid) | {r.dest for r in required}) for f in templated]
    lines += [
        "# inputs: ['data/{symbol}.csv']   files staged into each task's working directory",
        "# outputs: ['*.png']               files kept from each task (default: every file it creates)",
        _metrics_rule(script, style, search_path({k: str(spec_dir / v) for k, v in env.items()})),
        "timeout: 10m",
        "retries: 0",
        "max_parallel: 0                   # 0 = one task per core",
    ]
    return "\n".join(lines) + "\n"


def _logs_to_mlflow(source: str) -> bool:
    """Whether the script (or a module of its own it imports) logs metrics to MLflow: imports it and calls
    log_metric(s) or an autolog."""
    return (re.search(r"^\s*(import|from)\s+mlflow\b", source, re.M) is not None
            and re.search(r"\b(log_metrics?|autolog)\s*\(", source) is not None)


def is_stream(target: Path) -> bool:
    """`-o -` (stdout) or a file that is not kept (/dev/stdout even when redirected to a file, a terminal, a
    pipe): written through, never refused as existing, and the spec's paths are relative to the current
    directory, where it will be saved."""
    name = str(target)
    return name == "-" or name.startswith("/dev/") or target.is_char_device() or target.is_fifo()


def write_starter(
    script: str, *, output: str | None = None, force: bool = False, python: str | None = None
) -> Path:
    """Write the starter spec for `script` to `output` (default: sweep.yaml beside it; "-": stdout); `python`
    as on the command line (relative to the current directory), written into the spec relative to it."""
    path = Path(script)
    if not path.is_file():
        raise SpecError(f"{script}: script not found; give the path to a Python script")
    target = Path(output) if output else path.parent / "sweep.yaml"
    stream = is_stream(target)
    if not stream and target.exists() and not force:
        raise SpecError(f"{target} already exists; pass --force to overwrite or -o another.yaml")
    spec_dir = Path.cwd() if stream else target.resolve().parent
    if python and "/" in python:
        given = os.path.abspath(os.path.expanduser(python))  # not resolved: a venv's python is a link
        if not os.access(given, os.X_OK):
            raise SpecError(f"--python {python}: not an executable file; give e.g. .venv-ml/bin/python")
        python = os.path.relpath(given, spec_dir)
    elif python and not shutil.which(python):
        raise SpecError(f"--python {python}: not on PATH; give a path such as .venv-ml/bin/python")
    text = starter_text(path.resolve(), spec_dir=spec_dir, python=python)
    relative = os.path.relpath(path.resolve(), spec_dir)
    text = text.replace(f"script: {json.dumps(path.name)}", f"script: {json.dumps(relative)}", 1)
    if not stream:  # the comment names the file written, as the user would type it from here
        text = text.replace(
            "then: batchsweep run sweep.yaml", f"then: batchsweep run {shlex.quote(str(target))}", 1
        )
    if str(target) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        target.write_text(text)
    return target
