"""engine.json is typed: each engine declares its record model (`Engine.record_model`) and reads and writes
the file through it. A file in the shape earlier versions wrote reads; a damaged one (not JSON, or without a
field the engine needs) is one warning line naming the field, and the command goes on without it, never a
KeyError or ValueError."""

from __future__ import annotations

import json
import os
import re
import socket
import textwrap
from pathlib import Path

import pytest

import batchsweep
from batchsweep import cli
from batchsweep.aws.record import AwsRecord
from batchsweep.engines.aws_batch.engine import AwsBatchEngine
from batchsweep.engines.base import RunHandle, read_engine_record
from batchsweep.engines.local.engine import LocalEngine, LocalRecord
from batchsweep.store.core import Store
from batchsweep.task.arrayslice import Slicing

SCRIPT = Path(__file__).parent / "scripts" / "writes_metrics.py"


def _run(tmp_path: Path) -> tuple[batchsweep.Run, Path]:
    spec = tmp_path / "sweep.yaml"
    spec.write_text(textwrap.dedent(f"""
        name: engrec
        script: {SCRIPT}
        params: {{grid: {{a: [1, 2, 3]}}}}
    """))
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    return run, tmp_path / "store" / "runs" / run.id / "engine.json"


def _handle(tmp_path: Path, run: batchsweep.Run) -> RunHandle:
    return RunHandle.load(Store.open(tmp_path / "store"), run.id)


def test_the_local_engine_writes_and_reads_its_record_typed(tmp_path):
    run, path = _run(tmp_path)
    record = read_engine_record(_handle(tmp_path, run), LocalEngine.record_model)
    assert isinstance(record, LocalRecord) and LocalEngine.record_model is LocalRecord
    assert (record.engine, record.pid, record.host, record.finished) == (
        "local",
        os.getpid(),
        socket.gethostname(),
        True,
    )
    # As an earlier version wrote it (no failure field), with a field a later version added: read, and kept.
    earlier = {
        "engine": "local",
        "pid": 123,
        "pid_started": "77",
        "host": "elsewhere",
        "submitted_at": 1.0,
        "finished": True,
        "finished_at": 2.0,
        "failure": "OSError: No space left on device",
        "by": "v9",
    }
    path.write_text(json.dumps(earlier))
    engine = LocalEngine(_handle(tmp_path, run))
    assert engine.runner_failure() == "OSError: No space left on device" and not engine.poll().active
    engine._finish()  # a runner ending rewrites the record through the model
    assert json.loads(path.read_text())["by"] == "v9" and json.loads(path.read_text())["failure"]


def test_a_damaged_local_engine_json_is_one_warning_line(tmp_path, capsys):
    run, path = _run(tmp_path)
    path.write_text(json.dumps({"engine": "local", "pid": "not-a-pid", "host": socket.gethostname(),
                                "submitted_at": 1.0}))
    capsys.readouterr()
    assert cli.main(["status", run.id, "--store", str(tmp_path / "store")]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "engine.json" in err and "is damaged (pid: " in err
    assert "going on without it" in err
    assert LocalEngine(_handle(tmp_path, run)).cancel() is None  # nothing to stop, and no KeyError


def test_the_dask_engine_reads_an_earlier_record_and_a_damaged_one(tmp_path, caplog):
    pytest.importorskip("distributed")
    from batchsweep.engines.dask.engine import DaskEngine, DaskRecord

    run, path = _run(tmp_path)
    # JSON keys are strings: the errors of an earlier version's record are read back by task index.
    path.write_text(
        json.dumps(
            {
                "engine": "dask",
                "scheduler": "tcp://127.0.0.1:1",
                "keys": ["k-0", "k-1"],
                "detached": True,
                "owns_cluster": False,
                "pid": 1,
                "pid_started": None,
                "host": "h",
                "submitted_at": 1.0,
                "finished": True,
                "finished_at": 2.0,
                "lost_workers": 1,
                "errors": {"2": "the store is not visible on the worker"},
            }
        )
    )
    engine = DaskEngine(_handle(tmp_path, run))
    assert DaskEngine.record_model is DaskRecord
    assert engine.failure_reasons() == {2: "the store is not visible on the worker"}
    progress = engine.poll()
    assert not progress.active and progress.notes and "1" in progress.notes[0]
    path.write_text(json.dumps({"engine": "dask", "keys": ["k-0"]}))  # no scheduler
    caplog.clear()
    engine = DaskEngine(_handle(tmp_path, run))
    assert engine.failure_reasons() == {} and not engine.poll().active
    damaged = [r.getMessage() for r in caplog.records if "engine.json" in r.getMessage()]
    assert len(damaged) == 1 and "is damaged (scheduler: Field required)" in damaged[0]


def test_the_aws_engine_reads_its_submissions_typed_and_a_damaged_record_is_none(tmp_path, caplog):
    run, path = _run(tmp_path)
    handle = _handle(tmp_path, run)
    handle.store.write_json(handle.store.submission_key(run.id, 0), Slicing.of([0, 1, 2], 2).to_record())
    path.write_text(
        json.dumps(
            {
                "engine": "aws-batch",
                "submissions": [
                    {
                        "n": 0,
                        "tasks_per_child": 2,
                        "jobs": [{"id": "job-a", "offset": 0, "size": 2}],
                        "submitted_at": 1.0,
                    }
                ],
            }
        )
    )
    engine = AwsBatchEngine(handle)
    assert AwsBatchEngine.record_model is AwsRecord
    assert engine._record().submissions[0].jobs[0].id == "job-a"
    assert engine._child_job_id(2) == "job-a:1"  # task 2 is in child 1 of the array
    path.write_text(json.dumps({"engine": "aws-batch", "submissions": [{"n": 0, "jobs": [{"offset": 0}]}]}))
    caplog.clear()
    assert engine._record().submissions == [] and engine._child_job_id(2) is None
    damaged = [r.getMessage() for r in caplog.records if "engine.json" in r.getMessage()]
    assert damaged and "is damaged (submissions.0.jobs.0.id: Field required)" in damaged[0]


# engine.json opened by hand (`store.read_record(store.engine_record_key(...))`), or an engine's settings read
# by key (`settings["job_queue"]`, `record.engine.get("region")`): both go through their models.
ENGINE_JSON = re.compile(r"engine_record_key\(")
SETTINGS_BY_KEY = re.compile(r"(?:settings|\.engine)(?:\[|\.get\()")


def test_the_package_reads_engine_json_and_engine_settings_only_through_their_models():
    package = Path(batchsweep.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        where = str(path.relative_to(package))
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if (
                ENGINE_JSON.search(line)
                and where not in ("store/record.py", "store/core.py", "store/layout.py")
            ) or SETTINGS_BY_KEY.search(line):
                found.append(f"{where}:{n}: {line.strip()}")
    assert not found, ("read engine.json with `read_engine_record` and run.json's `engine` with "
                       "`record.engine_as(Model)`, not by key:\n" + "\n".join(found))

