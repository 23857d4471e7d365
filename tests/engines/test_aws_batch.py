"""The AWS Batch engine against moto's server on 127.0.0.1. Moto runs no containers here, so the tests play
the container: each submitted job's own command and environment, run locally once per array index."""

from __future__ import annotations

import json
import textwrap
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import batchsweep
from batchsweep import cli
from batchsweep.aws import clients
from batchsweep.emulator import player
from batchsweep.emulator import server as emulator
from batchsweep.engines.aws_batch import retry_strategy
from batchsweep.model import State, TaskStatus
from batchsweep.store.core import Store

SCRIPTS = Path(__file__).parent.parent / "scripts"


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every AWS call the engine makes (operation, params), recorded by a botocore event hook on its real
    clients."""
    recorded: list[tuple[str, dict[str, Any]]] = []
    real = clients.make_client

    def recording(service: str, **kwargs: Any) -> Any:
        client = real(service, **kwargs)

        def hook(params: dict[str, Any], model: Any, **_: Any) -> None:
            recorded.append((f"{service}.{model.name}", params))

        client.meta.events.register("provide-client-params.*.*", hook)
        return client

    monkeypatch.setattr(clients, "make_client", recording)
    yield recorded


def write_spec(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def spec_body(grid: str, **extra: str) -> str:
    """A spec whose keys are these defaults, each replaced by `extra`'s value of that key (a key is written
    once)."""
    keys = {"name": "cloud", "script": str(SCRIPTS / "writes_metrics.py"), "params": f"{{grid: {grid}}}",
            "backend": "aws-batch", "aws": "{stack: batchsweep, region: us-east-1}",
            "resources": "{vcpus: 0.5, memory_mib: 1024}", **extra}
    return "\n".join(f"{k}: {v}" for k, v in keys.items()) + "\n"


def play_containers(run: Any, *, only: set[int] | None = None, fork: bool | None = None) -> list[int]:
    """Run every child of every submitted job the way Batch would; returns their exit codes. The children fork
    from the player's zygote (tests/conftest.py sets BATCHSWEEP_PLAY_FORK=1); `fork=False`: fresh
    interpreters."""
    played = player.play(run, only=only, fork=fork)
    assert all(p.forked is (fork is not False) for p in played)
    return [p.exit_code for p in played]


def submits(calls: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [params for op, params in calls if op == "batch.SubmitJob"]


def test_one_task_is_a_plain_job_and_its_result_comes_back_from_s3(tmp_path, stack, calls):
    spec = write_spec(tmp_path, spec_body("{a: [7]}"))
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    (request,) = submits(calls)
    assert "arrayProperties" not in request
    assert play_containers(run, fork=False) == [0]  # a fresh `python -m batchsweep.worker`, as in the image
    df = batchsweep.load_run(run.id, store=tmp_path / "store").results()
    assert df.loc[0, "status"] == "succeeded" and df.loc[0, "product"] == 7
    assert run.store.url.startswith(f"s3://{stack['Bucket']}/batchsweep")


def test_25_tasks_are_one_array_job_and_every_row_comes_back(tmp_path, stack, calls):
    spec = write_spec(tmp_path, spec_body("{a: [1, 2, 3, 4, 5], b: [1, 2, 3, 4, 5]}"))
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    (request,) = submits(calls)
    assert request["arrayProperties"] == {"size": 25}
    assert set(play_containers(run)) == {0}
    again = batchsweep.load_run(store=tmp_path / "store")  # the latest run, found through the local pointer
    assert again.id == run.id and again.wait(progress=False) == 0
    df = again.results()
    assert len(df) == 25 and set(df["status"]) == {"succeeded"}
    assert (df["product"] == df["a"] * df["b"]).all()


def update_stack(session: Any, **params: str) -> None:
    """Stack parameters changed the way `infra up --param` does (UpdateStack: moto's change sets keep the old
    values)."""
    from batchsweep.infra.stack import describe_stack
    from batchsweep.infra.template import template_text

    current = describe_stack("batchsweep", session=session) or {}
    kept = [{"ParameterKey": p["ParameterKey"], "UsePreviousValue": True}
            for p in current.get("Parameters", []) if p["ParameterKey"] not in params]
    clients.make_client("cloudformation", session=session).update_stack(
        StackName="batchsweep", TemplateBody=template_text(), Capabilities=["CAPABILITY_IAM"],
        Parameters=[*kept, *({"ParameterKey": k, "ParameterValue": v} for k, v in params.items())])


def test_submit_request_follows_the_batch_rules(tmp_path, stack, calls, session):
    from botocore.validate import validate_parameters

    update_stack(session, SecretsPrefix="team")
    spec = write_spec(
        tmp_path,
        spec_body(
            "{a: [1, 2, 3]}",
            timeout="20s",
            retries="1",
            env="{LOG_LEVEL: debug}",
            secrets="{DB_PASSWORD: 'arn:aws:ssm:us-east-1:123456789012:parameter/team/db'}",
        ),
    )
    batchsweep.run(spec, store=tmp_path / "store", detach=True)
    (request,) = submits(calls)
    model = clients.make_client("batch", region="us-east-1").meta.service_model.operation_model("SubmitJob")
    validate_parameters(request, model.input_shape)  # raises on anything botocore would refuse
    rules = request["retryStrategy"]["evaluateOnExit"]
    assert request["retryStrategy"] == retry_strategy() and len(rules) <= 5
    assert rules[-1] == {"onReason": "*", "action": "EXIT"}
    assert {"onStatusReason": "Host EC2*", "action": "RETRY"} in rules
    assert request["timeout"]["attemptDurationSeconds"] >= 60
    env = {e["name"]: e["value"] for e in request["containerOverrides"]["environment"]}
    assert env["LOG_LEVEL"] == "debug" and "DB_PASSWORD" not in env
    assert not any(k.startswith("AWS_") and "KEY" in k for k in env)
    assert {"type": "VCPU", "value": "0.5"} in request["containerOverrides"]["resourceRequirements"]
    assert request["tags"]["batchsweep:run"] and request["tags"]["batchsweep:sweep"] == "cloud"
    assert len(json.dumps(request["containerOverrides"])) < 8192
    registered = [p for op, p in calls if op == "batch.RegisterJobDefinition"]
    assert registered[0]["containerProperties"]["secrets"] == [
        {"name": "DB_PASSWORD", "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/team/db"}]
    assert request["jobDefinition"].split("/")[-1].startswith(registered[0]["jobDefinitionName"])


def test_invalid_fargate_pair_is_bad_input_and_nothing_is_submitted(tmp_path, stack, calls, capsys):
    spec = write_spec(tmp_path, spec_body("{a: [1, 2]}").replace("memory_mib: 1024", "memory_mib: 9000"))
    code = cli.main(["run", str(spec), "--store", str(tmp_path / "store")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "9000" in err[0] and "1024" in err[0] and "4096" in err[0]
    assert not submits(calls) and not Store.open(tmp_path / "store").run_ids()


def test_a_sweep_with_requirements_needs_the_stacks_image_built_with_them(
    tmp_path, stack, calls, capsys, session
):
    from batchsweep.infra import image

    spec = write_spec(tmp_path, spec_body("{a: [1, 2]}", requirements="[humanize==4.9.0]"))
    code = cli.main(["run", str(spec), "--store", str(tmp_path / "store")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and not submits(calls)
    assert (
        "task image (latest) was built without this sweep's requirements (requirements: in the spec)"
        in err[0]
    )
    assert err[0].endswith(f"with `batchsweep image push {spec}`")
    other = image.image_tag(image.current_dockerfile(["humanize==4.8.0"]), ["humanize==4.8.0"])
    emulator.register_image(session, f"{image.repository_uri(stack)}:{other}")
    assert cli.main(["run", str(spec), "--store", str(tmp_path / "store")]) == 2 and not submits(calls)
    reqs = ["humanize==4.9.0"]
    emulator.register_image(
        session, f"{image.repository_uri(stack)}:{image.image_tag(image.current_dockerfile(reqs), reqs)}"
    )
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    assert len(submits(calls)) == 1 and play_containers(run) == [0, 0]


def test_a_child_batch_calls_succeeded_without_a_status_is_lost_and_resume_reruns_it(tmp_path, stack, calls):
    spec = write_spec(tmp_path, spec_body("{a: [1, 2, 3, 4]}"))
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    play_containers(run, only={0, 1})
    df = batchsweep.load_run(run.id, store=tmp_path / "store").results()
    assert Counter(df["status"]) == {"succeeded": 2, "lost": 2}
    first = {i: s.ended_at for i, s in run.store.statuses(run.id).items()}
    assert cli.main(["resume", run.id, "--detach", "--store", str(tmp_path / "store")]) == 0
    second = submits(calls)[-1]
    assert second["arrayProperties"] == {"size": 2}
    assert set(play_containers(batchsweep.load_run(run.id, store=tmp_path / "store"))) == {0}
    df = batchsweep.load_run(run.id, store=tmp_path / "store").results()
    assert len(df) == 4 and set(df["status"]) == {"succeeded"}
    after = run.store.statuses(run.id)
    assert all(after[i].ended_at == t for i, t in first.items()), "finished tasks ran again"


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


def test_10001_tasks_take_two_submit_calls(tmp_path, stack, calls):
    spec = write_spec(
        tmp_path,
        spec_body(
            "{a: " + json.dumps(list(range(10_001))) + "}", aws="{stack: batchsweep, tasks_per_job: 1}"
        ),
    )
    batchsweep.run(spec, store=tmp_path / "store", detach=True)
    batch_calls = [op for op, _ in calls if op.startswith("batch.")]
    assert batch_calls.count("batch.SubmitJob") == 2
    sizes = [r.get("arrayProperties", {}).get("size", 1) for r in submits(calls)]
    assert sizes == [10_000, 1]


def test_s3_requests_do_not_grow_with_the_task_count(tmp_path, stack, calls):
    def s3_ops(n: int) -> list[str]:
        spec = write_spec(tmp_path, spec_body("{a: " + json.dumps(list(range(n))) + "}",
                                              aws="{stack: batchsweep, tasks_per_job: 1}"))
        calls.clear()
        run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
        # The run's lock refreshes its heartbeat every few seconds: that grows with time, not with tasks.
        # The reuse lookup lists the index: one LIST per key up to 256 keys, then the 256 shards (bounded).
        lookups.append(sum(1 for op, params in calls if op == "s3.ListObjectsV2"
                           and "/index/" in str(params.get("Prefix", ""))))
        # The reuse account reads the run.json of each earlier run started in the newest one's second (their
        # ids tie): that grows with how fast runs follow each other, not with tasks.
        return sorted(op for op, params in calls if op.startswith("s3.")
                      and not str(params.get("Key", "")).endswith(("runner.json", "cancel.json"))
                      and not (str(params.get("Key", "")).endswith("/run.json")
                               and run.id not in params["Key"])
                      and "/index/" not in str(params.get("Prefix", "")))

    lookups: list[int] = []
    s3_ops(3)  # uploads the code package once
    # 2,500 tasks: past the 256 keys where the reuse lookup lists the index's shards instead, and past two
    # pages of an S3 listing (1,000 keys), so a request per task or per page of tasks would show.
    small, big = s3_ops(3), s3_ops(2_500)
    assert small, "the store's S3 requests must be counted"
    assert big == small, f"S3 requests must not grow with tasks: {small} vs {big}"
    assert lookups[1:] == [3, 256], "the reuse lookup is one LIST per key, at most one per index shard"


def test_max_parallel_packs_tasks_into_fewer_children(tmp_path, stack, calls):
    spec = write_spec(tmp_path, spec_body("{a: [1, 2, 3, 4, 5, 6, 7]}", max_parallel="3"))
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    (request,) = submits(calls)
    assert request["arrayProperties"] == {"size": 3}
    assert set(play_containers(run)) == {0}
    assert len(run.results(refresh=True)) == 7 and set(run.results()["status"]) == {"succeeded"}


@pytest.fixture
def jobs_stay_queued(aws_env: str) -> Iterator[None]:
    """Moto's Docker mode without a daemon leaves array parents SUBMITTED: a run that is still active."""
    def use_docker(on: bool) -> None:
        request = urllib.request.Request(f"{aws_env}/moto-api/config", method="POST",
                                         data=json.dumps({"batch": {"use_docker": on}}).encode(),
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=10).read()

    use_docker(True)
    yield
    use_docker(False)


