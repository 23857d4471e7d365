"""Content keys (docs/design.md §4.1): what a task computes, as one sha256, so a result is never computed
twice.

A task's key covers everything that can change what it produces:

    code      the code identity (`CodeIdentity`): the script and the project's Python files it imports (found
              by reading its imports, and theirs), the files `code.files` lists (`all`: every file of the code
              package), each by sha256; and the versions of the installed packages those files import
    what      the script (or function) run inside it, `outputs:` globs, the GPU count, the names of `secrets:`
    env       `env:`, and what the engine runs on: the interpreter's version locally, the image and the
              requirements' hash on remote engines
    params    the resolved params, as canonical JSON
    inputs    each input's staged name and content: sha256 for local files and directories, the ETag and
              version id for s3:// inputs

The code identity is `batchsweep.planning.codeidentity`'s; file hashes and their cache are
`batchsweep.planning.filehash`'s. Both are re-exported here, so `keys.code_hash`, `keys.HashCache`, ... work.

Not in the key: `timeout`, `retries`, `max_parallel`, `warm`, resources other than GPUs, the backend's queue,
and `metrics:` (a changed rule re-reads the stored output instead, see `batchsweep.planning.reuse`).
"""

from __future__ import annotations

import os
import platform
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batchsweep.model import input_parts
from batchsweep.planning.codeidentity import (
    CODE_VERSION,
    NEVER_CODE_DIRS,
    NEVER_CODE_FILES,
    CodeIdentity,
    CodeWatch,
    code_changes,
    code_dir,
    code_hash,
    code_identity,
    imported_files,
    input_globs,
    inputs_globs_literal,
    interpreter,
)
from batchsweep.planning.filehash import HashCache, cache_dir, canonical, sha256_text

__all__ = [
    "CODE_VERSION",
    "KEY_VERSION",
    "NEVER_CODE_DIRS",
    "NEVER_CODE_FILES",
    "CodeIdentity",
    "CodeWatch",
    "HashCache",
    "InputStamps",
    "Keyer",
    "cache_dir",
    "canonical",
    "code_changes",
    "code_dir",
    "code_hash",
    "code_identity",
    "imported_files",
    "input_globs",
    "inputs_globs_literal",
    "interpreter",
    "local_environment",
    "s3_head",
    "sha256_text",
    "spec_what",
]

KEY_VERSION = 2  # 1: the code was every file of the code package (see CODE_VERSION)


class InputStamps:
    """The content identity of each input: sha256 for local files and directories, ETag + version for
    s3:// objects."""

    def __init__(
        self, base_dir: Path, cache: HashCache, *, s3_head: Callable[[str], str] | None = None
    ) -> None:
        self.base_dir = base_dir
        self.cache = cache
        self._s3_head = s3_head
        self._seen: dict[str, str] = {}
        # ref -> why it could not be identified (its tasks are never reused)
        self.unkeyed: dict[str, str] = {}

    def __call__(self, ref: str) -> str:
        found = self._seen.get(ref)
        if found is None:
            found = self._seen[ref] = self._stamp(ref)
        return found

    def _stamp(self, ref: str) -> str:
        try:
            if ref.startswith("s3://"):
                if self._s3_head is None:
                    raise OSError("no S3 access to read its ETag")
                return self._s3_head(ref)
            path = self.base_dir / ref
            if path.is_dir():
                return "dir:" + self.cache.directory(path)
            return "file:" + self.cache.file(path)
        except Exception as e:  # noqa: BLE001 - an input that cannot be identified only loses reuse
            self.unkeyed[ref] = str(e).splitlines()[0] if str(e) else type(e).__name__
            return f"unkeyed:{ref}:{secrets.token_hex(8)}"


def s3_head(*, profile: str | None, region: str | None) -> Callable[[str], str]:
    """A function giving an s3:// object's ETag and version id (one HEAD per object)."""
    client: list[Any] = []

    def head(uri: str) -> str:
        from batchsweep.aws.clients import make_client
        from batchsweep.aws.s3store import split_url

        if not client:
            client.append(make_client("s3", profile=profile, region=region or os.environ.get("AWS_REGION")
                                      or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"))
        bucket, key = split_url(uri)
        if uri.endswith("/"):  # a prefix: the listing's ETags
            pages = (
                client[0]
                .get_paginator("list_objects_v2")
                .paginate(Bucket=bucket, Prefix=key + "/" if key else "")
            )
            listing = [(o["Key"], o["ETag"]) for page in pages for o in page.get("Contents", [])]
            return "s3dir:" + sha256_text(canonical(sorted(listing)))
        response = client[0].head_object(Bucket=bucket, Key=key)
        return f"s3:{response.get('ETag', '')}:{response.get('VersionId') or ''}"

    return head


def local_environment(python: str | None = None) -> dict[str, Any]:
    """What a local (or Dask) task runs on, as far as its results can tell: the interpreter's version (of
    `python`, another interpreter chosen by the spec's `python:`, asked once)."""
    if python is None or os.path.realpath(python) == os.path.realpath(sys.executable):
        version = f"{platform.python_implementation()} {platform.python_version()}"
    else:
        import subprocess

        try:
            version = subprocess.run(
                [
                    python,
                    "-c",
                    "import platform; print(platform.python_implementation(), platform.python_version())",
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            version = f"unknown ({python})"
    return {"python": version, "machine": platform.machine()}


class Keyer:
    """Makes the content key of each task of one sweep; `common` is everything the tasks share."""

    def __init__(
        self, *, code: str, what: dict[str, Any], env: dict[str, Any], stamps: InputStamps | None
    ) -> None:
        self.common = sha256_text(canonical({"v": KEY_VERSION, "code": code, "what": what, "env": env}))
        self.stamps = stamps

    @classmethod
    def from_common(cls, common: str, stamps: InputStamps | None) -> Keyer:
        """The keyer of a run whose common part was recorded (run.json `key_common`): a search's later
        trials."""
        keyer = cls.__new__(cls)
        keyer.common, keyer.stamps = common, stamps
        return keyer

    def __call__(self, params: dict[str, Any], inputs: tuple[str, ...]) -> str:
        staged = []
        for ref in inputs:
            src, dst = input_parts(ref)
            staged.append([dst, self.stamps(src) if self.stamps else src])
        return sha256_text(canonical([self.common, params, staged]))


def spec_what(spec: Any) -> dict[str, Any]:
    """The spec fields that change what a task runs or keeps (not timeout, retries, metrics: ...)."""
    return {
        "script": spec.script_path.name if spec.script_path else None,
        "function": spec.function,
        "outputs": sorted(spec.outputs),
        "gpus": spec.resources.gpus,
        "secrets": dict(sorted(spec.secrets.items())),
        "args": spec.args.model_dump(mode="json") if spec.args is not None else None,
        # (only when set: the keys of every spec without it stay as they were)
        **({"gpus_param": spec.resources.gpus_param} if spec.resources.gpus_param else {}),
    }

