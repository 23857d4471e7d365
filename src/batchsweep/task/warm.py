"""Warm start (`warm: true`): a fork server that imports what the script imports once, then forks per task.

The runner starts one server per run (`python -m batchsweep.task.warm SCRIPT`) and talks to it over the server's
stdin and stdout, one JSON object a line:

    runner → server   {"id": 7, "argv": [python, script, --flag, ...], "cwd": ..., "env": {...}, "stdout": ..., "stderr": ...}
    server → runner   {"ready": true, "threads": 1}      once, after the imports
                      {"id": 7, "pid": 4242}             the child runs
                      {"id": 7, "exit": 0}               ...and ended (a negative code: killed by that signal)
                      {"id": 7, "error": "..."}          it could not be started

Each child is what a cold task would be: its own session and process group, the task's working directory,
stdin from /dev/null, stdout/stderr into the task's log files, the task's environment and argv, the script run
as `__main__`. The runner waits for the exit message and kills the group on a timeout, as for a cold task.
The server ends at EOF on its stdin: when the run ends, and when the runner dies, however it dies.
"""

from __future__ import annotations

import ast
import gc
import importlib.util
import json
import marshal
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, NoReturn

from batchsweep.task import _reap, reaper
from batchsweep.task.forkserver import ForkClient, ForkedProcess, LineChannel, run_as_main, serve

READY_TIMEOUT_S = 300.0  # importing a big ML stack on a cold disk can take a while
START_TIMEOUT_S = 60.0


# -- runner side ----------------------------------------------------------------------------------
def mode(value: bool | str) -> str:
    """The spec's `warm:` as "on" (`true`: forced), "off" (`false`) or "auto" (the default: on where it is safe).
    A run.json written before `auto` existed holds a bool."""
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
    return WarmServer.start(ctx.code_dir / ctx.script, env=ctx.base_env, python=ctx.python, forced=warm == "on",
                            task_vars=task_vars)


# No orphans (reaper.py) finds a task's processes by the token in /proc/PID/environ: the environment a process
# started with. A forked task keeps the server's, so the server starts with room for a token there, which each
# child overwrites with its own (`_stamp_token`).
TOKEN_VAR = reaper.TOKEN_VAR
TOKEN_ROOM = "." * 240


# What each task's environment sets for itself (worker.task_env): left out of the server's, and looked up while
# the imports run, a reason for `auto` to run cold (the imports would have read the server's, not the task's).
TASK_ENV = ("BATCHSWEEP_RUN_ID", "BATCHSWEEP_TASK_INDEX", "BATCHSWEEP_TASK_DIR", "BATCHSWEEP_PARAMS",
            "BATCHSWEEP_PARAMS_FILE", "BATCHSWEEP_SERIES_FILE")
MLFLOW_TASK_ENV = ("MLFLOW_TRACKING_URI",)  # with `metrics: {mlflow: true}`: each task's own store
GPU_TASK_ENV = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")  # with `resources.gpus`: each task's lease
# Imported, these hold state a fork does not copy safely (runtimes with their own threads, MPI started on import).
FORK_UNSAFE_MODULES = ("tensorflow", "jax", "ray", "pyspark", "mpi4py.MPI")
GPU_DEVICES = ("/dev/nvidia", "/dev/dri/", "/dev/kfd", "/dev/accel")


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
        return (f"the script's imports draw random numbers ({', '.join(facts['draws'])}), which every forked task "
                "would share (cold, each task draws its own)")
    return None


LOG_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW  # a symlink a task left there is not truncated


def open_log(path: Path) -> IO[bytes]:
    """A task's log file, new or emptied: never a file a symlink there names."""
    return os.fdopen(os.open(path, LOG_FLAGS, 0o666), "wb")


def cold_because(reason: str, launch: Any = None) -> Any:
    """A launcher that starts tasks cold (`launch`, else `launch_cold`) and says why in each one's status
    (`TaskStatus.cold_why`, through the process's `cold_why`)."""
    def launch_noted(argv: list[str], *, cwd: Path, env: dict[str, str], stdout: Path, stderr: Path) -> Any:
        proc: Any = (launch or launch_cold)(argv, cwd=cwd, env=env, stdout=stdout, stderr=stderr)
        proc.cold_why = reason
        return proc
    return launch_noted


