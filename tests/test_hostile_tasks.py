"""Hostile tasks (issue 15, items 3, 6, 7): whatever a task leaves behind is its own failure, never a hung or
dead runner, and nothing outside its directory reaches the store."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from helpers import alive, assert_untouched, victim_files, write_spec

import batchsweep
from batchsweep.store.core import Store

SCRIPTS = Path(__file__).parent / "scripts"


def _run(tmp_path: Path, params: str, **extra: str) -> object:
    lines = "".join(f"        {k}: {v}\n" for k, v in {"timeout": "60s", **extra}.items())
    spec = write_spec(tmp_path, f"""
        name: hostile
        script: {SCRIPTS / 'hostile_task.py'}
        params: {params}
{lines}""")
    return batchsweep.run(spec, store=tmp_path / "store", progress=False)


@pytest.mark.parametrize("kind, reason", [("fifo", "is a FIFO"), ("dir", "is a directory"),
                                          ("symlink", "is a symlink"), ("huge", "larger than 32 MiB")])
def test_a_hostile_metrics_file_is_a_task_failure_with_its_reason(tmp_path, kind, reason):
    started = time.monotonic()
    run = _run(tmp_path, f"{{grid: {{a: [1]}}, fixed: {{metrics_kind: {kind}}}}}")
    df = run.results()
    assert time.monotonic() - started < 30
    assert list(df["status"]) == ["failed"] and reason in df["error"][0]
    metrics = tmp_path / "store" / "runs" / run.id / "tasks" / "0" / "metrics.json"
    assert not metrics.exists() or not metrics.is_symlink()


def test_uploads_to_a_store_never_follow_symlinks(tmp_path, aws_env, session):
    from batchsweep.aws.clients import make_client

    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2")
    task = tmp_path / "task"
    (task / "outputs" / "sub").mkdir(parents=True)
    (task / "outputs" / "plot.png").write_bytes(b"png")
    (task / "outputs" / "leak.txt").symlink_to(secret)
    (task / "outputs" / "linkdir").symlink_to(tmp_path, target_is_directory=True)
    (task / "metrics.json").symlink_to(secret)
    make_client("s3", session=session).create_bucket(Bucket="uploads")
    for store in (Store.open("s3://uploads/bs"), Store.open(tmp_path / "local")):
        store.backend.upload_dir(task, "runs/r/tasks/0")
        assert store.backend.list_files("runs/r/tasks/0") == ["runs/r/tasks/0/outputs/plot.png"]


def test_a_setsid_grandchild_dies_with_its_task(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    run = _run(tmp_path, f'{{grid: {{a: [1, 2]}}, fixed: {{setsid_child: "{pids}"}}}}')
    assert set(run.results()["status"]) == {"succeeded"}
    children = [int(p.read_text()) for p in pids.iterdir()]
    assert len(children) == 2
    deadline = time.monotonic() + 120
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in children), "a setsid grandchild outlived its task"


def test_a_setsid_grandchild_dies_at_timeout(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    run = _run(tmp_path, f'{{grid: {{a: [1]}}, fixed: {{setsid_child: "{pids}", sleep: 60}}}}', timeout="1s")
    assert list(run.results()["status"]) == ["timeout"]
    (child,) = [int(p.read_text()) for p in pids.iterdir()]
    deadline = time.monotonic() + 120
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)


_PEAK = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
print(proc.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, proc.stderr[-500:].replace(chr(10), ' '))
"""  # noqa: E501


