"""A Sweep becomes a Run: plan (validate everything, write nothing), start (write, submit), then watch,
cancel, resume and read results. Every command that reads a run rebuilds it from the store alone.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchsweep import keys, provenance, runlock, space
from batchsweep.engines import get_engine
from batchsweep.errors import RunDamaged, RunNotFound, SpecError, SweepError
from batchsweep.model import State, Task, TaskStatus, input_parts
from batchsweep.spec import Spec
from batchsweep.store import Store

if TYPE_CHECKING:
    import pandas as pd

    from batchsweep.engines.base import Engine, Progress
    from batchsweep.reuse import Reuse


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
    unkeyed: dict[str, str] = field(default_factory=dict)  # inputs whose content could not be identified, and why


def _check_inputs(spec: Spec, tasks: Sequence[Task]) -> None:
    seen: set[str] = set()
    for task in tasks:
        names: dict[str, str] = {}
        for item in task.inputs:
            ref, name = input_parts(item)
            if Path(name.rstrip("/")).name in ("", ".", ".."):
                raise SpecError(f"inputs: {ref!r} (task {task.index}) names no file or directory to stage")
            if name in names and names[name] != ref:
                raise SpecError(f"inputs: {names[name]!r} and {ref!r} (task {task.index}) would both be staged as "
                                f"{name!r} in the task's directory; rename one of them (or give a dst)")
            names[name] = ref
            if ref in seen or ref.startswith("s3://"):
                continue
            seen.add(ref)
            if not (spec.base_dir / ref).exists():
                raise SpecError(
                    f"inputs: {ref} (task {task.index}) not found relative to {spec.base_dir}; "
                    "fix the path or the {param} placeholder that builds it"
                )


def _check_placeholders_filled(tasks: Sequence[Task]) -> None:
    for name, value in (tasks[0].params.items() if tasks else ()):
        if value == "CHANGE_ME" or value == ["CHANGE_ME"]:
            raise SpecError(f"params.{name}: still CHANGE_ME (from `batchsweep init`); give it a value")


def _check_script(spec: Spec, tasks: Sequence[Task], notes: list[str]) -> dict[str, Any]:
    """Read the script's command line and check every distinct param shape against it; numbers that YAML read
    as text (`1e-22`) become the numbers the script's flags declare (in place, before the tasks are written)."""
    from batchsweep import scriptargs

    if spec.function:
        module = spec.function.split(":")[0]
        if space.module_file(spec) is None:
            raise SpecError(f"function: module {module!r} not found in {spec.base_dir}; "
                            "put the module next to the spec or fix the name")
        return scriptargs.flags_to_json(scriptargs.ScriptFlags(known=False))
    script = spec.script_path
    assert script is not None
    if not script.is_file():
        raise SpecError(f"script: {script} not found; give the path relative to the spec file")
    wanted = spec.args.style if spec.args else None
    if wanted == "plain":
        flags = scriptargs.ScriptFlags(known=False)
    else:
        flags = scriptargs.read_flags(script, python=python_path(spec), env=spec.env)
        if flags.known and wanted is not None and wanted != flags.style:
            raise SpecError(f"args.style: {script.name} reads its command line with {flags.style}, not {wanted}; "
                            f"remove args.style or set it to {flags.style}")
    if not flags.known and flags.reason and flags.style == "hydra":
        # every task would compose the same config and fail the same way
        raise SpecError(f"script: could not compose {script.name}'s Hydra config ({flags.reason}); fix the config "
                        "or install the plugin it names, then check with `python "
                        f"{script.name} --cfg job`")
    if not flags.known and flags.reason:
        notes.append(f"could not read {script.name}'s command line ({flags.reason}); params are passed as "
                     "--name value, unchecked (set `args: {style: ...}` in the spec, or fix the script's imports)")
    # Check each distinct param shape once; 100,000 tasks of a grid share a handful.
    checked: set[str] = set()
    numeric = flags.known and any(f.numeric for f in flags.flags)
    for task in tasks:
        if numeric and any(isinstance(v, str) for v in task.params.values()):
            task.params.update(scriptargs.convert_params(flags, task.params))
        key = repr(sorted((k, repr(v)) for k, v in task.params.items()))
        if key not in checked and len(checked) < 2000:
            checked.add(key)
            scriptargs.check_params(script, flags, task.params)
            _check_arg_lengths(task, flags, spec)
    return scriptargs.flags_to_json(flags)