def launch_cold(argv: list[str], *, cwd: Path, env: dict[str, str], stdout: Path,
                stderr: Path) -> subprocess.Popen[bytes] | reaper.Supervised:
    """A task started the ordinary way: its own process (and session), output to its log files; on Linux below
    a reaper of its own (`reaper.spawn`), so nothing it starts outlives it."""
    with open_log(stdout) as out, open_log(stderr) as err:
        if reaper.can_supervise():
            return reaper.spawn(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        return subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True)


class WarmServer(ForkClient):
    """The runner's handle on one fork server."""

    lost_before_start = "the fork server ended before the task started"

    def __init__(self, proc: subprocess.Popen[bytes], scratch: str) -> None:
        super().__init__("batchsweep-warm-reader")
        self._proc = proc
        self._scratch = scratch
        self._reader.start()

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
                [python, "-m", "batchsweep.task.warm", str(script), *task_vars], cwd=scratch,
                env={**server_env, "PYTHONUNBUFFERED": "1", TOKEN_VAR: TOKEN_ROOM},
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
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

    what = "the fork server"  # in the errors a launch raises
    warm_tasks = True  # its tasks ran warm (forked from the script's imports)

    def _frame(self, request: dict[str, Any]) -> bytes:
        """A request as the server reads it: a JSON line, the argv without the interpreter (it forks itself)."""
        return json.dumps({**request, "argv": request["argv"][1:]}).encode() + b"\n"

    def launch(self, argv: list[str], *, cwd: Path, env: dict[str, str], stdout: Path, stderr: Path) -> ForkedProcess:
        """Start a child for one task; returns once it runs. Raises OSError when it could not be started."""
        with self._lock:
            if self.gone:
                raise OSError(f"{self.what} has ended")
            self._next_id += 1
            task = ForkedProcess(self._next_id, argv)
            task.warm = self.warm_tasks
            self._children[task.id] = task
            frame = self._frame({"id": task.id, "argv": list(argv), "cwd": str(cwd), "env": dict(env),
                                 "stdout": str(stdout), "stderr": str(stderr)})
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.write(frame)
                self._proc.stdin.flush()
            except (BrokenPipeError, ValueError) as e:
                self._children.pop(task.id, None)
                raise OSError(f"{self.what} has ended: {e}") from None
        if not task._started.wait(START_TIMEOUT_S):
            raise OSError(f"{self.what} did not start the task in time")
        if task.error is not None:
            raise OSError(task.error)
        return task

    def launcher(self, argv: list[str], *, cwd: Path, env: dict[str, str], stdout: Path, stderr: Path) -> Any:
        """`worker.Launcher`: warm while the server lives, cold after (a server that died mid-run)."""
        if self.gone:
            return cold_because("the fork server ended during the run")(argv, cwd=cwd, env=env, stdout=stdout,
                                                                        stderr=stderr)
        return self.launch(argv, cwd=cwd, env=env, stdout=stdout, stderr=stderr)

    @property
    def busy(self) -> bool:
        """Whether a task of this server is still running."""
        with self._lock:
            return bool(self._children)

    @property
    def alive(self) -> bool:
        return not self.gone

    def _replies(self) -> Iterator[dict[str, Any]]:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            yield json.loads(line)

    def _kill(self, child: ForkedProcess) -> None:
        try:  # the task's process group: it runs in a session of its own
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self) -> None:
        """End the server (EOF on its stdin) and wait for it."""
        stdin: IO[bytes] | None = self._proc.stdin
        with self._lock:
            try:
                if stdin is not None:
                    stdin.close()
            except OSError:
                pass
        self._wait_for(self._proc)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        shutil.rmtree(self._scratch, ignore_errors=True)