def _peak_mib(tmp_path: Path, *argv: str) -> tuple[int, int, str]:
    """Exit code and peak RSS (MiB) of a CLI command and everything it started."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _PEAK, sys.executable, "-m", "batchsweep", *argv,
                          "--store", str(tmp_path / "store")], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path).stdout.split(" ", 2)
    return int(out[0]), int(out[1]), out[2]


# 256 MiB keeps the suite fast; BATCHSWEEP_FLOOD_MIB=1024 is the 1 GiB (peak 2163 MiB before, see
# report).
FLOOD_MIB = int(os.environ.get("BATCHSWEEP_FLOOD_MIB", "256"))


def test_a_huge_stdout_is_scanned_for_metrics_and_shown_by_logs_in_bounded_memory(tmp_path):
    spec = write_spec(tmp_path, f"""
        name: flood
        script: {SCRIPTS / 'hostile_task.py'}
        params: {{grid: {{a: [1]}}, fixed: {{stdout_mib: {FLOOD_MIB}}}}}
        metrics: {{stdout: last}}
    """)
    code, peak, err = _peak_mib(tmp_path, "run", str(spec))
    assert code == 0, err
    assert peak < 200, f"the runner peaked at {peak} MiB scanning a {FLOOD_MIB} MiB log"
    print(f"peak RSS scanning {FLOOD_MIB} MiB of stdout: {peak} MiB")
    run = batchsweep.load_run(store=tmp_path / "store")
    assert list(run.results()["last"]) == [1]
    code, peak, err = _peak_mib(tmp_path, "logs", run.id, "0")
    assert code == 0 and peak < 200, (peak, err)
    print(f"peak RSS of logs over {FLOOD_MIB} MiB: {peak} MiB")
    log = tmp_path / "store" / "runs" / run.id / "tasks" / "0" / "stdout.log"
    assert log.stat().st_size > FLOOD_MIB << 20
    log.unlink()  # the disk back now, not at the end of the session


def test_a_process_with_a_tasks_token_that_no_search_after_the_task_sees_dies_when_the_run_ends(tmp_path):
    """The search after each task looks among the runner's children, which /proc lists unreliably while
    processes come and go; when every task has ended the runner looks once more, over the whole machine, for
    anything that still carries one of the run's task tokens. Here such a process is started by someone else
    (not below the runner) with the token a task handed over."""
    import subprocess
    import sys

    asks = tmp_path / "asks"
    asks.mkdir()
    spawner = subprocess.Popen([sys.executable, "-c", f"""
import os, subprocess, sys, time
asks = {str(asks)!r}
while True:
    for name in os.listdir(asks):
        if name.endswith(".token"):
            token = open(os.path.join(asks, name)).read()
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                     env={{**os.environ, "BATCHSWEEP_TASK_TOKEN": token}})
            open(os.path.join(asks, name[:-6] + ".pid"), "w").write(str(child.pid))
            os.rename(os.path.join(asks, name), os.path.join(asks, name + ".done"))
    time.sleep(0.02)
"""])
    try:
        script = tmp_path / "hands_over.py"
        script.write_text(f"""
import os, sys, time
asks = {str(asks)!r}
open(os.path.join(asks, "t.tmp"), "w").write(os.environ["BATCHSWEEP_TASK_TOKEN"])
os.rename(os.path.join(asks, "t.tmp"), os.path.join(asks, "t.token"))
while not os.path.exists(os.path.join(asks, "t.pid")):
    time.sleep(0.02)
