"""A sweep becomes a Plan: load, validate and expand it, check the script, the inputs and the engine's
settings, and compute every task's content key. Nothing is written: a plan that fails leaves no trace.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import secrets
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchsweep.errors import SpecError
from batchsweep.model import Task, input_parts
from batchsweep.planning import keys, space
from batchsweep.registry import get_engine
from batchsweep.spec.schema import Spec
from batchsweep.store import provenance
from batchsweep.store.core import Store
from batchsweep.store.record import RunRecord

if TYPE_CHECKING:
    from batchsweep.engines.base import Engine
    from batchsweep.planning.reuse import Reuse


MAX_TASKS = 1_000_000
ARG_MAX_STRLEN = 128 * 1024  # Linux's limit on one argument or environment string (MAX_ARG_STRLEN)


def _big(n: int) -> str:
    exponent = len(str(n)) - 1
    return f"10^{exponent}" if n == 10**exponent and n >= 10**4 else f"{n:,}"


def new_run_id(name: str) -> str:
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


@dataclass
class Plan:
    """A validated sweep, ready to start: nothing has been written yet."""

    spec: Spec
    tasks: list[Task]
    info: dict[str, Any]
    engine: type[Engine]
    notes: list[str]
    # inputs whose content could not be identified, and why
    unkeyed: dict[str, str] = field(default_factory=dict)

    _record: tuple[int, RunRecord] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def record(self) -> RunRecord:
        """The run.json this plan would write, typed (read again when `info` is replaced; never change it in
        place)."""
        if self._record is None or self._record[0] != id(self.info):
            self._record = (id(self.info), RunRecord.of(self.info))
        return self._record[1]


def _check_inputs(spec: Spec, tasks: Sequence[Task]) -> None:
    seen: set[str] = set()
    for task in tasks:
        names: dict[str, str] = {}
        for item in task.inputs:
            ref, name = input_parts(item)
            if Path(name.rstrip("/")).name in ("", ".", ".."):
                raise SpecError(f"inputs: {ref!r} (task {task.index}) names no file or directory to stage")
            if name in names and names[name] != ref:
                raise SpecError(
                    f"inputs: {names[name]!r} and {ref!r} (task {task.index}) would both be staged as "
                    f"{name!r} in the task's directory; rename one of them (or give a dst)"
                )
            names[name] = ref
            if ref in seen or ref.startswith("s3://"):
                continue
            seen.add(ref)
            try:
                mode = (spec.base_dir / ref).stat().st_mode
            except (FileNotFoundError, NotADirectoryError):
                raise SpecError(
                    f"inputs: {ref} (task {task.index}) not found relative to {spec.base_dir}; "
                    "fix the path or the {param} placeholder that builds it"
                ) from None
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # copying a FIFO or /dev/zero never ends
                raise SpecError(
                    f"inputs: {ref} (task {task.index}) is {_kind(mode)}, not a file or directory; "
                    "stage a regular file (or a directory) instead"
                )


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "a special file"


def _check_task_gpus(spec: Spec, engine: type[Engine], tasks: Sequence[Task]) -> None:
    """`resources.gpus: "{param}"`: an engine that can give tasks different GPUs, a param that exists, and a
    GPU count in every task's."""
    if spec.resources.gpus and not engine.gpus:
        raise SpecError(
            f"resources.gpus: {spec.resources.gpus:g} — backend {spec.backend} does not give tasks GPUs; "
            "remove resources.gpus or choose a backend that leases them"
        )
    name = spec.resources.gpus_param
    if name is None:
        return
    if not engine.per_task_gpus:
        raise SpecError(
            f'resources.gpus: "{{{name}}}" — backend {spec.backend} gives every task of a run the same '
            "GPUs; give one number (tasks asking for different GPUs run on the local and dask backends)"
        )
    if tasks and name not in tasks[0].params:
        raise SpecError(f'resources.gpus: placeholder {{{name}}} names no param; params are: '
                        f"{', '.join(tasks[0].params)}")
    for task in tasks:
        spec.resources.of_task(task.params)


def _check_placeholders_filled(tasks: Sequence[Task]) -> None:
    for name, value in (tasks[0].params.items() if tasks else ()):
        if value == "CHANGE_ME" or value == ["CHANGE_ME"]:
            raise SpecError(f"params.{name}: still CHANGE_ME (from `batchsweep init`); give it a value")


