"""The container player's zygote (batchsweep.emulator.zygote): a child forked from it is what a fresh `python
-m MODULE` would be, as far as the module can tell; a child whose environment the zygote's imports read
differently, or that the interpreter reads as it starts, is not forked (the player starts a fresh interpreter
for it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchsweep.emulator.zygote import Zygote

PROBE = textwrap.dedent("""
    import atexit, json, os, signal, sys, threading
    if os.environ.get("PROBE_RAISE"):
        raise ValueError("the probe fails")
    if os.environ.get("PROBE_KILL"):
        os.kill(os.getpid(), signal.SIGKILL)
    print(json.dumps({
        "name": __name__, "argv": sys.argv, "path0": sys.path[0], "cwd": os.getcwd(),
        "env": {k: v for k, v in os.environ.items() if k.startswith("PROBE_")},
        "stdin": sys.stdin.read(), "stdout_tty": sys.stdout.isatty(), "line_buffered": sys.stdout.line_buffering,
        "encoding": [sys.stdout.encoding, sys.stderr.encoding], "main_file": sys.modules["__main__"].__file__,
        "imported_at_start": "reads_env" in sys.modules and sys.modules["reads_env"].LATER == "unset",
    }))
    print("to stderr", file=sys.stderr)
    threading.Thread(target=lambda: print("a thread's last line")).start()  # joined before exit
    atexit.register(lambda: print("atexit ran"))
    sys.exit(int(os.environ.get("PROBE_EXIT", "0")))
""")  # noqa: E501
READS_ENV = textwrap.dedent("""
    import os
    SETTING = os.environ.get("PROBE_SETTING", "default")
    LATER = None


    def setup():  # called by the zygote after the imports (a preload entry "module:function")
        global LATER
        LATER = os.environ.get("PROBE_LATER", "unset")
""")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Zygote, Path, dict[str, str]]]:
    """A zygote for `python -m probe` (run from its working directory) that preloaded a module reading
    PROBE_SETTING at import."""
    cwd, lib = tmp_path / "cwd", tmp_path / "lib"
    cwd.mkdir()
    lib.mkdir()
    (cwd / "probe.py").write_text(PROBE)
    (lib / "reads_env.py").write_text(READS_ENV)
    env = {**os.environ, "PYTHONPATH": str(lib), "PROBE_SETTING": "a"}
    zygote = Zygote(module="probe", preload=("json", "reads_env:setup"), env=env)
    yield zygote, cwd, env
    zygote.close()


def forked(zygote: Zygote, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    child = zygote.start(env, cwd=str(cwd))
    assert child.stdout is not None and child.stderr is not None
    out, err = child.stdout.read().decode(), child.stderr.read().decode()
    child.stdout.close()
    child.stderr.close()
    return child.wait(timeout=30), out, err


def fresh(cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    done = subprocess.run([sys.executable, "-m", "probe"], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60, check=False)
    return done.returncode, done.stdout, done.stderr


def test_a_forked_child_sees_what_a_fresh_interpreter_sees(world):
    zygote, cwd, env = world
    env = {**env, "PROBE_JOB": "job-1", "PROBE_EXIT": "3"}
    assert zygote.accepts([sys.executable, "-m", "probe"], env)
    code, out, err = forked(zygote, cwd, env)
    fresh_code, fresh_out, fresh_err = fresh(cwd, env)
    assert (code, err) == (fresh_code, fresh_err) == (3, "to stderr\n")
    lines, fresh_lines = out.splitlines(), fresh_out.splitlines()
    assert lines[1:] == fresh_lines[1:] == ["a thread's last line", "atexit ran"]
    seen, fresh_seen = json.loads(lines[0]), json.loads(fresh_lines[0])
    assert seen.pop("imported_at_start") and not fresh_seen.pop("imported_at_start")  # the zygote's preload
    assert seen == fresh_seen
    assert seen["env"] == {"PROBE_SETTING": "a", "PROBE_JOB": "job-1", "PROBE_EXIT": "3"}
    assert (
        seen["argv"] == [str(cwd / "probe.py")] and seen["path0"] == str(cwd) and seen["name"] == "__main__"
    )


def test_a_forked_child_fails_and_dies_as_a_fresh_one_does(world):
    zygote, cwd, env = world
    code, _, err = forked(zygote, cwd, {**env, "PROBE_RAISE": "1"})
    fresh_code, _, fresh_err = fresh(cwd, {**env, "PROBE_RAISE": "1"})
    assert code == fresh_code == 1
    assert err.splitlines()[0] == "Traceback (most recent call last):"
    assert err.splitlines()[-2:] == fresh_err.splitlines()[-2:]
    assert err.splitlines()[-1] == "ValueError: the probe fails"
    assert forked(zygote, cwd, {**env, "PROBE_KILL": "1"})[0] == fresh(cwd, {**env, "PROBE_KILL": "1"})[0] \
        == -signal.SIGKILL


def test_only_a_child_whose_environment_the_imports_read_alike_is_forked(world):
    zygote, _, env = world
    argv = [sys.executable, "-m", "probe"]
    # read by reads_env: recorded, not listed by hand
    assert {"PROBE_SETTING", "PROBE_LATER"} <= zygote.compared
    assert zygote.accepts(argv, {**env, "PROBE_OTHER": "x", "AWS_BATCH_JOB_ID": "j:1"})
    assert not zygote.accepts(argv, {**env, "PROBE_SETTING": "b"})  # module state would differ
    assert not zygote.accepts(argv, {**env, "PROBE_LATER": "set"})
    assert not zygote.accepts(argv, {k: v for k, v in env.items() if k != "PROBE_SETTING"})
    assert not zygote.accepts(argv, {**env, "PYTHONHASHSEED": "7"})  # read by the interpreter as it starts
    assert not zygote.accepts(argv, {**env, "LC_ALL": "C"})
    assert not zygote.accepts([sys.executable, "-m", "other"], env)
    assert not zygote.accepts(["/usr/bin/python3", "-m", "probe"], env)


def test_children_of_a_zygote_that_dies_are_killed_and_reported_killed(world):
    zygote, cwd, env = world
    (cwd / "sleeper.py").write_text("import time\nprint('up', flush=True)\ntime.sleep(60)\n")
    sleeper = Zygote(module="sleeper", preload=(), env=env)
    try:
        child = sleeper.start(env, cwd=str(cwd))
        assert child.stdout is not None and child.stdout.readline() == b"up\n"
        sleeper._proc.kill()
        assert child.wait(timeout=30) == -signal.SIGKILL
        assert sleeper.gone and not sleeper.accepts([sys.executable, "-m", "sleeper"], env)
        with pytest.raises(OSError, match="has ended"):
            sleeper.start(env, cwd=str(cwd))
    finally:
        sleeper.close()
