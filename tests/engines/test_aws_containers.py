"""What runs in an AWS Batch container, played here from moto's records of the submitted jobs
(`batchsweep.emulator`): each child's slice of tasks, the emulator's own commands, the code package and the
worker's hygiene, and early stopping decided by the containers from each other's series in S3."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from aws_batch_helpers import SCRIPTS, play_containers, spec_body, write_spec
from helpers import assert_stopped_by_the_median_rule

import batchsweep
from batchsweep.emulator import player
from batchsweep.emulator import server as emulator


def test_a_failing_task_fails_its_child_with_the_task_exit_code(tmp_path, stack, calls):
    spec = write_spec(
        tmp_path, spec_body("{a: [1, 2, 3]}") + "params: {grid: {a: [1, 2, 3]}, fixed: {fail_on: 2}}\n"
    )
    spec.write_text(spec.read_text().replace("params: {grid: {a: [1, 2, 3]}}\n", ""))
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    assert play_containers(run) == [0, 3, 0]
    df = batchsweep.load_run(run.id, store=tmp_path / "store").results().set_index("a")
    assert df.loc[2, "status"] == "failed" and df.loc[2, "exit_code"] == 3
    assert "failing on purpose" in run.logs(1, stderr=True)


@pytest.mark.parametrize("scheduler", ["aws-batch", "kubernetes", "slurm"])
def test_each_child_runs_the_slice_its_schedulers_array_index_names(tmp_path, stack, scheduler):
    """The worker of an array child takes its index from AWS Batch, a Kubernetes Indexed Job or a Slurm array
    (`batchsweep.task.arrayslice`): played in reverse order, each child still runs exactly its own tasks."""
    import dataclasses

    spec = write_spec(
        tmp_path,
        spec_body("{a: [1, 2, 3, 4, 5]}", aws="{stack: batchsweep, region: us-east-1, tasks_per_job: 2}"),
    )
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    children = player.children(run)
    job = children[0].job_id.rsplit(":", 1)[0]
    assert [c.job_id for c in children] == [f"{job}:0", f"{job}:1", f"{job}:2"]
    for number, child in reversed(list(enumerate(children))):
        env = {k: v for k, v in child.env.items() if k != "AWS_BATCH_JOB_ARRAY_INDEX"}
        env.update(
            {
                "aws-batch": {"AWS_BATCH_JOB_ARRAY_INDEX": str(number)},
                "kubernetes": {"JOB_COMPLETION_INDEX": str(number)},
                "slurm": {"SLURM_ARRAY_TASK_ID": str(number + 1), "SLURM_ARRAY_TASK_MIN": "1"},
            }[scheduler]
        )
        assert player.play_child(dataclasses.replace(child, env=env)).exit_code == 0
    statuses = run.store.statuses(run.id)
    assert {i: (s.state.value, s.worker) for i, s in statuses.items()} == {
        0: ("succeeded", f"{job}:0"), 1: ("succeeded", f"{job}:0"), 2: ("succeeded", f"{job}:1"),
        3: ("succeeded", f"{job}:1"), 4: ("succeeded", f"{job}:2")}
    assert list(batchsweep.load_run(run.id, store=tmp_path / "store").results()["product"]) == [1, 2, 3, 4, 5]


def test_the_player_reads_the_runs_records_typed_and_a_damaged_engine_json_is_one_warning(
    tmp_path, stack, caplog
):
    """The player reads run.json's settings and engine.json through the AWS engine's own models
    (`batchsweep.aws.record`): a record in the shape an earlier version wrote plays; a damaged one is one
    warning line naming the field, and nothing is played (never a KeyError)."""
    spec = write_spec(
        tmp_path, spec_body("{a: [1, 2, 3]}", aws="{stack: batchsweep, region: us-east-1, tasks_per_job: 2}")
    )
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    key = run.store.engine_record_key(run.id)
    written = run.store.read_json(key)
    job = written["submissions"][0]["jobs"][0]
    # As an earlier version wrote it: no submitted_at nor tasks_per_child, and a field a later one added.
    earlier = {"engine": "aws-batch", "by": "v9", "submissions": [{"n": 0, "jobs": [job]}]}
    run.store.write_json(key, earlier)
    assert [c.job_id for c in player.children(run)] == [f"{job['id']}:0", f"{job['id']}:1"]
    run.store.write_json(
        key, {"engine": "aws-batch", "submissions": [{"n": 0, "jobs": [{"id": job["id"], "offset": 0}]}]}
    )
    caplog.clear()
    again = batchsweep.load_run(run.id, store=tmp_path / "store")
    assert player.play(again) == []
    damaged = [r.getMessage() for r in caplog.records if "engine.json" in r.getMessage()]
    assert len(damaged) == 1 and "is damaged (submissions.0.jobs.0.size: Field required)" in damaged[0]
    run.store.write_json(key, written)
    assert set(play_containers(again)) == {0}
    assert sorted(batchsweep.load_run(run.id, store=tmp_path / "store").results()["a"]) == [1, 2, 3]


def test_emulator_play_reads_the_run_from_the_store_given_and_names_the_failed_child(tmp_path, stack, capsys):
    spec = write_spec(
        tmp_path, spec_body("{a: [1, 2, 3]}") + "params: {grid: {a: [1, 2, 3]}, fixed: {fail_on: 2}}\n"
    )
    spec.write_text(spec.read_text().replace("params: {grid: {a: [1, 2, 3]}}\n", ""))
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    assert emulator.main(["play", run.id, "--store", str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "played 3 child jobs: 2 exited 0"
    assert out[1].startswith("child ") and out[1].endswith(":1: exit code 3; no stderr")
    # the failed task's own words are in the store, and the output says where (no one reads "no stderr" as
    # "nothing to see")
    assert out[2] == (f"a child exits non-zero when a task of it failed: `batchsweep status {run.id}` says "
                      f"which and why, `batchsweep logs {run.id} TASK --stderr` shows what it printed")


def test_emulator_push_points_the_stack_at_a_locally_built_image(stack, session, capsys):
    from batchsweep.infra.registry import image_exists
    from batchsweep.infra.stack import stack_outputs

    ref = f"{stack['ImageUri'].rsplit(':', 1)[0]}:bs-0123456789abcdef-r0123456789ab"
    assert emulator.main(["push", ref]) == 0
    outputs = stack_outputs("batchsweep", session=session)
    assert outputs["ImageUri"] == ref and image_exists(session, outputs)


def test_emulator_play_inside_an_image_needs_buildah(tmp_path, stack, monkeypatch, capsys):
    run = batchsweep.run(write_spec(tmp_path, spec_body("{a: [1]}")), store=tmp_path / "store", detach=True)
    monkeypatch.setenv("PATH", str(tmp_path))  # no buildah in sight
    assert (
        emulator.main(["play", run.id, "--store", str(tmp_path / "store"), "--image", "localhost/x:1"]) == 2
    )
    assert (
        capsys.readouterr().err.strip()
        == "error: play --image needs buildah on PATH (Debian/Ubuntu: `apt-get install buildah`)"
    )


# -- issue 15: no secrets in the package, no orphans in the worker -----------------------------
def _hostile_project(tmp_path: Path, fixed: str) -> Path:
    import shutil

    code = tmp_path / "proj"
    code.mkdir()
    shutil.copy(SCRIPTS / "hostile_task.py", code / "task.py")
    (code / ".env").write_text("DB_PASSWORD=hunter2\n")
    (code / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    (code / "passwd").symlink_to("/etc/passwd")
    return write_spec(
        code,
        spec_body("{a: [1]}", params=f"{{grid: {{a: [1]}}, fixed: {fixed}}}")
        .replace(f"script: {SCRIPTS / 'writes_metrics.py'}", "script: task.py")
        .replace("params: {grid: {a: [1]}}\n", ""),
    )


def test_run_leaves_secrets_and_outside_symlinks_out_of_the_code_package_and_says_so(tmp_path, stack, caplog):
    import io
    import logging
    import tarfile

    spec = _hostile_project(tmp_path, "{}")
    with caplog.at_level(logging.WARNING, logger="batchsweep"):
        run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    assert (
        "left out of the package: .env, id_rsa (looks like a secret); passwd (symlink to outside"
        in caplog.text
    )
    data = run.store.backend.read_bytes(run.store.code_key(run.info["code_sha256"]))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        assert tar.getnames() == ["sweep.yaml", "task.py"]
    assert play_containers(run) == [0]


@pytest.mark.parametrize("leaves", ["setsid_child", "daemon"])
def test_the_aws_worker_kills_a_setsid_grandchild_when_its_task_ends(tmp_path, stack, leaves):
    """`daemon`: double-forked, its own session, an empty environment (issue 30, item 5)."""
    from helpers import alive

    pids = tmp_path / "pids"
    pids.mkdir()
    run = batchsweep.run(_hostile_project(tmp_path, f'{{{leaves}: "{pids}"}}'), store=tmp_path / "store",
                         detach=True)
    assert play_containers(run) == [0]
    (child,) = [int(p.read_text()) for p in pids.iterdir()]
    deadline = time.monotonic() + 120
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child), "a setsid grandchild outlived its task in the AWS worker"


def test_median_rule_prunes_the_bad_curves_in_played_containers_reading_each_others_series_from_s3(
        tmp_path, stack, calls, session, monkeypatch):
    """No driver: the run is detached and the containers decide. Four play at once; the first four are good
    and run to the end, of the next four the ones worse than their median stop from step 2 on (pruned, exit
    0)."""
    from batchsweep.infra import image

    monkeypatch.setenv("BATCHSWEEP_SERIES_FLUSH_S", "0.2")  # S3's default is 5 s
    spec = write_spec(
        tmp_path,
        "\n".join(
            [
                "name: cloud-curves",
                f"script: {SCRIPTS / 'curve.py'}",
                "params: {grid: {quality: [0.2, 0.3, 0.1, 0.15, 1.0, 2.0, 0.12, 1.5]}, fixed: {pace: 0.25, "
                "epochs: 16}}",
                r"metrics: {stdout: 'epoch (?P<step>\d+) .*val_loss=(?P<val_loss>[\d.]+)'}",
                "stop: {metric: val_loss, rule: median, min_steps: 2, min_trials: 2}",
                "backend: aws-batch",
                "aws: {stack: batchsweep, region: us-east-1}",
                "resources: {vcpus: 0.5, memory_mib: 1024}",
            ]
        )
        + "\n",
    )
    reqs = [image.OPTUNA]  # the worker decides: stop: puts Optuna in the task image
    emulator.register_image(
        session, f"{image.repository_uri(stack)}:{image.image_tag(image.current_dockerfile(reqs), reqs)}"
    )
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    assert play_containers(run) == [0] * 8  # a pruned task fails no container
    run = batchsweep.load_run(run.id, store=tmp_path / "store")
    assert run.wait(progress=False) == 0
    statuses = run.statuses()
    pruned = {i for i, s in statuses.items() if s.state.value == "pruned"}
    # The clearly bad curves are always stopped and the best two never are; a middling one (0.2, 0.3) may be
    # stopped too when a loaded machine changes which containers finish first, and so may 0.15: printed to 4
    # decimals it is worse than the median of 0.1 and 0.2 at step 2 (0.65 > 0.6499999999999999).
    assert {4, 5, 7} <= pruned and not pruned & {2, 6}
    assert_stopped_by_the_median_rule(run, pruned, epochs=16, bad={4, 5, 7})


def test_a_played_container_stops_a_task_at_the_step_local_does_and_pushes_a_median_runs_series_every_5_s(
        tmp_path, stack, session):
    """Each engine's own intervals (no BATCHSWEEP_SERIES_FLUSH_S). The same three tasks one after another on
    the local engine and in one played container: the bad third is stopped at step 2 on both, the first step
    the median rule may decide once two tasks finished, and ends by step 3: the script prints an epoch only
    once the worker has read the one before (curve.py --gated), so a task running on past that is a late
    decision, not a slow machine. The median rule reads no running series, so a container pushes one to S3 at
    most every 5 s."""
    from batchsweep.infra import image

    def spec(where: str, backend: str) -> Path:
        (tmp_path / where).mkdir()
        return write_spec(tmp_path / where, "\n".join([
            "name: stop-where-local-does",
            f"script: {SCRIPTS / 'curve.py'}",
            "params: {grid: {quality: [0.1, 0.2, 2.0]}, fixed: {pace: 0, epochs: 12, gated: true}}",
            r"metrics: {stdout: 'epoch (?P<step>\d+) .*val_loss=(?P<val_loss>[\d.]+)'}",
            "stop: {metric: val_loss, rule: median, min_steps: 2, min_trials: 2}",
            "resources: {vcpus: 0.5, memory_mib: 1024}", backend]) + "\n")

    reqs = [image.OPTUNA]
    tag = image.image_tag(image.current_dockerfile(reqs), reqs)
    emulator.register_image(session, f"{image.repository_uri(stack)}:{tag}")
    local = batchsweep.run(spec("local", ""), store=tmp_path / "local-store", detach=True, max_parallel=1)
    cloud = batchsweep.run(spec("cloud", "backend: aws-batch\naws: {stack: batchsweep, region: us-east-1, "
                                         "tasks_per_job: 3}"), store=tmp_path / "store", detach=True)
    assert play_containers(cloud) == [0]  # one child runs the three tasks, as the local engine does
    assert local.wait(progress=False) == 0
    for run in (local, batchsweep.load_run(cloud.id, store=tmp_path / "store")):
        statuses = run.statuses()
        assert [(s.state.value, s.last_step) for s in (statuses[0], statuses[1])] == [("succeeded", 12)] * 2
        pruned = statuses[2]
        assert pruned.state.value == "pruned" and pruned.last_step in (2, 3), (run.store.url, pruned)
        assert str(pruned.error).startswith("pruned at step 2 by the median rule")
    backend = cloud.store.backend  # the bucket is versioned: a version per upload
    key = backend._key(cloud.store.task_series_key(cloud.id, 0))
    pushes = len(session.client("s3").list_object_versions(Bucket=backend.bucket, Prefix=key)["Versions"])
    took = statuses[0].ended_at - statuses[0].started_at  # played task 0: twelve reads a second apart or more
    assert 1 <= pushes <= 2 + took // 5, (pushes, took)  # the first read's, one per 5 s, the last read's