def _check_script(spec: Spec, tasks: Sequence[Task], notes: list[str]) -> dict[str, Any]:
    """Read the script's command line and check every distinct param shape against it; numbers that YAML read
    as text (`1e-22`) become the numbers the script's flags declare (in place, before the tasks are
    written)."""
    from batchsweep.scripts import options as scriptargs
    from batchsweep.scripts import paramchecks

    if spec.function:
        module = spec.function.split(":")[0]
        if space.module_file(spec) is None:
            raise SpecError(f"function: module {module!r} not found in {spec.base_dir}; "
                            "put the module next to the spec or fix the name")
        return scriptargs.flags_to_json(scriptargs.ScriptFlags(known=False))
    script = spec.script_path
    assert script is not None
    if not script.is_file():
        from batchsweep.text import did_you_mean

        hint = did_you_mean(script.name, [p.name for p in script.parent.glob("*.py")]) \
            if script.parent.is_dir() else ""
        raise SpecError(f"script: {script} not found; {hint}give the path relative to the spec file")
    _unstaged_reads(script, spec.base_dir, tasks, notes)
    wanted = spec.args.style if spec.args else None
    env = resolved_env(spec, tasks[0].params if tasks else {})
    if wanted == "plain":
        flags = scriptargs.ScriptFlags(known=False)
    elif wanted in scriptargs.SOURCE_STYLES:
        flags = _source_flags(spec, script, wanted, env)
    else:
        flags = scriptargs.read_flags(script, python=python_path(spec), env=env, force=wanted is not None)
        if flags.known and wanted is not None and wanted != flags.style:
            raise SpecError(
                f"args.style: {script.name} reads its command line with {flags.style}, not {wanted}; "
                f"remove args.style or set it to {flags.style}"
            )
        if not flags.known and not flags.reason and wanted is None:
            flags = _no_parser(spec, script, tasks, env, notes)
    if not flags.known and flags.reason and flags.style == "hydra":
        # every task would compose the same config and fail the same way
        raise SpecError(
            f"script: could not compose {script.name}'s Hydra config ({flags.reason}); fix the config "
            "or install the plugin it names, then check with `python "
            f"{script.name} --cfg job`"
        )
    if not flags.known and flags.reason:
        notes.append(
            f"could not read {script.name}'s command line ({flags.reason}); params are passed as "
            "--name value, unchecked (set `args: {style: ...}` in the spec, or fix the script's imports)"
        )
    # Check each distinct param shape once; 100,000 tasks of a grid share a handful.
    from batchsweep.scripts.argv import task_env_values

    templated = {k: v for k, v in spec.env.items() if "{" in v}
    checked: set[str] = set()
    numeric = flags.known and any(f.numeric for f in flags.flags)
    for task in tasks:
        if numeric and any(isinstance(v, str) for v in task.params.values()):
            task.params.update(paramchecks.convert_params(flags, task.params))
        key = repr(sorted((k, repr(v)) for k, v in task.params.items()))
        if key not in checked and len(checked) < 2000:
            checked.add(key)
            paramchecks.check_params(script, flags, task.params)
            if templated:  # a placeholder naming a param this task lacks would fail it in the worker
                task_env_values(templated, task.params, None)
            _check_arg_lengths(task, flags, spec)
    return scriptargs.flags_to_json(flags)


def _source_flags(spec: Spec, script: Path, style: str, env: dict[str, str]) -> Any:
    from batchsweep.scripts import options as scriptargs

    args = spec.args
    return scriptargs.source_flags(script, style, base_dir=spec.base_dir, file=args.file if args else None,
                                   template=args.template if args else None, upper=bool(args and args.upper),
                                   search=scriptargs.search_path(env))


def _unstaged_reads(script: Path, base_dir: Path, tasks: Sequence[Task], notes: list[str]) -> None:
    """A note for each file the script reads by a relative name that is beside it but not staged: a task runs
    in an empty directory, so it would not be found there."""
    from batchsweep.model import STAGED_AT
    from batchsweep.scripts.scan import read_paths

    staged = [ref.split(STAGED_AT)[-1] if STAGED_AT in ref else os.path.basename(ref.rstrip("/"))
              for ref in (tasks[0].inputs if tasks else ())]
    for path in read_paths(script):
        clean = os.path.normpath(path)
        if (script.parent / clean).exists() and not clean.startswith("..") and not any(
                clean == os.path.normpath(s) or clean.startswith(os.path.normpath(s) + "/") for s in staged):
            src = os.path.relpath(script.parent / clean, base_dir)
            notes.append(f"{script.name} reads {path}, which is beside it but not staged: each task runs in "
                         f"an empty directory; add `inputs: [{{src: {src}, dst: {clean}}}]`")


