"""The behaviours every engine must show, as one class an engine's own tests subclass (no star imports):

    import pytest
    from batchsweep.testing import Conformance, Harness

    class RayHarness(Harness):
        name = "ray"
        block = "backend: ray\n"          # the spec lines that select the engine

    class TestRayConformance(Conformance):
        @pytest.fixture
        def engine(self, tmp_path):
            return RayHarness(tmp_path / "store")

`pytest` then runs every test below against the engine. Each behaviour is checked on the rows `results()`
returns and on the store — statuses written by the engine's worker, never inferred — not on an engine's own
report. A `Harness` method overrides how the suite drives the engine where the defaults (the public API) do
not fit it: `start`/`finish` for an engine whose tasks run elsewhere, `kill_runner`, `lose_a_task`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

import batchsweep
from batchsweep import cli
from batchsweep.errors import SpecError
from batchsweep.testing.harness import Harness, alive, hang_on_task_1, succeeded_at, sweep, wait_for


class Conformance:
    """Subclass it as `Test...` with an `engine` fixture that returns your engine's Harness."""

    def test_a_grid_gives_one_correct_row_per_task(self, tmp_path: Path, engine: Harness) -> None:
        run = engine.run(sweep(tmp_path, engine, "{grid: {a: [1, 2, 3, 4]}}"))
        df = run.results().sort_values("a")
        assert list(df["a"]) == [1, 2, 3, 4]
        assert list(df["square"]) == [1, 4, 9, 16]
        assert set(df["status"]) == {"succeeded"} and set(df["attempts"]) == {1}

    def test_a_failing_task_is_contained_with_its_exit_code_and_its_output_kept(
        self, tmp_path: Path, engine: Harness
    ) -> None:
        run = engine.run(sweep(tmp_path, engine, "{grid: {a: [1, 2, 3]}, fixed: {fail_on: 2}}"))
        df = run.results().set_index("a")
        assert (
            df.loc[2, "status"] == "failed"
            and df.loc[2, "exit_code"] == 3
            and "exit code 3" in df.loc[2, "error"]
        )
        assert list(df.loc[[1, 3], "status"]) == ["succeeded", "succeeded"]
        failed = int(df.loc[2, "task"])
        assert "bad a=2" in run.logs(failed, stderr=True)
        assert "task a=2 says hello" in run.logs(failed)

    def test_a_task_over_its_timeout_ends_timeout_and_the_rest_finish(
        self, tmp_path: Path, engine: Harness
    ) -> None:
        run = engine.run(
            sweep(tmp_path, engine, "{grid: {a: [1, 2]}, fixed: {sleep_on: 2}}", "timeout: 2s\n")
        )
        df = run.results().set_index("a")
        assert df.loc[2, "status"] == "timeout" and df.loc[2, "duration_s"] < 30
        assert df.loc[1, "status"] == "succeeded"


    def test_retries_rerun_a_flaky_task_in_the_same_run(self, tmp_path: Path, engine: Harness) -> None:
        marks = tmp_path / "marks"
        run = engine.run(
            sweep(
                tmp_path,
                engine,
                f"{{grid: {{a: [1, 2]}}, fixed: {{flaky_on: 2, marks: '{marks}'}}}}",
                "retries: 1\n",
            )
        )
        df = run.results().set_index("a")
        assert df.loc[2, "status"] == "succeeded" and df.loc[2, "attempts"] == 2
        assert df.loc[1, "attempts"] == 1


    def test_resume_reruns_only_what_did_not_succeed(self, tmp_path: Path, engine: Harness) -> None:
        marks = tmp_path / "marks"
        spec = sweep(
            tmp_path, engine, f"{{grid: {{a: [1, 2, 3]}}, fixed: {{flaky_on: 3, marks: '{marks}'}}}}"
        )
        first = engine.run(spec)
        assert dict(first.results().set_index("a")["status"]) == {1: "succeeded", 2: "succeeded", 3: "failed"}
        ended = {
            i: s.ended_at for i, s in first.store.statuses(first.id).items() if s.state.value == "succeeded"
        }
        again = engine.resume(first)
        df = again.results(refresh=True).set_index("a")
        assert set(df["status"]) == {"succeeded"} and df.loc[3, "square"] == 9
        after = again.store.statuses(again.id)
        assert all(after[i].ended_at == t for i, t in ended.items()), "a task that had succeeded ran again"

    def test_cancel_stops_the_running_task_and_resume_runs_only_what_did_not_succeed(
        self, tmp_path: Path, engine: Harness
    ) -> None:
        run = engine.start(hang_on_task_1(tmp_path, engine))
        wait_for((engine.marks / "2.hung").exists, "task 1 to hang")
        hung = int((engine.marks / "2.pid").read_text())
        engine.cancel(run)
        wait_for(lambda: not alive(hung), "the cancelled task's process to die", timeout=60)
        run = engine.finish(run)
        states = {i: s.value for i, s in run.states().items()}
        assert states[1] == "cancelled" and set(states.values()) <= {"succeeded", "cancelled"}, states
        assert run.results().set_index("task").loc[1, "status"] == "cancelled"
        finished = succeeded_at(run)

        again = engine.resume(run)
        assert set(again.results(refresh=True)["status"]) == {"succeeded"}
        after = succeeded_at(again)
        assert all(after[i] == t for i, t in finished.items()), "a task that had succeeded ran again"

    def test_kill_9_of_the_runner_then_resume_runs_only_what_had_not_finished(
        self, tmp_path: Path, engine: Harness, capsys: pytest.CaptureFixture[str]
    ) -> None:
        marks = engine.marks
        spec = hang_on_task_1(tmp_path, engine)
        run = engine.kill_runner(spec, lambda: (marks / "2.hung").exists() and (marks / "1.done").exists()
                                 and any(succeeded_at(batchsweep.load_run(store=str(engine.store))).values()))
        hung = int((marks / "2.pid").read_text())
        states = {i: s.value for i, s in run.states().items()}
        if engine.runner_runs_tasks:  # else the scheduler runs them on (Slurm, Batch): running is the truth
            assert "running" not in states.values(), "a task runs on without its runner"
        finished = succeeded_at(run)
        assert finished, "no task had finished before the kill"
        # the task it was running has no status: the run is interrupted, resumable
        if engine.runner_runs_tasks:
            assert states[1] == "pending", states
            assert cli.main(["status", run.id, "--store", str(engine.store)]) == 0
            assert "interrupted (resumable)" in capsys.readouterr().out

        again = engine.resume(run)
        assert not alive(hung), "the task the runner was running is still alive after the resume"
        df = again.results(refresh=True)
        assert sorted(df["task"]) == [0, 1, 2, 3] and set(df["status"]) == {"succeeded"}
        after = succeeded_at(again)
        assert all(after[i] == t for i, t in finished.items()), "a task that had finished ran again"

    def test_a_task_that_ends_without_a_status_is_lost_and_resume_reruns_it(
        self, tmp_path: Path, engine: Harness
    ) -> None:
        marks = engine.marks
        run = engine.lose_a_task(
            sweep(tmp_path, engine, f"{{grid: {{a: [1, 2, 3]}}, fixed: {{hang_on: 2, marks: '{marks}'}}}}"), 1
        )
        (marks / "release").touch()  # task 1 hangs no more
        df = run.results().set_index("task")
        assert df.loc[1, "status"] == "lost", df.loc[1].to_dict()
        assert isinstance(df.loc[1, "error"], str) and df.loc[1, "error"], "a lost task's row says why"
        assert list(df.loc[[0, 2], "status"]) == ["succeeded", "succeeded"]
        finished = succeeded_at(run)

        again = engine.resume(run)
        df = again.results(refresh=True).set_index("task")
        assert set(df["status"]) == {"succeeded"} and df.loc[1, "square"] == 4
        after = succeeded_at(again)
        assert all(after[i] == t for i, t in finished.items()), "a task that had succeeded ran again"

    def test_logs_of_a_running_and_a_finished_task_by_the_api_and_the_cli(
        self, tmp_path: Path, engine: Harness, capsys: pytest.CaptureFixture[str]
    ) -> None:
        run = engine.start(
            sweep(
                tmp_path, engine, f"{{grid: {{a: [1, 2]}}, fixed: {{hang_on: 2, marks: '{engine.marks}'}}}}"
            )
        )
        store = str(engine.store)

        def cli_logs(*args: str) -> str:
            capsys.readouterr()
            assert cli.main(["logs", run.id, *args, "--store", store]) == 0
            return capsys.readouterr().out

        wait_for(lambda: "task a=2 hangs" in batchsweep.load_run(run.id, store=str(engine.store)).logs(1),
                 "the running task's output")
        assert "task a=2 says hello\ntask a=2 hangs\n" in cli_logs("1")
        (engine.marks / "release").touch()
        run = engine.finish(run)
        assert run.logs(0) == "task a=1 says hello\n" and run.logs(0, stderr=True) == "task a=1 warns\n"
        assert cli_logs("1") == "task a=2 says hello\ntask a=2 hangs\n"
        assert cli_logs("0", "--stderr") == "task a=1 warns\n"

    def test_cancel_from_another_shell_writes_the_stopped_tasks_status(
        self, tmp_path: Path, engine: Harness
    ) -> None:
        """`batchsweep cancel RUN` in a second shell: the task it stopped has a status the engine's worker
        wrote (cancelled), not one inferred from the run's record."""
        if engine.other_shells_blind:
            pytest.skip(engine.other_shells_blind)
        run = engine.start(hang_on_task_1(tmp_path, engine))
        wait_for((engine.marks / "2.hung").exists, "task 1 to hang", timeout=60)
        hung = int((engine.marks / "2.pid").read_text())
        done = engine.cli("cancel", run.id)
        assert done.returncode == 0, done.stderr
        wait_for(lambda: not alive(hung), "the cancelled task's process to die", timeout=60)
        run = engine.finish(run)
        written = run.store.read_status(run.id, 1)
        assert written is not None, "the cancelled task has no status of its own"
        assert written.state.value == "cancelled", written

    def test_status_from_another_shell_while_a_task_runs(self, tmp_path: Path, engine: Harness) -> None:
        if engine.other_shells_blind:
            pytest.skip(engine.other_shells_blind)
        run = engine.start(hang_on_task_1(tmp_path, engine))
        wait_for((engine.marks / "2.hung").exists, "task 1 to hang", timeout=60)
        shown = engine.cli("status", run.id)
        (engine.marks / "release").touch()
        assert shown.returncode == 0, shown.stderr
        assert "running" in shown.stdout, shown.stdout
        run = engine.finish(run)
        assert set(run.results()["status"]) == {"succeeded"}

    def test_a_second_run_of_the_same_sweep_reuses_every_task_and_runs_none(self, tmp_path: Path,
                                                                           engine: Harness) -> None:
        spec = sweep(tmp_path, engine, f"{{grid: {{a: [1, 2]}}, fixed: {{marks: '{engine.marks}'}}}}")
        first = engine.run(spec)
        for done in engine.marks.glob("*.done"):  # each task leaves one as it ends
            done.unlink()
        again = engine.run(spec)
        assert again.id != first.id
        df = again.results().sort_values("a")
        assert list(df["square"]) == [1, 4] and set(df["status"]) == {"succeeded"}
        statuses = again.store.statuses(again.id)
        assert sorted(statuses) == [0, 1] and all(s.reused_from for s in statuses.values()), statuses
        assert not list(engine.marks.glob("*.done")), "a reused task ran again"

    def test_status_the_progress_and_the_table_agree_on_which_task_runs(self, tmp_path: Path,
                                                                      engine: Harness) -> None:
        """While one task hangs and the others are done, every reader names the same running task: `states`,
        the counts the progress bar shows, `results` and `status` in another shell (`Progress.running`)."""
        if engine.running_blind:
            pytest.skip(engine.running_blind)
        run = engine.start(hang_on_task_1(tmp_path, engine))
        wait_for((engine.marks / "2.hung").exists, "task 1 to hang", timeout=60)
        try:
            # read as the process that started it reads it (`status` below: another one)
            def agreed() -> bool:
                states = [s.value for s in run.states().values()]
                table = list(run.results().sort_values("task")["status"])
                counts = run.counts()[0]
                return (states == table and [i for i, s in enumerate(states) if s == "running"] == [1]
                        and counts.get("running") == 1 and counts == Counter(states))

            # Once the tasks beside it have ended (or wait behind it, on an engine that runs one at a time).
            wait_for(agreed, "states, counts and results to show task 1 running (and it alone)", timeout=60)
            if not engine.other_shells_blind:
                shown = engine.cli("status", run.id)
                assert shown.returncode == 0, shown.stderr
                assert "1 running" in shown.stdout, shown.stdout
        finally:
            (engine.marks / "release").touch()
        run = engine.finish(run)
        assert set(run.results()["status"]) == {"succeeded"}

    def test_early_stopping_prunes_the_hopeless_curves_through_the_engine(
            self, tmp_path: Path, engine: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
        """`stop:` with the median rule: the worker stops a task whose curve is worse than the median of the
        finished ones and writes it `pruned` (one task at a time, so every engine compares the same
        trials)."""
        # how soon is the bench's business, not this test's
        monkeypatch.setenv("BATCHSWEEP_SERIES_FLUSH_S", "0.2")
        spec = sweep(
            tmp_path,
            engine,
            "{grid: {quality: [0.2, 0.3, 0.1, 0.15, 1.0, 2.0]}, fixed: {epochs: 8}}",
            "max_parallel: 1\n"
            "metrics: {stdout: 'epoch (?P<step>\\d+) val_loss=(?P<val_loss>[\\d.]+)'}\n"
            "stop: {metric: val_loss, rule: median, min_steps: 2, min_trials: 2}\n",
        )
        run = engine.run(spec)
        df = run.results().set_index("task")
        assert list(df["status"]) == ["succeeded"] * 4 + ["pruned"] * 2, df[["quality", "status"]]
        for index in (4, 5):
            status = run.store.read_status(run.id, index)
            assert status is not None and status.state.value == "pruned"
            assert status.last_step is not None and 2 <= status.last_step < 8, status
            assert "median rule" in (status.error or "")
        assert run.exit_code == 0  # pruned is not a failure

    def test_gpu_tasks_each_lease_a_device_of_their_own(self, tmp_path: Path, engine: Harness,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
        """`resources: {gpus: 1}` with two GPUs: every task sees one device and no two tasks hold one at once;
        an engine that cannot give GPUs refuses the spec in one line before anything runs."""
        engine.give_gpus(monkeypatch, ["0", "1"])
        spec = sweep(tmp_path, engine, "{grid: {a: [1, 2, 3, 4]}, fixed: {probe: 0.5}}",
                     "max_parallel: 4\nresources: {gpus: 1, vcpus: 0.25}\n")
        try:
            run = engine.run(spec)
        except SpecError as e:
            assert "resources.gpus" in str(e), e
            return
        df = run.results()
        assert set(df["status"]) == {"succeeded"}
        assert set(df["cuda"]) <= {"gpu:0", "gpu:1"}, list(df["cuda"])
        for device, held in df.groupby("cuda"):
            spans = sorted(zip(held["held_from"], held["held_to"]))
            assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:])), (device, spans)
