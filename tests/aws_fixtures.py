"""Fixtures that aim every AWS call at moto's standalone server on 127.0.0.1.

Import them from a conftest (`from aws_fixtures import *`). The server itself is
`batchsweep.aws.emulator.MotoServer`, which the benchmarks and the README's emulator tour use too.

    moto_endpoint   session-scoped: one `moto_server` process for the whole test session
    aws_env         function-scoped: a wiped server and an environment that points boto3 at it
    session         function-scoped: a boto3 session on that server
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from batchsweep.aws.emulator import MotoServer

__all__ = ["moto_endpoint", "aws_env", "session"]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """URL of a moto server for the session, with Batch's Docker mode off (jobs never execute)."""
    with MotoServer() as server:
        yield server.url


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A wiped moto server and env vars that send boto3 there with dummy credentials."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", data=b"{}", method="POST")).read()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    # A developer's ~/.aws must not leak into a test (a profile, an SSO session).
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    yield moto_endpoint


@pytest.fixture
def session(aws_env: str) -> Any:
    """A boto3 session aimed at the wiped moto server."""
    from batchsweep.aws.clients import make_session

    return make_session(region="us-east-1")
