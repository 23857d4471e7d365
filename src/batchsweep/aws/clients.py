"""The one place AWS clients are made.

boto3 is imported lazily so `batchsweep --help` never loads it. The standard
`AWS_ENDPOINT_URL` variable is honoured by boto3 itself, which is how tests aim
every call at moto's server without patching anything.

What a process reuses (a fresh boto3 session and its first client cost 0.05-0.25 CPU-s, mostly reading the
service models' JSON; from a reused loader ~0.01 s):
  - one botocore loader (the service-model cache) per AWS_DATA_PATH, shared by every session made here: what
    it caches is the same whoever signs and wherever requests go;
  - for `make_client` without a session, one boto3 session per identity and target: the profile and region
    asked for, every AWS_* variable (endpoint, credentials, profile, CA bundle, config and credentials file
    paths, ...; AWS_BATCH_* job metadata aside) and the config and credentials files as they are on disk (a
    rewritten ~/.aws/credentials is a new identity). Its credentials are resolved once; refreshable ones (SSO,
    an assumed role, the container's or instance's role) refresh themselves as clients use them.
`make_session` returns a new session (on the shared loader) each call, so a caller's event hooks stay its own;
`make_client` returns a new client each call, made under a lock (boto3 sessions are not safe to make clients
from concurrently).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any

from batchsweep.errors import AwsSetupError

_MAX_SESSIONS = 16  # identities kept per process (least recently used dropped)
_lock = threading.RLock()
_loaders: dict[str | None, Any] = {}  # AWS_DATA_PATH (or a profile's data_path) -> botocore Loader
_sessions: OrderedDict[tuple[Any, ...], Any] = OrderedDict()  # identity key -> boto3.Session


def _reinit_after_fork() -> None:
    global _lock
    _lock = threading.RLock()  # a fork while another thread held it must not deadlock the child


os.register_at_fork(after_in_child=_reinit_after_fork)


class _Paths(list[str]):
    """A shared loader's search paths: boto3 appends its data directory to them for every session made on
    it."""

    def append(self, item: str) -> None:
        if item not in self:
            super().append(item)


def _loader(data_path: str | None) -> Any:
    """The process's loader for this data path (callers hold _lock)."""
    loader = _loaders.get(data_path)
    if loader is None:
        from botocore.loaders import Loader

        extra = (
            [os.path.expanduser(os.path.expandvars(p)) for p in data_path.split(os.pathsep)]
            if data_path
            else []
        )
        # Loader keeps the list it is given as its search paths (botocore.loaders.create_loader, which this
        # mirrors).
        loader = _loaders[data_path] = Loader(extra_search_paths=_Paths(extra))
    return loader


def warm_loader(services: tuple[str, ...] = ("s3",)) -> None:
    """Read into the shared loader of the default data path (no AWS_DATA_PATH) what a first client of each
    service reads from disk: its model and endpoint rules, the endpoint, partition and default-configuration
    data. The player's zygote (batchsweep.emulator.zygote) calls it before forking, so a played worker's first
    S3 client is made from memory; the files are the same whoever signs and wherever requests go."""
    with _lock:
        loader = _loader(None)
    for name in ("endpoints", "sdk-default-configuration", "partitions"):
        loader.load_data(name)
    for service in services:
        for type_name in ("service-2", "endpoint-rule-set-1"):
            loader.load_service_model(service, type_name)


def _new_session(profile: str | None, region: str | None) -> Any:
    import boto3
    import botocore.exceptions
    import botocore.session

    core = botocore.session.get_session()
    if profile:
        core.set_config_variable("profile", profile)
    try:
        if profile and profile not in core.available_profiles:
            raise botocore.exceptions.ProfileNotFound(profile=profile)
        # AWS_DATA_PATH or the profile's (a missing AWS_PROFILE raises)
        data_path = core.get_config_variable("data_path")
    except botocore.exceptions.ProfileNotFound as e:
        name = profile or e.kwargs.get("profile")
        raise AwsSetupError(
            f"aws.profile: no AWS profile named {name!r}; run `aws configure --profile {name}` or remove it"
        ) from None
    with _lock:
        core.register_component("data_loader", _loader(data_path))
        session = boto3.Session(botocore_session=core, profile_name=profile or None, region_name=region)
    if not session.region_name:
        raise AwsSetupError(
            "aws.region: no AWS region set; add `aws: {region: us-east-1}` to the spec or set AWS_REGION"
        )
    return session


def make_session(*, profile: str | None = None, region: str | None = None) -> Any:
    """A new boto3 session on the process's shared service-model loader."""
    # AWS_REGION is the SDK-wide variable; older boto3 releases read only AWS_DEFAULT_REGION.
    return _new_session(profile or None, region or os.environ.get("AWS_REGION") or None)


