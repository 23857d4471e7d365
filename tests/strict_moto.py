"""`moto_server` with what real S3 does under IAM and moto does not: run as `python strict_moto.py ARGS`
(moto_server's own arguments). The IAM world (aws_fixtures.iam_world) serves through it.

A GET or HEAD of a missing key answers 404 NoSuchKey only when the caller may `s3:ListBucket` the bucket;
otherwise S3 answers 403 AccessDenied, so that a caller cannot learn which keys exist. A ListBucket grant with an
`s3:prefix` (or `s3:delimiter`, `s3:max-keys`) condition does not count: a GET carries no prefix. moto answers 404
in both cases, which hid that the job role got 403 for every status.json it read before a task ran.
This runs inside the server process; nothing in a client (boto3, the product) is touched.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any
from urllib.parse import parse_qs, urlparse

# Conditions on these keys fail for a GET/HEAD of an object: the request has no such value.
LIST_ONLY_KEYS = ("s3:prefix", "s3:delimiter", "s3:max-keys")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _action_matches(pattern: str, action: str) -> bool:
    return re.fullmatch(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", "."), action, re.IGNORECASE) is not None


def _resource_matches(pattern: str, arn: str) -> bool:
    return re.fullmatch(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", "."), arn) is not None


def _documents(policies: list[Any]) -> list[dict[str, Any]]:
    """The JSON documents of what moto's `collect_policies` returns (managed policies, inline dicts, strings)."""
    from moto.iam.models import Policy

    docs = []
    for policy in policies:
        if isinstance(policy, Policy):
            raw = next(v for v in policy.versions if v.is_default).document
        elif isinstance(policy, str):
            raw = policy
        else:
            raw = policy["policy_document"]
        docs.append(json.loads(raw) if isinstance(raw, str) else raw)
    return docs


def may_list_without_prefix(documents: list[dict[str, Any]], bucket_arn: str) -> bool:
    """Whether the identity policies allow s3:ListBucket on the bucket for a request that carries no s3:prefix:
    an Allow with no condition on a list-only key, and no Deny that applies."""
    allowed = False
    for doc in documents:
        for statement in _as_list(doc.get("Statement", [])):
            actions = _as_list(statement.get("Action", []))
            if not any(_action_matches(a, "s3:ListBucket") for a in actions):
                continue
            if not any(r is not None and _resource_matches(r, bucket_arn) for r in _as_list(statement.get("Resource", []))):
                continue
            conditions = statement.get("Condition") or {}
            keys = {k.lower() for operator in conditions.values() for k in operator}
            conditioned = any(k in keys for k in LIST_ONLY_KEYS)
            if statement.get("Effect") == "Deny" and not conditioned:
                return False
            if statement.get("Effect") == "Allow" and not conditioned:
                allowed = True
    return allowed


def _caller_policies(responder: Any, request: Any) -> list[dict[str, Any]] | None:
    """The identity policies of the request's signer, or None when moto checks nothing yet (the unchecked calls
    that make the admin) or the signer is unknown (moto has already refused such a request)."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.iam.access_control import CreateAccessKeyFailure, create_access_key
    from moto.utilities.utils import get_partition

    if ActionAuthenticatorMixin.request_count < settings.INITIAL_NO_AUTH_ACTION_COUNT:
        return None
    headers = dict(request.headers)
    query = parse_qs(urlparse(request.url).query)
    authorization = headers.get("Authorization", "")
    credential = (re.search(r"Credential=([^/,]+)", authorization) or [None, None])[1] or \
        query.get("X-Amz-Credential", [""])[0].split("/")[0]
    if not credential:
        return None
    if "X-Amz-Security-Token" not in headers and "X-Amz-Security-Token" in query:
        headers["X-Amz-Security-Token"] = query["X-Amz-Security-Token"][0]
    try:
        key = create_access_key(account_id=responder.current_account, partition=get_partition(responder.region),
                                access_key_id=credential, headers=headers)
    except CreateAccessKeyFailure:
        return None
    return _documents(key.collect_policies())


def install() -> None:
    from moto.core.responses import ActionResult
    from moto.s3.exceptions import S3AccessDeniedError
    from moto.s3.responses import S3Response

    original = S3Response.key_response

    def key_response(self: Any, request: Any, full_url: str, headers: dict[str, Any]) -> Any:
        status, response_headers, body = original(self, request, full_url, headers)
        if request.method not in ("GET", "HEAD") or status != 404:
            return status, response_headers, body
        if request.method == "GET" and b"NoSuchKey" not in (body if isinstance(body, bytes) else str(body).encode()):
            return status, response_headers, body
        bucket = self.parse_bucket_name_from_url(request, full_url)
        documents = _caller_policies(self, request)
        if documents is None or may_list_without_prefix(documents, f"arn:aws:s3:::{bucket}"):
            return status, response_headers, body
        if request.method == "HEAD":
            return 403, {}, ""
        return self._send_response(self.serialized(ActionResult(S3AccessDeniedError())))

    S3Response.key_response = key_response  # type: ignore[method-assign]


if __name__ == "__main__":
    install()
    from moto.server import main

    sys.exit(main(sys.argv[1:]))