def _no_parser(spec: Spec, script: Path, tasks: Sequence[Task], env: dict[str, str], notes: list[str]) -> Any:
    """The way params reach a script that parses no command line: its own reading of sys.argv or of
    BATCHSWEEP_PARAMS (plain, as before), the environment variables or module-level values the params are
    named after; otherwise the run is refused, since `--name value` would never reach the script and every
    task would "succeed" with the script's own values."""
    from batchsweep.model import OWN_PARAMS
    from batchsweep.scripts import options as scriptargs
    from batchsweep.scripts import scan as scriptscan

    names: set[str] = set()
    for task in tasks:
        names.update(k for k in task.params if not k.startswith("_") and k not in OWN_PARAMS)
        if len(names) > 1000:
            break
    seen = scriptscan.scan(script, search=scriptargs.search_path(env))
    by_position = [name for name, _, _ in seen.positions]
    if names and by_position and not seen.batchsweep_aware and names <= set(by_position):
        notes.append(f"{script.name} parses no command line: its params are passed by position "
                     f"({scriptscan.positions_text(seen)}); set `args: {{style: ...}}` to change it")
        return _source_flags(spec, script, "argv", env)
    # `--alpha 0.1` would reach `alpha = float(sys.argv[1])` as the text "--alpha": plain only without those
    if not names or seen.reads_argv and not by_position or seen.batchsweep_aware:
        return scriptargs.ScriptFlags(known=False)
    reads = {k for k in seen.env if not k.startswith("BATCHSWEEP_")}
    keys: set[str] = set()
    if len(seen.files) == 1 and any((d / seen.files[0]).is_file() for d in (script.parent, spec.base_dir)):
        # the template beside the script, or in the spec's directory (where it is run from by hand)
        with contextlib.suppress(SpecError):
            keys = {f.dest for f in _source_flags(spec, script, "config", env).flags}
    for style, fits in (("env", names <= reads), ("globals", names <= set(seen.globals)),
                        ("env", {n.upper() for n in names} <= reads), ("config", names <= keys)):
        if fits:
            way = {"env": "environment variables", "globals": "module-level values"}.get(style)
            notes.append(
                f"{script.name} parses no command line: its params are passed as "
                f"{way or 'keys of ' + seen.files[0]} ({', '.join(sorted(names))}), the names it uses; "
                "set `args: {style: ...}` to change it"
            )
            return _source_flags(spec, script, style, env)
    if by_position:
        raise SpecError(
            f"params: {script.name} reads its params by position ({scriptscan.positions_text(seen)}), so "
            f"{', '.join(sorted(names - set(by_position))[:4])} would never reach it; name the params "
            "after those, or set `args: {style: plain}` to pass --name value anyway")
    ways = seen.fits()
    shown = ", ".join(sorted(names)[:4]) + (", ..." if len(names) > 4 else "")
    hint = ("; use " + " or ".join(ways)) if ways else (
        "; make it read them (argparse, os.environ, a params file), or set `args: {style: plain}` to pass "
        "--name value anyway")
    raise SpecError(f"params: {script.name} parses no command line, so {shown} would never reach it{hint}")


def resolved_env(spec: Spec, params: dict[str, Any]) -> dict[str, str]:
    """The spec's `env:` as a task of these params gets it: `{param}` placeholders filled, and relative
    directories (`PYTHONPATH: src`) made absolute against the spec's directory."""
    from batchsweep.scripts.argv import task_env_values

    return task_env_values(spec.env, params, spec.base_dir)


def _check_arg_lengths(task: Task, flags: Any, spec: Spec) -> None:
    """A value longer than the kernel takes for one argument would fail every task at exec; say so now."""
    from batchsweep.scripts.argv import ArgStyle, build_argv

    style = ArgStyle.from_spec(spec.args.model_dump() if spec.args else None)
    for arg in build_argv(task.params, flags, style):
        if len(arg.encode()) >= ARG_MAX_STRLEN:
            name = next((k for k in task.params if arg.startswith(f"--{k}=")), None) or next(
                (k for k, v in task.params.items() if arg in (str(v), json.dumps(v))), "?")
            raise SpecError(
                f"params.{name}: a value of {len(arg.encode()):,} bytes (task {task.index}) is longer than "
                f"one command-line argument may be ({ARG_MAX_STRLEN // 1024} KiB); pass a file name instead"
            )


