"""Packs (many tasks' statuses and metrics in one object) and `batchsweep runs compact`, on a local store."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import write_spec

import batchsweep
from batchsweep import cli
from batchsweep.engines.base import Progress
from batchsweep.model import State, TaskStatus
from batchsweep.store.core import PackEntry, Store

SCRIPTS = Path(__file__).parent / "scripts"


def _spec(tmp_path: Path, **fixed: object) -> Path:
    extra = "".join(f", {k}: {v}" for k, v in fixed.items())
    return write_spec(tmp_path, f"""
        name: packed
        script: {SCRIPTS / 'writes_metrics.py'}
        params: {{grid: {{a: [1, 2, 3, 4, 5, 6]}}, fixed: {{fail_on: 4{extra}}}}}
    """)


def _task_files(store: Path) -> list[str]:
    return sorted(str(p.relative_to(store)) for p in (store / "runs").glob("*/tasks/**/*") if p.is_file())


def test_compact_packs_statuses_and_metrics_and_every_command_reads_the_same(tmp_path, capsys):
    store = tmp_path / "store"
    run = batchsweep.run(_spec(tmp_path), store=store, progress=False)
    before = run.results(refresh=True)
    stderr_before = run.logs(3, stderr=True)
    assert "failing on purpose" in stderr_before
    files_before = _task_files(store)
    assert sum(f.endswith("status.json") for f in files_before) == 6

    assert cli.main(["runs", "compact", "--store", str(store)]) == 0  # the latest run
    assert capsys.readouterr().out.strip().startswith(f"run {run.id}: 6 tasks' statuses and metrics packed")
    left = _task_files(store)
    assert not [f for f in left if f.endswith(("status.json", "metrics.json"))]
    assert left == [], "the failed task's log is packed too: no task file is left"

    again = batchsweep.load_run(run.id, store=store)
    pd.testing.assert_frame_equal(again.results(refresh=True), before)
    assert again.logs(3, stderr=True) == stderr_before and again.logs(0) == ""
    assert again.store.read_status(run.id, 0).state is State.SUCCEEDED
    assert cli.main(["status", run.id, "--store", str(store)]) == 0
    assert "tasks    5 succeeded, 1 failed (of 6)" in capsys.readouterr().out

    # resume runs the failed task again (and only it): the pack forgets it first, its new status is read
    assert again.resume() == [3]
    assert again.wait(progress=False) == 1
    after = batchsweep.load_run(run.id, store=store).results(refresh=True)
    # (alone: cold)
    ran_again = ["started_at", "ended_at", "duration_s", "worker", "peak_rss_mib", "cpu_s", "warm"]
    pd.testing.assert_frame_equal(after.drop(columns=ran_again), before.drop(columns=ran_again))
    assert after.loc[3, "ended_at"] > before.loc[3, "ended_at"]
    assert 3 not in again.store.packed(run.id)


def test_a_compacted_run_is_reused_with_its_metrics(tmp_path):
    store = tmp_path / "store"
    first = batchsweep.run(_spec(tmp_path), store=store, progress=False)
    assert cli.main(["runs", "compact", first.id, "--store", str(store)]) == 0
    second = batchsweep.run(_spec(tmp_path), store=store, progress=False).results()
    ok = second[second["status"] == "succeeded"]
    assert len(ok) == 5 and ok["reused_from"].notna().all()
    assert (ok["product"] == ok["a"]).all()


def test_compacting_a_running_run_is_refused_in_one_line(tmp_path, capsys):
    store = tmp_path / "store"
    run = batchsweep.run(_spec(tmp_path, sleep=3), store=store, detach=True)
    try:
        assert cli.main(["runs", "compact", run.id, "--store", str(store)]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"error: runs compact: run {run.id} is still running; compact it once it has finished"
        assert not (store / "runs" / run.id / "packs").exists()
    finally:
        run.cancel()


def _status(i: int, state: State = State.SUCCEEDED) -> TaskStatus:
    return TaskStatus(index=i, state=state, started_at=1.0, ended_at=2.0)


def test_a_pack_covers_its_tasks_and_the_rest_come_from_their_own_files(tmp_path, caplog):
    store = Store.open(tmp_path)
    store.write_pack(
        "r", "s0000-c000000-a1", [PackEntry(_status(0), {"x": 1}), PackEntry(_status(1, State.FAILED))]
    )
    store.write_status("r", _status(2))
    store.write_json(store.task_key("r", 2, "metrics.json"), {"x": 3})
    assert {i: s.state for i, s in store.statuses("r", 4).items()} == {0: State.SUCCEEDED, 1: State.FAILED,
                                                                       2: State.SUCCEEDED}
    assert set(store.statuses("r")) == {0, 1, 2}  # without the task count: through the listing
    assert store.read_metrics("r", [0, 1, 2]) == {0: {"x": 1}, 2: {"x": 3}}
    assert store.read_task_statuses([("r", 1), ("r", 3)])[0].state is State.FAILED

    store.drop_from_packs("r", [1])
    assert set(store.statuses("r", 4)) == {0, 2} and store.read_status("r", 1) is None
    (name,) = store.pack_names("r")
    assert name.startswith("s0000-c000000-a1~"), "a changed pack is written under a new name"

    path = store.local_path(store.pack_key("r", name))
    path.write_text(path.read_text() + "{not json\n")
    time.sleep(0.01)
    with caplog.at_level(logging.WARNING, logger="batchsweep"):
        fresh = Store.open(tmp_path)
        assert set(fresh.statuses("r", 4)) == {0, 2}
    assert "line 2 of pack" in caplog.text


def test_statuses_one_at_a_time_are_the_statuses_and_no_pack_is_kept(tmp_path, caplog):
    """`iter_statuses` (the end of a run: its outcome line) finds what `statuses` finds, later packs winning,
    in memory that does not grow with the run: it caches no pack's entries."""
    store = Store.open(tmp_path)
    store.write_pack("r", "a", [PackEntry(_status(0), {"x": 1}), PackEntry(_status(1, State.FAILED)),
                                PackEntry(_status(9))])  # 9: not a task of a 5-task run
    store.write_pack("r", "b", [PackEntry(_status(1))])  # task 1 ran again: the later pack is the truth
    store.write_status("r", _status(2, State.TIMEOUT))
    store.write_status("r", _status(3))
    store.backend.write_bytes(store.task_status_key("r", 4), b"{damaged")
    fresh = Store.open(tmp_path)
    with caplog.at_level(logging.WARNING, logger="batchsweep"):
        streamed = list(fresh.iter_statuses("r", 5))
    assert fresh._packs == {}
    assert sorted(streamed, key=lambda s: s.index) == [
        s for _, s in sorted(store.statuses("r", 5).items()) if s.index < 5
    ]
    assert [(s.index, s.state) for s in sorted(streamed, key=lambda s: s.index)] == [
        (0, State.SUCCEEDED), (1, State.SUCCEEDED), (2, State.TIMEOUT), (3, State.SUCCEEDED)]
    assert "damaged status.json" in caplog.text and "task 4" in caplog.text


