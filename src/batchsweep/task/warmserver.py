"""The warm fork server (`python -m batchsweep.task.warmserver SCRIPT [TASK_VAR...]`, started by `task.warm`):
import the script's leading imports once, say what they left behind (`ready`), then fork a child per task that
becomes the task and runs the script as `__main__` (`run_child`).

What every fork costs is what this process holds: it imports nothing it does not need, and neither `threading`
nor `random` (unless the script's imports do), whose at-fork hooks would run in every task and every reaper.
"""

from __future__ import annotations

import ast
import gc
import importlib.util
import os
import sys
from typing import Any, NoReturn

from batchsweep.task import _reap
from batchsweep.task.forkserver import FrameChannel, run_as_main, serve

LOG_FLAGS = _reap.LOG_FLAGS
TOKEN_VAR = _reap.TOKEN_VAR
# No orphans (reaper.py) finds a task's processes by the token in /proc/PID/environ: the environment a process
# started with. A forked task keeps the server's, so the server starts with room for a token there, which each
# child overwrites with its own (`_stamp_token`).
TOKEN_ROOM = "." * 240
# Imported, these hold state a fork does not copy safely (runtimes with their own threads, MPI started on
# import).
FORK_UNSAFE_MODULES = ("tensorflow", "jax", "ray", "pyspark", "mpi4py.MPI")
GPU_DEVICES = ("/dev/nvidia", "/dev/dri/", "/dev/kfd", "/dev/accel")


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
    return any(
        p == code_dir or p.startswith(code_dir + os.sep) or code_dir.startswith(p + os.sep) for p in places
    )


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


def _random_state(module: Any) -> Any:
    return module.getstate()


# The global generators a fork copies: their state as soon as their module is imported, and again after the
# script's imports. A change means an import drew from it, and what it drew (a module-level constant, an id)
# is the same in every forked task, where cold tasks each draw their own. (`random` is watched from its import
# on too: the server does not import it itself, so a fork does not reseed it for a script that never uses it.)
_RNG_STATE: dict[str, Any] = {"random": _random_state, "numpy.random": _numpy_state, "torch": _torch_state}
# Modules known to draw from `random` at import only to make ids (rich: its styles' link ids): sharing those
# between tasks changes no result, so they do not stop a warm start.
ID_DRAWERS = ("rich.",)


class _RngWatch:
    """A meta path finder that notes the state of each generator of `_RNG_STATE` when its module is imported,
    and which modules call `random`'s functions while the imports run."""

    def __init__(self) -> None:
        self.states: dict[str, Any] = {}
        self.callers: set[str] = set()
        self._undo: list[Any] = []

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
            self.noted(name, module)

        loader.exec_module = exec_module  # (each spec has its own loader object)
        return spec

    def noted(self, name: str, module: Any) -> None:
        """Note a generator's state as its module is imported (`random`: and watch who calls it)."""
        try:
            self.states[name] = _RNG_STATE[name](module)
        except Exception:  # noqa: BLE001 - a module without the usual API is not watched
            return
        if name == "random":
            self._watch_random(module)

    def _watch_random(self, random: Any) -> None:
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
        self._undo.append(undo)

    def unwatch(self) -> None:
        """`random`'s own functions back, once the imports have run."""
        for undo in self._undo:
            undo()

    def drawn(self) -> list[str]:
        """The generators the imports drew from (`random`: unless every draw was by a module that draws only
        ids)."""
        found = []
        for name, before in self.states.items():
            try:
                if _RNG_STATE[name](sys.modules[name]) == before:
                    continue
            except Exception:  # noqa: BLE001
                continue
            if name != "random":
                found.append(name)
                continue
            callers = sorted(c for c in self.callers if not c.startswith(ID_DRAWERS))
            if callers or not self.callers:
                found.append(f"random, by {', '.join(callers)}" if callers else "random")
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
    threading = sys.modules.get("threading")  # never imported: no Python thread was started
    threads = threading.active_count() if threading is not None else 1
    facts: dict[str, Any] = {"threads": threads, "env_read": sorted(env_read)}
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
    """In the forked child: become the task (session, cwd, stdio, env, argv) and run the script as
    __main__."""
    os.setsid()
    _redirect(0, os.devnull, os.O_RDONLY)
    _redirect(1, request["stdout"], LOG_FLAGS)
    _redirect(2, request["stderr"], LOG_FLAGS)
    os.chdir(request["cwd"])
    try:
        _reap.check_workdir(request["env"])
    except OSError as e:
        os.write(2, f"batchsweep: {e.strerror}\n".encode())
        os._exit(126)
    # the task's own, changed from the server's where they differ (told apart in a plain dict: each lookup of
    # os.environ encodes and decodes)
    env, environ, base = request["env"], os.environ, _SERVER_ENV or dict(os.environ)
    for name in [name for name in base if name not in env]:
        del environ[name]
    for name, value in env.items():
        if base.get(name) != value:
            environ[name] = value
    _stamp_token(env.get(TOKEN_VAR))
    sys.argv = list(request["argv"])
    values = None
    # a script configured by its module-level values
    if sys.argv[:2] == ["-m", "batchsweep.task._globalsrun"]:
        from batchsweep.task import _globalsrun

        values = _globalsrun.parse(sys.argv[3:])
        sys.argv = sys.argv[2:3]
    script = sys.argv[0]
    # `random` reseeds itself after a fork; numpy's and torch's global generators do not, and cold tasks each
    # get a fresh one (from the OS's entropy; a script that seeds them does so after this).
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
    run_as_main(lambda: run_script(script), frame_of=script)