def python_path(spec: Spec) -> str:
    """The Python that runs the tasks and reads the script's flags: `python:` (relative to the spec), else
    ours."""
    import shutil
    import sys

    if not spec.python:
        return sys.executable
    if "/" in spec.python:
        # not resolved: a venv's python is a link
        path = os.path.abspath(spec.base_dir / os.path.expanduser(spec.python))
        if not os.access(path, os.X_OK):
            raise SpecError(f"python: {spec.python} is not an executable file (relative to {spec.base_dir}); "
                            "give e.g. .venv-ml/bin/python")
        return path
    found = shutil.which(spec.python)
    if not found:
        raise SpecError(f"python: {spec.python!r} is not on PATH; give a path such as .venv-ml/bin/python")
    return found


def plan(spec: Spec | str | os.PathLike[str], *, overrides: Sequence[str] = (), backend: str | None = None,
         max_parallel: int | None = None, check_engine: bool = True, max_tasks: int = MAX_TASKS) -> Plan:
    """Load, validate and expand a sweep. Raises SweepError on bad input; writes nothing.

    ``check_engine=False`` skips the engine's own check (for aws-batch: credentials, stack, bucket), so a dry
    run or an estimate never talks to a cluster or to AWS; such a plan has no engine settings and must not be
    started."""
    from batchsweep.spec import reader as spec_reader
    from batchsweep.spec.schema import MetricsFromMlflow

    if not isinstance(spec, Spec):
        spec = spec_reader.load(spec, overrides=overrides)
    if backend is not None or max_parallel is not None:
        changes: dict[str, Any] = {}
        if backend is not None:
            changes["backend"] = backend
        if max_parallel is not None:
            changes["max_parallel"] = max_parallel
        raw = {**spec.model_dump(by_alias=True, exclude={"base_dir"}, exclude_unset=True), **changes}
        spec = spec_reader.validate(
            raw, source="command line", base_dir=spec.base_dir, spec_file=spec.spec_file
        )
    engine = get_engine(spec.backend)
    n = space.count(spec) if spec.params and not spec.search else 0
    if n > max_tasks:  # counted from the blocks' sizes, before anything is expanded
        raise SpecError(f"params: the space has {_big(n)} tasks; the limit is {_big(max_tasks)}, "
                        "raise it with --max-tasks N (or max_tasks= in Python)")
    tasks = space.expand(spec, keyer=lambda params, inputs: "") if n else []
    if not tasks and not spec.search:
        raise SpecError(
            "params: the parameter space expands to no tasks; every block needs at least one value"
        )
    # A search has no tasks yet (its rounds add them): check the script and inputs against example trials.
    examples, search_fields = _search_check(spec) if spec.search else (tasks, {})
    if spec.stop is not None and importlib.util.find_spec("optuna") is None:
        raise SpecError("stop: early stopping decides with Optuna's pruners, which are not installed; "
                        "pip install 'batchsweep[search]'")
    if isinstance(spec.metrics, MetricsFromMlflow) and engine.local_python:
        from batchsweep.task.mlflowmetrics import (
            missing,  # (on aws-batch the task image gets MLflow's client)
        )

        if (why := missing()) is not None:
            raise SpecError(why)
    _check_placeholders_filled(examples)
    _check_task_gpus(spec, engine, examples)
    _check_inputs(spec, examples)
    notes: list[str] = []
    flags = _check_script(spec, examples, notes)
    # the engine's resolved settings, through its model (none checked: the model's defaults, never started)
    settings = engine.resolved(engine.check(spec, tasks)) if check_engine else engine.engine_settings_model()
    hashes = keys.HashCache()
    identity = keys.code_identity(spec, cache=hashes)
    code_hash = identity.hash
    stamps = keys.InputStamps(
        spec.base_dir,
        hashes,
        s3_head=keys.s3_head(profile=spec.aws.profile, region=spec.aws.region) if check_engine else None,
    )
    environment = {"env": spec.env, **engine.key_environment(spec, settings)}
    if spec.python:  # tasks run on another interpreter of this machine: its version, not ours
        environment.update(keys.local_environment(python_path(spec)))
    keyer = keys.Keyer(code=code_hash, what=keys.spec_what(spec), env=environment, stamps=stamps)
    tasks = [dataclasses.replace(t, cache_key=keyer(t.params, t.inputs)) for t in tasks]
    hashes.save()
    code_dir = spec.script_path.parent if spec.script_path else spec.base_dir
    now = datetime.now(timezone.utc)
    as_run: dict[str, Any] = {}
    if spec.script:
        # run by name in code_dir
        as_run["script"] = spec.script_path.name if spec.script_path else spec.script
    if spec.python:
        if not engine.local_python:
            raise SpecError(
                f"python: chooses a Python on this machine (local and dask runs); for {spec.backend} put "
                "the script's dependencies in the task image (`batchsweep image build`)"
            )
        as_run["python"] = python_path(spec)
    recorded = spec.model_copy(update=as_run)
    record = RunRecord(
        run_id=new_run_id(spec.name),
        name=spec.name,
        backend=spec.backend,
        created=now.isoformat(timespec="seconds"),
        created_ts=now.timestamp(),
        n_tasks=len(tasks),
        code_hash=code_hash,
        code_identity=identity.to_json(),
        key_common=keyer.common,
        key_what=keys.spec_what(spec),
        key_env=environment,
        spec_file=str(spec.spec_file) if spec.spec_file else None,
        provenance=provenance.collect(
            Path(code_dir), environment=environment, code_files=list(identity.files),
            python=python_path(spec) if spec.python else None,
        ),
        base_dir=str(spec.base_dir),
        code_dir=str(code_dir),
        script_name=spec.script_path.name if spec.script_path else None,
        spec=recorded,
        flags=flags,
        timeout_s=spec.timeout,
        max_parallel=spec.max_parallel,
        engine=settings,
        **{"param_names": spec.param_names, **search_fields},  # a search adds its own params
    )
    info = record.to_json()
    return Plan(spec=spec, tasks=tasks, info=info, engine=engine, notes=notes, unkeyed=stamps.unkeyed)