def test_a_big_pack_is_read_a_part_at_a_time_and_a_damaged_line_past_the_first_part_is_named(
    tmp_path, caplog
):
    """`pack_records` (what `results` reads) streams a compacted run's pack: its first tasks come out before
    the rest of the file is read, and a damaged line deep in it leaves out that task alone, named by its
    line."""
    from batchsweep.store import packs

    store = Store.open(tmp_path)
    n = 3 * packs.PACK_CHUNK + 7
    store.write_pack("r", "compact~1", (PackEntry(_status(i), {"x": i, "note": "n" * 400}) for i in range(n)))
    path = store.local_path(store.pack_key("r", "compact~1"))
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2 * packs.PACK_CHUNK + 5] = b"{damaged\n"
    path.write_bytes(b"".join(lines))
    size, given = path.stat().st_size, []
    real, real_whole = store.backend.iter_bytes, store.backend.read_bytes

    def counted(key: str, start: int = 0):
        for chunk in real(key, start):
            given.append(len(chunk))
            yield chunk

    def counted_whole(key: str) -> bytes:
        given.append(len(data := real_whole(key)))
        return data

    store.backend.iter_bytes, store.backend.read_bytes = counted, counted_whole  # type: ignore[method-assign]
    records = store.pack_records("r")
    assert next(records)[0] == 0
    assert sum(given) < size / 2, "the first task comes before the whole pack is read"
    with caplog.at_level(logging.WARNING, logger="batchsweep"):
        rest = list(records)
    assert [r[0] for r in rest] == [i for i in range(1, n) if i != 2 * packs.PACK_CHUNK + 5]
    assert rest[-1][2] == {"x": n - 1, "note": "n" * 400}
    assert f"line {2 * packs.PACK_CHUNK + 6} of pack compact~1 is damaged" in caplog.text


