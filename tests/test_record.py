"""run.json is typed (`batchsweep.record.RunRecord`): what planning writes validates, a run reads its fields
through it, and a run.json that lost a run's fields is reported as damaged in one line, not a KeyError."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

import batchsweep
from batchsweep import cli
from batchsweep.errors import RunDamaged
from batchsweep.record import RunRecord

SCRIPT = Path(__file__).parent / "scripts" / "writes_metrics.py"


def _run(tmp_path: Path) -> batchsweep.Run:
    spec = tmp_path / "sweep.yaml"
    spec.write_text(textwrap.dedent(f"""
        name: typed
        script: {SCRIPT}
        params: {{grid: {{a: [1, 2]}}}}
    """))
    return batchsweep.run(spec, store=tmp_path / "store", progress=False)


def test_the_written_run_json_is_a_run_record_and_the_run_reads_it_typed(tmp_path):
    run = _run(tmp_path)
    on_disk = json.loads((tmp_path / "store" / "runs" / run.id / "run.json").read_text())
    record = RunRecord.of(on_disk)
    assert (record.run_id, record.name, record.backend, record.n_tasks) == (run.id, "typed", "local", 2)
    assert record.spec["script"] == "writes_metrics.py" and record.code_dir == str(SCRIPT.parent)
    assert record.engine == on_disk["engine"] and not record.cancelled
    assert run.record == record and run.handle().record == record


def test_a_run_json_without_a_runs_fields_is_damaged_in_one_line(tmp_path, capsys):
    run = _run(tmp_path)
    path = tmp_path / "store" / "runs" / run.id / "run.json"
    broken = json.loads(path.read_text())
    broken["n_tasks"] = "many"
    path.write_text(json.dumps(broken))
    with pytest.raises(RunDamaged, match=r"run\.json is damaged \(n_tasks: "):
        _ = batchsweep.load_run(run.id, store=tmp_path / "store").n_tasks
    assert cli.main(["status", run.id, "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run.json is damaged" in err