class ExecServer(WarmServer):
    """The runner's cold tasks started by one small server (`_reap.py --serve`, run by this interpreter with
    `-I -S`: no batchsweep, no site) instead of a `python _reap.py` per task: each request forks a reaper of
    that small process, which posix_spawns the task exactly as a cold task starts (`launch_cold`: its own
    session, its log files, environment and argv) and outlives it to clean up. What a task costs beyond its own
    process: a fork of an ~9 MB interpreter, not an interpreter's start (~10 ms of CPU). Its tasks are cold
    (`warm` stays False). Frames both ways: a 4-byte length, then a `marshal`led dict (`_reap.serve`)."""

    lost_before_start = "the task launcher ended before the task started"

    @classmethod
    def start_exec(cls) -> ExecServer | str:
        """A ready exec server, or why there is none."""
        try:
            proc = subprocess.Popen([sys.executable, "-I", "-S", os.path.abspath(_reap.__file__), _reap.SERVE],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
        except OSError as e:
            return f"could not start the task launcher: {e}"
        server = cls(proc, tempfile.mkdtemp(prefix="batchsweep-exec-"))
        if not server._ready.wait(READY_TIMEOUT_S) or server.gone:
            server.close()
            return "the task launcher ended as it started"
        return server

    what = "the task launcher"
    warm_tasks = False

    def _frame(self, request: dict[str, Any]) -> bytes:
        """A request as _reap.py's server reads it: marshal, length-prefixed (no json import there)."""
        body = marshal.dumps(request)
        return len(body).to_bytes(4, "little") + body

    def _replies(self) -> Iterator[dict[str, Any]]:
        out = self._proc.stdout
        assert out is not None
        while len(head := out.read(4)) == 4:
            body = out.read(int.from_bytes(head, "little"))
            yield marshal.loads(body)

    def cold_launcher(self, reason: str) -> Any:
        """`worker.Launcher` for cold tasks: through this server while it lives, `launch_cold` after."""
        def launch(argv: list[str], *, cwd: Path, env: dict[str, str], stdout: Path, stderr: Path) -> Any:
            if self.gone:
                return launch_cold(argv, cwd=cwd, env=env, stdout=stdout, stderr=stderr)
            return self.launch(argv, cwd=cwd, env=env, stdout=stdout, stderr=stderr)
        return cold_because(reason, launch)


# -- server side ----------------------------------------------------------------------------------
def _inert(node: ast.stmt) -> bool:
    """A module-level statement that changes nothing an import could see: a docstring, a constant
    (`SEED = 3`), `if TYPE_CHECKING:`."""
    if isinstance(node, ast.Expr):
        return isinstance(node.value, ast.Constant)
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if not all(isinstance(t, ast.Name) for t in targets):
            return False
        if node.value is None:
            return True
        try:
            ast.literal_eval(node.value)
        except (ValueError, TypeError, SyntaxError, RecursionError):
            return False
        return True
    if isinstance(node, ast.If):
        test = node.test
        name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
        return name == "TYPE_CHECKING"
    return False


def import_statements(source: str, filename: str) -> list[ast.stmt]:
    """The script's imports that run before anything else it does (also inside a top-level try:), absolute
    ones only. The first other statement ends them: `sys.path.insert(...)`, `os.environ[...] = ...` or
    `matplotlib.use(...)` may change what a later import does, so later imports are left to each task."""
    found: list[ast.stmt] = []

    def visit(body: list[ast.stmt]) -> bool:
        """Collect from body; False at the first statement that is neither an import nor inert."""
        for node in body:
            if isinstance(node, ast.Import) or (isinstance(node, ast.ImportFrom) and node.level == 0
                                                and node.module and node.module != "__future__"):
                found.append(node)
            elif isinstance(node, ast.ImportFrom):
                continue  # `from __future__`, or a relative import (which a script cannot do)
            elif isinstance(node, ast.Try):
                if not visit(node.body):
                    return False
            elif not _inert(node):
                return False
        return True

    visit(ast.parse(source, filename).body)
    return found


def _is_local(name: str, code_dir: str) -> bool:
    """A module of the project, left for the task to import with the task's cwd and env: one beside the script
    (or below its folder), or the package the script is itself part of (`pkg/cli.py` importing `pkg`)."""
    try:
        spec = importlib.util.find_spec(name.split(".")[0])
    except (ImportError, ValueError):
        return True
    if spec is None:
        return True
    places = [os.path.realpath(p) for p in (spec.origin, *(spec.submodule_search_locations or [])) if p]
    return any(p == code_dir or p.startswith(code_dir + os.sep) or code_dir.startswith(p + os.sep) for p in places)


def preload(script: str) -> None:
    """Run the script's leading imports of installed modules (numpy, pandas, sklearn...) in this process, up
    to the first import of a module beside the script (its code may set up what later imports see)."""
    code_dir = os.path.dirname(os.path.realpath(script))
    try:
        with open(script, encoding="utf-8") as f:
            statements = import_statements(f.read(), script)
    except (OSError, SyntaxError, ValueError):
        return  # the task itself reports it
    for node in statements:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            assert isinstance(node, ast.ImportFrom)
            names = [node.module or ""]
        if any(_is_local(n, code_dir) for n in names):
            return
        try:
            exec(compile(ast.Module(body=[node], type_ignores=[]), script, "exec"), {})  # noqa: S102
        except BaseException:  # noqa: BLE001 - a failing import fails in the task, with its own traceback
            continue


def _numpy_state(module: Any) -> Any:
    _, keys, pos, has_gauss, gauss = module.get_state()
    return keys.tobytes(), pos, has_gauss, gauss


def _torch_state(module: Any) -> Any:
    return bytes(module.get_rng_state().tolist())


# The global generators a fork copies: their state as soon as their module is imported, and again after the
# script's imports. A change means an import drew from it, and what it drew (a module-level constant, an id) is
# the same in every forked task, where cold tasks each draw their own.
_RNG_STATE: dict[str, Any] = {"numpy.random": _numpy_state, "torch": _torch_state}
# Modules known to draw from `random` at import only to make ids (rich: its styles' link ids): sharing those
# between tasks changes no result, so they do not stop a warm start.
ID_DRAWERS = ("rich.",)


class _RngWatch:
    """A meta path finder that notes the state of each generator of `_RNG_STATE` when its module is imported."""

    def __init__(self) -> None:
        self.states: dict[str, Any] = {}

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in _RNG_STATE:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        real = getattr(loader, "exec_module", None)
        if real is None:
            return spec

        def exec_module(module: Any) -> None:
            real(module)
            try:
                self.states[name] = _RNG_STATE[name](module)
            except Exception:  # noqa: BLE001 - a module without the usual API is not watched
                pass

        loader.exec_module = exec_module  # (each spec has its own loader object)
        return spec

    def watch_random(self) -> Any:
        """Note which modules call `random`'s functions while the imports run; returns what undoes it."""
        import random

        self.callers: set[str] = set()
        inst = getattr(random, "_inst", None)
        saved = {name: getattr(random, name) for name in getattr(random, "__all__", [])
                 if getattr(getattr(random, name, None), "__self__", None) is inst}

        watching = [True]  # a module that kept a reference (`from random import random`) keeps the wrapper

        def wrap(real: Any) -> Any:
            def called(*args: Any, **kwargs: Any) -> Any:
                if watching[0]:
                    self.callers.add(str(sys._getframe(1).f_globals.get("__name__", "?")))
                return real(*args, **kwargs)
            return called

        for name, real in saved.items():
            setattr(random, name, wrap(real))

        def undo() -> None:
            watching[0] = False
            for name, real in saved.items():
                setattr(random, name, real)
        return undo

    def drawn(self, random_before: object) -> list[str]:
        """The generators the imports drew from (`random`: unless every draw was by a module that draws only ids)."""
        import random

        found = []
        if random.getstate() != random_before:
            callers = sorted(c for c in getattr(self, "callers", set()) if not c.startswith(ID_DRAWERS))
            if callers or not getattr(self, "callers", None):
                found.append(f"random, by {', '.join(callers)}" if callers else "random")
        for name, before in self.states.items():
            try:
                if _RNG_STATE[name](sys.modules[name]) != before:
                    found.append(name)
            except Exception:  # noqa: BLE001
                continue
        return found


class _WatchedEnviron(os._Environ[str]):  # os.environ's own (private) class
    """os.environ while the imports run: notes which per-task variables (absent here) they look up by name."""

    watched: frozenset[str] = frozenset()
    read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        if key in _WatchedEnviron.watched:
            _WatchedEnviron.read.add(key)
        return str(super().__getitem__(key))


def _fds() -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return found


def facts_after_import(env_read: set[str]) -> dict[str, Any]:
    """What the imports left in this process that a fork would share or lose (see `unsafe_reason`)."""
    facts: dict[str, Any] = {"threads": threading.active_count(), "env_read": sorted(env_read)}
    facts["modules"] = [m for m in FORK_UNSAFE_MODULES if m in sys.modules]
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    if cuda is not None and getattr(cuda, "is_initialized", lambda: False)():
        facts["modules"].append("torch.cuda (initialized)")
    if os.path.isdir("/proc/self/task"):  # Linux: what the imports opened and started
        fds = _fds()
        facts["sockets"] = sum(1 for f in fds if f.startswith("socket:"))
        facts["devices"] = sorted({f for f in fds if f.startswith(GPU_DEVICES)})
        children: list[int] = []
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/children") as f:
                    children.extend(int(c) for c in f.read().split())
            except (OSError, ValueError):
                continue
        facts["children"] = children
    return facts


def _redirect(fd: int, path: str, flags: int) -> None:
    new = os.open(path, flags, 0o666)
    if new != fd:
        os.dup2(new, fd)
        os.close(new)


def run_child(request: dict[str, Any]) -> NoReturn:
    """In the forked child: become the task (session, cwd, stdio, env, argv) and run the script as __main__."""
    import runpy

    os.setsid()
    _redirect(0, os.devnull, os.O_RDONLY)
    _redirect(1, request["stdout"], LOG_FLAGS)
    _redirect(2, request["stderr"], LOG_FLAGS)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    _stamp_token(request["env"].get(TOKEN_VAR))
    sys.argv = list(request["argv"])
    values = None
    if sys.argv[:2] == ["-m", "batchsweep.task._globalsrun"]:  # a script configured by its module-level values
        from batchsweep.task import _globalsrun

        values = _globalsrun.parse(sys.argv[3:])
        sys.argv = sys.argv[2:3]
    script = sys.argv[0]
    # `random` reseeds itself after a fork; numpy's and torch's global generators do not, and cold tasks each get
    # a fresh one (from the OS's entropy; a script that seeds them does so after this).
    np_random = sys.modules.get("numpy.random")
    if np_random is not None:
        np_random.seed()
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "seed"):
        try:
            torch.seed()
        except Exception:  # noqa: BLE001 - a torch without its usual API: left as it is
            pass
    if values is not None:
        run_as_main(lambda: _globalsrun.run(script, values), frame_of=script)
    run_as_main(lambda: runpy.run_path(script, run_name="__main__"), frame_of=script)


