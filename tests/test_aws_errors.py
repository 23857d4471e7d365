"""AWS failures that are the user's setup get one line with the fix; our own malformed requests stay bugs."""

from __future__ import annotations

import pytest
from botocore import exceptions as bx

from batchsweep import cli
from batchsweep.aws.clients import explain


def _client_error(code: str, message: str = "nope", op: str = "SubmitJob") -> bx.ClientError:
    return bx.ClientError({"Error": {"Code": code, "Message": message}}, op)


@pytest.mark.parametrize(("error", "expected"), [
    (bx.NoCredentialsError(), "check credentials/region"),
    (bx.NoRegionError(), "check credentials/region"),
    (bx.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), "endpoint is unreachable"),
    (_client_error("AccessDeniedException", "not authorized to perform batch:SubmitJob"),
     "AWS SubmitJob: AccessDeniedException: not authorized to perform batch:SubmitJob; this identity lacks"),
    (_client_error("ExpiredToken"), "invalid or expired"),
    (_client_error("ThrottlingException"), "throttling"),
    (_client_error("NoSuchBucket", "The specified bucket does not exist", "PutObject"),
     "AWS PutObject: NoSuchBucket: The specified bucket does not exist"),
])
def test_setup_failures_are_explained_in_one_line(error, expected):
    line = explain(error)
    assert line is not None and expected in line and "\n" not in line


def test_a_malformed_request_of_our_own_is_not_blamed_on_credentials():
    assert explain(bx.ParamValidationError(report="Missing required parameter in input: \"jobName\"")) is None


def test_the_cli_prints_the_line_and_exits_2_but_lets_our_bugs_raise(monkeypatch, capsys):
    def failing(error):
        def command(_args):
            raise error
        return command

    monkeypatch.setattr(
        cli.catalog, "cmd_runs", failing(_client_error("AccessDenied", "denied", "ListObjectsV2"))
    )
    assert cli.main(["runs"]) == 2
    assert capsys.readouterr().err.startswith(
        "error: AWS ListObjectsV2: AccessDenied: denied; this identity lacks"
    )
    monkeypatch.setattr(cli.catalog, "cmd_runs", failing(bx.ParamValidationError(report="bad")))
    with pytest.raises(bx.ParamValidationError):
        cli.main(["runs"])
