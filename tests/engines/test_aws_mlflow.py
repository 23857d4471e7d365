"""`metrics: {mlflow: true}` on AWS Batch (moto, containers played here): the worker in the container reads
the task's MLflow store and ships its metrics and series to S3; the task image is the one with MLflow's
client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import batchsweep
from batchsweep.emulator import player
from batchsweep.emulator import server as emulator
from batchsweep.task import mlflowmetrics

SCRIPT = Path(__file__).parent.parent / "scripts" / "mlflow_curve.py"

pytestmark = pytest.mark.skipif(mlflowmetrics.missing() is not None,
                                reason="MLflow's client is not installed (pip install 'batchsweep[mlflow]')")


def test_an_mlflow_sweep_on_aws_batch_gets_its_metrics_and_series_from_the_containers(
        tmp_path: Path, session: Any, stack: dict[str, str]) -> None:
    from batchsweep.infra import image

    spec = tmp_path / "sweep.yaml"
    spec.write_text("\n".join([
        "name: cloud-mlflow",
        f"script: {SCRIPT}",
        "params: {grid: {quality: [0.25, 0.5]}}",
        "metrics: {mlflow: true}",
        "backend: aws-batch",
        "aws: {stack: batchsweep, region: us-east-1}",
        "resources: {vcpus: 0.5, memory_mib: 1024}",
    ]) + "\n")
    reqs = list(image.MLFLOW)  # the worker reads MLflow: the task image has its client
    emulator.register_image(
        session, f"{image.repository_uri(stack)}:{image.image_tag(image.current_dockerfile(reqs), reqs)}"
    )
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    played = player.play(run)
    assert played and all(p.exit_code == 0 for p in played), [p.describe() for p in played]
    run = batchsweep.load_run(run.id, store=tmp_path / "store")
    assert run.wait(progress=False) == 0
    df = run.results().set_index("task")
    assert list(df["status"]) == ["succeeded", "succeeded"]
    assert list(df["val_loss"]) == [0.5, 0.75] and list(df["acc"]) == [0.75, 0.5]
    raw = run.store.backend.read_bytes(run.store.task_key(run.id, 0, "metrics.jsonl"))
    assert [(r["step"], r.get("val_loss")) for r in map(json.loads, raw.splitlines()) if "val_loss" in r] == \
        [(1, 1.25), (2, 0.75), (3, 0.25 + 1 / 3), (4, 0.5)]
