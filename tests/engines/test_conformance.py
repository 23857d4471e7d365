"""One set of behaviours, every engine: local, Dask (a real scheduler), AWS Batch (moto, containers played here)
and the toy engine registered from outside the package. A new engine is one more `Harness`.

Each behaviour is checked on the rows `results()` returns and on the store, never on an engine's own report.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dask_fixtures import *  # noqa: F401,F403 - the dask_cluster fixture

import batchsweep
from batchsweep.runs import Run

SCRIPTS = Path(__file__).parent.parent / "scripts"
TOY = Path(__file__).parent / "toy"

FLAKY = '''
import argparse, json, os, sys, time
p = argparse.ArgumentParser()
p.add_argument("--a", type=int)
p.add_argument("--marks", default="")
p.add_argument("--flaky_on", type=int, default=-1)
p.add_argument("--fail_on", type=int, default=-1)
p.add_argument("--sleep_on", type=int, default=-1)
args = p.parse_args()
print(f"task a={args.a} says hello", flush=True)
if args.a == args.fail_on:
    print(f"bad a={args.a}", file=sys.stderr)
    sys.exit(3)
if args.a == args.flaky_on:
    mark = os.path.join(args.marks, f"{args.a}.tried")
    if not os.path.exists(mark):
        open(mark, "w").close()
        sys.exit(5)
if args.a == args.sleep_on:
    time.sleep(60)
json.dump({"square": args.a * args.a}, open("metrics.json", "w"))
'''


class Harness:
    """How a test drives one engine to the end of a run."""

    name = ""
    block = ""  # spec lines that select the engine

    def __init__(self, store: Path) -> None:
        self.store = store

    def run(self, spec: Path) -> Run:
        run = batchsweep.run(spec, store=self.store, progress=False)
        return batchsweep.load_run(run.id, store=self.store)

    def resume(self, run: Run) -> Run:
        run = batchsweep.load_run(run.id, store=self.store)
        run.resume()
        run.wait(progress=False)
        return batchsweep.load_run(run.id, store=self.store)


class Local(Harness):
    name = "local"
    block = "backend: local\n"


class Toy(Harness):
    name = "serial"
    block = "backend: serial\n"


class Dask(Harness):
    name = "dask"

    def __init__(self, store: Path, address: str) -> None:
        super().__init__(store)
        self.block = f'backend: dask\ndask: {{scheduler: "{address}"}}\n'


class AwsBatch(Harness):
    name = "aws-batch"
    block = "backend: aws-batch\naws: {stack: batchsweep, region: us-east-1}\nresources: {vcpus: 0.5, memory_mib: 1024}\n"

    def run(self, spec: Path) -> Run:
        from batchsweep.aws import player

        run = batchsweep.run(spec, store=self.store, detach=True)
        player.play(run)
        return batchsweep.load_run(run.id, store=self.store)

    def resume(self, run: Run) -> Run:
        from batchsweep.aws import player

        run = batchsweep.load_run(run.id, store=self.store)
        run.resume(detach=True)
        player.play(batchsweep.load_run(run.id, store=self.store))  # the resume's submission, every child
        return batchsweep.load_run(run.id, store=self.store)


@pytest.fixture(params=["local", "serial", "dask", "aws-batch"])
def engine(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    store = tmp_path / "store"
    if request.param == "local":
        yield Local(store)
    elif request.param == "serial":
        monkeypatch.syspath_prepend(str(TOY))  # its dist-info registers the entry point
        yield Toy(store)
    elif request.param == "dask":
        pytest.importorskip("distributed")
        yield Dask(store, request.getfixturevalue("dask_cluster").address)
    else:
        request.getfixturevalue("stack")
        yield AwsBatch(store)


@pytest.fixture
def stack(session: Any) -> dict[str, str]:
    from batchsweep import emulator

    return emulator.deploy_stack(session)


def sweep(tmp_path: Path, engine: Harness, params: str, extra: str = "") -> Path:
    script = tmp_path / "code" / "flaky.py"
    script.parent.mkdir(exist_ok=True)
    script.write_text(FLAKY)
    (tmp_path / "marks").mkdir(exist_ok=True)
    spec = tmp_path / "sweep.yaml"
    spec.write_text(textwrap.dedent(f"""
        name: conformance
        script: {script}
        params: {params}
    """) + engine.block + extra)
    return spec


def test_a_grid_gives_one_correct_row_per_task(tmp_path, engine):
    run = engine.run(sweep(tmp_path, engine, "{grid: {a: [1, 2, 3, 4]}}"))
    df = run.results().sort_values("a")
    assert list(df["a"]) == [1, 2, 3, 4]
    assert list(df["square"]) == [1, 4, 9, 16]
    assert set(df["status"]) == {"succeeded"} and set(df["attempts"]) == {1}


def test_a_failing_task_is_contained_with_its_exit_code_and_its_output_kept(tmp_path, engine):
    run = engine.run(sweep(tmp_path, engine, "{grid: {a: [1, 2, 3]}, fixed: {fail_on: 2}}"))
    df = run.results().set_index("a")
    assert df.loc[2, "status"] == "failed" and df.loc[2, "exit_code"] == 3 and "exit code 3" in df.loc[2, "error"]
    assert list(df.loc[[1, 3], "status"]) == ["succeeded", "succeeded"]
    failed = int(df.loc[2, "task"])
    assert "bad a=2" in run.logs(failed, stderr=True)
    assert "task a=2 says hello" in run.logs(failed)


def test_a_task_over_its_timeout_ends_timeout_and_the_rest_finish(tmp_path, engine):
    run = engine.run(sweep(tmp_path, engine, "{grid: {a: [1, 2]}, fixed: {sleep_on: 2}}", "timeout: 2s\n"))
    df = run.results().set_index("a")
    assert df.loc[2, "status"] == "timeout" and df.loc[2, "duration_s"] < 30
    assert df.loc[1, "status"] == "succeeded"


def test_retries_rerun_a_flaky_task_in_the_same_run(tmp_path, engine):
    marks = tmp_path / "marks"
    run = engine.run(sweep(tmp_path, engine, f"{{grid: {{a: [1, 2]}}, fixed: {{flaky_on: 2, marks: '{marks}'}}}}",
                           "retries: 1\n"))
    df = run.results().set_index("a")
    assert df.loc[2, "status"] == "succeeded" and df.loc[2, "attempts"] == 2
    assert df.loc[1, "attempts"] == 1


def test_resume_reruns_only_what_did_not_succeed(tmp_path, engine):
    marks = tmp_path / "marks"
    spec = sweep(tmp_path, engine, f"{{grid: {{a: [1, 2, 3]}}, fixed: {{flaky_on: 3, marks: '{marks}'}}}}")
    first = engine.run(spec)
    assert dict(first.results().set_index("a")["status"]) == {1: "succeeded", 2: "succeeded", 3: "failed"}
    ended = {i: s.ended_at for i, s in first.store.statuses(first.id).items() if s.state.value == "succeeded"}
    again = engine.resume(first)
    df = again.results(refresh=True).set_index("a")
    assert set(df["status"]) == {"succeeded"} and df.loc[3, "square"] == 9
    after = again.store.statuses(again.id)
    assert all(after[i].ended_at == t for i, t in ended.items()), "a task that had succeeded ran again"