@pytest.mark.parametrize("damaged", ["status.json", "metrics.json"])
def test_compact_leaves_a_damaged_file_where_it_is(tmp_path, damaged):
    store = tmp_path / "store"
    run = batchsweep.run(_spec(tmp_path), store=store, progress=False)
    (store / "runs" / run.id / "tasks" / "0" / damaged).write_text("{damaged")
    assert cli.main(["runs", "compact", run.id, "--store", str(store)]) == 0
    assert (store / "runs" / run.id / "tasks" / "0" / damaged).read_text() == "{damaged"


def _curve_run(tmp_path: Path, values: list[int], *, steps: str = "3", before: str = "") -> batchsweep.Run:
    """A run of a script that logs loss = a / (step + 1) for `steps` steps (Python, of a), one task per
    value of a; `before` runs first."""
    (tmp_path / "curve.py").write_text(
        "import argparse\nfrom batchsweep import log_metrics\n"
        "p = argparse.ArgumentParser(); p.add_argument('--a', type=int); a = p.parse_args().a\n"
        f"{before}for step in range({steps}):\n    log_metrics(step=step, loss=a / (step + 1))\n")
    spec = write_spec(tmp_path, f"""
        name: curves
        script: {tmp_path / 'curve.py'}
        params: {{grid: {{a: {values}}}}}
    """)
    return batchsweep.run(spec, store=tmp_path / "store", progress=False)


def test_a_compacted_run_with_series_shows_no_task_as_running_and_keeps_its_curves(tmp_path):
    from batchsweep.report import live
    from batchsweep.report.page import read_series

    run = _curve_run(tmp_path, [1, 2])
    curves = read_series(run)
    assert len(curves) == 2 and live.running_with_series(run) == []
    assert cli.main(["runs", "compact", run.id, "--store", str(tmp_path / "store")]) == 0
    again = batchsweep.load_run(run.id, store=tmp_path / "store")
    assert live.running_with_series(again) == [] and read_series(again) == curves


def test_the_report_reads_the_series_its_statuses_name_without_listing_the_tasks(tmp_path, monkeypatch):
    """A finished task's status says whether it has a series (its last step): the report of a compacted run
    reads those series, one request each, and lists no task directory (on S3 a LIST per 1,000 task files)."""
    from batchsweep.report.page import read_series
    from batchsweep.store.local import LocalBackend

    run = _curve_run(tmp_path, [1, 2, 3], steps="3 if a != 2 else 0")
    assert cli.main(["runs", "compact", run.id, "--store", str(tmp_path / "store")]) == 0  # as a big run is
    listed: list[str] = []
    real = LocalBackend.list_files
    monkeypatch.setattr(
        LocalBackend, "list_files", lambda self, prefix: listed.append(prefix) or real(self, prefix)
    )
    again = batchsweep.load_run(run.id, store=tmp_path / "store")
    table = again.results()
    curves = read_series(again, table)
    assert sorted(curves) == [0, 2] and [r["loss"] for r in curves[2]] == [3, 1.5, 1]
    assert read_series(again) == curves
    again.report(tmp_path / "report.html")
    assert "/tasks" not in "".join(listed), f"no task directory listed: {listed}"