def _check_arg_lengths(task: Task, flags: Any, spec: Spec) -> None:
    """A value longer than the kernel takes for one argument would fail every task at exec; say so now."""
    from batchsweep.scriptargv import ArgStyle, build_argv

    style = ArgStyle.from_spec(spec.args.model_dump() if spec.args else None)
    for arg in build_argv(task.params, flags, style):
        if len(arg.encode()) >= ARG_MAX_STRLEN:
            name = next((k for k in task.params if arg.startswith(f"--{k}=")), None) or next(
                (k for k, v in task.params.items() if arg in (str(v), json.dumps(v))), "?")
            raise SpecError(f"params.{name}: a value of {len(arg.encode()):,} bytes (task {task.index}) is longer than "
                            f"one command-line argument may be ({ARG_MAX_STRLEN // 1024} KiB); pass a file name instead")


def python_path(spec: Spec) -> str:
    """The Python that runs the tasks and reads the script's flags: `python:` (relative to the spec), else ours."""
    import shutil
    import sys

    if not spec.python:
        return sys.executable
    if "/" in spec.python:
        path = os.path.abspath(spec.base_dir / os.path.expanduser(spec.python))  # not resolved: a venv's python is a link
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

    ``check_engine=False`` skips the engine's own check (for aws-batch: credentials, stack, bucket), so a dry run
    or an estimate never talks to a cluster or to AWS; such a plan has no engine settings and must not be started."""
    from batchsweep import spec as spec_mod

    if not isinstance(spec, Spec):
        spec = spec_mod.load(spec, overrides=overrides)
    if backend is not None or max_parallel is not None:
        changes: dict[str, Any] = {}
        if backend is not None:
            changes["backend"] = backend
        if max_parallel is not None:
            changes["max_parallel"] = max_parallel
        raw = {**spec.model_dump(by_alias=True, exclude={"base_dir"}, exclude_unset=True), **changes}
        spec = spec_mod.validate(raw, source="command line", base_dir=spec.base_dir, spec_file=spec.spec_file)
    engine = get_engine(spec.backend)
    n = space.count(spec) if spec.params and not spec.search else 0
    if n > max_tasks:  # counted from the blocks' sizes, before anything is expanded
        raise SpecError(f"params: the space has {_big(n)} tasks; the limit is {_big(max_tasks)}, "
                        "raise it with --max-tasks N (or max_tasks= in Python)")
    tasks = space.expand(spec, keyer=lambda params, inputs: "") if n else []
    if not tasks and not spec.search:
        raise SpecError("params: the parameter space expands to no tasks; every block needs at least one value")
    # A search has no tasks yet (its rounds add them): check the script and inputs against example trials.
    examples, search_fields = _search_check(spec) if spec.search else (tasks, {})
    if spec.stop is not None and importlib.util.find_spec("optuna") is None:
        raise SpecError("stop: early stopping decides with Optuna's pruners, which are not installed; "
                        "pip install 'batchsweep[search]'")
    _check_placeholders_filled(examples)
    _check_inputs(spec, examples)
    notes: list[str] = []
    flags = _check_script(spec, examples, notes)
    settings = engine.check(spec, tasks) if check_engine else {}
    hashes = keys.HashCache()
    code_hash = keys.code_hash(spec, cache=hashes)
    stamps = keys.InputStamps(spec.base_dir, hashes, s3_head=keys.s3_head(profile=spec.aws.profile,
                                                                             region=spec.aws.region) if check_engine else None)
    environment = {"env": spec.env, **engine.key_environment(spec, settings)}
    if spec.python:  # tasks run on another interpreter of this machine: its version, not ours
        environment.update(keys.local_environment(python_path(spec)))
    keyer = keys.Keyer(code=code_hash, what=keys.spec_what(spec), env=environment, stamps=stamps)
    tasks = [dataclasses.replace(t, cache_key=keyer(t.params, t.inputs)) for t in tasks]
    hashes.save()
    code_dir = spec.script_path.parent if spec.script_path else spec.base_dir
    now = datetime.now(timezone.utc)
    info: dict[str, Any] = {
        "run_id": new_run_id(spec.name),
        "name": spec.name,
        "backend": spec.backend,
        "created": now.isoformat(timespec="seconds"),
        "created_ts": now.timestamp(),
        "n_tasks": len(tasks),
        "code_hash": code_hash,
        "spec_file": str(spec.spec_file) if spec.spec_file else None,
        "provenance": provenance.collect(Path(code_dir), environment=environment),
        "base_dir": str(spec.base_dir),
        "code_dir": str(code_dir),
        "script_name": spec.script_path.name if spec.script_path else None,
        "spec": spec.model_dump(mode="json", by_alias=True, exclude={"base_dir"}),
        "flags": flags,
        "timeout_s": spec.timeout,
        "max_parallel": spec.max_parallel,
        "param_names": spec.param_names,
        "engine": settings,
        **search_fields,
    }
    # The worker runs the script by its name inside code_dir.
    if spec.script:
        info["spec"]["script"] = info["script_name"]
    if spec.python:
        if spec.backend == "aws-batch":
            raise SpecError("python: chooses a Python on this machine (local and dask runs); for aws-batch put the "
                            "script's dependencies in the task image (`batchsweep image build`)")
        info["spec"]["python"] = python_path(spec)
    return Plan(spec=spec, tasks=tasks, info=info, engine=engine, notes=notes, unkeyed=stamps.unkeyed)


def find_reuse(p: Plan, *, store: Store | str | None = None) -> Reuse:
    """Which of the plan's tasks already succeeded, with the same content key, in the store it would run against."""
    from batchsweep.reuse import Reuse, lookup

    if p.info.get("search") or not p.tasks:
        return Reuse(len(p.tasks))
    local = store if isinstance(store, Store) else Store.open(store)
    return lookup(p.engine.run_store(p.info["engine"], local), p.tasks, metrics_rule=_metrics_rule(p.spec),
                  keeps_everything=not p.spec.outputs)


