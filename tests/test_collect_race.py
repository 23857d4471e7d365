"""A task's directory swapped for a symlink while its runner collects it (issue 30 round 2, item 1): whatever
another task of the run (or what a task left running) swaps in after the runner's check, the runner reads,
moves, writes and deletes nothing outside the run, and only the task whose directory was swapped fails."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from helpers import assert_untouched, victim_files, write_spec

import batchsweep
from batchsweep.task import worker

SCRIPTS = Path(__file__).parent / "scripts"


def _swap(path: Path, target: Path) -> None:
    """What the attacker does: moves path aside and puts a symlink to target in its place."""
    if path.is_dir() and not path.is_symlink():
        path.rename(path.with_name(path.name + ".was"))
    elif os.path.lexists(path):
        path.unlink()
    path.symlink_to(target)


@pytest.mark.parametrize("name, target, said", [
    ("work", "dir", "work was replaced by a symlink"),
    ("outputs", "dir", "outputs was replaced by a symlink"),
    (".", "dir", "its own directory by a symlink"),  # the task's whole directory
    ("stderr.log", ".bashrc", "stderr.log by a symlink"),  # read for a failed task's last line
])
def test_a_directory_swapped_for_a_symlink_after_the_runners_check_is_never_followed(tmp_path, monkeypatch,
                                                                                     name, target, said):
    """The swap happens at the worst moment there is: right after the runner checked the task's directory
    (`confine.reclaim`, the seam) and before it collects the task's metrics and outputs. Before, the runner
    read and deleted the victim's metrics.json and moved their notes into the run (work), stopped the whole
    run (outputs: rmtree refuses a symlink), wrote the task's metrics, outputs and status into the victim's
    directory (the task's own), or put the victim's last line in the task's error (stderr.log)."""
    victim, files = victim_files(tmp_path)
    real_reclaim, swapped = worker.reclaim, []

    def reclaim_then_swap(files_: object, *args: object) -> object:
        found = real_reclaim(files_, *args)
        root = Path(files_.root)  # type: ignore[attr-defined]
        if root.name == "0" and not swapped:
            swapped.append(root)
            (root / "work" / "kept.txt").write_bytes(b"an output\n")
            _swap(root / name if name != "." else root, victim / target)
        return found

    monkeypatch.setattr(worker, "reclaim", reclaim_then_swap)
    fail = name == "stderr.log"
    script = tmp_path / "task.py"
    script.write_text(textwrap.dedent("""
        import json, sys
        a = int(sys.argv[sys.argv.index("--a") + 1])
        json.dump({"a2": a * 2}, open("metrics.json", "w"))
        print("my own last words", file=sys.stderr)
        sys.exit(3 if a == 1 and "--fail" in sys.argv else 0)
    """))
    fixed = ", fixed: {fail: true}" if fail else ""
    spec = write_spec(tmp_path, f"""
        name: race
        script: {script}
        params: {{grid: {{a: [1, 2]}}{fixed}}}
        max_parallel: 1
        timeout: 60s
    """)
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    df = run.results().set_index("task")
    assert swapped, "the seam was never reached"
    assert_untouched(victim, files)
    assert list(df["status"]) == ["failed", "succeeded"], df["error"].tolist()
    error = df["error"][0]
    assert "mine" not in error and "stolen" not in str(df.to_dict())
    assert said in error and "not followed" in error, error
    task_dir = tmp_path / "store" / "runs" / run.id / "tasks" / "0"
    assert not any(p.is_symlink() for p in task_dir.rglob("*")), list(task_dir.rglob("*"))
    assert df["a2"][1] == 4


RACER = """
import json, os, sys, time
role = sys.argv[sys.argv.index("--role") + 1]
if role == "racer":  # swaps its sibling's work/ and outputs/ for symlinks to the victim, back and forth
    victim, sibling = sys.argv[sys.argv.index("--victim") + 1], os.path.join("..", "..", "1")
    deadline, swaps = time.monotonic() + 30, 0
    while time.monotonic() < deadline and not os.path.exists(os.path.join(sibling, "status.json")):
        for name in ("work", "outputs"):
            path = os.path.join(sibling, name)
            try:
                if os.path.islink(path):
                    os.unlink(path)
                    os.rename(path + ".was", path)
                elif os.path.isdir(path):
                    os.rename(path, path + ".was")
                    os.symlink(victim, path)
                    swaps += 1
            except OSError:
                pass
    for name in ("work", "outputs"):  # puts back what it swapped, so any symlink left is the runner's doing
        path = os.path.join(sibling, name)
        if os.path.islink(path):
            os.unlink(path)
            if os.path.isdir(path + ".was"):
                os.rename(path + ".was", path)
    json.dump({"swaps": swaps}, open("metrics.json", "w"))
else:
    for i in range(200):
        os.makedirs("sub", exist_ok=True)
        with open(os.path.join("sub", f"out{i}.txt"), "w") as f:
            f.write("x")
    json.dump({"ok": 1}, open("metrics.json", "w"))
"""


def test_a_task_that_keeps_swapping_its_siblings_directories_reaches_nothing_outside_the_run(tmp_path):
    """The attacker as a task: it swaps its sibling's working and outputs directories for symlinks to the
    victim's directory and back, as fast as it can, until the sibling's status is written. Whichever moment
    the swaps land, the victim's files stay as they were and the run ends with a row for each task."""
    victim, files = victim_files(tmp_path)
    script = tmp_path / "racer.py"
    script.write_text(RACER)
    spec = write_spec(tmp_path, f"""
        name: racer
        script: {script}
        params: {{list: [{{role: racer, victim: "{victim / 'dir'}"}}, {{role: sibling}}]}}
        max_parallel: 2
        timeout: 60s
    """)
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    df = run.results().set_index("task")
    assert_untouched(victim, files)
    # the sibling may fail (its working directory moved under it), as its own failure, never the runner's
    assert set(df["status"]) <= {"succeeded", "failed"} and len(df) == 2, df
    assert not any(os.path.realpath(p).startswith(str(victim)) for p in (tmp_path / "store").rglob("*"))


@pytest.mark.parametrize("reaped", [True, False], ids=["reaper", "no-reaper"])
def test_a_working_directory_swapped_for_a_symlink_as_it_is_made_gets_no_staged_input(tmp_path, monkeypatch,
                                                                                       reaped):
    """The swap lands right after the runner made the task's working directory and before it copies the
    task's inputs there (the seam: `worker._fresh_work`). Before, the runner copied the input (and wrote a
    config-style params file) into the victim's directory; now it writes through the directory it made, held
    open, and the task fails naming the symlink. Where no reaper can run (not Linux) the task's launcher
    checks its working directory all the same, so the task never starts in the victim's."""
    from batchsweep.task import reaper

    if not reaped:
        monkeypatch.setattr(reaper, "can_supervise", lambda: False)
    victim, files = victim_files(tmp_path)
    real_fresh, swapped = worker._fresh_work, []

    def fresh_then_swap(task_fd: int) -> int:
        fd = real_fresh(task_fd)
        work = Path(os.readlink(f"/proc/self/fd/{task_fd}")) / "work"
        if work.parent.name == "0" and not swapped:
            swapped.append(work)
            _swap(work, victim / "dir")
        return fd

    monkeypatch.setattr(worker, "_fresh_work", fresh_then_swap)
    (tmp_path / "data.txt").write_text("the input\n")
    script = tmp_path / "task.py"
    script.write_text("import json, sys\nopen('mine.txt', 'w').write('x')\n"  # in its working directory
                      "print(json.dumps({'ok': len(sys.argv)}))\n")
    spec = write_spec(tmp_path, f"""
        name: stage
        script: {script}
        params: {{grid: {{a: [1, 2]}}}}
        inputs: [{tmp_path / 'data.txt'}]
        metrics: {{stdout: last}}
        max_parallel: 1
        timeout: 60s
        warm: {"auto" if reaped else "false"}
    """)
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    df = run.results().set_index("task")
    assert swapped, "the seam was never reached"
    assert_untouched(victim, files)
    assert list(df["status"]) == ["failed", "succeeded"], df["error"].tolist()
    # without a reaper the launcher refuses to start the task; collecting it then finds the symlink
    said = "replaced work by a symlink" if reaped else "work was replaced by a symlink"
    assert said in df["error"][0] and "not followed" in df["error"][0], df["error"][0]


def test_removing_a_tasks_directory_never_follows_a_symlink_at_or_below_it(tmp_path):
    from batchsweep.files import remove_at

    victim, files = victim_files(tmp_path)
    run = tmp_path / "run"
    (run / "work" / "sub").mkdir(parents=True)
    (run / "work" / "sub" / "link").symlink_to(victim / "dir" / "notes.txt")
    (run / "work" / "linkdir").symlink_to(victim / "dir", target_is_directory=True)
    (run / "outputs").symlink_to(victim / "dir", target_is_directory=True)
    fd = os.open(run, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in ("work", "outputs", "missing"):
            remove_at(name, fd)
    finally:
        os.close(fd)
    assert_untouched(victim, files)
    assert os.listdir(run) == []


def test_staging_never_writes_through_a_symlink_planted_in_the_working_directory(tmp_path):
    """Another task of the run plants `data` -> the victim's directory in a working directory before the
    runner stages `data/x.csv` there: the staging fails (the task fails), the victim's directory gets nothing.
    Before, the copy went through the symlink into the victim's directory."""
    from batchsweep.files import open_dir
    from batchsweep.model import Task
    from batchsweep.task.staging import stage

    victim, files = victim_files(tmp_path)
    inputs = tmp_path / "inputs"
    (inputs / "tree" / "inner").mkdir(parents=True)
    (inputs / "x.csv").write_text("a,b\n1,2\n")
    (inputs / "tree" / "inner" / "y.txt").write_text("y")
    (inputs / "tree" / "out").symlink_to(victim)  # a symlink inside an input tree is copied as a symlink
    work = tmp_path / "work"
    work.mkdir()
    (work / "data").symlink_to(victim)
    fd = open_dir(str(work))
    try:
        with pytest.raises(OSError):
            stage(Task(0, {}, inputs=("x.csv => data/x.csv",)), fd, lambda ref: inputs / ref)
        assert_untouched(victim, files)
        staged = stage(
            Task(0, {}, inputs=("x.csv => deep/er/x.csv", "tree => t/")), fd, lambda ref: inputs / ref
        )
    finally:
        os.close(fd)
    assert (work / "deep" / "er" / "x.csv").read_text() == "a,b\n1,2\n"
    assert (work / "t" / "inner" / "y.txt").read_text() == "y"
    assert os.readlink(work / "t" / "out") == str(victim)
    assert staged == {"deep/er/x.csv": inputs / "x.csv", "t": inputs / "tree"}
    assert_untouched(victim, files)
