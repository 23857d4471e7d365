"""What a real account checks and moto lets through (issue: AWS on a real account): the queue a sweep uses,
refusals before submit for what the stack's roles could not do, and how a submit that fails halfway ends."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from aws_batch_helpers import spec_body, submits, update_stack, write_spec
from botocore.exceptions import ClientError

import batchsweep
from batchsweep import cli
from batchsweep.aws import clients
from batchsweep.store.core import Store


def run_cli(spec: Any, tmp_path: Any, capsys: Any) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = cli.main(["run", str(spec), "--detach", "--store", str(tmp_path / "store")])
    return code, capsys.readouterr().err.strip().splitlines()


def test_spot_false_submits_to_the_on_demand_queue(tmp_path, stack, calls):
    spec = write_spec(
        tmp_path, spec_body("{a: [1, 2]}").replace("region: us-east-1}", "region: us-east-1, spot: false}")
    )
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    (request,) = submits(calls)
    assert request["jobQueue"] == stack["OnDemandJobQueue"] != stack["JobQueue"]
    assert run.info["engine"]["spot"] is False


def test_a_spot_sweep_uses_the_spot_first_queue(tmp_path, stack, calls):
    batchsweep.run(write_spec(tmp_path, spec_body("{a: [1, 2]}")), store=tmp_path / "store", detach=True)
    assert submits(calls)[0]["jobQueue"] == stack["JobQueue"]


def test_gpus_without_the_gpu_environment_is_one_line_naming_enable_gpu(tmp_path, stack, calls, capsys):
    spec = write_spec(
        tmp_path,
        spec_body("{a: [1]}").replace(
            "{vcpus: 0.5, memory_mib: 1024}", "{vcpus: 4, memory_mib: 15000, gpus: 1}"
        ),
    )
    code, err = run_cli(spec, tmp_path, capsys)
    assert code == 2 and len(err) == 1 and "EnableGpu=true" in err[0]
    assert not submits(calls)


GPU = "{vcpus: 4, memory_mib: 15000, gpus: 1}"


@pytest.mark.parametrize("spot", [True, False])
def test_gpu_tasks_go_to_the_gpu_queue_of_their_kind_and_spot_false_never_to_spot(
    tmp_path, stack, calls, session, spot
):
    update_stack(session, EnableGpu="true")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in session.client("cloudformation").describe_stacks(
        StackName="batchsweep")["Stacks"][0]["Outputs"]}
    aws = "{stack: batchsweep, region: us-east-1" + ("" if spot else ", spot: false") + "}"
    spec = write_spec(tmp_path, spec_body("{a: [1, 2]}", resources=GPU, aws=aws))
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    (request,) = submits(calls)
    queue = outputs["GpuJobQueue" if spot else "GpuOnDemandJobQueue"]
    assert request["jobQueue"] == queue and request["jobDefinition"].startswith(
        outputs["GpuJobDefinition"][:-2]
    )
    batch = session.client("batch")
    (described,) = batch.describe_job_queues(jobQueues=[queue])["jobQueues"]
    (env,) = batch.describe_compute_environments(
        computeEnvironments=[e["computeEnvironment"] for e in described["computeEnvironmentOrder"]]
    )["computeEnvironments"]
    assert env["computeResources"]["type"] == ("SPOT" if spot else "EC2")
    assert run.info["engine"]["spot"] is spot


def test_gpu_tasks_take_whole_vcpus(tmp_path, stack, calls, capsys):
    spec = write_spec(
        tmp_path,
        spec_body("{a: [1]}").replace(
            "{vcpus: 0.5, memory_mib: 1024}", "{vcpus: 2.5, memory_mib: 15000, gpus: 1}"
        ),
    )
    code, err = run_cli(spec, tmp_path, capsys)
    assert code == 2 and len(err) == 1 and "whole vCPUs" in err[0] and "use 3" in err[0]


def test_an_s3_input_outside_the_readable_prefixes_is_refused_before_submit(
    tmp_path, stack, calls, session, capsys
):
    s3 = clients.make_client("s3", session=session)
    s3.create_bucket(Bucket="market-data")
    s3.put_object(Bucket="market-data", Key="prices/BTC.csv", Body=b"1,2\n")
    spec = write_spec(tmp_path, spec_body("{a: [1]}", inputs="[s3://market-data/prices/BTC.csv]"))
    code, err = run_cli(spec, tmp_path, capsys)
    assert code == 2 and len(err) == 1
    assert (
        "s3://market-data/prices/BTC.csv" in err[0]
        and "--param ReadableS3Prefixes=market-data/prices" in err[0]
    )
    assert not submits(calls) and not Store.open(tmp_path / "store").run_ids()
    update_stack(session, ReadableS3Prefixes="other-bucket,market-data/prices")
    batchsweep.run(spec, store=tmp_path / "store", detach=True)
    assert len(submits(calls)) == 1


@pytest.mark.parametrize("source", ["arn:aws:ssm:us-east-1:123456789012:parameter/elsewhere/db",
                                    "arn:aws:secretsmanager:us-east-1:123456789012:secret:elsewhere/db-AbCdEf",
                                    "/teamx/db"])
def test_a_secret_outside_the_secrets_prefix_is_refused_before_submit(
    tmp_path, stack, calls, session, capsys, source
):
    update_stack(session, SecretsPrefix="team")
    spec = write_spec(tmp_path, spec_body("{a: [1]}", secrets=json.dumps({"DB": source})))
    code, err = run_cli(spec, tmp_path, capsys)
    assert (
        code == 2
        and len(err) == 1
        and "secrets.DB" in err[0]
        and "SecretsPrefix" in err[0]
        and "team/" in err[0]
    )
    assert not submits(calls)


@pytest.mark.parametrize("source", ["arn:aws:ssm:us-east-1:123456789012:parameter/team/db",
                                    "arn:aws:secretsmanager:us-east-1:123456789012:secret:team/db-AbCdEf",
                                    "/team/db"])
def test_a_secret_under_the_secrets_prefix_is_submitted(tmp_path, stack, calls, session, source):
    update_stack(session, SecretsPrefix="team")
    batchsweep.run(write_spec(tmp_path, spec_body("{a: [1]}", secrets=json.dumps({"DB": source}))),
                   store=tmp_path / "store", detach=True)
    assert len(submits(calls)) == 1


def test_a_batch_timeout_is_always_set(tmp_path, stack, calls):
    batchsweep.run(write_spec(tmp_path, spec_body("{a: [1, 2]}")), store=tmp_path / "store", detach=True)
    (request,) = submits(calls)
    assert request["timeout"]["attemptDurationSeconds"] == 24 * 3600


@pytest.mark.parametrize(("k", "timeout", "seconds"), [
    (3, None, 3 * 24 * 3600),  # a day per task of the child, not one day for all three
    (20, None, 14 * 24 * 3600),  # never past the 14 days Batch lets a job live
    (3, "1h", 3 * (3600 + 10) + 120),
    (3, "144h", 14 * 24 * 3600),
])
def test_a_packed_childs_batch_timeout_scales_with_its_tasks(tmp_path, stack, calls, k, timeout, seconds):
    extra = {"timeout": timeout} if timeout else {}
    spec = write_spec(tmp_path, spec_body(json.dumps({"a": list(range(2 * k))}), **extra).replace(
        "region: us-east-1}", f"region: us-east-1, tasks_per_job: {k}}}"))
    batchsweep.run(spec, store=tmp_path / "store", detach=True)
    (request,) = submits(calls)
    assert request["arrayProperties"]["size"] == 2
    assert request["timeout"]["attemptDurationSeconds"] == seconds


def test_container_overrides_over_8192_characters_are_refused_before_anything_is_written(
    tmp_path, stack, calls, capsys
):
    spec = write_spec(tmp_path, spec_body("{a: [1]}", env=json.dumps({"BIG": "x" * 8200})))
    code, err = run_cli(spec, tmp_path, capsys)
    assert code == 2 and len(err) == 1 and "8,192" in err[0] and "env:" in err[0]
    assert not submits(calls) and not Store.open(tmp_path / "store").run_ids()


@pytest.fixture
def second_submit_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batch refuses the second SubmitJob (a throttle that outlived the retries, a quota): a botocore event
    hook on the engine's real clients answers for AWS."""
    real, seen = clients.make_client, []

    def refusing(service: str, **kwargs: Any) -> Any:
        client = real(service, **kwargs)

        def refuse(**_: Any) -> None:
            seen.append(1)
            if len(seen) == 2:
                raise ClientError({"Error": {"Code": "ClientException", "Message": "quota"}}, "SubmitJob")

        client.meta.events.register("before-call.batch.SubmitJob", refuse)
        return client

    monkeypatch.setattr(clients, "make_client", refusing)


