"""What runs a task, wherever it runs (docs/design.md §2): stage inputs, run the script or function in its own
process group with a timeout and retries, read metrics, collect outputs, write status last.

The local engine calls `execute_task` from its threads; on AWS Batch (or any remote machine) the container runs
`python -m batchsweep.worker` (`batchsweep.task.remote`), which calls the same `execute_task`. The worker never talks
to the engine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from batchsweep import metrics as metrics_mod
from batchsweep.model import State, Task, TaskStatus, input_parts, load_json
from batchsweep.scripts.argv import ArgStyle, build_argv, config_file, env_vars, task_env_values
from batchsweep.scripts.options import ScriptFlags
from batchsweep.store.core import Store, TaskDir
from batchsweep.task import reaper
from batchsweep.task import series as series_mod
from batchsweep.task.confine import Anchor, reclaim, write_file
from batchsweep.task.usage import Usage, UsageSampler
from batchsweep.task.warm import launch_cold

if TYPE_CHECKING:
    from batchsweep.store.record import RunRecord

KILL_GRACE_S = 2.0
SIGNALLED_WITH_WORKER_S = 2.0  # how long a task's SIGTERM waits for its worker's own


class TaskProcess(Protocol):
    """A running task: a `subprocess.Popen`, or a child of the warm-start fork server (`batchsweep.task.warm`)."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...


class Launcher(Protocol):
    """Starts a task's process in its own process group, stdin from /dev/null, output into the log files."""

    def __call__(self, argv: list[str], *, cwd: Path, env: dict[str, str], stdout: Path,
                 stderr: Path) -> TaskProcess: ...


@dataclass(frozen=True)
class RunContext:
    """Everything the worker needs to run any task of a run; built from run.json alone."""

    run_id: str
    code_dir: Path  # the directory the script or function module lives in
    script: str | None  # relative to code_dir
    function: str | None
    flags: ScriptFlags
    metrics_rule: str | dict[str, Any]
    outputs: tuple[str, ...]
    timeout_s: float | None
    retries: int
    env: dict[str, str]
    python: str = sys.executable
    memory_limit_mib: float | None = None  # local engine: a task whose process tree goes over it is killed
    arg_style: ArgStyle = ArgStyle()
    stop: dict[str, Any] | None = None  # the spec's `stop:` rule (early stopping), as in run.json
    gpus: float = 0  # resources.gpus: a task with a GPU has its peak GPU memory measured (NVML, when installed)
    base_dir: Path | None = None  # the spec's directory: relative directories in `env:` are resolved against it

    @property
    def style(self) -> str:
        return self.arg_style.style or self.flags.style

    @functools.cached_property
    def base_env(self) -> dict[str, str]:
        """The environment every task starts from (built once per run, not once per task)."""
        from batchsweep.scripts.options import helper_env

        # helper_env: our runner modules (funcrunner, _hydrarun) must import in a `python:` of another environment
        fixed = {k: v for k, v in self.env.items() if "{" not in v}  # those with placeholders: per task
        env = {**os.environ, **task_env_values(fixed, {}, self.base_dir), "PYTHONUNBUFFERED": "1"}
        return {**env, **helper_env(self.python, env)}

    @functools.cached_property
    def per_task_env(self) -> dict[str, str]:
        """The `env:` values with `{param}` placeholders, filled for each task."""
        return {k: v for k, v in self.env.items() if "{" in v}


class ProcessRegistry:
    """The process groups of running tasks, so a cancel (Ctrl-C, SIGTERM) can kill them all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: dict[int, TaskProcess] = {}
        self.cancelled = threading.Event()
        self.reason = "cancelled"

    def add(self, proc: TaskProcess) -> None:
        """Track a started task; one started while a cancel was under way (a SIGTERM that landed between its
        start and this call found nothing to kill) is killed here."""
        with self._lock:
            self._procs[proc.pid] = proc
            cancelled = self.cancelled.is_set()  # read under the lock cancel_all takes after setting it
        if cancelled:
            kill_group(proc)

    def remove(self, proc: TaskProcess) -> None:
        with self._lock:
            self._procs.pop(proc.pid, None)

    def cancel_all(self, reason: str = "cancelled") -> None:
        self.reason = reason
        self.cancelled.set()
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            kill_group(proc)


def kill_group(proc: TaskProcess, *, grace_s: float = KILL_GRACE_S) -> None:
    """SIGTERM the task's whole process group, then SIGKILL what is left after a grace period."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            # The leader is gone; make sure nothing else in its group survives.
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
        return


