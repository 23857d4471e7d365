"""run.json is typed (`batchsweep.store.record.RunRecord`): what planning writes validates, a run reads its
fields through it, and a run.json that lost a run's fields is reported as damaged in one line, not a
KeyError."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

import batchsweep
from batchsweep import cli
from batchsweep.aws.record import AwsEngineSettings
from batchsweep.engines.dask.settings import DaskEngineSettings
from batchsweep.engines.local.settings import LocalEngineSettings
from batchsweep.errors import RunDamaged, SpecError
from batchsweep.spec import reader as spec_mod
from batchsweep.store.record import RunRecord

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
    assert record.spec.script == "writes_metrics.py" and record.code_dir == str(SCRIPT.parent)
    assert record.engine.model_dump() == on_disk["engine"] == {"gpus": [], "memory_limit_mib": None}
    assert record.engine_as(LocalEngineSettings) == LocalEngineSettings(gpus=[], memory_limit_mib=None)
    assert not record.cancelled
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


# run.json as the first versions wrote it: no engine settings, key, provenance nor flags' later fields, and a
# spec without the fields added since (args, python, requirements, stop, engines, a metrics rule's `match`).
OLD_SPEC = {
    "name": "typed",
    "script": "writes_metrics.py",
    "function": None,
    "params": {"grid": {"a": [1, 2]}, "list": [], "zip": {}, "random": None, "fixed": {}, "repeat": 1},
    "inputs": [],
    "outputs": [],
    "metrics": {"stdout": "last"},
    "resources": {"vcpus": 1.0, "memory_mib": 2048, "gpus": 0},
    "timeout": None,
    "retries": 0,
    "max_parallel": 0,
    "warm": False,
    "env": {},
    "secrets": {},
    "code": {"exclude": [], "max_mib": 50.0},
    "search": None,
    "backend": "local",
    "aws": {
        "profile": None,
        "region": None,
        "stack": "batchsweep",
        "bucket": None,
        "job_queue": None,
        "job_definition": None,
        "log_group": None,
        "spot": True,
        "tasks_per_job": None,
    },
    "dask": {},
}


def test_a_run_json_written_by_an_earlier_version_reads_with_its_spec_typed(tmp_path):
    run = _run(tmp_path)
    path = tmp_path / "store" / "runs" / run.id / "run.json"
    now = json.loads(path.read_text())
    old = {k: now[k] for k in ("run_id", "name", "backend", "created", "created_ts", "n_tasks", "code_hash",
                               "base_dir", "code_dir", "script_name", "flags", "timeout_s", "max_parallel",
                               "param_names")}
    path.write_text(json.dumps({**old, "spec": OLD_SPEC}))
    again = batchsweep.load_run(run.id, store=tmp_path / "store")
    spec = again.record.spec
    assert spec.metrics.stdout == "last" and spec.metrics.match == "last"  # type: ignore[union-attr]
    assert (
        spec.params is not None
        and spec.params.grid == {"a": [1, 2]}
        and spec.stop is None
        and spec.args is None
    )
    assert spec.base_dir == Path(now["base_dir"]) and again.record.engine.model_dump() == {}
    assert again.record.engine_as(LocalEngineSettings).memory_limit_mib is None  # no settings: the defaults
    assert sorted(again.results()["a"]) == [1, 2] and again.exit_code == 0
    assert json.loads(path.read_text())["spec"] == OLD_SPEC  # reading never rewrites the record


def test_the_recorded_spec_is_the_specs_whole_dump_on_disk_as_before(tmp_path):
    run = _run(tmp_path)
    on_disk = json.loads((tmp_path / "store" / "runs" / run.id / "run.json").read_text())
    spec = on_disk["spec"]
    assert "base_dir" not in spec and "spec_file" not in spec and "list_" not in spec["params"]
    assert spec["params"]["list"] == [] and spec["resources"] == {
        "vcpus": 1.0,
        "memory_mib": 2048,
        "gpus": 0.0,
    }
    # every field, defaults too, as earlier versions wrote
    assert spec["stop"] is None and spec["engines"] == {}
    assert RunRecord.of(on_disk).to_json() == on_disk  # read and written back: the same JSON
    assert run.record.spec.spec_file == tmp_path / "sweep.yaml" and run.record.spec.base_dir == tmp_path


def test_a_recorded_spec_is_not_judged_again_by_todays_engines(tmp_path):
    run = _run(tmp_path)
    path = tmp_path / "store" / "runs" / run.id / "run.json"
    info = json.loads(path.read_text())
    gone = {
        **info,
        "backend": "k8s",
        "spec": {**info["spec"], "backend": "k8s", "engines": {"k8s": {"pods": 2}}},
    }
    record = RunRecord.of(gone)  # an engine that was installed when the run was planned, and is not now
    assert record.spec.backend == "k8s" and record.spec.engines == {"k8s": {"pods": 2}}
    with pytest.raises(SpecError, match="unknown backend 'k8s'"):
        spec_mod.validate(gone["spec"], source="sweep.yaml", base_dir=tmp_path)


def test_the_engine_settings_are_typed_by_their_engines_model_and_read_back_as_every_version_wrote(tmp_path):
    run = _run(tmp_path)
    info = json.loads((tmp_path / "store" / "runs" / run.id / "run.json").read_text())
    # An aws-batch run as an earlier version wrote it (no `spot` yet, a field from a later version), read
    # typed.
    aws = {"profile": None, "region": "us-east-1", "stack": "batchsweep", "bucket": "b", "job_queue": "q",
           "job_definition": "d", "log_group": "g", "image_uri": None, "prefix": "batchsweep", "later": 1}
    record = RunRecord.of({**info, "backend": "aws-batch", "engine": aws})
    settings = record.engine_as(AwsEngineSettings)
    assert (settings.region, settings.job_queue, settings.log_group, settings.spot) == (
        "us-east-1",
        "q",
        "g",
        None,
    )
    assert record.to_json()["engine"] == aws and settings.model_dump(mode="json", exclude_unset=True) == aws
    # A Dask run's cluster class is spelt `class`, as run.json has always held it, and read back typed.
    cluster = {"cluster": {"class": "dask_jobqueue.SLURMCluster", "kwargs": {"cores": 2}, "scale": 4}}
    dask = RunRecord.of({**info, "backend": "dask", "engine": cluster})
    typed = dask.engine_as(DaskEngineSettings)
    assert (
        typed.cluster is not None
        and typed.cluster != "local"
        and typed.cluster.class_ == "dask_jobqueue.SLURMCluster"
    )
    assert typed.cluster.scale == 4 and typed.scheduler is None
    assert RunRecord.of({**dask.to_json(), "engine": typed}).to_json()["engine"] == cluster


def test_a_run_whose_engine_is_not_installed_opens_with_its_settings_kept(tmp_path):
    run = _run(tmp_path)
    path = tmp_path / "store" / "runs" / run.id / "run.json"
    info = json.loads(path.read_text())
    gone = {**info, "backend": "k8s", "engine": {"namespace": "sweeps", "pods": 2},
            "spec": {**info["spec"], "backend": "k8s", "engines": {"k8s": {"pods": 2}}}}
    path.write_text(json.dumps(gone))
    again = batchsweep.load_run(run.id, store=tmp_path / "store")
    assert again.record.engine.model_dump() == {"namespace": "sweeps", "pods": 2}
    assert again.record.to_json() == gone  # every field kept, the same JSON
    assert again.n_tasks == 2 and len(again.store.statuses(run.id)) == 2


def test_a_damaged_engine_setting_is_one_line_naming_the_field(tmp_path, capsys):
    run = _run(tmp_path)
    path = tmp_path / "store" / "runs" / run.id / "run.json"
    info = json.loads(path.read_text())
    path.write_text(json.dumps({**info, "engine": {"gpus": [], "memory_limit_mib": "lots"}}))
    again = batchsweep.load_run(run.id, store=tmp_path / "store")
    assert again.n_tasks == 2  # the record itself opens: only a reader of the engine's settings needs them
    with pytest.raises(RunDamaged, match=r"run\.json is damaged \(engine\.memory_limit_mib: "):
        again.record.engine_as(LocalEngineSettings)
    assert cli.main(["resume", run.id, "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "engine.memory_limit_mib" in err


# A read of a run's record by string key: `run.info["spec"]`, `p.info.get("search")`,
# `store.run_info(id)["name"]`.
KEYED_READ = re.compile(r'\.info\[|\.info\.get\(|info\["spec"\]|run_info\([^)]*\)\s*(?:\[|\.get\()')
ASSIGNED = re.compile(r'\.info\[[^\]]+\]\s*=[^=]')  # a plan's info being written, not read


def test_the_package_reads_run_json_through_the_typed_record_not_by_key():
    package = Path(batchsweep.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if KEYED_READ.search(line) and not ASSIGNED.search(line):
                found.append(f"{path.relative_to(package)}:{n}: {line.strip()}")
    assert not found, "read run.json through `run.record` (a RunRecord), not by key:\n" + "\n".join(found)


def test_list_runs_gives_typed_entries_whose_dict_is_the_stores_json(tmp_path):
    run = _run(tmp_path)
    runs_dir = tmp_path / "store" / "runs"
    on_disk = json.loads((runs_dir / run.id / "run.json").read_text())
    # A local pointer to a run kept in S3, as earlier versions wrote it; a run.json that is not JSON; one
    # whose summary fields are wrong.
    pointer = {"run_id": "remote-1", "pointer": True, "name": "typed", "backend": "aws-batch",
               "created": "2026-01-01T00:00:00+00:00", "created_ts": 1.0, "n_tasks": 4,
               "store": "s3://bucket/batchsweep", "aws": {"profile": "lab", "region": "eu-west-1"}}
    for run_id, text in (("remote-1", json.dumps(pointer)), ("broken-1", "{not json"),
                         ("wrong-1", json.dumps({**on_disk, "run_id": "wrong-1", "n_tasks": "many"}))):
        (runs_dir / run_id).mkdir()
        (runs_dir / run_id / "run.json").write_text(text)
    entries = {e.run_id: e for e in batchsweep.list_runs(store=tmp_path / "store")}
    local, remote = entries[run.id], entries["remote-1"]
    assert (local.name, local.backend, local.n_tasks, local.pointer, local.damaged) == (
        "typed",
        "local",
        2,
        False,
        None,
    )
    assert local.to_dict() == on_disk  # the whole run.json, as the store holds it
    assert remote.pointer and remote.store == "s3://bucket/batchsweep" and remote.aws is not None
    assert (remote.aws.profile, remote.aws.region) == ("lab", "eu-west-1") and remote.to_dict() == pointer
    assert (
        entries["broken-1"].damaged
        and entries["broken-1"].to_dict()["damaged"] == entries["broken-1"].damaged
    )
    assert entries["wrong-1"].damaged is not None and entries["wrong-1"].damaged.startswith("n_tasks: ")
    assert [e.run_id for e in batchsweep.list_runs(store=tmp_path / "store")][:2] == ["broken-1", "wrong-1"]
    assert batchsweep.load_run(store=tmp_path / "store").id == run.id  # the latest readable run