""")
        spec = write_spec(tmp_path, f"name: handover\nscript: {script}\nparams: {{grid: {{_k: [1]}}}}\n")
        run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
        assert set(run.results()["status"]) == {"succeeded"}
        pid = int((asks / "t.pid").read_text())
        deadline = time.monotonic() + 120
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid), "a process carrying the run's task token outlived the run"
    finally:
        spawner.kill()
        spawner.wait()


@pytest.mark.parametrize("name, target, extra", [
    ("metrics.json", ".bashrc", {}),
    ("work", "dir", {}),
    ("outputs", "dir", {}),
    ("stderr.log", ".bashrc", {}),
    ("stdout.log", ".bashrc", {"metrics": "{stdout: last}"}),
    ("metrics.jsonl", ".bashrc", {"metrics": "{output: 'step=(?P<step>\\d+) loss=(?P<loss>[0-9.]+)'}"}),
    ("../0", "dir", {}),  # its own directory
    # ...to a directory that holds a log, while the runner reads its steps from its log into its series
    ("../0", "dir", {"metrics": "{output: 'step=(?P<step>\\d+) loss=(?P<loss>[0-9.]+)'}"}),
])
def test_a_symlink_a_task_plants_where_the_runner_keeps_its_files_is_that_tasks_error(tmp_path, name, target,
                                                                                      extra):
    """The task replaces one of the files or directories the runner writes after it ends (its metrics, its
    logs, its series, its working and outputs directories) by a symlink to someone's files, in each of its two
    attempts: the runner neither writes, moves, deletes nor reads anything there (not when the next attempt
    starts either), the task fails saying what it did, and the others run on."""
    victim, files = victim_files(tmp_path)
    if name == "../0" and extra:
        files["dir/stdout.log"] = b"step=1 loss=0.25\n" * 3
        (victim / "dir" / "stdout.log").write_bytes(files["dir/stdout.log"])
    fail_first = tmp_path / "fail_first"
    fail_first.mkdir()
    params = (f"{{list: [{{a: 1, plant: '{name}={victim / target}', fail_first: '{fail_first}'}}, {{a: 2}},"
              f" {{a: 3}}]}}")
    run = _run(tmp_path, params, max_parallel="1", retries="1", **extra)
    df = run.results().set_index("task")
    assert_untouched(victim, files)
    assert list(df["status"]) == ["failed", "succeeded", "succeeded"], df["error"].tolist()
    error = df["error"][0]
    said = "its own directory" if name == "../0" else name
    assert f"{said} by a symlink" in error and "not followed" in error, error
    assert "private notes" not in error and "mine" not in error
    task_dir = tmp_path / "store" / "runs" / run.id / "tasks" / "0"
    assert not any(p.is_symlink() for p in task_dir.rglob("*")), list(task_dir.rglob("*"))
    assert not any(os.path.realpath(p).startswith(str(victim)) for p in task_dir.rglob("*"))


def test_a_task_that_moves_a_directory_above_its_own_stops_the_run_and_writes_nothing_there(tmp_path):
    victim, files = victim_files(tmp_path)
    with pytest.raises(batchsweep.SweepError, match="was moved or replaced by a symlink while the task ran"):
        _run(
            tmp_path,
            f"{{list: [{{a: 1, plant: '../../tasks={victim / 'dir'}'}}, {{a: 2}}]}}",
            max_parallel="1",
        )
    assert_untouched(victim, files)


@pytest.mark.parametrize("name", ["../1", "../1/work"])
def test_a_symlink_a_task_plants_where_a_later_task_of_its_run_will_run_is_removed_not_followed(
    tmp_path, caplog, name
):
    """Task 0 makes tasks/1 (not yet made: one task at a time), or its working directory, a symlink to
    someone's directory. Before, task 1 ran there: its working directory victim/work (an existing one deleted
    first), its logs, metrics and status.json written into the victim's directory; or the run stopped (rmtree
    refuses a symlink). Now the runner removes the link and runs task 1 in a directory of its own."""
    victim, files = victim_files(tmp_path)
    (victim / "dir" / "work").mkdir()
    (victim / "dir" / "work" / "thesis.tex").write_bytes(b"three years\n")
    files["dir/work/thesis.tex"] = b"three years\n"
    run = _run(tmp_path, f"{{list: [{{a: 1, plant: '{name}={victim / 'dir'}'}}, {{a: 2}}, {{a: 3}}]}}",
               max_parallel="1")
    df = run.results()
    assert_untouched(victim, files)
    assert list(df["status"]) == ["succeeded"] * 3 and list(df["a2"]) == [2, 4, 6]
    assert name == "../1/work" or "tasks/1 was a symlink" in caplog.text
    tasks = tmp_path / "store" / "runs" / run.id / "tasks"
    assert not any(p.is_symlink() for p in tasks.rglob("*"))


_ESCAPES = """
import json, sys
evil = "\\x1b]52;c;ZWNobyBwd25lZA==\\x07\\x1b[2J\\x1b]0;pwned\\x07[bold]title\\x9b31m"
json.dump({"note": evil, "=cmd|' /C calc'!A0": 1, "label": "=HYPERLINK(\\"http://x\\",\\"y\\")",
           "sum": "+1+2", "mail": "@SUM(1)", "dash": "-2+3", "cr": "a\\rb"}, open("metrics.json", "w"))