_SERVER_ENV: dict[str, str] = {}  # os.environ as the server forks its tasks (`main`)
# the script's code, and the stat it was read with
_COMPILED: dict[str, tuple[tuple[int, int, int], Any]] = {}


def _stat_key(path: str) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


def compile_script(path: str) -> None:
    """Compile the script once in the server, for every child whose script is still that file unchanged."""
    import io

    try:
        key = _stat_key(path)
        with io.open_code(path) as f:
            _COMPILED[path] = key, compile(f.read(), path, "exec", dont_inherit=True)
    except (OSError, SyntaxError, ValueError):
        return  # each task reads it, and reports what is wrong with it


def run_script(path: str) -> None:
    """Run the script as `runpy.run_path(path, run_name="__main__")` does: with the server's compiled code
    while the file is unchanged (a new stat: read again); runpy itself for what is not a plain .py file."""
    found = _COMPILED.get(path)
    try:
        code = found[1] if found is not None and _stat_key(path) == found[0] else None
    except OSError:
        code = None
    if code is None:
        import runpy

        if not path.endswith(".py") or not os.path.isfile(path):
            runpy.run_path(path, run_name="__main__")
            return
        import io

        with io.open_code(path) as f:
            code = compile(f.read(), path, "exec", dont_inherit=True)
    module = type(sys)("__main__")
    module.__dict__.update(__file__=path, __cached__=None, __loader__=None, __package__="", __spec__=None)
    sys.modules["__main__"] = module
    exec(code, module.__dict__)  # noqa: S102 - the task's own script


_ROOM: list[int] = []  # where the token's room is in this process's starting environment (a child's too)