def keyed_as_now(record: RunRecord, tasks: Sequence[Task]) -> tuple[list[Task], str | None, str | None]:
    """The tasks of a run about to run again (resume), keyed by the code and inputs as they are now: a script
    fixed after its tasks failed is new code, and what it produces must not be offered for reuse under the key
    of the code that failed, nor a changed input's result under the old input's key. Returns the tasks (each
    with its key now), a warning when the code changed since the run started, and the code's hash now (None
    when it cannot be read). A run whose key cannot be rebuilt (its code directory is unreadable; an older
    run.json without `key_what`/`key_env` whose code changed) gets empty keys for these tasks: they run, and
    are never offered for reuse."""
    spec = record.code_spec()
    try:
        hashes = keys.HashCache()
        code_now = keys.code_hash(spec, cache=hashes)
    except (SpecError, OSError) as e:
        return (
            [dataclasses.replace(t, cache_key="") for t in tasks],
            f"the resumed tasks are not recorded for reuse: their content key cannot be rebuilt ({e})",
            None,
        )
    stamps = keys.InputStamps(spec.base_dir, hashes, s3_head=keys.s3_head(profile=spec.aws.profile,
                                                                         region=spec.aws.region))
    warning = None
    if code_now == record.code_hash and record.key_common:
        keyer: keys.Keyer | None = keys.Keyer.from_common(record.key_common, stamps)
    else:
        keyer = (keys.Keyer(code=code_now, what=record.key_what, env=record.key_env, stamps=stamps)
                 if record.key_what is not None and record.key_env is not None else None)
        warning = (f"the code in {record.code_dir} has changed since run {record.run_id} started "
                   f"({record.code_hash[:12]} then, {code_now[:12]} now): "
                   + ("the resumed task runs" if len(tasks) == 1 else f"the {len(tasks)} resumed tasks run")
                   + " it as it is now, the others ran it as it was")
    keyed = [dataclasses.replace(t, cache_key=keyer(t.params, t.inputs) if keyer else "") for t in tasks]
    hashes.save()
    return keyed, warning, code_now


def find_reuse(p: Plan, *, store: Store | str | None = None) -> Reuse:
    """Which of the plan's tasks already succeeded, with the same content key, in the store it would run
    against."""
    from batchsweep.planning.reuse import Reuse, explain_misses, lookup

    if p.spec.search or not p.tasks:
        return Reuse(len(p.tasks))
    local = store if isinstance(store, Store) else Store.open(store)
    run_store = p.engine.run_store(p.record.engine, local)
    found = lookup(run_store, p.tasks, metrics_rule=metrics_rule(p.spec), keeps_everything=not p.spec.outputs)
    found.missed = explain_misses(run_store, p.tasks, found, p.info)
    return found


def metrics_rule(spec: Spec) -> str | dict[str, Any]:
    return (
        spec.metrics
        if isinstance(spec.metrics, str)
        else spec.metrics.model_dump(mode="json", exclude_none=True)
    )


def _search_check(spec: Spec) -> tuple[list[Task], dict[str, Any]]:
    from batchsweep.planning import search

    return search.check(spec)
