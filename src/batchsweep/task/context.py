"""What a task runs with, from its run's record alone (docs/design.md §2): the run's context, a task's command
line (as run and as shown to the user) and its environment."""

from __future__ import annotations

import functools
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchsweep import metrics as metrics_mod
from batchsweep.model import Task
from batchsweep.scripts.argv import ArgStyle, build_argv, env_vars, task_env_values
from batchsweep.scripts.options import ScriptFlags
from batchsweep.store.core import TaskDir
from batchsweep.task.confine import write_file
from batchsweep.text import shell_word

if TYPE_CHECKING:
    from batchsweep.store.record import RunRecord


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
    # resources.gpus: a task with a GPU has its peak GPU memory measured (NVML, when installed)
    gpus: float = 0
    # the spec's directory: relative directories in `env:` are resolved against it
    base_dir: Path | None = None

    @property
    def style(self) -> str:
        return self.arg_style.style or self.flags.style

    @functools.cached_property
    def base_env(self) -> dict[str, str]:
        """The environment every task starts from (built once per run, not once per task)."""
        from batchsweep.scripts.options import helper_env

        # helper_env: our runner modules (funcrunner, _hydrarun) must import in a `python:` of another
        # environment
        fixed = {k: v for k, v in self.env.items() if "{" not in v}  # those with placeholders: per task
        env = {**os.environ, **task_env_values(fixed, {}, self.base_dir), "PYTHONUNBUFFERED": "1"}
        return {**env, **helper_env(self.python, env)}

    @functools.cached_property
    def per_task_env(self) -> dict[str, str]:
        """The `env:` values with `{param}` placeholders, filled for each task."""
        return {k: v for k, v in self.env.items() if "{" in v}


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


def shown_command(ctx: RunContext, task: Task, argv: list[str] | None = None) -> str:
    """The task's command line as a user would type it in the script's directory (`argv`: its `command`,
    when the caller has it already): pasted into a shell, it gives the script the same values."""
    argv = command(ctx, task) if argv is None else argv
    python = "python" if argv[0] == sys.executable else argv[0]
    # the `env:` values this task gets its own of (`RUN_NAME: "run_{lr}"`), and for the env style the params
    own = dict(task_env_values(ctx.per_task_env, task.params, ctx.base_dir)) if ctx.per_task_env else {}
    if ctx.function:  # the params reach the function through BATCHSWEEP_PARAMS
        words = [python, "-m", "batchsweep.task.funcrunner", ".", ctx.function]
    elif argv[1:3] == ["-m", "batchsweep.task._globalsrun"]:
        words = [python, *argv[1:3], ctx.script or "", *argv[4:]]
    else:
        if argv[1:3] == ["-m", "batchsweep.task._hydrarun"]:
            argv = argv[2:]
        if ctx.style == "env":  # the params are in its environment
            own.update(env_vars(task.params, ctx.flags, ctx.arg_style))
        words = [python, ctx.script or "", *argv[2:]]
    # an assignment's name stays unquoted, or a shell would take `'K=v w'` for the command
    return " ".join([*(f"{k}={shell_word(str(v))}" for k, v in own.items()), *map(shell_word, words)])


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
    # the task's runs land in its own directory, where they are read
    if metrics_mod.is_mlflow(ctx.metrics_rule):
        from batchsweep.task.mlflowmetrics import ENV, tracking_uri

        env[ENV] = tracking_uri(work)
    if len(params) <= PARAMS_ENV_MAX:
        env["BATCHSWEEP_PARAMS"] = params
    else:
        path = TaskDir(work.parent).params
        write_file(path, params.encode())
        env["BATCHSWEEP_PARAMS_FILE"] = str(path)
    return env


def gpu_env(gpus: tuple[str, ...]) -> dict[str, str] | None:
    """The devices a task may see (its GPU lease on this machine)."""
    if not gpus:
        return None
    ids = ",".join(gpus)
    return {"CUDA_VISIBLE_DEVICES": ids, "NVIDIA_VISIBLE_DEVICES": ids}


def context_from_run(record: RunRecord, *, code_dir: Path | None = None,
                     memory_limit_mib: int | None = None) -> RunContext:
    """What the worker needs of a run, from its record (the script by its name in `code_dir`). The memory
    limit is the engine's to give (`Engine.memory_limit_mib`): the worker enforces it, whoever runs it."""
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