def test_a_compacted_runs_finished_tasks_are_finished_for_stop_rules_and_not_running_for_the_runner(tmp_path):
    from batchsweep.engines.local.engine import _started
    from batchsweep.task.stopping import RunView

    run = _curve_run(tmp_path, [1, 2, 3], before="print('training', a)\n")
    assert cli.main(["runs", "compact", run.id, "--store", str(tmp_path / "store")]) == 0
    again = batchsweep.load_run(run.id, store=tmp_path / "store")
    series, states = RunView(again.store, run.id, "loss").refresh(own=-1)
    assert states == {0: State.SUCCEEDED, 1: State.SUCCEEDED, 2: State.SUCCEEDED} and len(series) == 3
    assert _started(again, 2) == [], "a finished task's log without status.json is not a running task"


def test_statuses_looked_up_one_by_one_list_the_packs_once_and_a_new_pack_is_seen_at_once(
        tmp_path, monkeypatch):
    from types import SimpleNamespace

    from batchsweep.store import packs
    from batchsweep.store.core import LocalBackend

    # A stopped clock: a loaded machine's pause between two lookups must not age the listing past
    # PACKS_LISTED_WITHIN_S, which is what a second listing would then show.
    monkeypatch.setattr(packs, "time", SimpleNamespace(monotonic=lambda: 100.0, time_ns=time.time_ns))

    class Counting(LocalBackend):
        listings = 0

        def list_files(self, prefix: str) -> list[str]:
            Counting.listings += "/packs" in prefix
            return super().list_files(prefix)

    store = Store(Counting(tmp_path))
    store.write_pack("r", "a", [PackEntry(_status(0))])
    found = [store.read_status("r", i) for i in range(50)]
    assert found[0] is not None and found[1:] == [None] * 49
    assert Counting.listings == 1, "one listing of the packs for 50 lookups"
    store.write_pack("r", "b", [PackEntry(_status(7))])
    assert store.read_status("r", 7) is not None, "a pack written through this store is seen at once"


def test_the_table_takes_a_tasks_later_pack_entry_whole_and_orders_metrics_by_first_task() -> None:
    from batchsweep.report.columns import Columns, status_record

    table = Columns(3)
    for i in range(3):
        table.add_params(i, {"lr": i / 10})
    table.add_status(2, status_record(_status(2)))
    table.add_metrics(2, {"acc": 0.5, "lr": 7})  # a metric named like a param is told apart
    table.add_status(0, status_record(_status(0, State.FAILED)))
    table.add_metrics(0, {"loss": 1, "old": 3})
    table.add_status(0, status_record(_status(0)))  # the same task in a later pack: that entry is the truth
    table.add_metrics(0, {"loss": 2})
    df, whole = table.frame(table.states(Progress(active=True), cancelled=False), ["lr"])
    assert list(df.columns[-4:]) == ["loss", "old", "acc", "metric_lr"]
    assert df["status"].tolist() == ["succeeded", "pending", "succeeded"]
    assert df["loss"].tolist()[0] == 2 and pd.isna(df["old"][0]) and df["metric_lr"][2] == 7
    assert df["attempts"].tolist() == [1, 0, 1] and "loss" in whole and "acc" not in whole


# -- logs packed with an index
# --------------------------------------------------------------------------------------
ATTEMPTS = """\
import argparse, pathlib, sys
p = argparse.ArgumentParser(); p.add_argument("--a", type=int); p.add_argument("--marks"); args = p.parse_args()
mark = pathlib.Path(args.marks) / str(args.a)
attempt = len(mark.read_text()) + 1 if mark.exists() else 1
mark.write_text("x" * attempt)
print(f"task {args.a} attempt {attempt}")
if args.a == 2 and attempt == 1:
    print("task 2 fails once", file=sys.stderr)
    sys.exit(3)
"""  # noqa: E501


def _attempts_spec(tmp_path: Path, n: int) -> Path:
    (tmp_path / "attempts.py").write_text(ATTEMPTS)
    (tmp_path / "marks").mkdir()
    return write_spec(tmp_path, f"""
        name: attempts
        script: {tmp_path / 'attempts.py'}
        params: {{grid: {{a: {list(range(n))}}}, fixed: {{marks: {tmp_path / 'marks'}}}}}
    """)


