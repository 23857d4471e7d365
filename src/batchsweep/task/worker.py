"""What runs a task, wherever it runs (docs/design.md §2): stage inputs, run the script or function in its own
process group with a timeout and retries, read metrics, collect outputs, write status last.

The local engine calls `execute_task` from its threads; on AWS Batch (or any remote machine) the container
runs `python -m batchsweep.worker` (`batchsweep.task.remote`), which calls the same `execute_task`. The worker
never talks to the engine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from batchsweep import metrics as metrics_mod
from batchsweep.files import open_dir, remove_at
from batchsweep.model import State, Task, TaskStatus
from batchsweep.scripts.argv import config_file
from batchsweep.store.core import Store
from batchsweep.store.layout import TaskDir
from batchsweep.task import reaper
from batchsweep.task import series as series_mod
from batchsweep.task.collect import TaskPaths, collect, drop_empty, last_line, other_stream
from batchsweep.task.confine import Anchor, reclaim, write_file
from batchsweep.task.context import (  # re-exported: engines and the CLI import them from here
    RunContext,
    command,
    context_from_run,
    gpu_env,
    shown_command,
    task_env,
)
from batchsweep.task.launch import launch_cold
from batchsweep.task.staging import stage
from batchsweep.task.usage import Usage, UsageSampler

__all__ = ["Launcher", "ProcessRegistry", "RunContext", "TaskProcess", "context_from_run", "execute_task",
           "kill_group", "shown_command"]

KILL_GRACE_S = 2.0
SIGNALLED_WITH_WORKER_S = 2.0  # how long a task's SIGTERM waits for its worker's own


class TaskProcess(Protocol):
    """A running task: a `subprocess.Popen`, or a child of the warm-start fork server
    (`batchsweep.task.warm`)."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...


class Launcher(Protocol):
    """Starts a task's process in its own process group, stdin from /dev/null, output into the log files."""

    def __call__(self, argv: list[str], *, cwd: Path, env: dict[str, str], stdout: Path,
                 stderr: Path) -> TaskProcess: ...


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
    """What the worker does while a task runs: record its series every `every` seconds (uploading it to a
    remote store) and, with a `stop:` rule, ask the stopper whether the task should stop."""

    recorder: series_mod.Recorder
    every: float | None  # None: nothing to do while it runs (a local store, no step rule, no stop rule)
    stopper: Any = None  # batchsweep.task.stopping.Stopper


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name.removeprefix('SIG')} ({-code})"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _fresh_work(task_fd: int) -> int:
    """A new empty working directory in the task's, held open. What stands in its way (a previous attempt's,
    or a symlink another task of the run put there) is removed, not followed."""
    for _ in range(3):
        remove_at(TaskDir.WORK, task_fd)
        try:
            os.mkdir(TaskDir.WORK, dir_fd=task_fd)
            return open_dir(TaskDir.WORK, task_fd)
        except OSError:  # replaced between the two: another task of the run at work
            continue
    raise OSError(f"{TaskDir.WORK} was replaced each time it was made (another task of the run)")


def _held(fd: int, path: Path) -> Path:
    """A path to the directory fd holds that is resolved through the descriptor (Linux), so what the runner
    writes there cannot be sent elsewhere by a symlink swapped in for path; else path itself."""
    proc = Path(f"/proc/self/fd/{fd}")
    return proc if proc.is_dir() else path


def run_attempt(ctx: RunContext, task: Task, paths: TaskPaths, *, registry: ProcessRegistry | None,
                resolve_input: Callable[[str], Path], launcher: Launcher = launch_cold,
                extra_env: dict[str, str] | None = None, live: Live | None = None,
                argv: list[str] | None = None) -> Attempt:
    """One attempt at the task (`argv`: its `command`, when the caller built it already)."""
    try:
        work_fd = _fresh_work(paths.fd)
        made = os.fstat(work_fd)  # what the task's launcher checks it starts in (`_reap.check_workdir`)
    except OSError as e:
        return Attempt(State.FAILED, None, f"its working directory could not be made: {e}", retry=False)
    try:
        work = _held(work_fd, paths.work)
        paths.staged = stage(task, work_fd, resolve_input)
        if ctx.style == "config":  # the params file the script reads, in its working directory
            name, text = config_file(task.params, ctx.flags)
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            write_file(work / name, text.encode())
    finally:
        os.close(work_fd)
    token = f"{ctx.run_id}/{task.index}/{secrets.token_hex(4)}"  # inherited by every descendant: see reaper
    env = {**task_env(ctx, task, paths.work, extra_env), reaper.TOKEN_VAR: token,
           reaper.WORKDIR_VAR: f"{made.st_dev}:{made.st_ino}"}
    if live is not None:
        live.recorder.start()
        env[series_mod.ENV_FILE] = str(live.recorder.path)
    try:
        proc = launcher(list(argv) if argv is not None else command(ctx, task), cwd=paths.work, env=env,
                        stdout=paths.files.log(), stderr=paths.files.log(stderr=True))
    except OSError as e:
        return Attempt(State.FAILED, None, f"could not start: {e}")
    warm, cold_why = bool(getattr(proc, "warm", False)), getattr(proc, "cold_why", None)
    try:
        attempt = dataclasses.replace(_wait_attempt(ctx, proc, registry, live), warm=warm, cold_why=cold_why)
    finally:
        # its reaper, having ended by itself, killed what the task left
        if not getattr(proc, "reaped", False):
            reaper.kill_orphans(token, spare={proc.pid})  # what left the process group (setsid, double fork)
        if live is not None:
            try:
                live.recorder.poll(final=True)
            except OSError:
                pass  # a series that cannot be read or uploaded now is not worth the task's result
    attempt = _confined(attempt, paths)
    if attempt.state is State.FAILED and attempt.retry:  # (an out-of-memory kill says so itself)
        last = last_line(TaskDir.STDERR, paths.fd)
        attempt.error = (attempt.error or "") + (f": {last}" if last else "")
    return attempt


