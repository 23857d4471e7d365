"""One process makes its AWS clients on shared pieces (the service-model loader, a session per identity), yet
each client talks to the endpoint and signs as the identity the environment names when it is made: tests
switch moto servers and users in one process, and a notebook switches profiles."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchsweep.aws.clients import make_client, make_session
from batchsweep.emulator.server import MotoServer
from batchsweep.errors import AwsSetupError


@pytest.fixture(scope="module")
def second_server() -> Iterator[str]:
    """A second moto server: another AWS to aim at."""
    with MotoServer() as server:
        yield server.url


def bucket_names() -> set[str]:
    return {b["Name"] for b in make_client("s3").list_buckets()["Buckets"]}


def whoami(**kwargs: Any) -> str:
    return str(make_client("sts", **kwargs).get_caller_identity()["Arn"]).rsplit("/", 1)[-1]


def user_keys(name: str) -> dict[str, str]:
    iam = make_client("iam")
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}


def test_a_client_goes_to_the_endpoint_the_environment_names_when_it_is_made(
    aws_env, second_server, monkeypatch
):
    make_client("s3").create_bucket(Bucket="on-first")
    monkeypatch.setenv("AWS_ENDPOINT_URL", second_server)
    assert make_client("s3").meta.endpoint_url == second_server
    assert "on-first" not in bucket_names()
    make_client("s3").create_bucket(Bucket="on-second")
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_env)
    assert "on-first" in bucket_names() and "on-second" not in bucket_names()
    # A service's own endpoint variable sends that service, and only it, elsewhere.
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", second_server)
    assert "on-second" in bucket_names()
    assert make_client("sts").meta.endpoint_url == aws_env
    make_client("s3").delete_bucket(Bucket="on-second")


def test_a_client_is_in_the_region_asked_for(aws_env):
    assert make_client("s3", region="eu-west-1").meta.region_name == "eu-west-1"
    assert make_client("s3").meta.region_name == "us-east-1"


def test_a_client_signs_as_the_credentials_in_the_environment_when_it_is_made(aws_env, monkeypatch):
    alice, bob = user_keys("alice"), user_keys("bob")
    assert whoami() == "moto"  # moto's name for the dummy `testing` keys
    for name, value in alice.items():
        monkeypatch.setenv(name, value)
    assert whoami() == "alice"
    for name, value in bob.items():
        monkeypatch.setenv(name, value)
    assert whoami() == "bob"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    assert whoami() == "moto"


def write_profiles(path: Path, profiles: dict[str, dict[str, str]], mtime: float) -> None:
    path.write_text("".join(f"[{name}]\naws_access_key_id = {keys['AWS_ACCESS_KEY_ID']}\n"
                            f"aws_secret_access_key = {keys['AWS_SECRET_ACCESS_KEY']}\n"
                            for name, keys in profiles.items()))
    os.utime(path, (mtime, mtime))  # two writes within one timestamp tick still differ


def test_a_client_signs_as_the_profile_asked_for_and_as_the_credentials_file_says_now(aws_env, tmp_path,
                                                                                    monkeypatch):
    alice, bob = user_keys("alice"), user_keys("bob")
    credentials = tmp_path / "credentials"
    write_profiles(credentials, {"a": alice, "b": bob}, mtime=1_000_000)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    assert (whoami(profile="a"), whoami(profile="b"), whoami(profile="a")) == ("alice", "bob", "alice")
    monkeypatch.setenv("AWS_PROFILE", "b")
    assert whoami() == "bob"
    monkeypatch.setenv("AWS_PROFILE", "a")
    assert whoami() == "alice"
    write_profiles(credentials, {"a": bob, "b": alice}, mtime=2_000_000)  # `aws configure` in another shell
    assert (whoami(), whoami(profile="b")) == ("bob", "alice")


def test_sessions_share_the_service_models_but_not_their_event_hooks(aws_env):
    first = make_session()
    loader = first._session.get_component("data_loader")
    paths = list(loader.search_paths)

    def refuse(**_: Any) -> None:
        raise RuntimeError("refused by the first session's hook")

    first.events.register("before-call.sts.GetCallerIdentity", refuse)
    others = [make_session() for _ in range(5)]
    assert all(s._session.get_component("data_loader") is loader for s in others)
    assert loader.search_paths == paths  # boto3 adds its data directory once, not once per session
    assert whoami(session=others[0]) == "moto" and whoami() == "moto"
    with pytest.raises(RuntimeError, match="refused"):
        whoami(session=first)


def test_clients_made_by_many_threads_at_once_all_work(aws_env):
    make_client("s3").create_bucket(Bucket="shared")
    errors: list[BaseException] = []
    services = ["s3", "batch", "logs", "sts"] * 4

    def use(service: str) -> None:
        try:
            client = make_client(service)
            if service == "s3":
                client.head_bucket(Bucket="shared")
            elif service == "sts":
                client.get_caller_identity()
            else:
                assert client.meta.endpoint_url == aws_env
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=use, args=(s,)) for s in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_a_profile_that_does_not_exist_is_one_line_naming_it(tmp_path, monkeypatch):
    write_profiles(tmp_path / "credentials", {"a": {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}},
                   mtime=1_000_000)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))  # answered without reading the profile
    with pytest.raises(AwsSetupError, match="no AWS profile named 'nope'"):
        make_client("s3", profile="nope", region="us-east-1")
    monkeypatch.delenv("AWS_DATA_PATH")
    monkeypatch.setenv("AWS_PROFILE", "gone")
    with pytest.raises(AwsSetupError, match="no AWS profile named 'gone'"):
        make_session(region="us-east-1")
    assert make_session(profile="a", region="us-east-1").get_credentials().access_key == "k"


def test_s3_presigned_urls_are_sigv4_for_the_clients_region(aws_env):
    """`S3Backend.read_one_of_many` reads through presigned URLs: botocore presigns SigV2 unless told
    otherwise, which S3 buckets made since 2020 refuse (every read would be made twice)."""
    s3 = make_client("s3", region="eu-west-1")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "b", "Key": "runs/x/packs/0.jsonl"}, ExpiresIn=60
    )
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url and "%2Feu-west-1%2Fs3%2Faws4_request" in url, url
    assert "AWSAccessKeyId=" not in url


@pytest.mark.parametrize(("endpoint", "start"), [
    (None, "https://my-bucket.s3.eu-west-3.amazonaws.com/runs/x"),  # AWS: the bucket's regional endpoint
    ("http://127.0.0.1:9", "http://127.0.0.1:9/my-bucket/runs/x"),  # an emulator by address
    # an emulator by name: no my-bucket.localhost
    ("http://localhost:9", "http://localhost:9/my-bucket/runs/x"),
])
def test_s3_presigned_urls_name_the_buckets_regional_endpoint_on_aws_and_a_path_on_an_emulator(
        aws_env, monkeypatch, endpoint, start):
    """Without virtual-host addressing botocore presigns on the global endpoint (my-bucket.s3.amazonaws.com),
    which answers a bucket in an opt-in region, or one made minutes ago, with a redirect the raw GET does not
    follow."""
    if endpoint is None:
        monkeypatch.delenv("AWS_ENDPOINT_URL")
    else:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    s3 = make_client("s3", region="eu-west-3")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "my-bucket", "Key": "runs/x"}, ExpiresIn=60
    )
    assert url.startswith(start + "?X-Amz-Algorithm=AWS4-HMAC-SHA256"), url
    if endpoint is None:  # a bucket name with dots cannot be a TLS host name: the regional endpoint's path
        url = s3.generate_presigned_url("get_object", Params={"Bucket": "my.data", "Key": "k"}, ExpiresIn=60)
        assert url.startswith("https://s3.eu-west-3.amazonaws.com/my.data/k?"), url
