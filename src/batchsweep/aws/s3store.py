"""The S3 backend of the store: the same layout as a local store under s3://BUCKET/PREFIX/.

A write is one PUT, so readers see whole objects only; the worker writes a task's status.json after its other
files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from batchsweep.aws import clients
from batchsweep.errors import AwsSetupError


class DeleteRefused(PermissionError):
    """DeleteObjects answered 200 but named keys it did not delete (`code`: S3's error code for the first)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


def split_url(url: str) -> tuple[str, str]:
    rest = url.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    return bucket, prefix.strip("/")


class S3Backend:
    def __init__(self, bucket: str, prefix: str = "batchsweep", *, client: Any = None,
                 profile: str | None = None, region: str | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._client = client
        self._profile = profile
        self._region = region

    @classmethod
    def from_url(cls, url: str, *, profile: str | None = None, region: str | None = None) -> S3Backend:
        bucket, prefix = split_url(url)
        if not bucket:
            raise AwsSetupError(f"store {url!r}: no bucket; write s3://BUCKET/PREFIX")
        return cls(bucket, prefix, profile=profile, region=region)

    @property
    def client(self) -> Any:
        if self._client is None:
            region = self._region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            self._client = clients.make_client("s3", profile=self._profile, region=region or "us-east-1")
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _rel(self, full: str) -> str:
        return full[len(self.prefix) + 1:] if self.prefix else full

    def read_bytes(self, key: str) -> bytes:
        try:
            return bytes(self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read())
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(key) from None

    def read_one_of_many(self, key: str) -> bytes:
        """`read_bytes` for one of many small objects read at once (`Store._read_many`): a GET of a presigned
        URL, sent through the client's own connection pool (its TLS, proxy and timeout settings). It skips
        what botocore does around each call (parsing the response's headers, event hooks, retry bookkeeping),
        about 0.6 ms of CPU an object: `results` of a 100,000-task run reads 2,000 summaries. Hooks registered
        on the client do not see these GETs. Any answer but 200 or NoSuchKey (expired credentials, a region
        redirect, throttling, a connection error, a body shorter than its Content-Length) is read again by
        `read_bytes`, with botocore's retries and errors."""
        http = getattr(getattr(self.client, "_endpoint", None), "http_session", None)
        if http is None:  # not a botocore client
            return self.read_bytes(key)
        from botocore.awsrequest import AWSRequest

        try:
            url = self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=900
            )
            response = http.send(AWSRequest(method="GET", url=url).prepare())
            status, body = response.status_code, bytes(response.content)
            length = response.headers.get("content-length")
        except Exception:  # noqa: BLE001 - botocore's own call says what went wrong, or retries
            return self.read_bytes(key)
        if status == 200 and (length is None or length == str(len(body))):  # a cut-off body is read again
            return body
        if status == 404 and b"<Code>NoSuchKey</Code>" in body:
            raise FileNotFoundError(key)
        return self.read_bytes(key)

    def iter_bytes(self, key: str, start: int = 0) -> Iterator[bytes]:
        from botocore.exceptions import ClientError

        extra = {"Range": f"bytes={start}-"} if start else {}
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key), **extra)["Body"]
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(key) from None
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "InvalidRange":  # nothing after `start` yet
                return iter(())
            raise
        return iter(body.iter_chunks(1 << 20))

    def write_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def list_dirs(self, prefix: str) -> list[str]:
        names = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(
            Bucket=self.bucket, Prefix=self._key(prefix).rstrip("/") + "/", Delimiter="/"
        ):
            for cp in page.get("CommonPrefixes", []):
                names.append(cp["Prefix"].rstrip("/").rsplit("/", 1)[-1])
        return names

    def list_files(self, prefix: str) -> list[str]:
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix).rstrip("/") + "/"):
            keys.extend(self._rel(obj["Key"]) for obj in page.get("Contents", []))
        return keys

    def list_sizes(self, prefix: str) -> dict[str, int]:
        """Every file under prefix with its size, from the same listing requests as `list_files`."""
        sizes: dict[str, int] = {}
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix).rstrip("/") + "/"):
            sizes.update((self._rel(obj["Key"]), int(obj.get("Size", 0))) for obj in page.get("Contents", []))
        return sizes

    def upload_file(self, local: Path, key: str) -> None:
        self.client.upload_file(str(local), self.bucket, self._key(key))

    def refresh(self, key: str, *, older_than_s: float = 0.0, now: float | None = None) -> bool:
        """Copy an object onto itself (server side, multipart when large), restarting its lifecycle expiry;
        only when it was last written more than `older_than_s` ago (a HEAD first): in the versioned bucket
        each copy keeps the old version for a while, a full copy of the object. Returns whether it copied."""
        import time

        full = self._key(key)
        if older_than_s > 0:
            written = self.client.head_object(Bucket=self.bucket, Key=full)["LastModified"].timestamp()
            if (time.time() if now is None else now) - written < older_than_s:
                return False
        self.client.copy(
            {"Bucket": self.bucket, "Key": full},
            self.bucket,
            full,
            ExtraArgs={"MetadataDirective": "REPLACE", "Metadata": {"batchsweep-used": f"{time.time():.0f}"}},
        )
        return True

    def upload_dir(self, local: Path, key: str) -> None:
        from batchsweep.files import regular_files

        files = regular_files(local)  # never through a symlink
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda rel: self.upload_file(local / rel, f"{key}/{rel}"), files))

    # -- conditional writes (S3 honours If-None-Match / If-Match on PUT) ------------------------
    @staticmethod
    def _precondition_failed(e: Exception) -> bool:
        code = getattr(e, "response", {}).get("Error", {}).get("Code")
        return code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")

    def create_exclusive(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
            return True
        except ClientError as e:
            if self._precondition_failed(e):
                return False
            raise

    def read_tagged(self, key: str) -> tuple[bytes, str]:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(key) from None
        return bytes(response["Body"].read()), str(response["ETag"])

    def replace_if(self, key: str, data: bytes, tag: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            response = self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfMatch=tag)
            return str(response["ETag"])
        except ClientError as e:
            if self._precondition_failed(e) or e.response.get("Error", {}).get("Code") in (
                "NoSuchKey",
                "404",
            ):
                return None
            raise

    def download(self, key: str, local: Path) -> None:
        from botocore.exceptions import ClientError

        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client.download_file(self.bucket, self._key(key), str(local))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise FileNotFoundError(key) from None
            raise

    def download_tree(self, prefix: str, local: Path) -> None:
        """Every object under `prefix`/ (an `s3://BUCKET/PREFIX/` input: a directory) into the directory
        `local`, at its path below the prefix. A key that would land outside `local` (a `..`, `.` or empty
        path component) is refused whole: whoever writes that bucket does not choose where batchsweep writes.
        No object under the prefix is FileNotFoundError, as for a missing single object."""
        base = self._key(prefix).strip("/")
        listing = base + "/" if base else ""
        keys = [
            obj["Key"]
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=listing
            )
            for obj in page.get("Contents", [])
        ]
        if not keys:
            raise FileNotFoundError(f"s3://{self.bucket}/{listing}: no objects under this prefix")
        files = []
        for key in keys:
            rel = key[len(listing):]
            if rel.endswith("/"):  # a "folder" the S3 console made: an empty object, a directory here
                rel = rel.rstrip("/")
                if not rel:
                    continue
            parts = rel.split("/")
            if any(part in ("", ".", "..") for part in parts):
                raise ValueError(
                    f"s3://{self.bucket}/{key}: a key under the input prefix {listing!r} with an empty, "
                    "'.' or '..' path component cannot be staged as a file; rename it"
                )
            files.append((key, parts, key.endswith("/")))
        local.mkdir(parents=True, exist_ok=True)
        for _key, parts, is_dir in files:
            if is_dir:
                local.joinpath(*parts).mkdir(parents=True, exist_ok=True)

        def fetch(item: tuple[str, list[str], bool]) -> None:
            key, parts, is_dir = item
            if not is_dir:
                target = local.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                self.client.download_file(self.bucket, key, str(target))

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(fetch, files))

    def copy(self, source: str, target: str) -> None:
        """Server-side: nothing is downloaded or uploaded again (multipart copy above 8 MiB, any size)."""
        from botocore.exceptions import ClientError

        try:
            self.client.copy(
                {"Bucket": self.bucket, "Key": self._key(source)}, self.bucket, self._key(target)
            )
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(source) from None
            raise

    def delete_prefix(self, prefix: str) -> None:
        keys = [self._key(k) for k in self.list_files(prefix)]
        if self.exists(prefix):
            keys.append(self._key(prefix))
        errors: list[dict[str, Any]] = []
        for i in range(0, len(keys), 1000):
            response = self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True},
            )
            errors += response.get("Errors", [])  # S3 answers 200 and lists the keys it did not delete
        if errors:
            first = errors[0]
            raise DeleteRefused(
                f"s3://{self.bucket}/{self._key(prefix)}: {len(errors)} of {len(keys)} objects not "
                f"deleted ({first.get('Code')} on {first.get('Key')}: {first.get('Message')})",
                code=str(first.get("Code")),
            )