@dataclass
class Attempt:
    state: State
    exit_code: int | None
    error: str | None
    usage: Usage = Usage(None, None)
    retry: bool = True  # False: another attempt would end the same way (out of memory)
    collect: bool = True  # False: the task moved its own directory, nothing there is the runner's to read
    warm: bool | None = None  # forked from the fork server (None: never started)
    cold_why: str | None = None


@dataclass
class Live:
    """What the worker does while a task runs: record its series every `every` seconds (uploading it to a remote
    store) and, with a `stop:` rule, ask the stopper whether the task should stop."""

    recorder: series_mod.Recorder
    every: float | None  # None: nothing to do while it runs (a local store, no step rule, no stop rule)
    stopper: Any = None  # batchsweep.task.stopping.Stopper


@dataclass
class TaskPaths:
    """Where a task's files go on this machine: the store's task dir (local) or a scratch dir (remote)."""

    task_dir: Path
    real: str | None = None  # where task_dir must lead, its store's root resolved once (confine.Anchor)
    work: Path = field(init=False)
    staged: dict[str, Path] = field(default_factory=dict)  # where each input sits in `work` -> its source

    def __post_init__(self) -> None:
        self.files = TaskDir(self.task_dir)  # the names of the task's files (the store's layout)
        self.work = self.files.work
        self.anchor: Anchor | None = None  # the task directory as it was made, set once it exists


def command(ctx: RunContext, task: Task) -> list[str]:
    if ctx.function:
        return [ctx.python, "-m", "batchsweep.task.funcrunner", str(ctx.code_dir), ctx.function]
    assert ctx.script is not None
    argv = build_argv(task.params, ctx.flags, ctx.arg_style)
    if ctx.style == "hydra":  # a runner that keeps the task function's return value
        return [ctx.python, "-m", "batchsweep.task._hydrarun", str(ctx.code_dir / ctx.script), *argv]
    if ctx.style == "globals":  # a runner that replaces the script's module-level values (warm.run_child too)
        return [ctx.python, "-m", "batchsweep.task._globalsrun", str(ctx.code_dir / ctx.script), *argv]
    return [ctx.python, str(ctx.code_dir / ctx.script), *argv]


def shown_command(ctx: RunContext, task: Task) -> str:
    """The task's command line as a user would type it in the script's directory."""
    import shlex

    argv = command(ctx, task)
    python = "python" if argv[0] == sys.executable else argv[0]
    # the `env:` values this task gets its own of (`RUN_NAME: "run_{lr}"`), and for the env style the params
    own = [f"{k}={v}" for k, v in task_env_values(ctx.per_task_env, task.params, ctx.base_dir).items()] \
        if ctx.per_task_env else []
    if ctx.function:  # the params reach the function through BATCHSWEEP_PARAMS
        return shlex.join([*own, python, "-m", "batchsweep.task.funcrunner", ".", ctx.function])
    if argv[1:3] == ["-m", "batchsweep.task._hydrarun"]:
        argv = argv[2:]
    if argv[1:3] == ["-m", "batchsweep.task._globalsrun"]:
        return shlex.join([*own, python, *argv[1:3], ctx.script or "", *argv[4:]])
    if ctx.style == "env":  # the params are in its environment
        own += [f"{k}={v}" for k, v in env_vars(task.params, ctx.flags, ctx.arg_style).items()]
    return shlex.join([*own, python, ctx.script or "", *argv[2:]])


PARAMS_ENV_MAX = 32 * 1024  # larger params go through a file: one env string may not pass 128 KiB


