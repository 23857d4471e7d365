"""`moto_server` with what real S3 does under IAM and moto does not: run as `python strict_moto.py ARGS`
(moto_server's own arguments). The IAM world (aws_fixtures.iam_world) serves through it.

A GET or HEAD of a missing key answers 404 NoSuchKey only when the caller may `s3:ListBucket` the bucket;
otherwise S3 answers 403 AccessDenied, so that a caller cannot learn which keys exist. A ListBucket grant with
an `s3:prefix` (or `s3:delimiter`, `s3:max-keys`) condition does not count: a GET carries no prefix. moto
answers 404 in both cases, which hid that the job role got 403 for every status.json it read before a task
ran. A listing (ListObjects, ListObjectsV2) is checked against the `s3:prefix` / `s3:delimiter` /
`s3:max-keys` conditions of the ListBucket grants (StringLike, StringEquals and their negations), which moto
ignores: a grant scoped to `prices/*` lists `prices/2024/` but not `private/`. DeleteObjects is checked key by
key against the caller's s3:DeleteObject grants, as S3 does: moto checks the action against the bucket's ARN,
so a grant on `bucket/batchsweep/runs/*` deleted nothing and every key came back AccessDenied in `Errors` (a
200), while a grant the keys lack is refused per key here too. This runs inside the server process; nothing in
a client (boto3, the product) is touched.
"""

from __future__ import annotations

import json
import re
import sys
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlparse
from xml.sax.saxutils import escape

import xmltodict

