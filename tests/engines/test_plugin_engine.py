"""An engine registered from outside the package (an entry point in `batchsweep.engines`) runs a sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

TOY = Path(__file__).parent / "toy"
SCRIPT = Path(__file__).parents[1] / "scripts" / "writes_metrics.py"


def _cli(tmp_path: Path, *args: str, plugin: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CI": "true"}
    if plugin:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TOY), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "batchsweep", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _spec(tmp_path: Path, block: str = "") -> Path:
    spec = tmp_path / "sweep.yaml"
    spec.write_text(textwrap.dedent(f"""
        name: toy
        script: {SCRIPT}
        params: {{grid: {{a: [1, 2, 3], b: [2]}}}}
        backend: serial
    """) + block)
    return spec


def test_an_entry_point_engine_is_a_valid_backend_and_runs_a_sweep_end_to_end(tmp_path):
    out = _cli(tmp_path, "run", str(_spec(tmp_path)))
    assert out.returncode == 0, out.stderr
    results = _cli(tmp_path, "results", "--format", "json")
    rows = json.loads(results.stdout)
    assert sorted((r["a"], r["product"], r["status"], r["worker"]) for r in rows) == [
        (1, 2, "succeeded", "serial"), (2, 4, "succeeded", "serial"), (3, 6, "succeeded", "serial")]


def test_without_the_plugin_the_backend_is_one_line_naming_the_known_ones(tmp_path):
    out = _cli(tmp_path, "run", str(_spec(tmp_path)), plugin=False)
    assert out.returncode == 2
    assert "unknown backend 'serial'" in out.stderr and "local, aws-batch, dask" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_the_engines_own_block_is_validated_by_its_settings_model_and_reaches_it(tmp_path):
    spec = _spec(tmp_path, "serial: {label: toy-1}\n")
    out = _cli(tmp_path, "run", str(spec), "--set", "serial.label=toy-2")
    assert out.returncode == 0, out.stderr
    rows = json.loads(_cli(tmp_path, "results", "--format", "json").stdout)
    assert {r["worker"] for r in rows} == {"toy-2"}  # --set reached the block untouched, the engine used it

    bad = _cli(tmp_path, "run", str(_spec(tmp_path, "serial: {lable: x}\n")))
    assert bad.returncode == 2
    assert bad.stderr.strip().endswith("serial.lable: unknown key; did you mean 'label'? valid keys: label")
    assert len(bad.stderr.strip().splitlines()) == 1
