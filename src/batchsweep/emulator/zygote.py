"""The container player's zygote: one process that has imported what a played AWS Batch child imports (boto3,
botocore, the worker, the S3 store) and forks a child per container, so that a played child costs a fork, not
a fresh interpreter's ~0.5 CPU-s of imports. Opt-in: `play(..., fork=True)` or BATCHSWEEP_PLAY_FORK=1 (the
test suite sets it); `emulator play` starts a fresh interpreter per child unless asked, and `--image` always
does.

The player talks to it over a SOCK_SEQPACKET Unix socket (its fd number is the zygote's argument), one JSON
object a packet:

    player → zygote   {"id": 7, "module": "batchsweep.worker", "cwd": ..., "env": {...}} + fds (stdout,
                      stderr)
    zygote → player   {"ready": true, "env_read": [...], "threads": 1} once, after the imports {"id": 7,
                      "pid": 4242} the child runs {"id": 7, "exit": 0} ...and ended (negative: killed by that
                      signal) {"id": 7, "error": "..."} it could not be started

A forked child is what `python -m batchsweep.worker` would be, as far as the worker can tell: stdin /dev/null,
stdout and stderr the player's pipes, the job's environment (os.environ replaced whole), the player's working
directory (also sys.path[0], as `-m` has it), the module run as `__main__`, interpreter exit (threads joined,
atexit run, stdio flushed, the exit code). What it shares with its siblings is what the imports did, once:
  - module state computed from the environment at import: the zygote records every variable its imports look
    up (os.environ reads, `get` and `in` included) and the player forks only a child whose environment agrees
    with the zygote's on those and on what the interpreter reads as it starts (PYTHON*, LC_*, LD_*, LANG, TZ);
    any other child starts a fresh interpreter (`accepts`). Measured: the imports read HOME, PYTHONUSERBASE
    and a few more PYTHON* names, PYDANTIC_DISABLE_PLUGINS; no AWS_* and no BATCHSWEEP_* variable.
  - the hash seed (str hashes, set order) and the imported source: the package as it was when the zygote
    started. `random` reseeds itself after a fork; the worker uses nothing else seeded.
  - what a fresh interpreter has and a fork does not: /proc/PID/environ and /proc/PID/cmdline show the
    zygote's (the worker reads its environment through os.environ; the reaper finds tasks by their own
    environ), and the child's parent is the zygote, not the player (`kill_container` walks down from the
    child's pid either way).
A zygote that cannot start, or dies, costs nothing but speed: the player starts fresh interpreters instead.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import IO, Any, NoReturn

from batchsweep.task.forkclient import ForkClient, ForkedProcess
from batchsweep.task.forkserver import PacketChannel, run_as_main, serve

MODULE = "batchsweep.worker"  # the job definition's `python -m batchsweep.worker`
# What a played child imports besides the standard library's basics (measured from a real child's
# sys.modules).
PRELOAD = (
    "ctypes",
    "encodings.idna",
    "runpy",
    "boto3",
    "botocore.session",
    "boto3.s3.inject",
    "boto3.s3.transfer",
    "batchsweep.task.remote",
    "batchsweep.aws.s3store",
    "batchsweep.aws.clients",
    "batchsweep.aws.codepkg",
    # module:function is called, once imported
    "batchsweep.task.warm",
    "batchsweep.aws.clients:warm_loader",
)
# Read by the interpreter as it starts or by the C library, not through os.environ.
STARTUP_PREFIXES = ("PYTHON", "LC_", "LD_")
STARTUP_NAMES = ("LANG", "LANGUAGE", "TZ")
MAX_PACKET = 128 * 1024  # a request (the job's environment); a larger one starts a fresh interpreter
REPLY_BYTES = 4096
READY_TIMEOUT_S = 60.0
START_TIMEOUT_S = 30.0


# -- player side ----------------------------------------------------------------------------------
class Forked(ForkedProcess):
    """A child forked by the zygote: a fork server's child (`forkserver.ForkedProcess`), with the pipes and
    signals the player uses."""

    def __init__(self, request_id: int, args: list[str]) -> None:
        super().__init__(request_id, args)
        self.stdout: IO[bytes] | None = None
        self.stderr: IO[bytes] | None = None

    def send_signal(self, sig: int) -> None:
        if self.returncode is None and self.pid:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass


class Zygote(ForkClient):
    """The player's handle on one zygote process."""

    lost_before_start = "the player's zygote ended before the child started"

    def __init__(
        self,
        *,
        python: str = sys.executable,
        module: str = MODULE,
        preload: tuple[str, ...] = PRELOAD,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__("batchsweep-zygote-reader")
        self.python, self.module = python, module
        self.env = dict(os.environ if env is None else env)  # what the zygote's imports ran with
        # its cwd: no module of ours is beside it
        self._scratch = tempfile.mkdtemp(prefix="batchsweep-zygote-")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._sock = ours
        try:
            self._proc = subprocess.Popen(
                [python, "-m", "batchsweep.emulator.zygote", str(theirs.fileno()), *preload],
                cwd=self._scratch,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
            )
        finally:
            theirs.close()
        self._reader.start()
        if not self._ready.wait(READY_TIMEOUT_S) or self.gone or not self._hello.get("ready"):
            self.close()
            raise OSError(f"the player's zygote did not start: {self._hello.get('error', 'no answer')}")
        if self._hello.get("threads", 1) > 1:  # a fork copies only the calling thread
            self.close()
            raise OSError(f"the player's zygote runs {self._hello['threads']} threads after its imports")
        self.compared = frozenset(self._hello.get("env_read", ()))

    def accepts(self, argv: list[str], env: dict[str, str]) -> bool:
        """Whether `argv` with `env` can be this zygote's fork: `python -m MODULE` (batchsweep.worker), with
        the values the imports and the interpreter's start-up read being the zygote's own."""
        if self.gone or argv != [self.python, "-m", self.module]:
            return False
        startup = {k for k in (*env, *self.env) if k.startswith(STARTUP_PREFIXES) or k in STARTUP_NAMES}
        return all(env.get(k) == self.env.get(k) for k in self.compared | startup)

    def start(self, env: dict[str, str], *, cwd: str) -> Forked:
        """Fork a child running `python -m MODULE` with `env` in `cwd`, its stdout and stderr pipes to read
        (`Forked.stdout`, `.stderr`). Raises OSError when it could not be started."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            with self._lock:
                if self.gone:
                    raise OSError("the player's zygote has ended")
                self._next_id += 1
                child = Forked(self._next_id, [self.python, "-m", self.module])
                packet = json.dumps({"id": child.id, "module": self.module, "cwd": cwd, "env": env}).encode()
                if len(packet) > MAX_PACKET:
                    raise OSError(f"the child's request is over {MAX_PACKET} bytes")
                self._children[child.id] = child
                try:
                    socket.send_fds(self._sock, [packet], [out_w, err_w])
                except OSError:
                    del self._children[child.id]
                    raise
        except BaseException:
            for fd in (out_r, err_r):
                os.close(fd)
            raise
        finally:
            os.close(out_w)  # the child holds them now: the pipes end when it (and what it started) ends
            os.close(err_w)
        # SIM115: the player closes them
        child.stdout, child.stderr = open(out_r, "rb"), open(err_r, "rb")  # noqa: SIM115
        if not child._started.wait(START_TIMEOUT_S) or child.error is not None:
            child.stdout.close()
            child.stderr.close()
            raise OSError(child.error or "the player's zygote did not start the child in time")
        return child

    def _replies(self) -> Iterator[dict[str, Any]]:
        while True:
            try:
                data = self._sock.recv(REPLY_BYTES)
            except OSError:
                data = b""
            if not data:
                return
            yield json.loads(data)

    def _kill(self, child: Forked) -> None:
        child.send_signal(signal.SIGKILL)

    def close(self) -> None:
        """End the zygote (EOF on its socket) and wait for it. Children still running carry on, as a container
        carries on when the player is gone."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._wait_for(self._proc)
        self._sock.close()
        try:
            os.rmdir(self._scratch)
        except OSError:
            pass


_shared: dict[int, Zygote] = {}  # by the pid that started it: a forked copy of this process starts its own
_shared_lock = threading.Lock()


def shared_zygote() -> Zygote | None:
    """This process's zygote, started on first use (and again if it died); None when it cannot be started."""
    with _shared_lock:
        zygote = _shared.get(os.getpid())
        if zygote is not None and not zygote.gone:
            return zygote
        try:
            zygote = Zygote()
        except OSError:
            return None
        _shared.clear()
        _shared[os.getpid()] = zygote
        atexit.register(zygote.close)
        return zygote


# -- zygote side ----------------------------------------------------------------------------------
class _RecordingEnviron(os._Environ[str]):  # os.environ's own (private) class
    """os.environ while the imports run: notes every variable they look up."""

    read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        _RecordingEnviron.read.add(key)
        return str(super().__getitem__(key))


def _become(request: dict[str, Any], fds: list[int]) -> NoReturn:
    """In the forked child: become `python -m MODULE` (stdio, cwd, env, sys.path, argv) and run it."""
    import runpy

    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    for target, fd in zip((1, 2), fds, strict=True):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.path[0] = request["cwd"]
    sys.argv = ["-m"]  # as `python -m` has it until runpy puts the module's path there
    run_as_main(lambda: runpy.run_module(request["module"], run_name="__main__", alter_sys=True))


def main(argv: list[str]) -> int:
    import gc

    channel = PacketChannel(socket.socket(fileno=int(argv[1])), max_packet=MAX_PACKET)
    environ = os.environ
    environ.__class__ = _RecordingEnviron
    try:
        for name in argv[2:]:
            module, _, function = name.partition(":")
            imported = importlib.import_module(module)
            if function:
                getattr(imported, function)()
    except BaseException as e:  # noqa: BLE001 - the player starts fresh interpreters instead
        channel.send({"ready": False, "error": f"{type(e).__name__}: {e}"})
        return 1
    finally:
        environ.__class__ = os._Environ
    gc.freeze()  # the imported modules' objects: a child's collections neither scan nor copy them
    channel.send(
        {"ready": True, "env_read": sorted(_RecordingEnviron.read), "threads": threading.active_count()}
    )
    served = serve(channel)
    if served is None:
        return 0
    _become(*served)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