def _confined(attempt: Attempt, paths: TaskPaths) -> Attempt:
    """The attempt, failed without another when the task moved its directory or put something else (a
    symlink to a file outside, say) where the runner keeps one of its files: see `batchsweep.task.confine`."""
    moved = paths.anchor.check() if paths.anchor is not None else None
    planted = moved or reclaim(paths.files, paths.fd)
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
            # the store hiccuped (S3 throttling, a full disk): the task goes on, the next flush retries
            continue
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
        return Attempt(State.TIMEOUT, proc.returncode, f"timeout after {ctx.timeout_s:g}s",
                       sampler.stop(getattr(proc, "usage", None)))
    finally:
        if registry is not None:
            registry.remove(proc)
    usage = sampler.stop(getattr(proc, "usage", None))  # the server's account of it as its reaper ended
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
        return Attempt(
            State.FAILED, code, f"out of memory (limit {ctx.memory_limit_mib:g} MiB)", usage, retry=False
        )
    if code == 0:
        return Attempt(State.SUCCEEDED, 0, None, usage)
    return Attempt(State.FAILED, code, _describe_exit(code), usage)


def run_task(
    ctx: RunContext,
    task: Task,
    paths: TaskPaths,
    *,
    worker: str = "",
    registry: ProcessRegistry | None = None,
    resolve_input: Callable[[str], Path],
    first_attempt: int = 1,
    max_attempts: int | None = None,
    launcher: Launcher = launch_cold,
    gpus: tuple[str, ...] = (),
    live: Live | None = None,
) -> TaskStatus:
    """Run every attempt of one task and return its final status (not yet written: the caller writes it last,
    after anything else it must upload)."""
    paths.anchor = Anchor(paths.task_dir, paths.real)
    if paths.anchor.planted:
        logging.getLogger(__name__).warning("task %s: %s", task.index, paths.anchor.planted)
    started = time.time()
    attempts = max_attempts if max_attempts is not None else ctx.retries + 1
    attempt_no = first_attempt
    argv = command(ctx, task)
    while True:
        result = run_attempt(
            ctx,
            task,
            paths,
            registry=registry,
            resolve_input=resolve_input,
            launcher=launcher,
            extra_env=gpu_env(gpus),
            live=live,
            argv=argv,
        )
        done = (result.state in (State.SUCCEEDED, State.CANCELLED, State.PRUNED) or not result.retry
                or attempt_no >= first_attempt + attempts - 1)
        if done:
            break
        attempt_no += 1
    error, missing = result.error, None
    outputs: tuple[str, ...] = ()
    if result.collect:
        cancelled = result.state is State.CANCELLED
        got = collect(ctx, paths, metrics=not cancelled)
        outputs = got.outputs
        if got.unsafe is not None:
            state = State.CANCELLED if cancelled else State.FAILED
            result, error = dataclasses.replace(result, state=state, error=got.unsafe), got.unsafe
        elif got.problem and result.state is State.SUCCEEDED:
            error = got.problem
        if result.state is State.SUCCEEDED and not got.found:
            missing = got.problem or metrics_mod.describe(ctx.metrics_rule, other=other_stream(ctx, paths))
    return TaskStatus(
        index=task.index,
        state=result.state,
        attempts=attempt_no,
        exit_code=result.exit_code,
        error=error,
        started_at=round(started, 3),
        ended_at=round(time.time(), 3),
        worker=worker or socket.gethostname(),
        outputs=outputs,
        peak_rss_mib=result.usage.peak_rss_mib,
        cpu_s=result.usage.cpu_s,
        gpu=",".join(gpus) or None,
        gpu_mem_mib=result.usage.gpu_mem_mib,
        metrics_missing=missing,
        command=shown_command(ctx, task, argv),
        last_step=live.recorder.last_step if live is not None else None,
        warm=result.warm,
        host=socket.gethostname(),
        cold_why=result.cold_why if result.warm is False else None,
    )