def find_room() -> None:
    """Find the room left for a task's token in this process's starting environment (what /proc/self/environ
    shows, and what a fork without exec inherits at the same address), once, before the server forks."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[47]), int(fields[48])  # env_start, env_end (fields 50 and 51 of proc(5))
        with open("/proc/self/mem", "rb", buffering=0) as mem:
            mem.seek(start)
            at = mem.read(end - start).find(f"{TOKEN_VAR}={TOKEN_ROOM}\0".encode())
    except (OSError, ValueError, IndexError):
        return
    if at >= 0:
        _ROOM.append(start + at + len(TOKEN_VAR) + 1)


def _stamp_token(token: str | None) -> None:
    """Write the task's token over the room left for it (`find_room`), so the reaper finds the task and its
    forked descendants as it finds a cold task's. Linux only, best effort: a token that does not fit, or a
    /proc/self/mem that refuses writes, leaves the room as it was."""
    if not token or not _ROOM:
        return
    value = token.encode() + b"\0"
    rest = len(TOKEN_ROOM) - len(value)
    if rest < 0:
        return
    filler = b"BATCHSWEEP_ROOM=" + b"." * (rest - 16) if rest >= 16 else b"\0" * rest
    try:
        fd = os.open("/proc/self/mem", os.O_RDWR)
        try:
            os.pwrite(fd, value + filler, _ROOM[0])
        finally:
            os.close(fd)
    except (OSError, ValueError, OverflowError):
        return


_LOCALE_VARS = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")  # what gettext.find reads of the environment


def remember_gettext_lookups() -> None:
    """Make `gettext.find` (what every `_()` of argparse calls: it looks for four .mo files, and a miss is
    never cached) remember its answers in this process and in the tasks forked from it, by its arguments and
    the locale variables it reads: the same answer a task would find, without the stats."""
    gettext = sys.modules.get("gettext")
    real = getattr(gettext, "find", None)
    if gettext is None or real is None or getattr(real, "remembers", False):
        return
    found: dict[tuple[Any, ...], Any] = {}

    def find(domain: str, localedir: Any = None, languages: Any = None, all: bool = False) -> Any:
        environ = os.environ
        try:
            key = (domain, localedir, None if languages is None else tuple(languages), all,
                   *(environ.get(name) for name in _LOCALE_VARS))
            hash(key)
        except TypeError:  # arguments of an unusual kind: looked up every time
            return real(domain, localedir, languages, all)
        if key not in found:
            found[key] = real(domain, localedir, languages, all)
        result = found[key]
        return list(result) if isinstance(result, list) else result

    find.remembers = True  # type: ignore[attr-defined]
    find.__wrapped__ = real  # type: ignore[attr-defined]
    gettext.find = find  # type: ignore[attr-defined]


def warm_up() -> None:
    """What a task's first use of an imported module would build lazily, built once here: argparse's first
    parser compiles its regular expressions (into `re`'s cache) and imports `shutil` for the terminal's width,
    ~8 ms of every forked task's CPU otherwise; its messages' translation lookups are remembered
    (`remember_gettext_lookups`)."""
    argparse = sys.modules.get("argparse")
    if argparse is not None:
        remember_gettext_lookups()
        try:
            parser = argparse.ArgumentParser(prog="warm-up")
            parser.add_argument("--warm-up", type=int, default=0)
            parser.parse_known_args([])
        except Exception:  # noqa: BLE001 - an argparse without its usual API: nothing warmed
            pass


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
    rngs = _RngWatch()
    for name in _RNG_STATE:  # (none is imported yet, unless the interpreter's start-up did)
        if name in sys.modules:
            rngs.noted(name, sys.modules[name])
    sys.meta_path.insert(0, rngs)
    try:
        preload(script)
    finally:
        environ.__class__ = os._Environ
        sys.meta_path.remove(rngs)
        rngs.unwatch()
    warm_up()
    compile_script(script)
    find_room()
    import atexit  # noqa: F401 - what every task's child uses to run the script and exit, imported once here
    _reap.load_libc()  # each reaper's prctl: loaded here, once, not in every fork
    _SERVER_ENV.update(os.environ)
    gc.freeze()  # the imported modules' objects: a child's collections neither scan nor copy them
    channel = FrameChannel(ctl_in, ctl_out)
    # It ends at EOF on its stdin, never by a signal meant for its tasks (scancel signals the whole job): one
    # that ended it would end each of its running tasks as killed, not as its worker's cancel.
    heard = _reap.deafen()
    channel.send({"ready": True, **facts_after_import(_WatchedEnviron.read), "draws": rngs.drawn()})
    served = serve(channel, supervise=_reap.can_supervise())
    if served is None:
        return 0
    _reap.as_task(heard)  # (below a reaper, it restored them already)
    run_child(served[0])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