def _metrics_rule(spec: Spec) -> str | dict[str, Any]:
    return spec.metrics if isinstance(spec.metrics, str) else spec.metrics.model_dump(mode="json", exclude_none=True)


def start(p: Plan, *, store: Store | str | None = None, detach: bool = False, reuse: bool | Reuse = True,
          say: Callable[[str], None] | None = None) -> Run:
    """Write the run to the store and submit it. A failed submit leaves no run behind.

    With `reuse` (the default), tasks that already succeeded with the same content key in this store are
    copied, not run (`batchsweep.reuse`); `say` gets the one-line account ("120 tasks: 96 reused ...")."""
    from batchsweep.reuse import Reuse, copy_results

    local = store if isinstance(store, Store) else Store.open(store)
    run_store = p.engine.run_store(p.info["engine"], local)
    if reuse is True:
        reuse = find_reuse(p, store=local)
    elif reuse is False:
        reuse = Reuse(len(p.tasks))
    if say is not None:
        for ref, why in sorted(p.unkeyed.items()):
            say(f"inputs: {ref} could not be identified by content ({why}); its tasks run again, never reused")
        if reuse.found:
            say(reuse.line())
    lock = _claim_run_id(p, run_store, local)
    run_id = p.info["run_id"]
    try:
        info = {**p.info, "store": run_store.url, "reused": len(reuse.found)}
        info.update(p.engine.prepare(p.spec, run_store, info))
        run_store.create_run(run_id, info, p.tasks)
        if reuse.found:
            copy_results(run_store, run_id, p.tasks, reuse, metrics_rule=_metrics_rule(p.spec))
        if run_store.url != local.url:
            local.write_json(local.run_key(run_id, "run.json"),
                             {"run_id": run_id, "pointer": True, **_summary_fields(info)})
        run = Run(run_store, run_id, info)
        run._hold_with(lock)
        if p.info.get("search"):
            from batchsweep import search

            search.start(run, detach=detach)  # rounds are submitted by Run.wait
        else:
            run.engine.submit([t.index for t in reuse.to_run(p.tasks)], detach=detach)
    except BaseException:
        lock.release()
        run_store.delete_run(run_id)
        if run_store.url != local.url:
            local.delete_run(run_id)
        raise
    if detach:
        run._let_go()
    return run