def task_env(ctx: RunContext, task: Task, work: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The task's environment. `_` params stay with batchsweep; params too large for the environment are
    written to params.json beside the working directory and named by BATCHSWEEP_PARAMS_FILE."""
    params = json.dumps({k: v for k, v in task.params.items() if not k.startswith("_")}, default=str)
    env = {
        **ctx.base_env,
        **(extra or {}),
        "BATCHSWEEP_RUN_ID": ctx.run_id,
        "BATCHSWEEP_TASK_INDEX": str(task.index),
        "BATCHSWEEP_TASK_DIR": str(work),
    }
    if ctx.per_task_env:
        env.update(task_env_values(ctx.per_task_env, task.params, ctx.base_dir))
    if ctx.style == "env":
        env.update(env_vars(task.params, ctx.flags, ctx.arg_style))
    if metrics_mod.is_mlflow(ctx.metrics_rule):  # the task's runs land in its own directory, where they are read
        from batchsweep.task.mlflowmetrics import ENV, tracking_uri

        env[ENV] = tracking_uri(work)
    if len(params) <= PARAMS_ENV_MAX:
        env["BATCHSWEEP_PARAMS"] = params
    else:
        path = TaskDir(work.parent).params
        write_file(path, params.encode())
        env["BATCHSWEEP_PARAMS_FILE"] = str(path)
    return env


COPY_LIMIT = 256 << 20  # inputs up to this size are copied, so a task cannot change the user's own files


def _stage(task: Task, work: Path, resolve_input: Callable[[str], Path]) -> dict[str, Path]:
    """Put each input at its place in the task's directory: a copy (so what the task writes there lands in its
    own directory and is collected), or for an input over COPY_LIMIT a link to it (read-only by convention)."""
    staged = {}
    for ref in task.inputs:
        src, dst = input_parts(ref)
        source = resolve_input(src).resolve()
        target = work / dst.rstrip("/")
        if not os.path.lexists(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            if _size_up_to(str(source), source.stat().st_mtime_ns) <= COPY_LIMIT:
                if source.is_dir():
                    shutil.copytree(source, target, symlinks=True)
                else:
                    shutil.copy2(source, target)
            else:
                target.symlink_to(source)
        staged[dst.rstrip("/")] = source
    return staged


@functools.lru_cache(maxsize=256)
def _size_up_to(path: str, mtime_ns: int, limit: int = COPY_LIMIT) -> int:
    """Bytes under path, counting only until the limit is passed (mtime_ns keys the cache)."""
    if not os.path.isdir(path):
        return os.path.getsize(path)
    total = 0
    for parent, _dirs, names in os.walk(path):
        for name in names:
            total += os.lstat(os.path.join(parent, name)).st_size
            if total > limit:
                return total
    return total


def _unchanged_input(work: Path, rel: str, staged: dict[str, Path]) -> bool:
    """Whether a file in the task's directory is a staged input as it was copied (not written by the task)."""
    for dst, source in staged.items():
        if rel == dst or rel.startswith(dst + "/"):
            original = source if rel == dst else source / rel[len(dst) + 1:]
            try:
                a, b = os.stat(original), os.stat(work / rel)
            except OSError:
                return False  # a file the task added inside a staged directory
            return (a.st_size, a.st_mtime_ns) == (b.st_size, b.st_mtime_ns)
    return False


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name.removeprefix('SIG')} ({-code})"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _fresh_dir(path: Path) -> None:
    try:
        os.mkdir(path)
    except FileExistsError:  # a previous attempt's, or a symlink another task of the run put there
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path)
        else:
            os.unlink(path)  # not followed
        os.mkdir(path)
    except FileNotFoundError:
        path.mkdir(parents=True)


