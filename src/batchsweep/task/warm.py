"""Warm start (`warm: true`): a fork server that imports what the script imports once, then forks per task.

The runner starts one server per run (`python -m batchsweep.task.warmserver SCRIPT`, `task/warmserver.py`) and
talks to it over the server's stdin and stdout, as to the task launcher (`task/launch.py`: the same frames).
Its `ready` message also says what the imports left behind (threads, sockets, ...), for `unsafe_reason`.

Each child is what a cold task would be: its own session and process group, the task's working directory,
stdin from /dev/null, stdout/stderr into the task's log files, the task's environment and argv, the script run
as `__main__`. The runner waits for the exit message and kills the group on a timeout, as for a cold task.
The server ends at EOF on its stdin: when the run ends, and when the runner dies, however it dies.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batchsweep.task import reaper
from batchsweep.task.launch import READY_TIMEOUT_S, ServerClient
from batchsweep.task.launch import cold_because as cold_because
from batchsweep.task.launch import launch_cold as launch_cold
from batchsweep.task.launch import open_log as open_log
from batchsweep.task.warmserver import TOKEN_ROOM


def mode(value: bool | str) -> str:
    """The spec's `warm:` as "on" (`true`: forced), "off" (`false`) or "auto" (the default: on where it is
    safe). A run.json written before `auto` existed holds a bool."""
    if value is True:
        return "on"
    if value is False:
        return "off"
    return "auto"


def unusable_reason(*, script: str | None, function: str | None) -> str | None:
    """Why this run cannot be warm-started, in a few words; None when it can."""
    if function or not script:
        return "function tasks run cold"
    if not hasattr(os, "fork"):
        return "this platform has no os.fork"
    return None


def server_for(ctx: Any, *, warm: str = "on", n_tasks: int = 2) -> WarmServer | str:
    """A ready fork server for a run's tasks (`worker.RunContext`), or why they run cold. The one decision
    used by every engine: locally per run, per AWS Batch child, per Dask worker process. `warm` is `mode()`:
    "auto" also runs cold what the fork server finds unsafe to share (see `unsafe_reason`), a lone task and a
    GPU task; "on" only what cannot be forked at all."""
    reason = unusable_reason(script=ctx.script, function=ctx.function)
    if reason is None and ctx.style == "hydra":
        reason = "Hydra apps run cold"
    if reason is None and warm == "auto":
        if n_tasks < 2:
            reason = "a single task gains nothing from it"
        elif ctx.gpus:
            reason = "GPU tasks run cold unless `warm: true` (each task sees its own CUDA_VISIBLE_DEVICES)"
    if reason is not None:
        return reason
    rule = ctx.metrics_rule
    task_vars = (*TASK_ENV, *(MLFLOW_TASK_ENV if isinstance(rule, dict) and rule.get("mlflow") else ()),
                 *(GPU_TASK_ENV if ctx.gpus else ()), *ctx.per_task_env,
                 # `env`-style params: each task sets them, so imports that read them must run per task
                 *((f.dest for f in ctx.flags.flags) if ctx.style == "env" else ()))
    return WarmServer.start(
        ctx.code_dir / ctx.script,
        env=ctx.base_env,
        python=ctx.python,
        forced=warm == "on",
        task_vars=task_vars,
    )


TOKEN_VAR = reaper.TOKEN_VAR  # the server starts with room for a task's token (`warmserver.TOKEN_ROOM`)


# What each task's environment sets for itself (worker.task_env): left out of the server's, and looked up
# while the imports run, a reason for `auto` to run cold (the imports would have read the server's, not the
# task's).
TASK_ENV = ("BATCHSWEEP_RUN_ID", "BATCHSWEEP_TASK_INDEX", "BATCHSWEEP_TASK_DIR", "BATCHSWEEP_PARAMS",
            "BATCHSWEEP_PARAMS_FILE", "BATCHSWEEP_SERIES_FILE")
MLFLOW_TASK_ENV = ("MLFLOW_TRACKING_URI",)  # with `metrics: {mlflow: true}`: each task's own store
GPU_TASK_ENV = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")  # with `resources.gpus`: each task's lease


def unsafe_reason(facts: Mapping[str, Any], *, forced: bool) -> str | None:
    """Why the server's state after the script's imports (its `ready` message) is not safe to fork per task;
    None when it is. Python threads stop even a forced warm start (a fork copies only the calling thread);
    the rest only stops the default (`auto`)."""
    threads = int(facts.get("threads", 1))
    if threads > 1:
        return f"the script's imports start threads ({threads} running), which a fork would not copy"
    if forced:
        return None
    if facts.get("modules"):
        return f"the script imports {', '.join(facts['modules'])}, which is not fork-safe"
    if facts.get("children"):
        return f"the script's imports start processes ({len(facts['children'])})"
    if facts.get("sockets"):
        return f"the script's imports open sockets ({facts['sockets']})"
    if facts.get("devices"):
        return f"the script's imports open a GPU ({', '.join(facts['devices'])})"
    if facts.get("env_read"):
        names = ", ".join(facts["env_read"])
        return f"the script's imports read {names}, which each task sets for itself"
    if facts.get("draws"):
        return (
            f"the script's imports draw random numbers ({', '.join(facts['draws'])}), which every forked "
            "task would share (cold, each task draws its own)"
        )
    return None


class WarmServer(ServerClient):
    """The runner's handle on one fork server."""

    lost_before_start = "the fork server ended before the task started"
    what = "the fork server"
    warm_tasks = True  # its tasks ran warm (forked from the script's imports)

    @classmethod
    def start(cls, script: Path, *, env: dict[str, str], python: str = sys.executable, forced: bool = True,
              task_vars: tuple[str, ...] = ()) -> WarmServer | str:
        """A ready server, or the reason (a few words) why warm start cannot be used for this script
        (`forced`: `warm: true`, which overrides what only `auto` refuses; `task_vars`: what each task's
        environment sets for itself, left out of the server's and watched while the imports run)."""
        scratch = tempfile.mkdtemp(prefix="batchsweep-warm-")
        server_env = {k: v for k, v in env.items() if k not in task_vars}
        try:
            proc = subprocess.Popen(
                [python, "-m", "batchsweep.task.warmserver", str(script), *task_vars],
                cwd=scratch,
                env={**server_env, "PYTHONUNBUFFERED": "1", TOKEN_VAR: TOKEN_ROOM},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as e:
            shutil.rmtree(scratch, ignore_errors=True)
            return f"could not start the fork server: {e}"
        server = cls(proc, scratch)
        if not server._ready.wait(READY_TIMEOUT_S) or server.gone:
            server.close()
            return "the fork server ended while importing the script's imports"
        reason = unsafe_reason(server._hello, forced=forced)
        if reason is not None:
            try:  # the server and what its imports started in its session (a process, a pool)
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            server.close()
            return reason
        return server

    def _request(self, request: dict[str, Any]) -> dict[str, Any]:
        """The argv without the interpreter: the server forks itself."""
        return {**request, "argv": request["argv"][1:]}

    def launcher(self, argv: list[str], *, cwd: Path, env: dict[str, str], stdout: Path, stderr: Path) -> Any:
        """`worker.Launcher`: warm while the server lives, cold after (a server that died mid-run)."""
        if self.gone:
            return cold_because("the fork server ended during the run")(argv, cwd=cwd, env=env, stdout=stdout,
                                                                        stderr=stderr)
        return self.launch(argv, cwd=cwd, env=env, stdout=stdout, stderr=stderr)