# Conditions on these keys fail for a GET/HEAD of an object: the request has no such value.
LIST_ONLY_KEYS = ("s3:prefix", "s3:delimiter", "s3:max-keys")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _action_matches(pattern: str, action: str) -> bool:
    return (
        re.fullmatch(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", "."), action, re.IGNORECASE)
        is not None
    )


def _resource_matches(pattern: str, arn: str) -> bool:
    return re.fullmatch(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", "."), arn) is not None


def _documents(policies: list[Any]) -> list[dict[str, Any]]:
    """The JSON documents of what moto's `collect_policies` returns (managed policies, inline dicts,
    strings)."""
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


def _holds(conditions: dict[str, dict[str, Any]], context: dict[str, str]) -> bool:
    """Whether a statement's conditions on the list-only keys hold for a request with these values (a key the
    request lacks fails a positive operator, as in IAM). Conditions on other keys are left to moto."""
    for operator, tests in conditions.items():
        base = operator.removesuffix("IfExists")
        for key, expected in tests.items():
            if key.lower() not in LIST_ONLY_KEYS:
                continue
            value = context.get(key.lower())
            if value is None:
                if operator.endswith("IfExists") or base.startswith("StringNot"):
                    continue
                return False
            like = base in ("StringLike", "StringNotLike")
            hit = any(
                _resource_matches(str(e), value) if like else str(e) == value for e in _as_list(expected)
            )
            if hit == base.startswith("StringNot"):
                return False
    return True


def may_list(documents: list[dict[str, Any]], bucket_arn: str, context: dict[str, str]) -> bool:
    """Whether the identity policies allow s3:ListBucket on the bucket for a request with these condition
    values (`{}` for a GET or HEAD of an object: no s3:prefix): an Allow whose conditions hold, and no Deny
    that does."""
    allowed = False
    for doc in documents:
        for statement in _as_list(doc.get("Statement", [])):
            actions = _as_list(statement.get("Action", []))
            if not any(_action_matches(a, "s3:ListBucket") for a in actions):
                continue
            if not any(
                r is not None and _resource_matches(r, bucket_arn)
                for r in _as_list(statement.get("Resource", []))
            ):
                continue
            if not _holds(statement.get("Condition") or {}, context):
                continue
            if statement.get("Effect") == "Deny":
                return False
            allowed = True
    return allowed


def _listing_context(request: Any) -> dict[str, str] | None:
    """The list-only condition values of a ListObjects(V2) request, or None for another bucket request."""
    query = parse_qs(urlparse(request.url).query, keep_blank_values=True)
    listing = {"list-type", "prefix", "delimiter", "max-keys", "continuation-token", "start-after", "marker",
               "encoding-type", "fetch-owner"}
    if request.method != "GET" or set(query) - listing:
        return None
    return {
        f"s3:{name}": values[0]
        for name, values in query.items()
        if name in ("prefix", "delimiter", "max-keys")
    }


def _permitted(policies: list[Any], action: str, resource: str) -> bool:
    """moto's own evaluation of the caller's identity policies for one action on one resource."""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    results = [IAMPolicy(p).is_action_permitted(action, resource) for p in policies]
    return PermissionResult.DENIED not in results and PermissionResult.PERMITTED in results


def _caller_policies(responder: Any, request: Any) -> list[dict[str, Any]] | None:
    """The identity policies of the request's signer as JSON documents (see `_caller_raw_policies`)."""
    raw = _caller_raw_policies(responder, request)
    return None if raw is None else _documents(raw)


def _caller_raw_policies(responder: Any, request: Any) -> list[Any] | None:
    """The identity policies of the request's signer, or None when moto checks nothing yet (the unchecked
    calls that make the admin) or the signer is unknown (moto has already refused such a request)."""
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
        key = create_access_key(
            account_id=responder.current_account,
            partition=get_partition(responder.region),
            access_key_id=credential,
            headers=headers,
        )
    except CreateAccessKeyFailure:
        return None
    return list(key.collect_policies())


def install() -> None:
    from moto.core.responses import ActionResult
    from moto.s3.exceptions import S3AccessDeniedError
    from moto.s3.responses import S3Response

    original = S3Response.key_response

    def key_response(self: Any, request: Any, full_url: str, headers: dict[str, Any]) -> Any:
        status, response_headers, body = original(self, request, full_url, headers)
        if request.method not in ("GET", "HEAD") or status != 404:
            return status, response_headers, body
        if request.method == "GET" and b"NoSuchKey" not in (
            body if isinstance(body, bytes) else str(body).encode()
        ):
            return status, response_headers, body
        bucket = self.parse_bucket_name_from_url(request, full_url)
        documents = _caller_policies(self, request)
        if documents is None or may_list(documents, f"arn:aws:s3:::{bucket}", {}):
            return status, response_headers, body
        if request.method == "HEAD":
            return 403, {}, ""
        return self._send_response(self.serialized(ActionResult(S3AccessDeniedError())))

    original_bucket = S3Response.bucket_response

    def bucket_response(self: Any, request: Any, full_url: str, headers: Any) -> Any:
        status, response_headers, body = original_bucket(self, request, full_url, headers)
        context = _listing_context(request)
        if status != 200 or context is None:
            return status, response_headers, body
        bucket = self.parse_bucket_name_from_url(request, full_url)
        documents = _caller_policies(self, request)
        if documents is None or may_list(documents, f"arn:aws:s3:::{bucket}", context):
            return status, response_headers, body
        return self._send_response(self.serialized(ActionResult(S3AccessDeniedError())))

    original_delete_keys = S3Response._bucket_response_delete_keys

    def delete_keys(self: Any, bucket_name: str, authenticated: bool = True) -> Any:
        request = SimpleNamespace(headers=self.headers, url=self.uri)
        policies = _caller_raw_policies(self, request)
        if policies is None:
            return original_delete_keys(self, bucket_name, authenticated)
        body = xmltodict.parse(self.body, strip_whitespace=False)
        objects = _as_list(body["Delete"].get("Object", []))
        denied = [o["Key"] for o in objects if not _permitted(policies, "s3:DeleteObject",
                                                                f"arn:aws:s3:::{bucket_name}/{o['Key']}")]
        allowed = [o for o in objects if o["Key"] not in denied]
        if not allowed:
            return original_delete_keys(self, bucket_name, False)  # moto: every key AccessDenied
        body["Delete"]["Object"] = allowed
        self.body = xmltodict.unparse(body).encode()
        status, headers, text = original_delete_keys(self, bucket_name, True)
        errors = "".join(
            f"<Error><Key>{escape(k)}</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
            for k in denied
        )
        text = text.decode() if isinstance(text, bytes) else text
        return status, headers, text.replace("</DeleteResult>", errors + "</DeleteResult>")

    S3Response.key_response = key_response  # type: ignore[method-assign]
    S3Response._bucket_response_delete_keys = delete_keys  # type: ignore[method-assign]
    S3Response.bucket_response = bucket_response  # type: ignore[method-assign]


if __name__ == "__main__":
    install()
    from moto.server import main

    sys.exit(main(sys.argv[1:]))