def run_attempt(ctx: RunContext, task: Task, paths: TaskPaths, *, registry: ProcessRegistry | None,
                resolve_input: Callable[[str], Path], launcher: Launcher = launch_cold,
                extra_env: dict[str, str] | None = None, live: Live | None = None) -> Attempt:
    _fresh_dir(paths.work)
    paths.staged = _stage(task, paths.work, resolve_input)
    if ctx.style == "config":  # the params file the script reads, in its working directory
        name, text = config_file(task.params, ctx.flags)
        (paths.work / name).parent.mkdir(parents=True, exist_ok=True)
        (paths.work / name).write_text(text)
    token = f"{ctx.run_id}/{task.index}/{secrets.token_hex(4)}"  # inherited by every descendant: see reaper
    env = {**task_env(ctx, task, paths.work, extra_env), reaper.TOKEN_VAR: token}
    if live is not None:
        live.recorder.start()
        env[series_mod.ENV_FILE] = str(live.recorder.path)
    try:
        proc = launcher(command(ctx, task), cwd=paths.work, env=env,
                        stdout=paths.files.log(), stderr=paths.files.log(stderr=True))
    except OSError as e:
        return Attempt(State.FAILED, None, f"could not start: {e}")
    warm, cold_why = bool(getattr(proc, "warm", False)), getattr(proc, "cold_why", None)
    try:
        attempt = dataclasses.replace(_wait_attempt(ctx, proc, registry, live), warm=warm, cold_why=cold_why)
    finally:
        reaper.kill_orphans(token, spare={proc.pid})  # what left the process group (setsid, double fork)
        if live is not None:
            try:
                live.recorder.poll(final=True)
            except OSError:
                pass  # a series that cannot be read or uploaded now is not worth the task's result
    attempt = _confined(attempt, paths)
    if attempt.state is State.FAILED and attempt.retry:  # (an out-of-memory kill says so itself)
        last = last_line(paths.files.log(stderr=True))
        attempt.error = (attempt.error or "") + (f": {last}" if last else "")
    return attempt


def _confined(attempt: Attempt, paths: TaskPaths) -> Attempt:
    """The attempt, failed without another when the task moved its directory or put something else (a
    symlink to a file outside, say) where the runner keeps one of its files: see `batchsweep.task.confine`."""
    moved = paths.anchor.check() if paths.anchor is not None else None
    planted = moved or reclaim(paths.files)
    if planted is None:
        return attempt
    state = State.CANCELLED if attempt.state is State.CANCELLED else State.FAILED
    return dataclasses.replace(attempt, state=state, error=planted, retry=False, collect=moved is None)


def _wait_live(ctx: RunContext, proc: TaskProcess, live: Live | None) -> tuple[int | None, str | None]:
    """Wait for the task like `proc.wait(timeout)`, recording its series meanwhile. Returns (exit code, None),
    or (None, reason) when the stop rule stopped it. TimeoutExpired when it ran out of time."""
    if live is None or live.every is None:
        return proc.wait(timeout=ctx.timeout_s), None
    deadline = None if ctx.timeout_s is None else time.monotonic() + ctx.timeout_s
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise subprocess.TimeoutExpired("task", ctx.timeout_s or 0)
        try:
            return proc.wait(timeout=live.every if left is None else min(live.every, left)), None
        except subprocess.TimeoutExpired:
            if left is not None and left <= live.every:
                raise
        try:
            live.recorder.poll()
            decision = live.stopper.check(live.recorder.records) if live.stopper is not None else None
        except OSError:
            continue  # the store hiccuped (S3 throttling, a full disk): the task goes on, the next flush retries
        if decision is not None:
            kill_group(proc)  # SIGTERM to its process group, SIGKILL after the grace period
            return None, decision.reason


def _wait_attempt(ctx: RunContext, proc: TaskProcess, registry: ProcessRegistry | None,
                  live: Live | None = None) -> Attempt:
    if registry is not None:
        registry.add(proc)
    sampler = UsageSampler(proc.pid, limit_mib=ctx.memory_limit_mib,
                           on_limit=lambda: kill_group(proc, grace_s=0), gpu=bool(ctx.gpus)).start()
    try:
        code, pruned = _wait_live(ctx, proc, live)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        return Attempt(State.TIMEOUT, proc.returncode, f"timeout after {ctx.timeout_s:g}s", sampler.stop())
    finally:
        if registry is not None:
            registry.remove(proc)
    usage = sampler.stop()
    if code == -signal.SIGTERM and registry is not None:
        # Slurm's cancel signals every process of the job at once: the task's SIGTERM may land a moment before
        # its worker's, which is what makes this a cancel and not the task's own failure.
        registry.cancelled.wait(SIGNALLED_WITH_WORKER_S)
    if code is None:  # stopped by the rule: killed above
        code = proc.returncode if proc.returncode is not None else -signal.SIGTERM
    if pruned is not None and not (registry is not None and registry.cancelled.is_set()):
        return Attempt(State.PRUNED, code, pruned, usage, retry=False)
    # A task that exits by itself may leave children in its group behind: they die with it.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if registry is not None and registry.cancelled.is_set():
        return Attempt(State.CANCELLED, code, registry.reason, usage)
    if sampler.over_limit:
        return Attempt(State.FAILED, code, f"out of memory (limit {ctx.memory_limit_mib:g} MiB)", usage, retry=False)
    if code == 0:
        return Attempt(State.SUCCEEDED, 0, None, usage)
    return Attempt(State.FAILED, code, _describe_exit(code), usage)