def _file_state(variable: str, default: str) -> tuple[Any, ...]:
    path = os.path.expanduser(os.environ.get(variable) or default)
    try:
        st = os.stat(path)
    except OSError:
        return (path, None)
    return (path, st.st_mtime_ns, st.st_size, st.st_ino)


def _identity(profile: str | None, region: str | None) -> tuple[Any, ...]:
    """Everything that decides whom a session signs as and where its clients send requests."""
    env = tuple(sorted((k, v) for k, v in os.environ.items()
                       if k.startswith(("AWS_", "BOTO")) and not k.startswith("AWS_BATCH_")))
    files = (_file_state("AWS_CONFIG_FILE", "~/.aws/config"),
             _file_state("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"))
    return (profile or None, region or None, env, files)


def _shared_session(profile: str | None, region: str | None) -> Any:
    key = _identity(profile, region)
    with _lock:
        session = _sessions.get(key)
        if session is not None:
            _sessions.move_to_end(key)
            return session
    session = make_session(profile=profile, region=region)
    with _lock:
        session = _sessions.setdefault(key, session)
        _sessions.move_to_end(key)
        while len(_sessions) > _MAX_SESSIONS:
            _sessions.popitem(last=False)
    return session


def make_client(service: str, *, session: Any = None, profile: str | None = None, region: str | None = None,
                total_attempts: int = 11) -> Any:
    """A new client with adaptive retries (client-side rate limiting on throttles), from `session`, else from
    the process's session for this profile, region and environment. `total_attempts=1`: never sent again, for
    a call that is not idempotent (SubmitJob: its caller decides what is safe to send again)."""
    from botocore.config import Config

    session = session or _shared_session(profile, region)
    config = Config(
        retries={"mode": "adaptive", "total_max_attempts": total_attempts},
        max_pool_connections=32,
        connect_timeout=10,
        # S3's calls are signed SigV4 anyway; this makes its presigned URLs SigV4, and
        # virtual-host addressing puts them on the bucket's regional endpoint
        # (bucket.s3.REGION.amazonaws.com): on the global one, buckets in opt-in regions and new
        # buckets answer with a redirect.
        **({"signature_version": "s3v4", "s3": {"addressing_style": "virtual"}} if service == "s3" else {}),
    )
    where = {"region_name": region} if region else {}  # with a session: another region than the session's
    with _lock:
        client = session.client(service, config=config, **where)
        if service == "s3" and _names_a_host_not_aws(client.meta.endpoint_url):
            # An emulator by name (http://localhost:5000) has no BUCKET.localhost: paths there.
            client = session.client(
                service, config=config.merge(Config(s3={"addressing_style": "path"})), **where
            )
        return client


def _names_a_host_not_aws(url: str) -> bool:
    """Whether an endpoint is a host name other than AWS's (an IP address gets path-style URLs from
    botocore)."""
    import ipaddress
    from urllib.parse import urlparse

    host = urlparse(url).hostname or ""
    try:
        ipaddress.ip_address(host)
        return False
    except ValueError:
        return not host.endswith((".amazonaws.com", ".amazonaws.com.cn", ".api.aws"))


def check_credentials(session: Any) -> None:
    """Fail early, in one line, when no credentials can be found."""
    if session.get_credentials() is None:
        raise AwsSetupError(
            "AWS credentials not found; run `aws configure`, set AWS_PROFILE, or export "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        )


def explain(error: BaseException) -> str | None:
    """One line for an AWS failure that is the user's setup (credentials, region, network, permissions),
    naming the fix; None for anything else — a botocore error raised by our own request (ParamValidationError,
    …) is a bug and keeps its traceback."""
    from botocore import exceptions as bx

    if isinstance(error, (bx.NoCredentialsError, bx.PartialCredentialsError, bx.ProfileNotFound,
                          bx.NoRegionError, bx.CredentialRetrievalError)):
        return (f"AWS: {error}; check credentials/region (`aws configure`, AWS_PROFILE, AWS_REGION; "
                "`batchsweep doctor`) or pass --store for a local run")
    if isinstance(error, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError,
                          bx.SSLError, bx.ProxyConnectionError)):
        return (
            f"AWS: {error}; the endpoint is unreachable: check the network, the region and AWS_ENDPOINT_URL "
            "(an emulator must be running)"
        )
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
            return (
                line
                + "; the credentials are invalid or expired: refresh them (`aws sso login`, `aws configure`)"
            )
        if code in ("ThrottlingException", "TooManyRequestsException", "SlowDown", "RequestLimitExceeded"):
            return line + "; AWS is throttling this account: wait a minute and run the command again"
        return line
    return None
