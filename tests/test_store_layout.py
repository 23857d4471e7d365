"""The store's layout (docs/design.md §4) has one owner: every path has a named method in store/layout.py, the
keys are the documented ones (existing runs keep reading), and no other module of the package spells a store
file name."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import batchsweep
from batchsweep.store.core import Store, TaskDir

PACKAGE = Path(batchsweep.__file__).parent

# The names of the files and directories the store owns (§4). A literal one of these anywhere in the package
# but store.py is a path built by hand.
FILE_NAMES = {
    "run.json",
    "tasks.jsonl",
    "runner.json",
    "cancel.json",
    "engine.json",
    "results.parquet",
    "status.json",
    "metrics.json",
    "metrics.jsonl",
    "stdout.log",
    "stderr.log",
    "study.journal",
    "params.json",
}
DIR_NAMES = {"runs", "tasks", "submissions", "packs", "outputs", "code", "inputs", "index", "sweeps"}
_DIRS = "|".join(sorted(DIR_NAMES))
_FILES = "|".join(re.escape(n) for n in sorted(FILE_NAMES))
PATH_LIKE = re.compile(rf"(^|/)({_DIRS})/|(^|/)({_FILES})$")
FSTRING_SUFFIX = re.compile(r"^\.(log|json|jsonl|parquet)$")  # f"{stream}.log", f"{n}.json"
# Not store paths: the files a script writes in its working directory, whose name the default `metrics:` rule
# reads (the worker moves it into the store under TaskDir.METRICS), and where log_metrics(step=...) appends
# when the script runs outside batchsweep.
ALLOWED = {("metrics.py", "metrics.json"), ("metrics.py", "metrics.jsonl")}


def test_every_path_is_the_documented_key():
    s = Store
    assert s.run_prefix("r") == "runs/r"
    assert s.run_record_key("r") == "runs/r/run.json"
    assert s.tasks_file_key("r") == "runs/r/tasks.jsonl"
    assert s.runner_key("r") == "runs/r/runner.json"
    assert s.cancel_key("r") == "runs/r/cancel.json"
    assert s.engine_record_key("r") == "runs/r/engine.json"
    assert s.submission_key("r", 3) == "runs/r/submissions/3.json"
    assert s.results_cache_key("r") == "runs/r/results.parquet"
    assert s.search_journal_key("r") == "runs/r/study.journal"
    assert s.tasks_prefix("r") == "runs/r/tasks"
    assert s.task_prefix("r", 7) == "runs/r/tasks/7"
    assert s.task_status_key("r", 7) == "runs/r/tasks/7/status.json"
    assert s.task_metrics_key("r", 7) == "runs/r/tasks/7/metrics.json"
    assert s.task_series_key("r", 7) == "runs/r/tasks/7/metrics.jsonl"
    assert s.task_log_key("r", 7) == "runs/r/tasks/7/stdout.log"
    assert s.task_log_key("r", 7, stderr=True) == "runs/r/tasks/7/stderr.log"
    assert s.task_output_key("r", 7, "plots/a.png") == "runs/r/tasks/7/outputs/plots/a.png"
    assert s.task_file_key("r", 7, TaskDir.SERIES) == "runs/r/tasks/7/metrics.jsonl"
    assert Store.open("unused").pack_key("r", "s0000-c000001-a1") == "runs/r/packs/s0000-c000001-a1.jsonl"
    assert s.code_key("ab") == "code/ab.tar.gz"
    assert s.input_key("ab", "x.csv") == "inputs/ab/x.csv"
    assert s.sweep_stats_key("s") == "sweeps/s.json"
    assert s.index_key("abcd", "r", 2) == "index/ab/abcd/r~2"
    root = Path("/x")
    d = TaskDir(root)
    assert (d.status, d.metrics, d.series, d.log(), d.log(stderr=True), d.outputs, d.work, d.params) == (
        root / "status.json", root / "metrics.json", root / "metrics.jsonl", root / "stdout.log",
        root / "stderr.log", root / "outputs", root / "work", root / "params.json")


@pytest.mark.parametrize("name", ["outputs", "work", "status.json/x", "../run.json", "notes.txt"])
def test_a_task_file_key_is_only_for_the_task_files(name):
    with pytest.raises(ValueError):
        Store.task_file_key("r", 0, name)


@pytest.mark.parametrize("name", ["", "a/b", ".hidden"])
def test_a_search_journal_is_a_plain_name_in_the_run_directory(name):
    with pytest.raises(ValueError):
        Store.search_journal_key("r", name)


def test_task_files_are_found_by_one_listing(tmp_path):
    store = Store.open(tmp_path)
    for index, names in {
        0: ["status.json", "stdout.log"],
        3: ["metrics.jsonl", "outputs/a/b.txt"],
        12: ["status.json"],
    }.items():
        for name in names:
            path = tmp_path / "runs" / "r" / "tasks" / str(index) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")
    (tmp_path / "runs" / "r" / "tasks" / "notes").mkdir()
    (tmp_path / "runs" / "r" / "tasks" / "notes" / "status.json").write_text("x")  # not a task directory
    assert store.list_task_files("r") == {0: {"status.json", "stdout.log"}, 3: {"metrics.jsonl", "outputs"},
                                          12: {"status.json"}}
    assert store.task_files("r", TaskDir.STATUS) == {
        0: "runs/r/tasks/0/status.json",
        12: "runs/r/tasks/12/status.json",
    }
    assert store.task_files("r", TaskDir.SERIES) == {3: "runs/r/tasks/3/metrics.jsonl"}
    assert Store.task_file_of("runs/r/tasks/12/status.json") == (12, "status.json")
    assert Store.task_file_of("runs/r/tasks/3/outputs/a/b.txt") is None
    assert Store.task_file_of("runs/r/tasks/notes/status.json") is None


def test_unused_shared_files_keep_what_a_run_names(tmp_path):
    store = Store.open(tmp_path)
    for key in ["code/a.tar.gz", "code/b.tar.gz", "inputs/s1/data.csv", "inputs/s2/dir/x", "inputs/s2/dir/y",
                "inputs/s3/other.csv"]:
        store.backend.write_bytes(key, b"x")
    # a directory input is named by its prefix
    used = {"code/a.tar.gz", "inputs/s1/data.csv", "inputs/s2/dir"}
    assert store.unused_shared_files(used) == ["code/b.tar.gz", "inputs/s3/other.csv"]


def _literals(tree: ast.AST) -> list[tuple[int, str, bool]]:
    """(line, text, inside an f-string) of every string constant but docstrings and other bare strings."""
    bare = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    in_fstring = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    return [(node.lineno, node.value, id(node) in in_fstring) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in bare]


def hand_built_paths(source: str, module: str) -> list[str]:
    tree = ast.parse(source)
    found = []
    for line, text, in_fstring in _literals(tree):
        if (module, text) in ALLOWED:
            continue
        if text in FILE_NAMES or PATH_LIKE.search(text) or (in_fstring and FSTRING_SUFFIX.match(text)):
            found.append(f"{module}:{line}: {text!r}")
    for node in ast.walk(tree):  # the generic builders are store.py's own
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("run_key", "task_key")
        ):
            found.append(f"{module}:{node.lineno}: .{node.func.attr}(...)")
    return found


OWNERS = {"store/layout.py"}  # the layout names the paths; the store's parts read and write them by name


def test_no_store_path_is_built_outside_store_py():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        if module not in OWNERS:
            found += hand_built_paths(path.read_text(encoding="utf-8"), module)
    assert found == [], (
        "store paths built outside the store's layout (add a named method to store/layout.py's Layout):\n"
        + "\n".join(found)
    )


@pytest.mark.parametrize("line", [
    'store.run_key(run.id, "engine.json")',
    'store.task_key(run.id, i)',
    'x = "results.parquet"',
    'x = f"runs/{run_id}/cancel.json"',
    'x = f"{stream}.log"',
    'key = base + "/submissions/" + str(n)',
    'x = f"outputs/{name}"',
])
def test_the_scan_finds_a_hand_built_path(line):
    assert hand_built_paths(line + "\n", "m.py")


@pytest.mark.parametrize("line", [
    '"""Reads run.json and stdout.log."""',
    'x = d["outputs"]',
    'say("the cached results.parquet is damaged; rebuilt")',
    'x = f"{name}.yaml"',
])
def test_the_scan_leaves_prose_and_record_fields_alone(line):
    assert hand_built_paths(line + "\n", "m.py") == []