def test_a_big_finished_run_packs_its_logs_and_logs_reads_one_task_from_the_pack(
    tmp_path, monkeypatch, capsys
):
    from batchsweep.store import compact, core

    monkeypatch.setattr(compact, "AUTO_COMPACT_TASKS", 5)  # it compacts itself at the end, as a big run does
    store = tmp_path / "store"
    run = batchsweep.run(_attempts_spec(tmp_path, 12), store=store, progress=False)
    run_dir = store / "runs" / run.id
    assert not (run_dir / "tasks").exists(), "no task directory is left"
    assert sorted(p.suffix for p in (run_dir / "packs").iterdir()) == [".idx", ".jsonl", ".log"]

    reads: list[int] = []
    pread = core.os.pread
    monkeypatch.setattr(core.os, "pread", lambda fd, n, at: reads.append(n) or pread(fd, n, at))
    assert cli.main(["logs", run.id, "7", "--store", str(store)]) == 0
    assert capsys.readouterr().out == "task 7 attempt 1\n"
    assert reads == [32, len("task 7 attempt 1\n")], (
        "its index entry and its own bytes, nothing of the others"
    )
    again = batchsweep.load_run(run.id, store=store)
    assert [again.logs(i) for i in range(12)] == [f"task {i} attempt 1\n" for i in range(12)]
    assert again.logs(2, stderr=True) == "task 2 fails once\n" and again.logs(3, stderr=True) == ""


def test_a_compacted_run_resumed_shows_the_new_logs_and_is_reused_with_its_logs(tmp_path, monkeypatch):
    store = tmp_path / "store"
    spec = _attempts_spec(tmp_path, 4)
    run = batchsweep.run(spec, store=store, progress=False)
    assert cli.main(["runs", "compact", run.id, "--store", str(store)]) == 0
    assert run.resume() == [2]
    assert run.wait(progress=False) == 0
    again = batchsweep.load_run(run.id, store=store)
    assert again.logs(2) == "task 2 attempt 2\n"
    assert again.logs(2, stderr=True) == "", "the failed attempt's stderr in the log pack is forgotten"
    assert again.store.read_packed_log(run.id, 2) is None

    assert cli.main(["runs", "compact", run.id, "--store", str(store)]) == 0  # a second log pack
    again = batchsweep.load_run(run.id, store=store)
    assert [again.logs(i) for i in range(4)] == [
        "task 0 attempt 1\n",
        "task 1 attempt 1\n",
        "task 2 attempt 2\n",
        "task 3 attempt 1\n",
    ]
    reused = batchsweep.run(spec, store=store, progress=False)
    assert reused.results()["reused_from"].notna().all()
    assert [reused.logs(i) for i in range(4)] == [again.logs(i) for i in range(4)], "reused with its logs"


def test_a_compaction_cut_off_after_its_packs_are_written_loses_nothing_and_finishes_when_run_again(
        tmp_path, monkeypatch):
    from batchsweep.store import compact

    store = tmp_path / "store"
    run = batchsweep.run(_attempts_spec(tmp_path, 6), store=store, progress=False)

    def killed(self: object, run_id: str, indices: object) -> object:
        real(self, run_id, indices)
        raise KeyboardInterrupt  # as kill -9 after the packs are whole, before any task file is removed

    real = Store.write_log_pack
    monkeypatch.setattr(Store, "write_log_pack", killed)
    with pytest.raises(KeyboardInterrupt):
        compact.compact(batchsweep.load_run(run.id, store=store))
    monkeypatch.setattr(Store, "write_log_pack", real)
    half = batchsweep.load_run(run.id, store=store)
    expected = [f"task {i} attempt 1\n" for i in range(6)]
    assert [half.logs(i) for i in range(6)] == expected and half.logs(2, stderr=True) == "task 2 fails once\n"
    assert cli.main(["runs", "compact", run.id, "--store", str(store)]) == 0
    done = batchsweep.load_run(run.id, store=store)
    assert not (store / "runs" / run.id / "tasks").exists()
    assert [done.logs(i) for i in range(6)] == expected and done.logs(2, stderr=True) == "task 2 fails once\n"