print("failing: " + evil, file=sys.stderr)
sys.exit(int(sys.argv[sys.argv.index("--a") + 1]))
"""


def test_what_a_task_writes_cannot_attack_the_terminal_or_the_spreadsheet_that_shows_it(tmp_path, capsys):
    """A task's metrics and last error line carry escape sequences (OSC 52 writes the clipboard, OSC 0
    retitles the window, CSI clears the screen), rich markup and spreadsheet formulas: `status` and `results`
    show them escaped, and the CSV export makes every formula-looking cell and name inert, quoting a bare
    CR."""
    from batchsweep import cli

    (tmp_path / "esc.py").write_text(_ESCAPES)
    spec = write_spec(
        tmp_path, 'name: esc\nscript: esc.py\nparams: {grid: {a: [0, 3]}, fixed: {tab: "\\tx"}}\n'
    )
    store = str(tmp_path / "store")
    assert cli.main(["run", str(spec), "--store", store]) == 1
    capsys.readouterr()
    for argv in (["status"], ["results"], ["results", "--wide"]):
        assert cli.main([*argv, "--store", store]) == 0
        out, err = capsys.readouterr()
        raw = [c for c in out + err if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) < 0xA0]
        assert not raw, (argv, raw)
    assert "\\x1b]52;c;" in out and "[bold]title\\x9b31m" in out
    assert cli.main(["results", "--format", "csv", "--store", store]) == 0
    import csv
    import io

    text = capsys.readouterr().out
    header, *rows = list(csv.reader(io.StringIO(text, newline="")))
    assert "'=cmd|' /C calc'!A0" in header and "=cmd|' /C calc'!A0" not in header
    for row in rows:
        cells = dict(zip(header, row))
        assert cells["label"] == "'=HYPERLINK(\"http://x\",\"y\")" and cells["sum"] == "'+1+2"
        assert cells["mail"] == "'@SUM(1)" and cells["dash"] == "'-2+3" and cells["tab"] == "'\tx"
        assert cells["cr"] == "a\rb"
    assert len(rows) == 2 and '"a\rb"' in text


def test_logs_on_a_terminal_shows_a_task_s_escape_sequences_escaped_and_its_colours(tmp_path):
    """`batchsweep logs` wrote a task's bytes to the terminal as they were: an OSC 52 wrote the clipboard,
    OSC 0 retitled the window, CSI 2J cleared the screen. On a terminal they are shown escaped now, its
    colours (SGR) and line breaks kept, a progress bar's carriage returns made line breaks; piped, the bytes
    as written."""
    import pty
    import subprocess
    import sys

    (tmp_path / "loud.py").write_text(
        "import sys\n"
        "sys.stdout.write('\\x1b[32mgreen\\x1b[0m \\x1b]52;c;ZWNobw==\\x07\\x1b]0;pwned\\x07\\x1b[2J'"
        " + '10%\\r20%\\r\\ndone\\tok\\n')\n"
    )
    spec = write_spec(tmp_path, "name: loud\nscript: loud.py\nparams: {grid: {a: [1]}}\nargs: {style: env}\n")
    store = str(tmp_path / "store")
    assert batchsweep.run(spec, store=store, progress=False).exit_code == 0
    argv = [sys.executable, "-m", "batchsweep", "logs", "0", "--store", store]
    piped = subprocess.run(argv, capture_output=True, timeout=120).stdout
    assert piped == (b"\x1b[32mgreen\x1b[0m \x1b]52;c;ZWNobw==\x07\x1b]0;pwned\x07\x1b[2J"
                     b"10%\r20%\r\ndone\tok\n")
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdout=follower, stderr=subprocess.PIPE)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the command ended and closed its end
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    text = shown.decode().replace("\r\n", "\n")  # the terminal's own line discipline adds the CRs
    assert text == ("\x1b[32mgreen\x1b[0m \\x1b]52;c;ZWNobw==\\x07\\x1b]0;pwned\\x07\\x1b[2J"
                    "10%\n20%\ndone\tok\n"), text


def test_a_param_value_with_escape_sequences_is_shown_escaped_by_dry_run_and_rerun(
    tmp_path, capsys, monkeypatch
):
    """A spec from someone else's repository gives a param an OSC 0 (retitle) and CSI (colour) value: `run
    --dry-run` printed it raw in each command line, and so did `rerun`'s `command:` line. `rerun --dir` with a
    relative directory ran nothing (the script's path was relative to the wrong directory)."""
    from batchsweep import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "esc.py").write_text(_ESCAPES)
    spec = write_spec(
        tmp_path, 'name: esc\nscript: esc.py\nparams: {grid: {a: [3]}, fixed: {t: "v\\e]0;T\\a\\e[31m"}}\n'
    )
    store = str(tmp_path / "store")
    assert cli.main(["run", str(spec), "--dry-run", "--store", store]) == 0
    assert cli.main(["run", str(spec), "--store", store]) == 1
    run_id = batchsweep.load_run(store=store).id
    # the task's own exit code
    assert cli.main(["rerun", run_id, "0", "--dir", "again", "--store", store]) == 3
    out, err = capsys.readouterr()
    raw = [c for c in out + err if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) < 0xA0]
    assert not raw, raw
    assert (
        out.count("--t $'v\\x1b]0;T\\x07\\x1b[31m'") == 1
        and err.count("--t $'v\\x1b]0;T\\x07\\x1b[31m'") == 1
    )
    assert (tmp_path / "again" / "work" / "metrics.json").exists()


def test_a_dry_run_command_line_pasted_into_bash_gives_the_script_the_same_values(tmp_path, capsys,
                                                                                   monkeypatch) -> None:
    """`run --dry-run` showed a value with a newline as `'line1\\x0aline2'`, which bash passes on as those
    characters; now as `$'line1\\nline2'`, and still no control character reaches the terminal raw."""
    import json
    import shutil
    import subprocess
    import sys

    from batchsweep import cli

    if shutil.which("bash") is None:
        pytest.skip("no bash")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "show.py").write_text("import json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    values = ["line1\nline2", "it's\ttab", "a\u0085b\x1b[31m", "back\\slash 'q'", "plain"]
    spec = tmp_path / "sweep.yaml"
    spec.write_text(json.dumps({"name": "paste", "script": "show.py", "params": {"grid": {"tag": values}},
                                "env": {"TAG": "x\ny {tag}"}}))
    capsys.readouterr()
    assert cli.main(["run", str(spec), "--dry-run", "--store", str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out
    assert not [c for c in out if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) < 0xA0]
    lines = out[out.index("command lines"):].splitlines()[1:len(values) + 1]
    for value, line in zip(values, lines, strict=True):
        shown = line.split(None, 1)[1]
        done = subprocess.run(
            ["bash", "-c", f'python() {{ "$0" "$@"; }}; {shown}; echo "$TAG"', sys.executable],
            capture_output=True, text=True, timeout=120, cwd=tmp_path,
        )
        assert done.returncode == 0, (shown, done.stderr)
        argv, env_line = done.stdout.split("\n", 1)
        assert json.loads(argv) == ["--tag", value], shown
        assert env_line == "\n", shown  # TAG was the command's own, not the shell's


def _daemons(pids: Path, n: int) -> list[int]:
    """The pids the tasks' daemons wrote (each task waits for its own before it goes on)."""
    found = sorted(pids.glob("*.pid"))
    assert len(found) == n, found
    return [int(p.read_text()) for p in found]


def _gone(pids: list[int], *, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(alive(pid) for pid in pids)


@pytest.mark.parametrize("warm", ["false", "true"])
def test_a_daemon_that_double_forks_setsid_with_no_environment_dies_with_its_task(tmp_path, warm):
    """Issue 30, item 5: the daemon has left the task's session and environment (no token, no batchsweep
    variable) and its parent has exited: only the task's own reaper still knows it."""
    pids = tmp_path / "pids"
    pids.mkdir()
    run = _run(tmp_path, f'{{grid: {{a: [1, 2]}}, fixed: {{daemon: "{pids}"}}}}', warm=warm)
    df = run.results()
    assert set(df["status"]) == {"succeeded"} and set(df["a2"]) == {2, 4}
    assert run.store.read_json(f"runs/{run.id}/tasks/0/status.json")["warm"] is (warm == "true")
    assert _gone(_daemons(pids, 2)), "a double-forked setsid daemon outlived its task"


def test_a_daemon_of_a_timed_out_task_dies_with_it(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    run = _run(tmp_path, f'{{grid: {{a: [1]}}, fixed: {{daemon: "{pids}", sleep: 120}}}}', timeout="3s")
    assert list(run.results()["status"]) == ["timeout"]
    assert _gone(_daemons(pids, 1))


def test_a_daemon_of_a_run_whose_runner_was_killed_dies_when_the_run_is_resumed(tmp_path):
    import signal

    pids = tmp_path / "pids"
    pids.mkdir()
    spec = write_spec(tmp_path, f"""
        name: daemons
        script: {SCRIPTS / 'hostile_task.py'}
        params: {{grid: {{a: [1, 2]}}, fixed: {{daemon: "{pids}", sleep: 300}}}}
        warm: false
    """)
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    deadline = time.monotonic() + 60
    while len(list(pids.glob("*.pid"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    daemons = _daemons(pids, 2)
    os.kill(run.store.read_json(f"runs/{run.id}/engine.json")["pid"], signal.SIGKILL)
    for p in pids.iterdir():
        p.unlink()
    again = batchsweep.load_run(run.id, store=tmp_path / "store")
    deadline = time.monotonic() + 120
    while again.engine.poll().active and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        again.resume(detach=True)  # kills what the dead runner left, then starts the two tasks again
        assert _gone(daemons), "a daemon outlived the runner of its run and the resume"
    finally:
        again = batchsweep.load_run(run.id, store=tmp_path / "store")
        again.cancel()


def test_odd_values_are_written_faithfully_to_csv_json_parquet_and_the_dataframe(tmp_path, capsys):
    """Issue 30, item 8: whole numbers past int64, a lone surrogate in a metric and in a metric's name, an
    output file whose name is not UTF-8, a param a list on one task and a number on another. The DataFrame
    keeps them as they are; a file format that needs UTF-8 text gets them escaped (`\\ud800`, `\\xff`),
    Parquet a column it cannot type as text."""
    import csv
    import json

    import pandas as pd

    from batchsweep import cli

    run = _run(
        tmp_path,
        "{list: [{a: 1, xs: 5}, {a: 18446744073709551617, xs: [3, 4]}], fixed: {odd_values: é}}",
        outputs='["*.bin"]',
    )
    df = run.results()
    assert list(df["status"]) == ["succeeded"] * 2
    assert list(df["a"]) == [1, 2**64 + 1] and list(df["xs"]) == [5, [3, 4]]
    assert list(df["big"]) == [2**64 + 1, 2**65 + 1] and list(df["small"]) == [-(2**63) - 1] * 2
    assert list(df["text"]) == ["lone \ud800 é"] * 2 and list(df["\ud83dname"]) == [1.5, 1.5]
    assert [list(v) for v in df["outputs"]] == [["out_\udcff\udcfe.bin"]] * 2
    store = str(tmp_path / "store")
    for fmt in ("csv", "json", "parquet"):
        assert cli.main(["results", run.id, "--store", store, "-o", str(tmp_path / f"r.{fmt}")]) == 0, fmt
    assert cli.main(["results", run.id, "--store", store, "--wide"]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "lone \\ud800 é" in out
    rows = list(csv.DictReader(open(tmp_path / "r.csv", encoding="utf-8")))
    assert [r["big"] for r in rows] == [str(2**64 + 1), str(2**65 + 1)] and [r["xs"] for r in rows] == [
        "5",
        "[3, 4]",
    ]
    assert rows[0]["text"] == "lone \\ud800 é" and rows[0]["\\ud83dname"] == "1.5"
    assert rows[0]["outputs"] == "out_\\xff\\xfe.bin"
    records = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert [r["big"] for r in records] == [2**64 + 1, 2**65 + 1] and [r["xs"] for r in records] == [5, [3, 4]]
    assert records[1]["a"] == 2**64 + 1 and records[0]["outputs"] == ["out_\\xff\\xfe.bin"]
    table = pd.read_parquet(tmp_path / "r.parquet")
    assert list(table["big"]) == [str(2**64 + 1), str(2**65 + 1)] and list(table["xs"]) == ["5", "[3, 4]"]
    assert list(table["text"]) == ["lone \\ud800 é"] * 2 and list(table["small"]) == [str(-(2**63) - 1)] * 2
    # no cache
    assert list(batchsweep.load_run(run.id, store=store).results()["big"]) == [2**64 + 1, 2**65 + 1]


def test_a_report_of_metrics_and_params_at_the_ends_of_the_floats_is_written(tmp_path, capsys):
    """Params .nan, .inf, -.inf, 1e400 and 10^29; metrics NaN, ±inf and a constant 10^30: before, report died
    of ZeroDivisionError (an axis of one value was widened by ±0.5, which is nothing to 1e30)."""
    from batchsweep import cli

    (tmp_path / "ends.py").write_text(
        "import argparse, json\np = argparse.ArgumentParser(); p.add_argument('--a', type=float)\na = "
        "p.parse_args().a\njson.dump({'x': a, 'big': 10**30, 'inf': float('inf')}, open('metrics.json', "
        "'w'))\n"
    )
    spec = write_spec(
        tmp_path,
        "name: ends\nscript: ends.py\n"
        "params: {grid: {a: [.nan, .inf, -.inf, 1e400, 99999999999999999999999999999]}}\n",
    )
    store = str(tmp_path / "store")
    assert cli.main(["run", str(spec), "--store", store]) == 0
    for metric in ("big", "x"):
        assert (
            cli.main(["report", "--metric", metric, "-o", str(tmp_path / "r.html"), "--store", store]) == 0
        ), metric
    assert "Traceback" not in capsys.readouterr().err


_FIFO = """
import os, sys, time
a = int(sys.argv[sys.argv.index("--a") + 1])
if a == 0:
    if os.path.lexists("../metrics.jsonl"):
        os.unlink("../metrics.jsonl")
    os.mkfifo("../metrics.jsonl")
for s in range(5):
    print(f"step={s} loss={1 / (1 + s)}", flush=True)
    time.sleep(0.2)
"""


def test_a_fifo_a_task_puts_where_its_series_goes_fails_that_task_and_hangs_nothing(tmp_path):
    """Before, the runner opened the FIFO to append the task's steps and waited for a reader for ever (SIGTERM
    did not end it either): the whole run hung. Now the task fails saying what it did; the other runs."""
    import subprocess
    import sys

    (tmp_path / "fifo.py").write_text(_FIFO)
    spec = write_spec(tmp_path, "name: fifo\nscript: fifo.py\nparams: {grid: {a: [0, 1]}}\ntimeout: 60s\n"
                                "metrics: {output: 'step=(?P<step>\\\\d+) loss=(?P<loss>[0-9.]+)'}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "batchsweep", "run", str(spec), "--store", str(tmp_path / "store")],
        capture_output=True,
        text=True,
        timeout=240,
        start_new_session=True,
    )
    assert proc.returncode == 1, proc.stderr
    df = batchsweep.load_run(store=tmp_path / "store").results()
    assert list(df["status"]) == ["failed", "succeeded"]
    assert "the task replaced metrics.jsonl by a FIFO; it was removed, not followed" in df["error"][0]