def last_line(path: Path, *, limit: int = 200) -> str:
    """The last line a task wrote to a log (a traceback's last line says what went wrong)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            tail = f.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1][:limit] if lines else ""


def _collect_metrics(ctx: RunContext, paths: TaskPaths) -> tuple[str | None, bool]:
    """Move the task's metrics into task_dir/metrics.json. Returns (a problem to report, whether any was found)."""
    target = paths.files.metrics
    rule = ctx.metrics_rule
    found: dict[str, Any] | None = None
    produced = paths.work / (rule if isinstance(rule, str) else metrics_mod.METRICS_FILE)
    try:
        value = load_json(metrics_mod.read_file(produced, within=paths.work))  # UnsafeMetricsFile: a FIFO, a symlink, huge
    except FileNotFoundError:
        pass
    except ValueError:
        return f"{produced.name} is not valid JSON", False
    else:
        if not isinstance(value, dict):
            return f"{produced.name} is not a JSON object", False
        found = metrics_mod.clean(value)
        produced.unlink()
    if metrics_mod.is_mlflow(rule):
        from batchsweep.task.mlflowmetrics import MlflowReadError, Reader

        try:
            logged = Reader(paths.work).final()
        except MlflowReadError as e:
            return str(e), bool(found)
        if logged:
            found = {**(found or {}), **logged}
    elif isinstance(rule, dict):
        stream, pattern = metrics_mod.rule_stream(rule)
        with contextlib.ExitStack() as stack:  # streams: a 1 GB log costs no memory
            logs = [stack.enter_context(open(log, "rb")) for log in
                    (paths.files.log(stderr=s == "stderr") for s in (("stdout", "stderr") if stream == "output" else (stream,)))
                    if log.exists()]
            printed = metrics_mod.from_streams(logs, pattern, match=rule.get("match") or "last")
        if printed:
            found = {**(found or {}), **printed}
            if series_mod.rule_source(rule) is not None:
                found.pop("step", None)  # the step reached is the status's last_step
    if found:
        write_file(target, json.dumps(found).encode())
    return None, bool(found)


def _other_stream(ctx: RunContext, paths: TaskPaths) -> str:
    """The log a stream rule did not read (its tail), to tell the user when the numbers went there."""
    rule = ctx.metrics_rule
    if not isinstance(rule, dict) or rule.get("output") is not None or metrics_mod.is_mlflow(rule):
        return ""
    log = paths.files.log(stderr=rule.get("stdout") is not None)
    try:
        with open(log, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - (1 << 20)))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _collect_outputs(ctx: RunContext, task: Task, paths: TaskPaths) -> tuple[str, ...]:
    """Keep what `outputs:` names (or, without it, every file the task created) in task_dir/outputs."""
    outputs_dir = paths.files.outputs
    try:
        shutil.rmtree(outputs_dir)  # a previous attempt's
    except FileNotFoundError:
        pass
    files = []  # every file (not a symlink) the task left, as posix paths relative to its working dir
    for parent, _dirs, names in os.walk(paths.work):
        rel_parent = os.path.relpath(parent, paths.work).replace(os.sep, "/")
        for name in names:
            if not os.path.islink(os.path.join(parent, name)):
                files.append(name if rel_parent == "." else f"{rel_parent}/{name}")
    kept = []
    for rel in sorted(files, key=lambda r: r.split("/")):
        name = rel.rsplit("/", 1)[-1]
        if _unchanged_input(paths.work, rel, paths.staged):
            continue  # an input as staged; one the task changed is kept, like any file it wrote
        if ctx.outputs and not any(fnmatch(rel, g) or fnmatch(name, g) for g in ctx.outputs):
            continue
        target = outputs_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(paths.work / rel, target)
        kept.append(rel)
    try:
        os.rmdir(paths.work)  # usually empty by now
    except OSError:
        shutil.rmtree(paths.work, ignore_errors=True)
    return tuple(kept)