@pytest.fixture
def first_submit_response_lost(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Batch accepts the first SubmitJob but its answer never arrives (a read timeout): a botocore event hook
    on the engine's real clients sends the request to the server itself, then fails as a lost response
    would."""
    from botocore.exceptions import ReadTimeoutError

    real, sent = clients.make_client, []

    def losing(service: str, **kwargs: Any) -> Any:
        client = real(service, **kwargs)

        def lose(request: Any, **_: Any) -> None:
            if not sent:
                sent.append(client._endpoint.http_session.send(request).status_code)
                raise ReadTimeoutError(endpoint_url=request.url)

        client.meta.events.register("before-send.batch.SubmitJob", lose)
        return client

    monkeypatch.setattr(clients, "make_client", losing)
    return sent


def test_a_submit_whose_answer_is_lost_is_not_sent_twice(
    tmp_path, stack, session, first_submit_response_lost
):
    run = batchsweep.run(
        write_spec(tmp_path, spec_body("{a: [1, 2, 3]}")), store=tmp_path / "store", detach=True
    )
    assert first_submit_response_lost == [200]  # Batch accepted it; the client never heard
    batch = clients.make_client("batch", session=session)
    named = [j for j in batch.list_jobs(jobQueue=stack["JobQueue"], filters=[
        {"name": "JOB_NAME", "values": [f"{run.id}-s0-0"]}])["jobSummaryList"] if ":" not in j["jobId"]]
    assert len(named) == 1, named  # one array, not two
    assert batchsweep.load_run(run.id, store=tmp_path / "store").engine._jobs()[0].id == named[0]["jobId"]


def test_a_throttled_submit_is_sent_again(tmp_path, stack, calls, monkeypatch):
    real, refused = clients.make_client, []

    def throttling(service: str, **kwargs: Any) -> Any:
        client = real(service, **kwargs)

        def throttle(**_: Any) -> None:
            if not refused:
                refused.append(1)
                raise ClientError({"Error": {"Code": "TooManyRequestsException", "Message": "slow down"},
                                   "ResponseMetadata": {"HTTPStatusCode": 429}}, "SubmitJob")

        client.meta.events.register("before-call.batch.SubmitJob", throttle)
        return client

    monkeypatch.setattr(clients, "make_client", throttling)
    run = batchsweep.run(
        write_spec(tmp_path, spec_body("{a: [1, 2]}")), store=tmp_path / "store", detach=True
    )
    assert refused == [1] and len(batchsweep.load_run(run.id, store=tmp_path / "store").engine._jobs()) == 1


def test_a_submit_that_fails_on_the_second_array_leaves_no_untracked_first_array(tmp_path, stack, calls,
                                                                                   second_submit_fails):
    spec = write_spec(tmp_path, spec_body("{a: " + json.dumps(list(range(10_001))) + "}",
                                          aws="{stack: batchsweep, tasks_per_job: 1}"))
    with pytest.raises(ClientError):
        batchsweep.run(spec, store=tmp_path / "store", detach=True)
    first = [p for op, p in calls if op == "batch.SubmitJob"][0]
    assert first["arrayProperties"] == {"size": 10_000}
    terminated = [p for op, p in calls if op == "batch.TerminateJob"]
    assert len(terminated) == 1 and "submitting" in terminated[0]["reason"]
    assert not Store.open(tmp_path / "store").run_ids()


def test_a_submit_copies_shared_files_onto_themselves_only_once_they_are_half_way_to_expiry(
    tmp_path, stack, calls, monkeypatch
):
    """The lifecycle expires code packages and inputs RunRetentionDays (30) after their last write, so a
    submit copies each onto itself, but only when it was written more than 15 days ago: in the versioned
    bucket every copy keeps the old version, and each search round and resume would otherwise add a full
    copy."""
    from helpers import FakeClock

    (tmp_path / "prices.csv").write_text("1,2\n")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "a.txt").write_text("a")
    spec = write_spec(tmp_path, spec_body("{a: [1, 2]}", inputs="[prices.csv, shared]"))
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    shared = [
        run.store.code_key(run.info["code_sha256"]),
        *(e["key"] for e in run.info["inputs_map"].values()),
    ]
    assert len(shared) == 3 and not [p for op, p in calls if op == "s3.CopyObject"]
    assert [op for op, p in calls if op == "s3.HeadObject" and p["Key"].removeprefix("batchsweep/") in shared]

    def copied() -> list[str]:
        return sorted(p["Key"].removeprefix("batchsweep/") for op, p in calls if op == "s3.CopyObject")

    # the clock every engine the resume makes reads
    monkeypatch.setattr("batchsweep.engines.base.SYSTEM", FakeClock(wall=time.time() + 14 * 86400))
    batchsweep.load_run(run.id, store=tmp_path / "store").resume(detach=True)  # nothing ran: all resubmitted
    assert len(submits(calls)) == 2 and copied() == []  # two weeks on, nothing needs a copy yet
    monkeypatch.setattr("batchsweep.engines.base.SYSTEM", FakeClock(wall=time.time() + 16 * 86400))
    batchsweep.load_run(run.id, store=tmp_path / "store").resume(detach=True)
    assert len(submits(calls)) == 3 and copied() == sorted(shared)


def test_a_packed_file_is_the_same_package_as_in_memory(tmp_path):
    from batchsweep.aws import codepkg

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "x.py").write_text("print(1)\n")
    (tmp_path / "src" / "big.bin").write_bytes(bytes(range(256)) * 40_000)
    sha, _ = codepkg.pack_to_file(tmp_path / "src", tmp_path / "p.tar.gz")
    package = codepkg.pack(tmp_path / "src")
    assert sha == package.sha256 and (tmp_path / "p.tar.gz").read_bytes() == package.data
    codepkg.extract_file(tmp_path / "p.tar.gz", tmp_path / "out")
    assert (tmp_path / "out" / "big.bin").read_bytes() == (tmp_path / "src" / "big.bin").read_bytes()


def test_post_run_cost_counts_child_containers_not_tasks(tmp_path, stack):
    from batchsweep.emulator import player
    from batchsweep.report.page import _cost_fields

    run = batchsweep.run(write_spec(tmp_path, spec_body("{a: [1, 2, 3, 4, 5, 6]}", max_parallel="2")),
                         store=tmp_path / "store", detach=True)
    assert {p.exit_code for p in player.play(run)} == {0}
    run = batchsweep.load_run(run.id, store=tmp_path / "store")
    note = _cost_fields(run, run.results(refresh=True))["cost_note"]
    assert "2 container(s) (tasks packed in each)" in note


def test_container_seconds_span_each_workers_first_start_to_last_end():
    from batchsweep.report.cost import container_seconds

    tasks = [
        ("job:0", 10.0, 12.0),
        ("job:0", 12.5, 20.0),
        ("job:1", 11.0, 13.0),
        (None, 1.0, 2.0),
        ("job:2", 5.0, None),
    ]
    assert sorted(container_seconds(tasks)) == [2.0, 10.0]


def test_env_leaves_a_kibibyte_of_the_overrides_limit_to_batchs_own_variables(tmp_path, stack, calls, capsys):
    """Batch adds its AWS_BATCH_* variables to the overrides; over 8,192 characters the job fails after
    submit."""
    spec = write_spec(tmp_path, spec_body("{a: [1, 2]}", env="{BIG: " + "x" * 7400 + "}"))
    code, err = run_cli(spec, tmp_path, capsys)
    assert (
        code == 2
        and len(err) == 1
        and err[0].startswith("error: env: the job's container overrides would be 7,")
    )
    assert "over the 7,168 that AWS Batch's limit of 8,192 leaves beside its own variables" in err[0]
    assert not submits(calls) and not Store.open(tmp_path / "store").run_ids()
    spec.write_text(spec_body("{a: [1, 2]}", env="{BIG: " + "x" * 6500 + "}"))
    assert run_cli(spec, tmp_path, capsys)[0] == 0
    (request,) = submits(calls)
    assert 6500 < len(json.dumps(request["containerOverrides"])) <= 8192 - 1024



def test_resume_after_the_pinned_image_expired_says_how_to_get_it_back_and_submits_nothing(
        tmp_path, stack, calls, session, capsys):
    """The repository keeps its 10 newest images; the job definition revision a run pinned names its image by
    tag. Resuming after it expired would bill every child for a failed image pull."""
    spec = write_spec(tmp_path, spec_body("{a: [1, 2]}"))
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    ecr = session.client("ecr")
    image = ecr.batch_get_image(repositoryName=stack["EcrRepository"], imageIds=[{"imageTag": "latest"}])[
        "images"
    ][0]
    ecr.batch_delete_image(repositoryName=stack["EcrRepository"], imageIds=[{"imageTag": "latest"}])
    calls.clear()
    code = cli.main(["resume", run.id, "--detach", "--store", str(tmp_path / "store")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and not submits(calls), err
    assert f"the task image this run pinned ({stack['EcrRepository']}:latest) is no longer in ECR" in err[0]
    assert (
        f"`batchsweep image push {spec}` with the same batchsweep version and requirements rebuilds it"
        in err[0]
    )
    ecr.put_image(
        repositoryName=stack["EcrRepository"], imageManifest=image["imageManifest"], imageTag="latest"
    )
    assert cli.main(["resume", run.id, "--detach", "--store", str(tmp_path / "store")]) == 0
    assert len(submits(calls)) == 1


def test_a_detached_search_on_aws_is_refused_in_one_line_before_anything_is_uploaded(
    tmp_path, stack, calls, session, capsys
):
    spec = write_spec(tmp_path, spec_body("{a: [1]}", params="{fixed: {b: 1}}",
                                          search="{sampler: random, trials: 4, batch: 2, metric: product, "
                                                 "space: {a: 'randint(1, 9)'}}"))
    code, err = run_cli(spec, tmp_path, capsys)
    assert code == 2 and len(err) == 1, err
    assert "the sampler in the process that waits" in err[0] and "`batchsweep resume RUN` goes on" in err[0]
    assert not submits(calls) and not Store.open(tmp_path / "store").run_ids()
    listed = session.client("s3").list_objects_v2(Bucket=stack["Bucket"], Prefix="batchsweep/")
    assert listed["KeyCount"] == 0  # no code package left behind