def _stamp_token(token: str | None) -> None:
    """Write the task's token over the room left for it in this process's starting environment (what
    /proc/self/environ shows, and what a fork without exec inherits), so the reaper finds the task and its
    forked descendants as it finds a cold task's. Linux only, best effort: a token that does not fit, or a
    /proc/self/mem that refuses writes, leaves the room as it was."""
    if not token:
        return
    value = token.encode() + b"\0"
    rest = len(TOKEN_ROOM) - len(value)
    if rest < 0:
        return
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[47]), int(fields[48])  # env_start, env_end (fields 50 and 51 of proc(5))
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            at = mem.read(end - start).find(f"{TOKEN_VAR}={TOKEN_ROOM}\0".encode())
            if at < 0:
                return
            filler = b"BATCHSWEEP_ROOM=" + b"." * (rest - 16) if rest >= 16 else b"\0" * rest
            mem.seek(start + at + len(TOKEN_VAR) + 1)
            mem.write(value + filler)
    except (OSError, ValueError, IndexError):
        return


def main(argv: list[str]) -> int:
    script, _WatchedEnviron.watched = argv[1], frozenset(argv[2:])
    # The protocol keeps the pipes; fd 0 and 1 go to /dev/null so nothing an import prints can garble it.
    ctl_in, ctl_out = os.dup(0), os.dup(1)
    _redirect(0, os.devnull, os.O_RDONLY)
    _redirect(1, os.devnull, os.O_WRONLY)
    sys.path[0] = os.path.dirname(os.path.realpath(script))  # as `python SCRIPT` would have it
    environ = os.environ
    try:
        environ.__class__ = _WatchedEnviron
    except TypeError:  # another os.environ than CPython's: nothing watched
        pass
    import random

    random_before, rngs = random.getstate(), _RngWatch()
    sys.meta_path.insert(0, rngs)
    unwatch = rngs.watch_random()
    try:
        preload(script)
    finally:
        environ.__class__ = os._Environ
        sys.meta_path.remove(rngs)
        unwatch()
    import atexit  # noqa: F401 - what every task's child uses to run the script and exit, imported once here
    import pkgutil  # noqa: F401 - (runpy.run_path imports it on first use: ~1.5 ms of each child's CPU)
    import runpy  # noqa: F401
    _reap.load_libc()  # each reaper's prctl: loaded here, once, not in every fork
    gc.freeze()  # the imported modules' objects: a child's collections neither scan nor copy them
    channel = LineChannel(ctl_in, ctl_out)
    channel.send({"ready": True, **facts_after_import(_WatchedEnviron.read), "draws": rngs.drawn(random_before)})
    served = serve(channel, supervise=reaper.can_supervise())
    if served is None:
        return 0
    run_child(served[0])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