def run_task(ctx: RunContext, task: Task, paths: TaskPaths, *, worker: str = "",
             registry: ProcessRegistry | None = None, resolve_input: Callable[[str], Path],
             first_attempt: int = 1, max_attempts: int | None = None,
             launcher: Launcher = launch_cold, gpus: tuple[str, ...] = (), live: Live | None = None) -> TaskStatus:
    """Run every attempt of one task and return its final status (not yet written: the caller writes it last,
    after anything else it must upload)."""
    paths.anchor = Anchor(paths.task_dir, paths.real)
    if paths.anchor.planted:
        logging.getLogger(__name__).warning("task %s: %s", task.index, paths.anchor.planted)
    started = time.time()
    attempts = max_attempts if max_attempts is not None else ctx.retries + 1
    attempt_no = first_attempt
    while True:
        result = run_attempt(ctx, task, paths, registry=registry, resolve_input=resolve_input, launcher=launcher,
                             extra_env=gpu_env(gpus), live=live)
        done = (result.state in (State.SUCCEEDED, State.CANCELLED, State.PRUNED) or not result.retry
                or attempt_no >= first_attempt + attempts - 1)
        if done:
            break
        attempt_no += 1
    error = result.error
    missing = None
    if result.state is not State.CANCELLED and result.collect:
        try:
            problem, found = _collect_metrics(ctx, paths)
        except metrics_mod.UnsafeMetricsFile as e:
            result, problem, found = Attempt(State.FAILED, result.exit_code, str(e)), None, True
            error = result.error
        if problem and result.state is State.SUCCEEDED:
            error = problem
        if result.state is State.SUCCEEDED and not found:
            missing = problem or metrics_mod.describe(ctx.metrics_rule, other=_other_stream(ctx, paths))
    outputs = _collect_outputs(ctx, task, paths) if result.collect else ()
    return TaskStatus(
        index=task.index, state=result.state, attempts=attempt_no, exit_code=result.exit_code, error=error,
        started_at=round(started, 3), ended_at=round(time.time(), 3), worker=worker or socket.gethostname(),
        outputs=outputs, peak_rss_mib=result.usage.peak_rss_mib, cpu_s=result.usage.cpu_s,
        gpu=",".join(gpus) or None, gpu_mem_mib=result.usage.gpu_mem_mib, metrics_missing=missing, command=shown_command(ctx, task),
        last_step=live.recorder.last_step if live is not None else None, warm=result.warm, host=socket.gethostname(),
        cold_why=result.cold_why if result.warm is False else None,
    )


def gpu_env(gpus: tuple[str, ...]) -> dict[str, str] | None:
    """The devices a task may see (its GPU lease on this machine)."""
    if not gpus:
        return None
    ids = ",".join(gpus)
    return {"CUDA_VISIBLE_DEVICES": ids, "NVIDIA_VISIBLE_DEVICES": ids}