def execute_task(
    ctx: RunContext,
    task: Task,
    store: Store,
    *,
    worker: str,
    scratch: Path | None = None,
    registry: ProcessRegistry | None = None,
    resolve_input: Callable[[str], Path],
    infra_retries: int = 0,
    launcher: Launcher = launch_cold,
    gpus: tuple[str, ...] = (),
) -> TaskStatus:
    """Run a task and put everything it produced in the store, its status last.

    On a local (or shared) store the task writes straight into its store directory; on a remote one it works
    in `scratch` and its files are uploaded before the status."""
    run_id = ctx.run_id
    if store.is_local:
        paths = TaskPaths(store.local_task_dir(run_id, task.index).root,
                          store.local_real_path(store.task_prefix(run_id, task.index)))
    else:
        assert scratch is not None, "a remote store needs a scratch directory"
        paths = TaskPaths(scratch / str(task.index), os.path.join(os.path.realpath(scratch), str(task.index)))
    try:
        live = _live(ctx, task, store, paths)
        status = run_task(ctx, task, paths, worker=worker, registry=registry, resolve_input=resolve_input,
                          launcher=launcher, gpus=gpus, live=live)
        if infra_retries:
            status = dataclasses.replace(status, infra_retries=infra_retries)
        status = _store_task(store, run_id, status, paths)
        if live.stopper is not None:
            live.stopper.finished(status, live.recorder.records)
    finally:
        if paths.anchor is not None:
            paths.anchor.close()
    if status.state is State.SUCCEEDED:
        try:
            # later runs reuse it (batchsweep.planning.reuse)
            store.record_success(task.cache_key, run_id, task.index)
        except Exception as e:  # noqa: BLE001 - the task succeeded; without the entry it is only not reused
            logging.getLogger(__name__).warning(
                "task %s: not recorded for reuse (%s)", task.index, str(e).splitlines()[0] if str(e) else e
            )
    return status


def _store_task(store: Store, run_id: str, status: TaskStatus, paths: TaskPaths) -> TaskStatus:
    """Put the task's files and its status in the store, through the task's directory as the runner made it
    (never through a name another task could have swapped for a symlink meanwhile)."""
    moved = paths.anchor.check() if paths.anchor is not None else None  # (a fresh one then holds the status)
    planted = moved or reclaim(paths.files, paths.fd)  # a symlink swapped in after the files were collected
    if planted is not None:
        state = State.CANCELLED if status.state is State.CANCELLED else State.FAILED
        status = dataclasses.replace(status, state=state, error=planted, metrics_missing=None,
                                     outputs=() if moved else status.outputs)
    drop_empty(paths.fd)
    if store.is_local:
        store.write_status(run_id, status, dir_fd=paths.fd)
        return status
    remove_at(TaskDir.WORK, paths.fd)
    # Linux names a directory by its descriptor: the upload reads the directory the runner holds open
    held = Path(f"/proc/self/fd/{paths.fd}")
    store.backend.upload_dir(
        held if held.is_dir() else paths.task_dir, store.task_prefix(run_id, status.index)
    )
    for name in os.listdir(paths.fd):
        remove_at(name, paths.fd)
    with contextlib.suppress(OSError):
        os.rmdir(paths.task_dir)  # (a symlink someone put there: ENOTDIR, left alone)
    store.write_status(run_id, status)
    return status


def _live(ctx: RunContext, task: Task, store: Store, paths: TaskPaths) -> Live:
    """Series recording for a task (and its stopper when the spec has `stop:`); a remote store gets the series
    uploaded after each flush that added to it."""
    upload = None
    if not store.is_local:
        key = store.task_series_key(ctx.run_id, task.index)

        def upload(data: bytes) -> None:
            store.backend.write_bytes(key, data)

    stopper, push = None, series_mod.push_every()
    if ctx.stop:
        from batchsweep.task.stopping import Stopper, reads_running, warm_up

        stopper = Stopper(ctx.stop, store, ctx.run_id, task.index, every=push, soon=series_mod.read_every())
        if reads_running(ctx.stop):  # other workers decide from this series while it runs: up at each read
            push = 0.0
        warm_up()
    recorder = series_mod.Recorder(paths.files, ctx.metrics_rule, upload=upload, work=paths.work,
                                   push_every=push, held=lambda: paths.fd)
    # On a local store a script's log_metrics(step=...) lands in the store as it writes: only a step rule (the
    # log is read), an MLflow rule (its store is read), a stop rule or a remote store need the worker while
    # the task runs.
    idle = (store.is_local and stopper is None and series_mod.rule_source(ctx.metrics_rule) is None
            and not metrics_mod.is_mlflow(ctx.metrics_rule))
    return Live(recorder, every=None if idle else series_mod.read_every(), stopper=stopper)