def test_cancel_terminates_the_array_parents_and_marks_the_run(
    tmp_path, stack, calls, capsys, jobs_stay_queued
):
    spec = write_spec(tmp_path, spec_body("{a: [1, 2, 3]}"))
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    assert cli.main(["cancel", run.id, "--store", str(tmp_path / "store")]) == 0
    terminated = [p["jobId"] for op, p in calls if op == "batch.TerminateJob"]
    record = run.store.read_json(run.store.run_key(run.id, "engine.json"))
    assert terminated == [record["submissions"][0]["jobs"][0]["id"]]
    assert batchsweep.load_run(run.id, store=tmp_path / "store").info["cancelled"] is True


def test_cancel_of_a_finished_run_changes_nothing(tmp_path, stack, calls, capsys):
    spec = write_spec(tmp_path, spec_body("{a: [1]}"))
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    play_containers(run)
    assert cli.main(["cancel", run.id, "--store", str(tmp_path / "store")]) == 0
    assert "not running" in capsys.readouterr().out
    assert not [op for op, _ in calls if op == "batch.TerminateJob"]
    assert "cancelled" not in batchsweep.load_run(run.id, store=tmp_path / "store").info


def test_aws_region_alone_is_enough(tmp_path, stack, monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    spec = write_spec(
        tmp_path,
        spec_body("{a: [1]}").replace(
            "aws: {stack: batchsweep, region: us-east-1}", "aws: {stack: batchsweep}"
        ),
    )
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    assert run.info["engine"]["region"] == "us-east-1"


def test_an_unreachable_aws_store_is_one_line_not_a_traceback(tmp_path, stack, monkeypatch, capsys):
    spec = write_spec(tmp_path, spec_body("{a: [1]}"))
    batchsweep.run(spec, store=tmp_path / "store", detach=True)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert cli.main(["status", "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: AWS: ") and "credentials" in err[0].lower()


def test_missing_bucket_is_one_line_and_nothing_is_submitted(tmp_path, stack, calls, capsys):
    spec = write_spec(
        tmp_path, spec_body("{a: [1]}", aws="{bucket: no-such-bucket, job_queue: q, job_definition: d}")
    )
    assert cli.main(["run", str(spec), "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-bucket" in err[0]
    assert not submits(calls)


def test_missing_credentials_is_one_line_and_nothing_is_submitted(
    tmp_path, stack, calls, capsys, monkeypatch
):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    spec = write_spec(tmp_path, spec_body("{a: [1]}"))
    assert cli.main(["run", str(spec), "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "credentials" in err[0]
    assert not submits(calls) and not Store.open(tmp_path / "store").run_ids()


def test_status_shows_batch_states_and_the_tasks_without_a_result(tmp_path, stack, calls, capsys):
    spec = write_spec(tmp_path, spec_body("{a: [1, 2, 3]}"))
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    play_containers(run, only={0})
    capsys.readouterr()
    assert cli.main(["status", run.id, "--store", str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out
    assert "3 SUCCEEDED (child jobs)" in out
    assert "1 succeeded, 2 lost" in out
    assert out.count("ended without writing a status") == 2


def test_logs_of_a_task_whose_stream_does_not_exist_yet_say_so(tmp_path, stack, session, capsys):
    spec = write_spec(tmp_path, spec_body("{a: [1, 2]}"))
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    assert run.logs(1) == ""  # no CloudWatch stream yet: no output, not an AWS error
    capsys.readouterr()
    assert cli.main(["logs", run.id, "1", "--store", str(tmp_path / "store")]) == 0
    err = capsys.readouterr().err
    assert f"task 1 of {run.id}: no output" in err and "credentials" not in err


def test_logs_of_a_task_without_a_result_come_from_its_child_jobs_log_stream_filtered_to_it(
    tmp_path, stack, session
):
    spec = write_spec(tmp_path, spec_body("{a: [1, 2, 3, 4]}", max_parallel="2"))
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    record = run.store.read_json(run.store.run_key(run.id, "engine.json"))
    child = f"{record['submissions'][0]['jobs'][0]['id']}:1"  # tasks 2 and 3
    desc = clients.make_client("batch", session=session).describe_jobs(jobs=[child])["jobs"][0]
    stream = desc["container"]["logStreamName"]
    logs = clients.make_client("logs", session=session)
    now = int(time.time() * 1000)
    logs.create_log_stream(logGroupName=stack["LogGroup"], logStreamName=stream)
    lines = ["[task 2] done", "[task 3] epoch 1", "[task 3 stderr] warning: slow", "worker: something",
             "[task 3] epoch 2"]
    logs.put_log_events(logGroupName=stack["LogGroup"], logStreamName=stream,
                        logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(lines)])
    assert run.logs(3) == "epoch 1\nepoch 2\n"
    assert run.logs(3, stderr=True) == "warning: slow\n"
    assert run.engine.last_output(3) == "epoch 2"


class PagedLogs:
    """GetLogEvents as CloudWatch answers it: pages that may be empty before the end, which is the token
    repeating."""

    def __init__(self, pages: list[list[str]]) -> None:
        self.pages = pages

    def get_log_events(self, **kwargs: Any) -> dict[str, Any]:
        n = int(kwargs.get("nextToken", "f/0").split("/")[1])
        events = [{"message": m} for m in self.pages[n]] if n < len(self.pages) else []
        return {"events": events, "nextForwardToken": f"f/{min(n + 1, len(self.pages))}"}


def test_log_pages_are_read_until_the_forward_token_repeats_not_until_an_empty_page():
    from batchsweep.engines.aws_batch import _log_lines

    pages = [["a"], [], ["b", "c"], [], [], ["d"]]
    assert list(_log_lines(PagedLogs(pages), "g", "s")) == ["a", "b", "c", "d"]


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
    deadline = time.monotonic() + 5
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
    for i, s in statuses.items():
        raw = run.store.backend.read_bytes(run.store.task_key(run.id, i, "metrics.jsonl"))
        assert [json.loads(line)["step"] for line in raw.splitlines()] == list(range(1, s.last_step + 1))
        # stopped at a step before the end; a step or two more may be printed before SIGTERM lands
        if i in pruned:
            at = int(s.error.split("pruned at step ", 1)[1].split()[0])
            assert "by the median rule" in s.error and 2 <= at <= s.last_step
            assert at < 16 or i not in {4, 5, 7}  # a middling one may be stopped as late as its last step
        else:
            assert s.state.value == "succeeded" and s.last_step == 16


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


def test_status_watch_shows_the_running_tasks_latest_steps_read_from_s3_while_containers_play(
        tmp_path, stack, calls, monkeypatch, capsys):
    """Two played containers print a known curve each (val_loss = quality + 1/epoch); mid-run, `status
    --watch` lists both with their latest step, value and best, read from the series files in S3 — one listing
    and one read per running task, not one per task of the run."""
    import threading

    monkeypatch.setenv("BATCHSWEEP_SERIES_FLUSH_S", "0.2")  # S3's default is 5 s
    spec = write_spec(tmp_path, "\n".join([
        "name: cloud-watch",
        f"script: {SCRIPTS / 'curve.py'}",
        "params: {grid: {quality: [0.2, 0.5, 9.0]}, fixed: {pace: 0.3, epochs: 40}}",
        r"metrics: {stdout: 'epoch (?P<step>\d+) .*val_loss=(?P<val_loss>[\d.]+)'}",
        "backend: aws-batch",
        "aws: {stack: batchsweep, region: us-east-1}",
        "resources: {vcpus: 0.5, memory_mib: 1024}",
    ]) + "\n")
    store = tmp_path / "store"
    run = batchsweep.run(spec, store=store, detach=True)
    played = threading.Thread(target=play_containers, args=(run,), kwargs={"only": {0, 1}})
    played.start()
    try:
        s3 = run.store
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            raws = [s3._try_read(s3.task_key(run.id, i, "metrics.jsonl")) for i in (0, 1)]
            if all(raw and len(raw.splitlines()) >= 2 for raw in raws):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the played containers wrote no series to S3")
        calls.clear()
        assert cli.main(["status", run.id, "--watch", "--store", str(store)]) == 0
        out = capsys.readouterr().out
        series_reads = [
            p["Key"] for op, p in calls if op == "s3.GetObject" and p["Key"].endswith("metrics.jsonl")
        ]
    finally:
        played.join(timeout=120)
    rows = {}
    # Batch in moto says the jobs ended at once
    table = out.split("tasks with a series and no status yet", 1)[-1]
    for line in table.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0] in ("0", "1") and "quality=" in line:
            rows[int(parts[0])] = (int(parts[1]), float(parts[2]), float(parts[3]))
    assert set(rows) == {0, 1}, out
    for index, quality in ((0, 0.2), (1, 0.5)):
        step, value, best = rows[index]
        assert 2 <= step < 40
        assert value == pytest.approx(quality + 1 / step, abs=1e-3) and best == value  # a falling curve
    assert sorted(k.rsplit("/", 2)[-2] for k in series_reads) == ["0", "1"]  # task 2 never started: not read
    assert sum(op == "s3.ListObjectsV2" for op, _ in calls) <= 4


def test_polls_back_off_to_one_describe_every_30_seconds_and_a_cancel_polls_at_once(tmp_path, stack, calls,
                                                                                    jobs_stay_queued):
    """Ten minutes of a queued run's watch on a fake clock: DescribeJobs is asked at growing intervals, never
    more than 30 s (+ jitter) apart, ~30 times in all, not the 2,400 times a 0.25 s watch loop polls."""
    from helpers import FakeClock

    run = batchsweep.run(
        write_spec(tmp_path, spec_body("{a: [1, 2, 3]}")), store=tmp_path / "store", detach=True
    )
    engine = batchsweep.load_run(run.id, store=tmp_path / "store").engine
    clock = engine.clock = FakeClock()

    def describes() -> int:
        return sum(op == "batch.DescribeJobs" for op, _ in calls)

    asked: list[float] = []
    while clock.now < 1_000_600:
        before = describes()
        assert engine.poll().active
        if describes() > before:
            asked.append(clock.now)
        clock.sleep(0.25)
    gaps = [b - a for a, b in zip(asked, asked[1:])]
    assert 15 <= len(asked) <= 40 and max(gaps) <= 36.25 and gaps[0] < 5 < gaps[-1]
    engine.cancel()
    before = describes()
    engine.poll()
    assert describes() == before + 1  # after a cancel, the next poll asks Batch at once


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


def test_results_read_before_the_containers_ran_agree_with_status_once_they_have(tmp_path, stack, capsys):
    """moto calls every job SUCCEEDED at once (as Batch may before a container's upload lands): the tasks read
    as lost until their statuses arrive, and `results` does not keep that guess in its cache."""
    spec = write_spec(tmp_path, spec_body("{a: [1, 2, 3]}"))
    store = str(tmp_path / "store")
    run = batchsweep.run(spec, store=store, detach=True)
    assert set(batchsweep.load_run(run.id, store=store).results()["status"]) == {"lost"}
    assert play_containers(run) == [0, 0, 0]
    capsys.readouterr()
    assert cli.main(["status", run.id, "--store", store]) == 0
    assert "tasks    3 succeeded (of 3)" in capsys.readouterr().out
    df = batchsweep.load_run(run.id, store=store).results()  # no refresh
    assert list(df["status"]) == ["succeeded"] * 3 and list(df["product"]) == [1, 2, 3]
    assert run.store.backend.exists(run.store.results_cache_key(run.id))  # now every task has its own status


def test_a_dry_run_packs_tasks_into_containers_as_the_submit_then_does(tmp_path, stack, calls, capsys):
    """Both take the task time from the newest finished run this machine knows, an S3 run included (its
    `results` keep the figure in the local store too): the dry run no longer says 2 containers of 8 when the
    submit, packing by the earlier run's short tasks, makes 1 of 16."""
    import re

    spec = write_spec(tmp_path, spec_body("{a: [" + ", ".join(map(str, range(16))) + "]}", max_parallel="2"))
    store = str(tmp_path / "store")
    first = batchsweep.run(spec, store=store, detach=True)
    # no earlier run: max_parallel's 2 children of 8
    assert submits(calls)[0]["arrayProperties"] == {"size": 2}
    play_containers(first)
    assert len(batchsweep.load_run(first.id, store=store).results()) == 16  # finished: its task time is kept

    capsys.readouterr()
    assert cli.main(["run", str(spec), "--dry-run", "--store", store]) == 0
    out = capsys.readouterr().out
    shown = re.search(r"16 task\(s\), (\d+) per container: (\d+) container\(s\)", out)
    assert shown is not None and f"of earlier run {first.id} (aws-batch)" in out, out
    second = batchsweep.run(spec, store=store, detach=True, reuse=False)
    (submission,) = second.store.read_json(second.store.engine_record_key(second.id))["submissions"]
    assert (submission["tasks_per_child"], len(submission["jobs"])) == (int(shown[1]), 1)
    assert int(shown[1]) == 16 and int(shown[2]) == 1


class _RunningChildren:
    """The engine's Batch client, reporting the array's children in `running` RUNNING and the others
    SUCCEEDED, its parent PENDING (moto's children succeed at submit; played ones change nothing there)."""

    def __init__(self, real: Any, running: set[int]) -> None:
        self.real, self.running = real, running

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def describe_jobs(self, jobs: list[str]) -> dict[str, Any]:
        out = self.real.describe_jobs(jobs=jobs)
        for job in out["jobs"]:
            size = job.get("arrayProperties", {}).get("size", 0)
            job["status"] = "PENDING"
            job["arrayProperties"]["statusSummary"] = {"RUNNING": len(self.running),
                                                       "SUCCEEDED": size - len(self.running)}
        return out

    def get_paginator(self, operation: str) -> Any:
        if operation != "list_jobs":
            return self.real.get_paginator(operation)
        running = self.running

        class Pages:
            def paginate(self, arrayJobId: str, jobStatus: str) -> list[dict[str, Any]]:  # noqa: N803
                ids = sorted(running) if jobStatus == "RUNNING" else []
                return [{"jobSummaryList": [{"jobId": f"{arrayJobId}:{i}"} for i in ids]}]

        return Pages()


@pytest.mark.parametrize("packed", [False, True])
def test_a_poll_names_the_running_tasks_and_its_s3_requests_do_not_depend_on_which_children_run(
        tmp_path, stack, calls, packed):
    """`status`' per-task view names the tasks Batch's running children are at, as the bar counts them: a
    child of one task is that task; a packed child is at the first task of its slice without a status. The
    submission's slicing is read once per engine (none in the one that submitted), so polls that see more or
    fewer running children make the same S3 requests: none."""
    extra = ({"max_parallel": "3"} if packed
             else {"aws": "{stack: batchsweep, region: us-east-1, tasks_per_job: 1}"})
    spec = write_spec(tmp_path, spec_body("{a: [1, 2, 3, 4, 5, 6, 7]}", **extra))
    submitted = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    run = batchsweep.load_run(submitted.id, store=tmp_path / "store")  # as `status` in another shell
    engine = run.engine
    done = TaskStatus(index=0, state=State.SUCCEEDED)
    run.store.write_status(run.id, done)
    fake = _RunningChildren(engine.batch, {0, 2})
    engine.__dict__["batch"] = fake

    def polled() -> tuple[list[int], list[str]]:
        calls.clear()
        engine._next_poll = 0.0
        engine.poll()
        s3 = [f"{op} {str(params.get('Key', params.get('Prefix', ''))).rsplit('/', 2)[-2:]}"
              for op, params in calls if op.startswith("s3.")]
        return [i for i, s in run.states().items() if s is State.RUNNING], s3

    # packed: children [0, 1, 2] [3, 4, 5] [6]; task 0 has its status, so child 0 is at task 1
    running, s3 = polled()
    assert running == ([1, 6] if packed else [2])
    each = ["s3.GetObject ['RUN', 'engine.json']".replace("RUN", run.id)]  # every poll reads engine.json
    assert s3 == [*each, "s3.GetObject ['submissions', '0.json']"]  # ...and the first, the slicing
    fake.running = {0, 1, 2}
    assert polled() == (([1, 3, 6] if packed else [1, 2]), each)
    fake.running = set()
    assert polled() == ([], each)
    submitter = submitted.engine  # the engine that submitted: its slicing is at hand
    submitter.__dict__["batch"] = _RunningChildren(submitter.batch, {1})
    calls.clear()
    submitter._next_poll = 0.0
    submitter.poll()
    assert [op for op, params in calls if op.startswith("s3.") and "engine.json" not in str(params)] == []
    assert submitted.states()[3 if packed else 1] is State.RUNNING
