"""Reuse across runs by content key (docs/design.md §4.1), on the local store. Executions are counted by a
side effect of the task itself (a line appended to a file outside the store), never by the tool's own
report."""

from __future__ import annotations

import multiprocessing
import os
import textwrap
from pathlib import Path

import pytest

import batchsweep
from batchsweep import cli
from batchsweep.store import index as indexfile
from batchsweep.store.core import Store

COUNTING_SCRIPT = """\
import argparse, json, os, sys
p = argparse.ArgumentParser()
p.add_argument("--a", type=int, required=True)
p.add_argument("--b", type=int, default=1)
args = p.parse_args()
with open(os.environ["RUN_LOG"], "a") as f:
    f.write(f"{args.a},{args.b}\\n")
data = "".join(open(n).read() for n in sorted(os.listdir(".")) if n.endswith(".txt"))  # the staged inputs
if os.path.exists(os.environ["RUN_LOG"] + f".fail{args.a}"):
    sys.exit(3)
print(json.dumps({"printed": args.a * 100 + args.b}))
with open("metrics.json", "w") as f:
    json.dump({"y": args.a * args.b, "data": data}, f)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    code = tmp_path / "project"
    code.mkdir()
    (code / "task.py").write_text(COUNTING_SCRIPT)
    return code


def write_spec(code: Path, grid: str, *, log: Path, extra: str = "") -> Path:
    spec = code / "sweep.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: counted
        script: task.py
        params: {{grid: {grid}}}
        env: {{RUN_LOG: "{log}"}}
        """) + extra)
    return spec


def executions(log: Path) -> list[str]:
    lines = log.read_text().splitlines() if log.exists() else []
    log.write_text("")
    return sorted(lines)


def runs_in_order(store: Path) -> list[str]:
    """The store's run ids, oldest first (runs started in the same second have ids in no particular order)."""
    opened = Store.open(store)
    return sorted(opened.run_ids(), key=lambda r: opened.run_info(r)["created_ts"])


def run(spec: Path, store: Path, **kwargs: object) -> batchsweep.Run:
    r = batchsweep.run(spec, store=store, progress=False, **kwargs)
    assert r.exit_code in (0, 1)
    return r


def test_a_widened_grid_runs_only_its_new_cells(project: Path, tmp_path: Path) -> None:
    log, store = tmp_path / "executions.log", tmp_path / "store"
    run(write_spec(project, "{a: [1, 2], b: [1, 2]}", log=log), store)
    assert executions(log) == ["1,1", "1,2", "2,1", "2,2"]
    wider = run(write_spec(project, "{a: [1, 2, 3], b: [1, 2]}", log=log), store)
    assert executions(log) == ["3,1", "3,2"]
    df = wider.results()
    assert list(df["status"]) == ["succeeded"] * 6
    assert list(df["y"]) == [1, 2, 2, 4, 3, 6]
    assert df["reused_from"].notna().tolist() == [True] * 4 + [False] * 2


