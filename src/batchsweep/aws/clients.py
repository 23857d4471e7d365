"""The one place AWS clients are made.

boto3 is imported lazily so `batchsweep --help` never loads it. The standard
`AWS_ENDPOINT_URL` variable is honoured by boto3 itself, which is how tests aim
every call at moto's server without patching anything.
"""

from __future__ import annotations

import os
from typing import Any

from batchsweep.errors import AwsSetupError


def make_session(*, profile: str | None = None, region: str | None = None) -> Any:
    import boto3
    import botocore.exceptions

    # AWS_REGION is the SDK-wide variable; older boto3 releases read only AWS_DEFAULT_REGION.
    region = region or os.environ.get("AWS_REGION") or None
    try:
        session = boto3.Session(profile_name=profile or None, region_name=region)
    except botocore.exceptions.ProfileNotFound:
        raise AwsSetupError(
            f"aws.profile: no AWS profile named {profile!r}; run `aws configure --profile {profile}` or remove it"
        ) from None
    if not session.region_name:
        raise AwsSetupError("aws.region: no AWS region set; add `aws: {region: us-east-1}` to the spec or set AWS_REGION")
    return session


def make_client(service: str, *, session: Any = None, profile: str | None = None, region: str | None = None) -> Any:
    """A client with adaptive retries (client-side rate limiting on throttles)."""
    from botocore.config import Config

    session = session or make_session(profile=profile, region=region)
    config = Config(retries={"mode": "adaptive", "max_attempts": 10}, max_pool_connections=32, connect_timeout=10)
    return session.client(service, config=config)


def check_credentials(session: Any) -> None:
    """Fail early, in one line, when no credentials can be found."""
    if session.get_credentials() is None:
        raise AwsSetupError(
            "AWS credentials not found; run `aws configure`, set AWS_PROFILE, or export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        )


def explain(error: BaseException) -> str | None:
    """One line for an AWS failure that is the user's setup (credentials, region, network, permissions), naming
    the fix; None for anything else — a botocore error raised by our own request (ParamValidationError, …) is a
    bug and keeps its traceback."""
    from botocore import exceptions as bx

    if isinstance(error, (bx.NoCredentialsError, bx.PartialCredentialsError, bx.ProfileNotFound,
                          bx.NoRegionError, bx.CredentialRetrievalError)):
        return (f"AWS: {error}; check credentials/region (`aws configure`, AWS_PROFILE, AWS_REGION; "
                "`batchsweep doctor`) or pass --store for a local run")
    if isinstance(error, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError,
                          bx.SSLError, bx.ProxyConnectionError)):
        return (f"AWS: {error}; the endpoint is unreachable: check the network, the region and AWS_ENDPOINT_URL "
                "(an emulator must be running)")
    if isinstance(error, bx.ClientError):
        err = error.response.get("Error", {})
        code, message = err.get("Code", "?"), err.get("Message", "")
        op = getattr(error, "operation_name", "") or "call"
        line = f"AWS {op}: {code}: {message}".rstrip(": ")
        if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "403", "Forbidden"):
            return line + ("; this identity lacks the permission: attach the stack's SubmitPolicyArn managed "
                           "policy (`batchsweep infra status` shows it) or ask your AWS admin")
        if code in ("ExpiredToken", "ExpiredTokenException", "RequestExpired", "InvalidClientTokenId",
                    "InvalidAccessKeyId", "SignatureDoesNotMatch", "UnrecognizedClientException"):
            return line + "; the credentials are invalid or expired: refresh them (`aws sso login`, `aws configure`)"
        if code in ("ThrottlingException", "TooManyRequestsException", "SlowDown", "RequestLimitExceeded"):
            return line + "; AWS is throttling this account: wait a minute and run the command again"
        return line
    return None
