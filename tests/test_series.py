"""The series recorder (batchsweep.task.series.Recorder): the lines a task's log rule matches and the lines
the script appends itself, read from where the last poll left off, whole lines only."""

from __future__ import annotations

import json
from pathlib import Path

from batchsweep.store.core import TaskDir
from batchsweep.task.series import Recorder


def test_the_recorder_reads_whole_lines_of_both_sources_once_and_uploads_what_changed(tmp_path: Path) -> None:
    uploads: list[bytes] = []
    rec = Recorder(
        TaskDir(tmp_path), {"stdout": r"epoch (?P<step>\d+) loss=(?P<loss>\S+)"}, upload=uploads.append
    )
    rec.start()
    series = tmp_path / "metrics.jsonl"
    log = tmp_path / "stdout.log"
    line = json.dumps({"step": 0, "acc": 0.5, "t": 1.0}) + "\n"
    with open(series, "ab") as f:  # the script's log_metrics(step=0, acc=0.5), cut halfway through by a poll
        f.write(line[:10].encode())
    log.write_text("epoch 0 lo")
    assert rec.poll() == []  # neither line is whole yet
    with open(series, "ab") as f:
        f.write(line[10:].encode())
    with open(log, "a") as f:
        f.write("ss=0.9\nepoch 1 loss=0.7\n")
    second = rec.poll()
    assert [(r["step"], r.get("loss"), r.get("acc")) for r in second] == [(0, None, 0.5), (0, 0.9, None),
                                                                          (1, 0.7, None)]
    assert rec.poll() == []  # nothing new: nothing read twice, nothing uploaded again
    assert len(rec.records) == 3 and rec.last_step == 1
    assert len(uploads) == 1 and uploads[-1] == series.read_bytes()

    rec.start()  # a new attempt: a new series, read from its start
    assert not series.exists() and rec.records == []
    log.write_text("epoch 5 loss=0.1\n")
    assert [(r["step"], r["loss"]) for r in rec.poll(final=True)] == [(5, 0.1)]


def test_a_remote_series_goes_up_at_most_every_push_interval_and_whole_at_the_end(tmp_path: Path) -> None:
    """The log is read at every poll; the series is uploaded when a read added lines and `push_every` seconds
    passed since the start or the last upload (0: at every such read), and by the final poll whatever the
    time."""
    uploads: list[bytes] = []
    now = [100.0]
    rec = Recorder(TaskDir(tmp_path), {"stdout": r"epoch (?P<step>\d+) loss=(?P<loss>\S+)"},
                   upload=uploads.append, push_every=5.0, clock=lambda: now[0])
    rec.start()
    log = tmp_path / "stdout.log"
    for step in range(1, 8):  # a step a second
        with open(log, "a") as f:
            f.write(f"epoch {step} loss=0.{step}\n")
        assert [r["step"] for r in rec.poll()] == [step]  # every step read at once
        now[0] += 1.0
    assert [len(u.splitlines()) for u in uploads] == [6]  # 5 s after the start, not at its first read
    with open(log, "a") as f:
        f.write("epoch 8 loss=0.8\n")
    rec.poll(final=True)
    assert uploads[-1] == (tmp_path / "metrics.jsonl").read_bytes() and len(uploads[-1].splitlines()) == 8