def test_the_same_sweep_twice_runs_nothing_and_says_so(project: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    log, store = tmp_path / "executions.log", tmp_path / "store"
    spec = write_spec(project, "{a: [1, 2, 3]}", log=log)
    assert cli.main(["run", str(spec), "--store", str(store)]) == 0
    executions(log)
    capsys.readouterr()
    assert cli.main(["run", str(spec), "--store", str(store), "--set", "params.grid.a=1,2,3,4"]) == 0
    assert (
        "reused 3 of 4 (from counted-" in (err := capsys.readouterr().err)
        and "); 1 to run: new params" in err
    )
    assert executions(log) == ["4,1"]


def test_no_reuse_runs_every_task(project: Path, tmp_path: Path) -> None:
    log, store = tmp_path / "executions.log", tmp_path / "store"
    spec = write_spec(project, "{a: [1, 2]}", log=log)
    run(spec, store)
    executions(log)
    assert cli.main(["run", str(spec), "--store", str(store), "--no-reuse"]) == 0
    assert executions(log) == ["1,1", "2,1"]


def test_an_input_changed_with_its_size_and_mtime_restored_reruns_its_task(
    project: Path, tmp_path: Path
) -> None:
    log, store = tmp_path / "executions.log", tmp_path / "store"
    data = project / "data"
    data.mkdir()
    for a in (1, 2):
        (data / f"{a}.txt").write_text(f"old{a}")
    spec = write_spec(project, "{a: [1, 2]}", log=log, extra='inputs: ["data/{a}.txt"]\n')
    run(spec, store)
    executions(log)
    target = data / "1.txt"
    st = os.stat(target)
    target.write_text("new1")  # the same size
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(target).st_size == st.st_size and os.stat(target).st_mtime_ns == st.st_mtime_ns
    again = run(spec, store)
    assert executions(log) == ["1,1"]
    assert list(again.results()["data"]) == ["new1", "old2"]


def test_a_new_data_file_for_a_new_param_value_leaves_the_other_tasks_reused(
    project: Path, tmp_path: Path
) -> None:
    log, store = tmp_path / "executions.log", tmp_path / "store"
    data = project / "data"
    data.mkdir()
    (data / "1.txt").write_text("one")
    run(write_spec(project, "{a: [1]}", log=log, extra='inputs: ["data/{a}.txt"]\n'), store)
    executions(log)
    (data / "2.txt").write_text("two")  # inside the code directory, but an input: keyed per task, not as code
    run(write_spec(project, "{a: [1, 2]}", log=log, extra='inputs: ["data/{a}.txt"]\n'), store)
    assert executions(log) == ["2,1"]


def test_a_file_outside_the_code_package_changes_nothing(project: Path, tmp_path: Path) -> None:
    log, store = tmp_path / "executions.log", tmp_path / "store"
    spec = write_spec(project, "{a: [1, 2]}", log=log, extra='code: {exclude: ["notes/*"]}\n')
    (project / "notes").mkdir()
    (project / "notes" / "todo.md").write_text("first")
    (tmp_path / "sibling.txt").write_text("first")
    run(spec, store)
    executions(log)
    (project / "notes" / "todo.md").write_text("second, longer")
    (tmp_path / "sibling.txt").write_text("second, longer")
    run(spec, store)
    assert executions(log) == []


def test_an_unrelated_file_then_a_widened_grid_reuses_every_old_task_and_says_so(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log, store = tmp_path / "executions.log", tmp_path / "store"
    spec = write_spec(project, "{a: [1, 2]}", log=log)
    assert cli.main(["run", str(spec), "--store", str(store)]) == 0
    first = runs_in_order(store)[0]
    executions(log)
    # What lands in a project folder between two runs, none of it code the script runs:
    assert cli.main(["results", first, "--store", str(store), "-o", str(project / "results.csv")]) == 0
    (project / "NOTES.txt").write_text("try a=3 next\n")
    (project / "other.yaml").write_text("name: other\nscript: task.py\nparams: {grid: {a: [9]}}\n")
    (project / "unused.py").write_text("X = 1\n")  # not imported by task.py
    (project / ".task.py.swp").write_bytes(b"vim swap")
    (project / "outputs").mkdir()
    (project / "outputs" / "model.txt").write_text("weights")
    (project / ".ipynb_checkpoints").mkdir()
    (project / ".ipynb_checkpoints" / "task-checkpoint.py").write_text("old")
    capsys.readouterr()
    assert cli.main(["run", str(write_spec(project, "{a: [1, 2, 3]}", log=log)), "--store", str(store)]) == 0
    assert executions(log) == ["3,1"]
    err = capsys.readouterr().err
    assert f"reused 2 of 3 (from {first}); 1 to run: new params" in err
    assert f"reused 2 of 3 (from {first}); 1 ran: new params" in err  # the outcome line
    second = runs_in_order(store)[-1]
    assert cli.main(["status", second, "--store", str(store)]) == 0
    assert f"reuse    reused 2 of 3 (from {first}); 1 ran: new params" in capsys.readouterr().out


def test_an_edited_imported_helper_reruns_every_task_and_the_run_names_it(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log, store = tmp_path / "executions.log", tmp_path / "store"
    (project / "lib").mkdir()
    (project / "lib" / "__init__.py").write_text("")
    (project / "lib" / "helper.py").write_text("SCALE = 1\n")
    (project / "task.py").write_text("from lib.helper import SCALE\n" + COUNTING_SCRIPT)
    spec = write_spec(project, "{a: [1, 2]}", log=log)
    assert cli.main(["run", str(spec), "--store", str(store)]) == 0
    first = runs_in_order(store)[0]
    executions(log)
    (project / "lib" / "helper.py").write_text("SCALE = 2\n")
    capsys.readouterr()
    assert cli.main(["run", str(spec), "--store", str(store)]) == 0
    assert executions(log) == ["1,1", "2,1"]
    assert f"0 reused: lib/helper.py changed since {first}\n" in capsys.readouterr().err
    second = runs_in_order(store)[-1]
    (project / "task.py").write_text("from lib.helper import SCALE  # edited\n" + COUNTING_SCRIPT)
    (project / "lib" / "extra.py").write_text("")
    (project / "lib" / "helper.py").write_text("from . import extra\nSCALE = 3\n")  # a relative import
    assert cli.main(["run", str(spec), "--store", str(store)]) == 0
    assert (f"0 reused: task.py changed since {second} (+2 files: lib/extra.py (new), lib/helper.py)"
            in capsys.readouterr().err)
    assert cli.main(["diff", first, second, "--store", str(store)]) == 0
    assert "  files: lib/helper.py\n" in capsys.readouterr().out


def test_the_reuse_account_shows_a_changed_file_s_control_characters_escaped(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log, store = tmp_path / "executions.log", tmp_path / "store"
    (project / "data").mkdir()
    evil = project / "data" / "\x1b]0;pwned\x07\x1b[2J.cfg"
    evil.write_text("1\n")
    spec = write_spec(project, "{a: [1]}", log=log, extra="code: {files: ['data/*']}\n")
    assert cli.main(["run", str(spec), "--store", str(store)]) == 0
    evil.write_text("2\n")
    capsys.readouterr()
    assert cli.main(["run", str(spec), "--store", str(store)]) == 0
    first, second = runs_in_order(store)
    assert cli.main(["status", second, "--store", str(store)]) == 0
    assert cli.main(["diff", first, second, "--store", str(store)]) == 0
    out, err = capsys.readouterr()
    assert "data/\\x1b]0;pwned\\x07\\x1b[2J.cfg changed since" in err, err
    assert "  files: data/\\x1b]0;pwned\\x07\\x1b[2J.cfg" in out, out
    assert "\x1b" not in out + err and "\x07" not in out + err


def test_code_files_all_counts_the_folder_but_never_what_batchsweep_or_editors_write(
        project: Path, tmp_path: Path) -> None:
    log, store = tmp_path / "executions.log", tmp_path / "store"
    spec = write_spec(project, "{a: [1, 2]}", log=log, extra="code: {files: all}\n")
    (project / "config.txt").write_text("lr=1")
    first = run(spec, store)
    executions(log)
    assert cli.main(["results", first.id, "--store", str(store), "-o", str(project / "results.csv")]) == 0
    (project / "second.yaml").write_text("name: b\nscript: task.py\nparams: {grid: {a: [9]}}\n")
    (project / "task.py~").write_text("backup")
    (project / "runs").mkdir()
    (project / "runs" / "x.txt").write_text("x")
    run(spec, store)
    assert executions(log) == []
    (project / "config.txt").write_text("lr=2")  # not imported, but `code.files: all` counts it
    run(spec, store)
    assert executions(log) == ["1,1", "2,1"]


def test_a_changed_package_version_reruns_the_tasks_and_diff_names_it(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    log, store, site = tmp_path / "executions.log", tmp_path / "store", tmp_path / "site"

    def install(version: str) -> None:  # a real distribution, as pip leaves one: the module and its dist-info
        for old in site.glob("fakepkg-*.dist-info"):
            for f in old.iterdir():
                f.unlink()
            old.rmdir()
        info = site / f"fakepkg-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fakepkg\nVersion: {version}\n")
        (info / "top_level.txt").write_text("fakepkg\n")
        (site / "fakepkg.py").write_text(f"V = {version!r}\n")

    install("1.0")
    monkeypatch.syspath_prepend(str(site))
    (project / "task.py").write_text(
        "try:\n    import fakepkg\nexcept ImportError:\n    pass\n" + COUNTING_SCRIPT
    )
    spec = write_spec(project, "{a: [1, 2]}", log=log)
    first = run(spec, store)
    executions(log)
    again = run(spec, store)
    assert again.info["reused"] == 2
    install("2.0")
    second = run(spec, store)
    assert executions(log) == ["1,1", "2,1"]
    assert second.info["reuse_account"]["missed"] == [[2, f"fakepkg 1.0 → 2.0 since {again.id}"]]
    capsys.readouterr()
    assert cli.main(["diff", first.id, second.id, "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "  packages: fakepkg 1.0 → 2.0\n" in out  # the code's (imported) packages
    assert "  installed: fakepkg 1.0 → 2.0\n" in out  # and the provenance's list of every installed one
    assert second.info["provenance"]["package_versions"]["fakepkg"] == "2.0"


def test_a_store_inside_the_code_directory_is_not_code(project: Path, tmp_path: Path) -> None:
    log = tmp_path / "executions.log"
    spec = write_spec(project, "{a: [1, 2]}", log=log)
    run(spec, project / "results-store")
    executions(log)
    run(spec, project / "results-store")
    assert executions(log) == []


def test_a_failed_task_runs_again_and_the_succeeded_ones_do_not(project: Path, tmp_path: Path) -> None:
    log, store = tmp_path / "executions.log", tmp_path / "store"
    spec = write_spec(project, "{a: [1, 2, 3]}", log=log)
    fail = Path(f"{log}.fail2")
    fail.write_text("")
    first = run(spec, store)
    assert list(first.results()["status"]) == ["succeeded", "failed", "succeeded"]
    executions(log)
    fail.unlink()
    second = run(spec, store)
    assert executions(log) == ["2,1"]
    assert list(second.results()["status"]) == ["succeeded"] * 3


def test_timeout_and_retries_are_not_in_the_key_but_env_is(project: Path, tmp_path: Path) -> None:
    log, store = tmp_path / "executions.log", tmp_path / "store"
    spec = write_spec(project, "{a: [1]}", log=log)
    run(spec, store)
    executions(log)
    run(spec, store, timeout="5m", retries=2)
    assert executions(log) == []
    spec.write_text(spec.read_text().replace("env: {", "env: {MODE: fast, "))
    run(spec, store)
    assert executions(log) == ["1,1"]


def test_a_changed_metrics_rule_rereads_stored_output_and_runs_nothing(project: Path, tmp_path: Path) -> None:
    log, store = tmp_path / "executions.log", tmp_path / "store"
    spec = write_spec(project, "{a: [1, 2]}", log=log)
    run(spec, store)
    executions(log)
    spec.write_text(spec.read_text() + "metrics: {stdout: last}\n")
    again = run(spec, store)
    assert executions(log) == []
    df = again.results()
    assert list(df["printed"]) == [101, 201]
    assert list(df["y"]) == [1, 2]  # a stream rule reads metrics.json too, as a fresh run would
    fresh = run(spec, tmp_path / "fresh-store").results()
    metrics = ["y", "printed"]
    assert df[metrics].to_dict("records") == fresh[metrics].to_dict("records")


def test_a_changed_stdout_pattern_rereads_the_log_and_drops_what_the_old_one_printed(
    project: Path, tmp_path: Path
) -> None:
    log, store = tmp_path / "executions.log", tmp_path / "store"
    spec = write_spec(project, "{a: [1, 2]}", log=log, extra="metrics: {stdout: last}\n")
    run(spec, store)
    executions(log)
    spec.write_text(spec.read_text().replace("{stdout: last}", """{stdout: '"printed": (?P<p>[0-9]+)'}"""))
    df = run(spec, store).results()
    assert executions(log) == []
    assert list(df["p"]) == [101, 201] and list(df["y"]) == [1, 2] and "printed" not in df


def test_reused_results_survive_the_deletion_of_the_run_they_came_from(project: Path, tmp_path: Path) -> None:
    log, store = tmp_path / "executions.log", tmp_path / "store"
    spec = write_spec(project, "{a: [1, 2]}", log=log)
    first = run(spec, store)
    second = run(spec, store)
    first.store.delete_run(first.id)
    df = batchsweep.load_run(second.id, store=store).results(refresh=True)
    assert list(df["y"]) == [1, 2] and list(df["status"]) == ["succeeded"] * 2
    executions(log)
    run(spec, store)  # the second run's copies are in the index too
    assert executions(log) == []


def test_a_sweeps_history_is_one_row_per_task_the_latest_success_winning(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log, store = tmp_path / "executions.log", tmp_path / "store"
    fail = Path(f"{log}.fail2")
    fail.write_text("")
    first = run(write_spec(project, "{a: [1, 2]}", log=log), store)
    second = run(write_spec(project, "{a: [3]}", log=log), store)
    fail.unlink()
    third = run(write_spec(project, "{a: [2, 3]}", log=log), store)  # 2 runs again (it failed), 3 is reused
    df = batchsweep.load_sweep("counted", store=store).results()
    rows = {row["a"]: (row["run"], row["status"], row["y"]) for row in df.to_dict("records")}
    assert rows == {
        1: (first.id, "succeeded", 1),
        2: (third.id, "succeeded", 2),
        3: (second.id, "succeeded", 3),
    }
    capsys.readouterr()
    assert cli.main(["results", "--sweep", "counted", "--store", str(store), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("run,task,code,a,") and len(lines) == 4
    # the table's title names the sweep, not its latest run, whose 2 tasks are not the table's 3
    assert cli.main(["results", "--sweep", "counted", "--store", str(store)]) == 0
    assert capsys.readouterr().out.splitlines()[0].strip() == "sweep counted (3 runs) · 3 tasks"
    assert (
        cli.main(["report", "--sweep", "counted", "--store", str(store), "-o", str(tmp_path / "r.html")]) == 0
    )
    assert (tmp_path / "r.html").stat().st_size > 1000
    assert cli.main(["results", "--sweep", "nope", "--store", str(store)]) == 2
    assert "sweeps there: counted" in capsys.readouterr().err


def test_status_shows_provenance_and_diff_says_what_changed(project: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import subprocess

    log, store = tmp_path / "executions.log", tmp_path / "store"
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=project, check=True)
    spec = write_spec(project, "{a: [1, 2]}", log=log)
    subprocess.run([*git, "add", "."], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "x"], cwd=project, check=True)
    first = run(spec, store)
    prov = first.info["provenance"]
    assert prov["git"]["dirty"] is False and len(prov["git"]["commit"]) == 40
    assert (
        prov["packages"] > 5 and len(prov["packages_sha256"]) == 64 and prov["python"].startswith("CPython")
    )
    (project / "task.py").write_text(COUNTING_SCRIPT.replace("args.a * args.b", "args.a * args.b + 1"))
    second = run(write_spec(project, "{a: [1, 2, 3]}", log=log), store)
    assert (
        second.info["provenance"]["git"]["dirty"] is True and second.info["provenance"]["git"]["diff_sha256"]
    )
    capsys.readouterr()
    assert cli.main(["status", second.id, "--store", str(store)]) == 0
    assert "uncommitted changes" in capsys.readouterr().out
    assert cli.main(["diff", first.id, second.id, "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "code         changed" in out and "1 only in B" in out
    assert "metrics      2 of 2 matched tasks moved" in out and "y 1 -> 2" in out


def test_rerun_replays_a_failed_task_here_with_its_inputs_params_and_env(
    project: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    log, store = tmp_path / "executions.log", tmp_path / "store"
    (project / "data").mkdir()
    (project / "data" / "2.txt").write_text("two")
    (project / "data" / "1.txt").write_text("one")
    spec = write_spec(project, "{a: [1, 2]}", log=log, extra='inputs: ["data/{a}.txt"]\n')
    Path(f"{log}.fail2").write_text("")
    first = run(spec, store)
    executions(log)
    capfd.readouterr()
    assert cli.main(["rerun", first.id, "1", "--dir", str(tmp_path / "replay"), "--store", str(store)]) == 3
    assert executions(log) == ["2,1"]  # it really ran, here
    assert (tmp_path / "replay" / "work" / "2.txt").read_text() == "two"
    err = capfd.readouterr().err
    assert "task 1 exited with code 3" in err and "--a 2" in err
    Path(f"{log}.fail2").unlink()
    assert cli.main(["rerun", first.id, "1", "--dir", str(tmp_path / "replay2"), "--store", str(store)]) == 0
    assert '"printed": 201' in capfd.readouterr().out  # its output on the terminal
    assert (tmp_path / "replay2" / "work" / "metrics.json").exists()


def test_rerun_replays_the_code_a_task_last_ran_unless_asked(project: Path, tmp_path: Path,
                                                             capfd: pytest.CaptureFixture[str]) -> None:
    log, store = tmp_path / "executions.log", tmp_path / "store"
    Path(f"{log}.fail2").write_text("")  # the first code fails for a=2, and stays failing
    first = run(write_spec(project, "{a: [1, 2]}", log=log), store)
    assert first.exit_code == 1
    fixed = COUNTING_SCRIPT.replace("sys.exit(3)", "pass").replace("args.a * 100", "args.a * 100 + 1000")
    (project / "task.py").write_text(fixed)
    assert cli.main(["resume", first.id, "--store", str(store)]) == 0  # task 1 runs the fixed code
    (project / "task.py").write_text(fixed.replace("+ 1000", "+ 5000"))  # the code moves on

    def rerun(task: int, *code: str) -> tuple[int, str]:
        capfd.readouterr()
        status = cli.main(
            [
                "rerun",
                first.id[-4:],
                str(task),
                *code,
                "--dir",
                str(tmp_path / f"r{len(os.listdir(tmp_path))}"),
                "--store",
                str(store),
            ]
        )
        return status, capfd.readouterr().out.strip()

    assert rerun(1) == (0, '{"printed": 1201}')  # the fixed code it last ran
    assert rerun(1, "--code", "original") == (3, "")  # the code the run started with
    assert rerun(1, "--code", "current") == (0, '{"printed": 5201}')
    assert rerun(0) == (0, '{"printed": 101}')  # task 0 never ran again: the run's first code


def test_rerun_shell_starts_a_shell_in_the_task_directory_with_its_environment(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log, store = tmp_path / "executions.log", tmp_path / "store"
    first = run(write_spec(project, "{a: [5]}", log=log), store)
    fake_shell = tmp_path / "fake-shell"
    fake_shell.write_text(
        f'#!/bin/sh\npwd > {tmp_path}/shell.txt\necho "$BATCHSWEEP_PARAMS $RUN_LOG" >> {tmp_path}/shell.txt\n'
    )
    fake_shell.chmod(0o755)
    monkeypatch.setenv("SHELL", str(fake_shell))
    assert (
        cli.main(["rerun", first.id, "0", "--shell", "--dir", str(tmp_path / "d"), "--store", str(store)])
        == 0
    )
    where, env = (tmp_path / "shell.txt").read_text().splitlines()
    assert where == str(tmp_path / "d" / "work") and '"a": 5' in env and env.endswith(str(log))


def test_runs_rm_is_a_dry_run_until_yes_and_leaves_the_reusing_run_complete(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log, store = tmp_path / "executions.log", tmp_path / "store"
    first = run(write_spec(project, "{a: [1, 2]}", log=log), store)
    second = run(write_spec(project, "{a: [1, 2, 3]}", log=log), store)
    capsys.readouterr()
    assert cli.main(["runs", "rm", first.id, "--store", str(store)]) == 0
    assert "dry run: nothing was deleted" in capsys.readouterr().out
    assert (store / "runs" / first.id / "run.json").exists()
    assert cli.main(["runs", "rm", first.id, "--yes", "--store", str(store)]) == 0
    assert not (store / "runs" / first.id).exists()
    assert not [p for p in (store / "index").rglob("*") if first.id.encode() in p.read_bytes()]
    df = batchsweep.load_run(second.id, store=store).results(refresh=True)
    assert list(df["status"]) == ["succeeded"] * 3 and list(df["y"]) == [1, 2, 3]
    executions(log)
    run(write_spec(project, "{a: [1, 2, 3]}", log=log), store)
    assert executions(log) == []  # the remaining run still provides every result


def test_gc_keeps_the_last_runs_of_each_sweep_complete(project: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    log, store = tmp_path / "executions.log", tmp_path / "store"
    runs_made = [
        run(write_spec(project, f"{{a: {list(range(1, n + 1))}}}", log=log), store) for n in (1, 2, 3)
    ]
    capsys.readouterr()
    assert cli.main(["gc", "--keep-last", "1", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert out.count("would delete run") == 2 and all(r.id in out for r in runs_made[:2])
    assert cli.main(["gc", "--keep-last", "1", "--yes", "--store", str(store)]) == 0
    assert sorted(p.name for p in (store / "runs").iterdir()) == [runs_made[2].id]
    df = batchsweep.load_run(runs_made[2].id, store=store).results(refresh=True)
    assert list(df["status"]) == ["succeeded"] * 3 and list(df["y"]) == [1, 2, 3]
    assert cli.main(["gc", "--older-than", "30d", "--store", str(store)]) == 0
    assert "nothing to delete" in capsys.readouterr().out


def report_rows(html: str) -> dict[str, tuple[str, str]]:
    """The all-tasks table of a report: task -> (its reused-from cell's source, its key cell's full key)."""
    import re

    table = html[html.index('id="tasks"'):html.index("</table>", html.index('id="tasks"'))]
    out = {}
    for task, body in re.findall(r'<tr data-task="(\d+)"[^>]*>(.*?)</tr>', table):
        src = re.search(r'<td class="src" data-v="([^"]*)"', body)
        key = re.search(r'<td class="key" data-v="([^"]*)"', body)
        out[task] = (src.group(1) if src else "", key.group(1) if key else "")
    return out


def provenance_rows(html: str) -> dict[str, tuple[str, str]]:
    """The report's provenance table: run id -> (role, rows computed there)."""
    import re

    found = re.findall(r'<tr id="prov-([^"]+)" data-run="[^"]+"><td><code>[^<]+</code></td><td>([^<]*)</td>'
                       r"<td>(\d+)</td>", html)
    return {rid: (role, n) for rid, role, n in found}


def test_the_report_names_where_each_reused_row_came_from_and_each_runs_provenance(
        project: Path, tmp_path: Path) -> None:
    import re

    log, store = tmp_path / "executions.log", tmp_path / "store"
    first = run(write_spec(project, "{a: [1, 2]}", log=log), store)
    wider = run(write_spec(project, "{a: [1, 2, 3]}", log=log), store)
    assert executions(log) == ["1,1", "2,1", "3,1"]
    wider.report(tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    keys = {str(t.index): t.cache_key for t in wider.tasks()}
    assert report_rows(html) == {"0": (f"{first.id}/0", keys["0"]), "1": (f"{first.id}/1", keys["1"]),
                                 "2": ("", keys["2"])}
    assert provenance_rows(html) == {wider.id: ("this run", "1"), first.id: ("reused rows", "2")}
    for r in (first, wider):
        row = re.search(rf'<tr id="prov-{r.id}".*?</tr>', html).group(0)
        assert f'title="{r.info["code_hash"]}"' in row and r.info["provenance"]["packages_sha256"][:10] in row
        assert r.info["provenance"]["python"] in row and f"RUN_LOG={log}" in row
    assert re.search(r'<div class="v">2</div><div class="k">reused, not run</div>', html)
    # the source deleted: the copies stay, and the report says where they came from is gone
    first.store.delete_run(first.id)
    wider.report(tmp_path / "r2.html")
    html = (tmp_path / "r2.html").read_text()
    assert report_rows(html)["0"][0] == f"{first.id}/0"
    assert re.search(rf'<tr id="prov-{first.id}".*?not in the store any more', html)


def test_a_sweep_report_names_the_run_and_task_each_row_was_computed_in(
    project: Path, tmp_path: Path
) -> None:

    log, store = tmp_path / "executions.log", tmp_path / "store"
    first = run(write_spec(project, "{a: [1, 2]}", log=log), store)
    second = run(write_spec(project, "{a: [3, 2]}", log=log), store)  # 2 is reused: task 1 here, task 1 there
    third = run(write_spec(project, "{a: [4, 1]}", log=log), store)  # 1 is reused: task 1 here, task 0 there
    df = batchsweep.load_sweep("counted", store=store).results()
    where = {row["a"]: (row["run"], row["task"]) for row in df.to_dict("records")}
    assert where == {1: (first.id, 0), 2: (first.id, 1), 3: (second.id, 0), 4: (third.id, 0)}
    batchsweep.load_sweep("counted", store=store).report(tmp_path / "s.html")
    html = (tmp_path / "s.html").read_text()
    assert provenance_rows(html) == {third.id: ("this run", "1"), first.id: ("a run of the sweep", "2"),
                                     second.id: ("a run of the sweep", "1")}


def test_a_local_run_keeps_its_code_package_once_and_rerun_replays_the_code_as_it_was(
        project: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    import hashlib
    import json
    import tarfile

    log = tmp_path / "executions.log"
    store = project / "results-store"  # a store inside the code directory is never packed
    (project / ".gitignore").write_text("ignored.txt\n")
    (project / "ignored.txt").write_text("x")
    (project / ".env").write_text("TOKEN=secret")
    (project / "notes").mkdir()
    (project / "notes" / "todo.md").write_text("x")
    (tmp_path / "outside.txt").write_text("x")
    (project / "outside-link").symlink_to(tmp_path / "outside.txt")
    (project / "helper.py").write_text("X = 1\n")
    spec = write_spec(project, "{a: [1, 2]}", log=log, extra='code: {exclude: ["notes/*"]}\n')
    first = run(spec, store)
    again = run(spec, store, reuse=False)
    packages = sorted((store / "code").iterdir())
    assert [p.name for p in packages] == [f"{first.info['code_sha256']}.tar.gz"]  # one package for both runs
    assert again.info["code_sha256"] == first.info["code_sha256"]
    assert hashlib.sha256(packages[0].read_bytes()).hexdigest() == first.info["code_sha256"]
    with tarfile.open(packages[0]) as tar:
        assert sorted(tar.getnames()) == [".gitignore", "helper.py", "sweep.yaml", "task.py"]
    # the code changes after the run: a replay of the run runs the code it ran
    (project / "task.py").write_text(COUNTING_SCRIPT.replace("args.a * args.b", "args.a * args.b + 1000"))
    executions(log)
    capfd.readouterr()
    assert cli.main(["rerun", first.id, "1", "--dir", str(tmp_path / "old"), "--store", str(store)]) == 0
    assert json.loads((tmp_path / "old" / "work" / "metrics.json").read_text())["y"] == 2
    assert executions(log) == ["2,1"]
    assert f"the run's package {first.info['code_sha256'][:12]}" in capfd.readouterr().err
    # a run from before packages were kept (no code_sha256) replays the directory as it is now, and says so
    info = json.loads((store / "runs" / first.id / "run.json").read_text())
    del info["code_sha256"]
    (store / "runs" / first.id / "run.json").write_text(json.dumps(info))
    old = batchsweep.load_run(first.id, store=store)
    assert cli.main(["rerun", old.id, "1", "--dir", str(tmp_path / "now"), "--store", str(store)]) == 0
    assert json.loads((tmp_path / "now" / "work" / "metrics.json").read_text())["y"] == 1002
    err = capfd.readouterr().err
    assert "as it is now, not as it was: the run kept no code package" in err and "has changed since" in err


def test_gc_deletes_a_local_code_package_only_when_no_remaining_run_uses_it(
    project: Path, tmp_path: Path
) -> None:
    log, store = tmp_path / "executions.log", tmp_path / "store"
    spec = write_spec(project, "{a: [1]}", log=log)
    first = run(spec, store)
    shared = run(spec, store, reuse=False)  # the same code: the same package
    (project / "helper.py").write_text("X = 2\n")
    last = run(spec, store)
    packages = {p.name for p in (store / "code").iterdir()}
    assert packages == {f"{first.info['code_sha256']}.tar.gz", f"{last.info['code_sha256']}.tar.gz"}
    assert cli.main(["runs", "rm", first.id, "--yes", "--store", str(store)]) == 0
    assert {p.name for p in (store / "code").iterdir()} == packages  # `shared` still uses it
    assert cli.main(["runs", "rm", shared.id, "--yes", "--store", str(store)]) == 0
    assert {p.name for p in (store / "code").iterdir()} == {f"{last.info['code_sha256']}.tar.gz"}


def test_resume_reuses_a_task_that_succeeded_in_another_run_since(project: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    log, store = tmp_path / "executions.log", tmp_path / "store"
    Path(f"{log}.fail2").write_text("")
    first = run(write_spec(project, "{a: [1, 2]}", log=log), store)
    assert list(first.results()["status"]) == ["succeeded", "failed"] and first.info["reuse"] is True
    Path(f"{log}.fail2").unlink()
    other = run(write_spec(project, "{a: [2, 3]}", log=log), store)  # a=2 succeeds there
    executions(log)
    capsys.readouterr()
    assert cli.main(["resume", first.id, "--store", str(store)]) == 0
    assert executions(log) == []  # not run again: taken from the other run
    assert "resume: reused 1 of 1 (from counted-" in capsys.readouterr().err
    resumed = batchsweep.load_run(first.id, store=store)
    assert resumed.store.read_status(first.id, 1).reused_from == f"{other.id}/0"
    df = resumed.results(refresh=True)
    assert list(df["status"]) == ["succeeded"] * 2 and list(df["y"]) == [1, 2]


def test_resume_of_a_run_started_without_reuse_runs_its_tasks(project: Path, tmp_path: Path) -> None:
    log, store = tmp_path / "executions.log", tmp_path / "store"
    Path(f"{log}.fail2").write_text("")
    first = run(write_spec(project, "{a: [1, 2]}", log=log), store, reuse=False)
    assert first.info["reuse"] is False
    Path(f"{log}.fail2").unlink()
    run(write_spec(project, "{a: [2]}", log=log), store)
    executions(log)
    assert cli.main(["resume", first.id, "--store", str(store)]) == 0
    assert executions(log) == ["2,1"]
    assert batchsweep.load_run(first.id, store=store).store.read_status(first.id, 1).reused_from is None


def test_a_resume_after_the_script_was_fixed_keys_the_rerun_tasks_by_the_fixed_code(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The usual resume: a task fails, the script is fixed, the run resumed. The fixed task's result belongs
    to the fixed code: a later run of the fixed code reuses it, a run of the code as it was does not."""
    log, store = tmp_path / "executions.log", tmp_path / "store"
    buggy = COUNTING_SCRIPT.replace('if os.path.exists(os.environ["RUN_LOG"] + f".fail{args.a}"):',
                                    "if args.a == 2:  # the bug")
    (project / "task.py").write_text(buggy)
    spec = write_spec(project, "{a: [1, 2]}", log=log)
    first = run(spec, store)
    assert list(first.results()["status"]) == ["succeeded", "failed"]
    (project / "task.py").write_text(COUNTING_SCRIPT)  # fixed
    executions(log)
    capsys.readouterr()
    assert cli.main(["resume", first.id, "--store", str(store)]) == 0
    assert executions(log) == ["2,1"]
    err = capsys.readouterr().err
    assert (
        f"has changed since run {first.id} started" in err and "the resumed task runs it as it is now" in err
    )
    resumed = batchsweep.load_run(first.id, store=store)
    fixed_keys = {t.index: t.cache_key for t in batchsweep.plan(spec).tasks}
    assert resumed.tasks()[1].cache_key == fixed_keys[1]  # keyed by the code it ran
    assert resumed.tasks()[0].cache_key != fixed_keys[0]  # task 0 ran the buggy code, and keeps its key
    again = run(spec, store)  # the fixed code: only the task that ran it is reused
    assert executions(log) == ["1,1"]
    assert again.store.read_status(again.id, 1).reused_from == f"{first.id}/1"
    (project / "task.py").write_text(buggy)
    old = run(spec, store)  # the buggy code: its own success of a=1 is reused, the fixed a=2 is not
    assert executions(log) == ["2,1"]
    assert list(old.results()["status"]) == ["succeeded", "failed"]


def test_a_resume_whose_script_is_gone_exits_2_with_one_line_and_changes_nothing(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log, store = tmp_path / "executions.log", tmp_path / "store"
    Path(f"{log}.fail2").write_text("")
    first = run(write_spec(project, "{a: [1, 2]}", log=log), store)
    before = {p: p.read_bytes() for p in (store / "runs" / first.id).rglob("*") if p.is_file()}
    (project / "task.py").rename(tmp_path / "moved.py")
    capsys.readouterr()
    assert cli.main(["resume", first.id, "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"its script {project / 'task.py'} is not there any more" in err
    after = {p: p.read_bytes() for p in (store / "runs" / first.id).rglob("*") if p.is_file()}
    assert after == before


def test_a_resume_with_the_code_unchanged_keeps_every_key_and_says_nothing(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log, store = tmp_path / "executions.log", tmp_path / "store"
    Path(f"{log}.fail2").write_text("")
    first = run(write_spec(project, "{a: [1, 2]}", log=log), store)
    tasks_file = store / first.store.tasks_file_key(first.id)
    before = tasks_file.read_bytes()
    Path(f"{log}.fail2").unlink()
    capsys.readouterr()
    assert cli.main(["resume", first.id, "--store", str(store)]) == 0
    assert "changed" not in capsys.readouterr().err
    assert tasks_file.read_bytes() == before


def test_tasks_that_start_after_the_script_was_edited_mid_run_are_not_recorded_for_reuse(
        project: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A user edits the script while a long sweep runs: the tasks that start later run the edited script, so
    their results must not be offered for reuse under the key of the script as it was."""
    log, store = tmp_path / "executions.log", tmp_path / "store"
    # past the watch's pace (1 s, or 20x its walk under load)
    original = (
        COUNTING_SCRIPT
        + "if args.a == 1:\n    import time\n    open(__file__, 'a').write('# edited\\n')\n    "
        "time.sleep(3)\n"
    )
    (project / "task.py").write_text(original)
    spec = write_spec(project, "{a: [1, 2, 3]}", log=log, extra="max_parallel: 1\n")
    with caplog.at_level("WARNING", logger="batchsweep"):
        first = run(spec, store)
    assert list(first.results()["status"]) == ["succeeded"] * 3
    assert any("changed while the run runs" in r.getMessage() for r in caplog.records)
    executions(log)
    (project / "task.py").write_text(original)  # the script as it was when the run started
    again = run(spec, store)
    assert executions(log) == ["2,1", "3,1"]  # only a=1 ran the original script
    assert again.store.read_status(again.id, 0).reused_from == f"{first.id}/0"


def search_block(trials: int) -> str:
    return (f'search: {{sampler: random, trials: {trials}, batch: 2, metric: y, direction: maximize, '
            f'space: {{a: "choice(1, 2, 3)"}}}}\n')


def test_a_search_tells_optuna_stored_results_without_running_them(project: Path, tmp_path: Path) -> None:
    optuna = pytest.importorskip("optuna")
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from batchsweep.planning import search

    log, store = tmp_path / "executions.log", tmp_path / "store"
    spec = write_spec(project, "{a: [1, 2, 3]}", log=log)
    run(spec, store)  # a grid over the whole space: every trial's params have a result
    assert executions(log) == ["1,1", "2,1", "3,1"]
    spec.write_text(spec.read_text().replace("params: {grid: {a: [1, 2, 3]}}\n", "") + search_block(6))
    found = run(spec, store)
    assert executions(log) == []  # six trials, none run
    df = found.results()
    assert len(df) == 6 and list(df["status"]) == ["succeeded"] * 6 and df["reused_from"].notna().all()
    assert list(df["y"]) == list(df["a"])  # each trial's stored y (= a * 1) is its own
    path = found.store.local_path(found.store.run_key(found.id, search.JOURNAL))
    study = optuna.load_study(study_name=found.id, storage=JournalStorage(JournalFileBackend(str(path))))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 6
    assert [t.value for t in study.trials] == [float(t.params["a"]) for t in study.trials]
    assert study.best_value == 3.0
    # without reuse every trial runs
    run(spec, store, reuse=False)
    assert len(executions(log)) == 6


# -- the index: a few append-only files, not a file per task -------------------------------------------
KEY = "ab" + "0" * 62


def key(n: int) -> str:
    return f"ab{n:062x}"


def test_a_run_leaves_one_index_file_per_key_prefix_and_the_next_run_reuses_it(
    project: Path, tmp_path: Path
) -> None:
    log, store = tmp_path / "executions.log", tmp_path / "store"
    first = run(write_spec(project, "{a: [1, 2, 3, 4, 5, 6, 7, 8]}", log=log), store)
    files = [p for p in (store / "index").rglob("*") if not p.name.startswith(".")]
    assert files and all(p.is_file() and p.suffix == ".tsv" and len(p.stem) == 2 for p in files)
    assert len(files) <= 8
    keys = {t.cache_key: t.index for t in first.tasks()}
    entries = Store.open(store).index_entries(keys)
    assert entries == {k: [(first.id, i)] for k, i in keys.items()}
    executions(log)
    run(write_spec(project, "{a: [1, 2, 3, 4, 5, 6, 7, 8, 9]}", log=log), store)
    assert executions(log) == ["9,1"]


def _writer(root: str, run_id: str, n: int) -> None:
    store = Store.open(root)
    for i in range(n):
        store.record_success(key(i), run_id, i)


def _forgetter(root: str, n: int) -> None:
    store = Store.open(root)
    for _ in range(n):
        store.forget_successes("gone", [(KEY, 0)])


def test_runs_writing_at_once_never_lose_an_entry_even_while_the_file_is_rewritten(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    store.record_successes([(key(i), "gone", i) for i in range(50)])
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), f"run{w}", 300)) for w in range(3)]
    procs.append(ctx.Process(target=_forgetter, args=(str(tmp_path), 40)))  # rewrites the same file meanwhile
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    found = store.index_entries(key(i) for i in range(300))
    assert all(sorted(found[key(i)]) == [(f"run{w}", i) for w in range(3)] for i in range(300))
    assert [p.name for p in (tmp_path / "index").iterdir()] == ["ab.tsv"]


def test_a_torn_or_altered_line_is_never_read_as_a_task(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    store.record_success(key(1), "r", 1)
    path = tmp_path / "index" / "ab.tsv"
    altered = indexfile.line(key(2), "r", 23).replace(b"\t23\t", b"\t2\t")  # as if a digit were lost
    with open(path, "ab") as f:
        f.write(altered + indexfile.line(key(3), "r", 3)[:-12])  # ... and a writer died mid-line
    assert store.index_entries([key(1), key(2), key(3)]) == {key(1): [("r", 1)]}
    store.record_success(key(4), "r", 4)  # the next writer cuts the torn line off
    assert path.read_bytes().endswith(b"\n" + indexfile.line(key(4), "r", 4))
    assert store.index_entries([key(1), key(2), key(3), key(4)]) == {key(1): [("r", 1)], key(4): [("r", 4)]}


def test_an_old_stores_per_task_entries_are_read_and_moved_into_the_index_file(
    project: Path, tmp_path: Path
) -> None:
    log, store_dir = tmp_path / "executions.log", tmp_path / "store"
    first = run(write_spec(project, "{a: [1, 2, 3]}", log=log), store_dir)
    store = Store.open(store_dir)
    for path in (store_dir / "index").iterdir():  # the run as a store written before the index files has it
        path.unlink()
    for t in first.tasks():
        old = store.local_path(store.index_key(t.cache_key, first.id, t.index))
        old.parent.mkdir(parents=True)
        old.touch()
    executions(log)
    run(write_spec(project, "{a: [1, 2, 3, 4]}", log=log), store_dir)
    assert executions(log) == ["4,1"]
    assert all(p.is_file() and p.suffix == ".tsv" for p in (store_dir / "index").iterdir())
    keys = {t.cache_key: t.index for t in first.tasks()}
    found = store.index_entries(keys)
    assert all((first.id, i) in found[k] for k, i in keys.items())  # beside the second run's reused copies


def test_deleting_a_run_drops_its_entries_and_keeps_the_others(project: Path, tmp_path: Path) -> None:
    log, store_dir = tmp_path / "executions.log", tmp_path / "store"
    first = run(write_spec(project, "{a: [1, 2]}", log=log), store_dir)
    second = run(write_spec(project, "{a: [1, 2]}", log=log), store_dir, reuse=False)
    assert cli.main(["runs", "rm", first.id, "--yes", "--store", str(store_dir)]) == 0
    keys = {t.cache_key: t.index for t in second.tasks()}
    assert Store.open(store_dir).index_entries(keys) == {k: [(second.id, i)] for k, i in keys.items()}
    assert not any(first.id.encode() in p.read_bytes() for p in (store_dir / "index").iterdir())
    assert os.listdir(store_dir / "index")


def test_the_code_watch_looks_once_a_second_and_less_often_at_a_tree_slow_to_walk(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from helpers import FakeClock

    from batchsweep.planning import codeidentity, keys
    from batchsweep.spec.reader import validate

    spec = validate({"name": "w", "script": "task.py", "params": {"grid": {"a": [1]}}}, source="test",
                    base_dir=project)
    walks: list[float] = []
    real_hash = keys.code_hash

    class SlowWalk(FakeClock):
        walk_s = 0.0

    clock = SlowWalk()
    watch = keys.CodeWatch(spec, real_hash(spec), clock=clock)

    def counted(*args: object, **kwargs: object) -> str:
        walks.append(clock.now)
        clock.now += clock.walk_s  # the walk itself takes this long
        return real_hash(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(codeidentity, "code_hash", counted)  # what CodeWatch calls
    assert watch.fresh() and len(walks) == 1  # the first task looks
    clock.sleep(0.5)
    assert watch.fresh() and len(walks) == 1  # within the second: not again
    clock.sleep(0.6)
    assert watch.fresh() and len(walks) == 2
    clock.walk_s = 2.0  # now a walk takes 2 s: the next one waits 40 s
    clock.sleep(1.0)
    assert watch.fresh() and len(walks) == 3
    clock.sleep(30)
    assert watch.fresh() and len(walks) == 3
    clock.sleep(11)
    (project / "task.py").write_text(COUNTING_SCRIPT + "# edited\n")
    assert not watch.fresh() and len(walks) == 4 and watch.changed_to is not None
    (project / "task.py").write_text(COUNTING_SCRIPT)  # undone: the change is final
    clock.sleep(100)
    assert not watch.fresh() and len(walks) == 4


def test_a_sweeps_history_names_the_code_each_row_ran_and_can_keep_only_the_newest(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log, store = tmp_path / "executions.log", tmp_path / "store"
    spec = write_spec(project, "{a: [1, 2]}", log=log)
    first = run(spec, store)
    (project / "task.py").write_text(COUNTING_SCRIPT.replace("args.a * args.b", "args.a * args.b + 10"))
    second = run(write_spec(project, "{a: [2, 3]}", log=log), store)
    third = run(write_spec(project, "{a: [3, 4]}", log=log), store)  # the same code as the second
    df = batchsweep.load_sweep("counted", store=store).results()
    codes = dict(zip(df["run"] + "/" + df["task"].astype(str), df["code"]))
    old, new = (
        f"{first.info['code_hash'][:10]} ({first.id})",
        f"{second.info['code_hash'][:10]} ({second.id})",
    )
    assert codes == {f"{first.id}/0": old, f"{first.id}/1": old, f"{second.id}/0": new, f"{second.id}/1": new,
                     f"{third.id}/1": new}
    assert (
        cli.main(["results", "--sweep", "counted", "--latest-code", "--store", str(store), "--format", "csv"])
        == 0
    )
    rows = capsys.readouterr().out.strip().splitlines()[1:]
    assert len(rows) == 3 and all(new in row for row in rows)


def test_git_provenance_is_dirty_only_when_tracked_files_differ_and_names_untracked_code(
        project: Path, tmp_path: Path) -> None:
    import subprocess

    log = tmp_path / "executions.log"
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=project, check=True)
    spec = write_spec(project, "{a: [1, 2]}", log=log)
    subprocess.run([*git, "add", "."], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "x"], cwd=project, check=True)
    first = run(spec, project / ".batchsweep")  # the store, untracked, inside the repository
    assert cli.main(["results", first.id, "--store", str(project / ".batchsweep"), "-o",
                     str(project / "results.csv")]) == 0
    second = run(spec, project / ".batchsweep")
    assert second.info["provenance"]["git"] == {
        "commit": first.info["provenance"]["git"]["commit"],
        "dirty": False,
        "untracked_code": [],
    }
    (project / "helper.py").write_text("X = 1\n")  # imported, never committed
    (project / "task.py").write_text("import helper\n" + COUNTING_SCRIPT)
    third = run(spec, project / ".batchsweep").info["provenance"]
    assert third["git"]["dirty"] is True and third["git"]["untracked_code"] == ["helper.py"]
    assert third["host"] and third["package_versions"]["pandas"]
    df = batchsweep.load_run(second.id, store=project / ".batchsweep").results()
    assert set(df["host"]) == {third["host"]}


def test_a_run_keyed_by_an_older_batchsweep_stays_readable_and_the_account_says_why_nothing_is_reused(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    log, store = tmp_path / "executions.log", tmp_path / "store"
    spec = write_spec(project, "{a: [1, 2]}", log=log)
    old = run(spec, store)
    path = store / "runs" / old.id / "run.json"
    info = json.loads(path.read_text())
    for field in ("code_identity", "reuse_account"):  # what a run.json of the version before holds not
        info.pop(field)
    info["key_common"], info["code_hash"] = "0" * 64, "1" * 64  # a v1 tree hash
    path.write_text(json.dumps(info))
    (store / "index").rename(tmp_path / "old-index")  # its keys were v1 keys: never the ones asked for now
    executions(log)
    capsys.readouterr()
    assert cli.main(["run", str(spec), "--store", str(store)]) == 0
    assert executions(log) == ["1,1", "2,1"]
    assert f"0 reused: {old.id} was keyed by an older batchsweep" in capsys.readouterr().err
    new = runs_in_order(store)[-1]
    for command in (["status", old.id], ["results", "--sweep", "counted"], ["diff", old.id, new]):
        assert cli.main([*command, "--store", str(store)]) == 0
    assert "files: not recorded by the older run" in capsys.readouterr().out


def test_a_file_beside_the_script_is_hashed_as_it_was_when_it_was_looked_at(tmp_path):
    """A log still being written beside the script grows while the code is hashed: its hash is that of the
    bytes it had when stat'ed (what its cache stamp says), never a read that chases the file as it grows."""
    import hashlib

    from batchsweep.planning.filehash import HashCache

    log = tmp_path / "train.log"
    log.write_bytes(b"epoch 1\n" * 200_000)
    seen = os.stat(log)
    with open(log, "ab") as f:
        f.write(b"epoch 2\n" * 1000)
    digest = HashCache(tmp_path / "cache.json").file(log, seen)
    assert digest == hashlib.sha256(b"epoch 1\n" * 200_000).hexdigest()


def test_status_and_report_count_no_task_time_for_reused_tasks(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import re

    from batchsweep.text import duration

    log, store = tmp_path / "executions.log", tmp_path / "store"
    run(write_spec(project, "{a: [1, 2]}", log=log), store)
    again = run(write_spec(project, "{a: [1, 2]}", log=log), store)
    wider = run(write_spec(project, "{a: [1, 2, 3]}", log=log), store)
    assert executions(log) == ["1,1", "2,1", "3,1"]
    capsys.readouterr()
    assert cli.main(["status", again.id, "--store", str(store)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("compute")]
    assert lines == ["compute  none: all 2 tasks were reused from earlier runs"]
    assert cli.main(["status", wider.id, "--store", str(store)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("compute")]
    own = wider.results().set_index("a").loc[3, "duration_s"]
    assert lines == [f"compute  {duration(own)} of task time (sum of task durations of the 1 run here; "
                     f"2 reused not counted), longest {duration(own)}"]
    for r, shown in ((again, "–"), (wider, duration(own))):
        r.report(tmp_path / "r.html")
        card = re.search(r'<div class="v">([^<]*)</div><div class="k">summed task time</div>',
                         (tmp_path / "r.html").read_text())
        assert card is not None and card.group(1) == shown