def execute_task(ctx: RunContext, task: Task, store: Store, *, worker: str, scratch: Path | None = None,
                 registry: ProcessRegistry | None = None, resolve_input: Callable[[str], Path],
                 infra_retries: int = 0, launcher: Launcher = launch_cold, gpus: tuple[str, ...] = ()) -> TaskStatus:
    """Run a task and put everything it produced in the store, its status last.

    On a local (or shared) store the task writes straight into its store directory; on a remote one it works in
    `scratch` and its files are uploaded before the status."""
    run_id = ctx.run_id
    if store.is_local:
        paths = TaskPaths(store.local_task_dir(run_id, task.index).root,
                          store.local_real_path(store.task_prefix(run_id, task.index)))
    else:
        assert scratch is not None, "a remote store needs a scratch directory"
        paths = TaskPaths(scratch / str(task.index), os.path.join(os.path.realpath(scratch), str(task.index)))
    status = run_task(ctx, task, paths, worker=worker, registry=registry, resolve_input=resolve_input,
                      launcher=launcher, gpus=gpus, live=_live(ctx, task, store, paths))
    if infra_retries:
        status = dataclasses.replace(status, infra_retries=infra_retries)
    _drop_empty(paths.files)
    if not store.is_local:
        shutil.rmtree(paths.work, ignore_errors=True)
        store.backend.upload_dir(paths.task_dir, store.task_prefix(run_id, task.index))
        shutil.rmtree(paths.task_dir, ignore_errors=True)
    store.write_status(run_id, status)
    if status.state is State.SUCCEEDED:
        try:
            store.record_success(task.cache_key, run_id, task.index)  # later runs reuse it (batchsweep.planning.reuse)
        except Exception as e:  # noqa: BLE001 - the task succeeded; without the entry it is only not reused
            logging.getLogger(__name__).warning("task %s: not recorded for reuse (%s)", task.index, str(e).splitlines()[0] if str(e) else e)
    return status


def _live(ctx: RunContext, task: Task, store: Store, paths: TaskPaths) -> Live:
    """Series recording for a task (and its stopper when the spec has `stop:`); a remote store gets the series
    uploaded after each flush that added to it."""
    upload = None
    if not store.is_local:
        key = store.task_series_key(ctx.run_id, task.index)

        def upload(data: bytes) -> None:
            store.backend.write_bytes(key, data)

    stopper = None
    if ctx.stop:
        from batchsweep.task.stopping import Stopper, warm_up

        stopper = Stopper(ctx.stop, store, ctx.run_id, task.index, every=series_mod.flush_every(local=store.is_local))
        warm_up()
    recorder = series_mod.Recorder(paths.files, ctx.metrics_rule, upload=upload, work=paths.work)
    # On a local store a script's log_metrics(step=...) lands in the store as it writes: only a step rule (the
    # log is read), an MLflow rule (its store is read), a stop rule or a remote store need the worker while the
    # task runs.
    idle = (store.is_local and stopper is None and series_mod.rule_source(ctx.metrics_rule) is None
            and not metrics_mod.is_mlflow(ctx.metrics_rule))
    return Live(recorder, every=None if idle else series_mod.flush_every(local=store.is_local), stopper=stopper)


def _drop_empty(files: TaskDir) -> None:
    """A lean store: empty logs and an empty outputs directory are not kept (a missing log reads as empty)."""
    for path in (files.log(), files.log(stderr=True)):
        try:
            if path.stat().st_size == 0 and not path.is_symlink():
                path.unlink()
        except FileNotFoundError:
            pass
    try:
        files.outputs.rmdir()  # only when empty
    except OSError:
        pass


def context_from_run(record: RunRecord, *, code_dir: Path | None = None,
                     memory_limit_mib: int | None = None) -> RunContext:
    """What the worker needs of a run, from its record (the script by its name in `code_dir`). The memory limit
    is the engine's to give (`Engine.memory_limit_mib`): the worker enforces it, whoever runs it."""
    from batchsweep.scripts.options import flags_from_json

    spec = record.spec
    return RunContext(
        run_id=record.run_id,
        code_dir=code_dir or Path(record.code_dir),
        script=spec.script,
        function=spec.function,
        flags=flags_from_json(record.flags),
        # the rule and the stop block as run.json holds them (what `metrics` and `stopping` read)
        metrics_rule=spec.metrics if isinstance(spec.metrics, str) else spec.metrics.model_dump(mode="json"),
        outputs=tuple(spec.outputs),
        timeout_s=record.timeout_s,
        retries=spec.retries,
        env=dict(spec.env),
        memory_limit_mib=memory_limit_mib,
        python=spec.python or sys.executable,
        arg_style=ArgStyle.from_spec(spec.args.model_dump(mode="json") if spec.args else None),
        stop=spec.stop.model_dump(mode="json") if spec.stop else None,
        gpus=float(spec.resources.gpus),
        base_dir=Path(record.base_dir),
    )