def _claim_run_id(p: Plan, run_store: Store, local: Store) -> runlock.RunLock:
    """Create the run's lock exclusively: an id that collides with any earlier run gets a new suffix."""
    for _ in range(20):
        run_id = p.info["run_id"]
        taken = any(s.backend.exists(s.run_key(run_id, "run.json")) for s in {id(local): local, id(run_store): run_store}.values())
        if not taken:
            lock = runlock.RunLock.create(run_store, run_id, command="batchsweep run")
            if lock is not None:
                return lock
        p.info["run_id"] = new_run_id(p.spec.name)
    raise SweepError(f"could not find a free run id for {p.spec.name} in {run_store.url}")


def _search_check(spec: Spec) -> tuple[list[Task], dict[str, Any]]:
    from batchsweep import search

    return search.check(spec)


def _summary_fields(info: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {k: info[k] for k in ("name", "backend", "created", "created_ts", "n_tasks", "store") if k in info}
    engine = info.get("engine") or {}
    fields["aws"] = {"profile": engine.get("profile"), "region": engine.get("region")}
    return fields


class Run:
    """What happened to a sweep. Built from the store alone."""

    def __init__(self, store: Store, run_id: str, info: dict[str, Any] | None = None) -> None:
        self.store = store
        self.id = run_id
        self.info = info if info is not None else store.run_info(run_id)
        self._baseline: dict[int, TaskStatus] | None = None  # statuses of tasks the engine is not running
        self._lock: runlock.RunLock | None = None  # held while this process drives the run

    # -- the one runner per run -----------------------------------------------------------------
    def _hold(self, command: str) -> None:
        """Become the run's only driver, or raise RunBusy naming the live one."""
        if self._lock is None or self._lock.lost:
            self._hold_with(runlock.RunLock.acquire(self.store, self.id, command=command))

    def _hold_with(self, lock: runlock.RunLock) -> None:
        self._lock = lock
        lock.start_heartbeat(on_cancel=self._cancel_requested)

    def _let_go(self) -> None:
        """Release the hold (unless a detached runner took it over)."""
        if self._lock is not None:
            if not self._lock.handed_over:
                self._lock.release()
            self._lock = None

    def _cancel_requested(self) -> None:
        """`batchsweep cancel` from another process or host reached this driver."""
        self.info = self.store.update_run_info(self.id, cancelled=True)
        self.engine.cancel()

    def __repr__(self) -> str:
        return f"Run({self.id!r}, store={self.store.url!r})"

    def _repr_html_(self) -> str:
        """A notebook cell that ends in a run shows its counts by state."""
        from html import escape

        try:
            counts, _ = self.counts()
            states = ", ".join(f"{n} {state}" for state, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        except Exception as e:  # noqa: BLE001 - a display hook must not raise; say what went wrong instead
            states = f"unreadable: {e}"
        rows = [("run", self.id), ("sweep", self.name), ("backend", self.info.get("backend", "")),
                ("tasks", self.n_tasks), ("states", states)]
        cells = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th><td style='text-align:left'>"
                        f"{escape(str(v))}</td></tr>" for k, v in rows)
        return f"<table>{cells}</table><p><code>.results()</code> for the table, <code>.report()</code> for plots</p>"

    @property
    def name(self) -> str:
        return str(self.info["name"])

    @property
    def n_tasks(self) -> int:
        return int(self.info["n_tasks"])

    @cached_property
    def engine(self) -> Engine:
        return get_engine(self.info["backend"])(self)

    def tasks(self) -> list[Task]:
        return self.store.tasks(self.id)

    def statuses(self) -> dict[int, TaskStatus]:
        return self.store.statuses(self.id)

    # -- state --------------------------------------------------------------------------------
    def snapshot(self, progress: Progress | None = None) -> tuple[dict[int, TaskStatus], Progress]:
        progress = progress or self.engine.poll()  # first: a status written after this poll is still counted
        if progress.statuses is None:
            return self.statuses(), progress
        if self._baseline is None:
            self._baseline = {i: s for i, s in self.statuses().items() if i not in progress.covers}
        return {**self._baseline, **progress.statuses}, progress

    def states(self) -> dict[int, State]:
        statuses, progress = self.snapshot()
        return self._states(statuses, progress)

    def _states(self, statuses: dict[int, TaskStatus], progress: Progress) -> dict[int, State]:
        missing = State.PENDING
        if not progress.active:
            missing = State.CANCELLED if self.info.get("cancelled") else State(progress.extra.get("missing", "pending"))
        running = set(progress.extra.get("running_tasks") or ()) if progress.active else set()
        return {i: statuses[i].state if i in statuses else State.RUNNING if i in running else missing
                for i in range(self.n_tasks)}

    def counts(self) -> tuple[Counter[str], Progress]:
        progress = self.engine.poll()
        if progress.active and progress.counts is not None:
            return Counter(progress.counts), progress
        statuses, progress = self.snapshot(progress)
        counts = Counter(s.value for s in self._states(statuses, progress).values())
        running = 0 if counts.get("running") else min(progress.running, counts.get("pending", 0))
        if running:
            counts["running"] = running
            counts["pending"] -= running
        return counts, progress

    @property
    def exit_code(self) -> int:
        states = self.states()
        return 0 if all(s.ok for s in states.values()) else 1

    # -- actions ------------------------------------------------------------------------------
    def wait(self, *, progress: bool = True, interval: float = 0.25) -> int:
        from batchsweep.progress import watch

        try:
            if self.info.get("search"):
                from batchsweep import search

                self._hold("batchsweep wait")  # the waiting process drives a search's rounds
                search.drive(self, progress=progress, interval=interval)
            else:
                watch(self, show=progress, interval=interval)
            self.engine.close()
        finally:
            self._let_go()
        failure = self.engine.runner_failure()
        if failure:
            from batchsweep.errors import RunnerError

            raise RunnerError(f"run {self.id} stopped: {failure}; tasks without a status did not run; "
                              f"fix that, then `batchsweep resume {self.id}`")
        return self.exit_code

    def cancel(self) -> str | None:
        """Stop the run. Returns a sentence when its runner did not confirm the stop (None: it stopped)."""
        self.store.update_run_info(self.id, cancelled=True)
        self.info["cancelled"] = True
        if self._lock is None:
            runlock.request_cancel(self.store, self.id)  # the driver may be another process, on another host
        return self.engine.cancel()

    def resume(self, *, detach: bool = False) -> list[int]:
        """Run again every task that did not succeed. Returns their indices."""
        self._hold("batchsweep resume")
        try:
            todo = self._resume(detach=detach)
        except BaseException:
            self._let_go()
            raise
        if detach or not todo:
            self._let_go()
        return todo

    def _resume(self, *, detach: bool) -> list[int]:
        if self.engine.poll().active:
            raise SpecError(f"run {self.id} is still running; wait for it or `batchsweep cancel {self.id}` first")
        if self.info.get("search"):
            from batchsweep import search

            todo = search.resume_todo(self, detach=detach)  # Run.wait submits them, then the next rounds
        else:
            statuses = self.statuses()
            todo = [t.index for t in self.tasks() if not (t.index in statuses and statuses[t.index].state.ok)]
        for i in todo:
            self.store.backend.delete_prefix(self.store.task_key(self.id, i))
        self.store.backend.delete_prefix(self.store.run_key(self.id, "results.parquet"))
        self.store.remove_stale_temp(self.id)
        self.info = self.store.update_run_info(self.id, cancelled=False, resumed_at=time.time())
        old = self.__dict__.pop("engine", None)
        if old is not None:
            old.close()
        self._baseline = None
        if todo and not self.info.get("search"):
            self.engine.submit(todo, detach=detach)
        return todo

    def logs(self, index: int, *, stderr: bool = False) -> str:
        return b"".join(self.log_chunks(index, stderr=stderr)).decode("utf-8", errors="replace")

    def log_chunks(self, index: int, *, stderr: bool = False, start: int = 0) -> Iterator[bytes]:
        """A task's output from byte `start` on, in chunks: `logs` of a 1 GB log streams it in constant memory."""
        if not 0 <= index < self.n_tasks:
            raise SpecError(f"task {index} does not exist in run {self.id} (tasks 0..{self.n_tasks - 1})")
        key = self.store.task_key(self.id, index, "stderr.log" if stderr else "stdout.log")
        try:
            return self.store.backend.iter_bytes(key, start)
        except FileNotFoundError:
            if self.store.read_status(self.id, index) is not None:
                return iter(())  # finished with no output: empty logs are not stored
            live = self.engine.logs(index, stderr=stderr)
            return _skip((line.encode() for line in live), start) if live is not None else iter(())

    def results(self, *, refresh: bool = False) -> pd.DataFrame:
        from batchsweep.results import gather

        return gather(self, refresh=refresh)

    def report(self, path: str | os.PathLike[str] | None = None, **kwargs: Any) -> Any:
        from batchsweep.results import write_report

        return write_report(self, path, **kwargs)


# -- finding runs -------------------------------------------------------------------------------
def _open_pointer(local: Store, run_id: str) -> Run:
    info = local.run_info(run_id)
    if info.get("pointer"):
        aws = info.get("aws") or {}
        remote = Store.open(info["store"], aws_profile=aws.get("profile"), aws_region=aws.get("region"))
        return Run(remote, run_id)
    return Run(local, run_id, info)


def list_runs(*, store: Store | str | None = None) -> list[dict[str, Any]]:
    """run.json of every run in the store, oldest first."""
    local = store if isinstance(store, Store) else Store.open(store)
    infos = []
    for run_id in local.run_ids():
        try:
            infos.append(local.run_info(run_id))
        except RunDamaged as e:
            infos.append({"run_id": run_id, "damaged": e.reason, "created_ts": 0})  # reported, never hidden
        except RunNotFound:
            continue  # a run being created right now, or a stray directory
    return sorted(infos, key=lambda i: (i.get("created_ts", 0), i["run_id"]))


def load_run(run_id: str | None = None, *, store: Store | str | None = None) -> Run:
    """A run by id (or a unique prefix of one); the latest run when run_id is None."""
    local = store if isinstance(store, Store) else Store.open(store)
    if run_id is None:
        infos = [i for i in list_runs(store=local) if not i.get("damaged")]
        if not infos:
            raise RunNotFound(f"no runs in store {local.url}; start one with `batchsweep run sweep.yaml`")
        return _open_pointer(local, infos[-1]["run_id"])
    ids = local.run_ids()
    if run_id not in ids:
        matches = [i for i in ids if i.startswith(run_id)] if run_id else []
        if len(matches) > 1:
            raise RunNotFound(f"run id {run_id!r} is ambiguous: {', '.join(sorted(matches)[:5])}; give more of it")
        if not matches:  # only ids the store lists: never a path (`../../x`) read as a run
            raise RunNotFound(f"run {run_id!r} not found in store {local.url}; `batchsweep runs` lists the runs")
        run_id = matches[0]
    return _open_pointer(local, run_id)


def run(spec: Spec | str | os.PathLike[str], *, overrides: Sequence[str] = (), backend: str | None = None,
        store: Store | str | None = None, detach: bool = False, progress: bool = True,
        max_parallel: int | None = None, reuse: bool = True, **set_values: Any) -> Run:
    """Run a sweep and wait for it (unless detach). `run("sweep.yaml", timeout="30m")` overrides like --set.
    `reuse=False` runs every task, even those that already succeeded with the same content key."""
    import sys

    extra = [f"{k}={v}" for k, v in set_values.items()]
    p = plan(spec, overrides=[*overrides, *extra], backend=backend, max_parallel=max_parallel)
    r = start(p, store=store, detach=detach, reuse=reuse,
              say=(lambda line: print(line, file=sys.stderr, flush=True)) if progress else None)
    if not detach:
        r.wait(progress=progress)
    return r


def _skip(chunks: Iterator[bytes], start: int) -> Iterator[bytes]:
    """The chunks after their first `start` bytes."""
    for chunk in chunks:
        if start >= len(chunk):
            start -= len(chunk)
            continue
        yield chunk[start:]
        start = 0
