"""Content keys (docs/design.md §4.1): what a task computes, as one sha256, so a result is never computed twice.

A task's key covers everything that can change what it produces:

    code      the code package's content (the script's directory, or the function's, minus .gitignore,
              `code.exclude`, secrets, the spec file itself, a store kept there and every file the sweep's
              `inputs:` could name), as a tree of (path, executable bit, sha256)
    what      the script (or function) run inside it, `outputs:` globs, the GPU count, the names of `secrets:`
    env       `env:`, and what the engine runs on: the interpreter's version locally, the image and the
              requirements' hash on remote engines
    params    the resolved params, as canonical JSON
    inputs    each input's staged name and content: sha256 for local files and directories, the ETag and
              version id for s3:// inputs

Not in the key: `timeout`, `retries`, `max_parallel`, `warm`, resources other than GPUs, the backend's queue,
and `metrics:` (a changed rule re-reads the stored output instead, see `batchsweep.planning.reuse`).

A file's sha256 is remembered in a cache (`~/.cache/batchsweep/file-sha256.json`, or `$BATCHSWEEP_CACHE_DIR`) by
(path, size, mtime, ctime, inode): a big unchanged file is not read again, and a file rewritten with the same
size and its old mtime restored is read again (restoring the mtime changes the ctime).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import secrets
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from batchsweep.clock import SYSTEM, Clock
from batchsweep.model import input_parts

KEY_VERSION = 1
STORE_MARKER = ".batchsweep-store"  # the same name as batchsweep.store.core.STORE_MARKER (keys imports no store)
_CACHE_FILE = "file-sha256.json"


def cache_dir() -> Path:
    explicit = os.environ.get("BATCHSWEEP_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "batchsweep"


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class HashCache:
    """sha256 of local files, remembered across runs by (path, size, mtime, ctime, inode)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else cache_dir() / _CACHE_FILE
        self._entries: dict[str, list[Any]] = {}
        self._dirty = False
        self.read_bytes = 0  # bytes hashed by this object: what a warm cache spares
        try:
            loaded = json.loads(self.path.read_bytes())
            if isinstance(loaded, dict):
                self._entries = loaded
        except (OSError, ValueError):
            pass  # no cache yet, or a damaged one: every file is hashed again

    def file(self, path: Path, st: os.stat_result | None = None) -> str:
        st = st or os.stat(path)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        name = os.path.abspath(path)
        entry = self._entries.get(name)
        if entry is not None and entry[:4] == stamp:
            return str(entry[4])
        from batchsweep.aws.codepkg import file_sha256

        digest = file_sha256(path)
        self.read_bytes += st.st_size
        self._entries[name] = [*stamp, digest]
        self._dirty = True
        return digest

    def tree(self, root: Path, files: Iterable[str], links: dict[str, str] | None = None) -> str:
        """One sha256 over regular files (relative posix paths under root, with their executable bit) and links."""
        h = hashlib.sha256()
        for rel in sorted(files):
            path = root / rel
            st = os.stat(path)
            h.update(f"f {rel} {'x' if st.st_mode & stat.S_IXUSR else '-'} {self.file(path, st)}\n".encode())
        for rel, target in sorted((links or {}).items()):
            h.update(f"l {rel} {target}\n".encode())
        return h.hexdigest()

    def directory(self, root: Path) -> str:
        """A staged input directory: every regular file under it, symlinks by their target."""
        files, links = [], {}
        for parent, dirs, names in os.walk(root):
            for name in [*names, *[d for d in dirs if os.path.islink(os.path.join(parent, d))]]:
                full = os.path.join(parent, name)
                rel = os.path.relpath(full, root).replace(os.sep, "/")
                if os.path.islink(full):
                    links[rel] = os.readlink(full)
                elif os.path.isfile(full):
                    files.append(rel)
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(parent, d))]
        return self.tree(root, files, links)

    def save(self) -> None:
        if not self._dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".file-sha256.", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(self._entries, f, separators=(",", ":"))
            os.replace(tmp, self.path)
            self._dirty = False
        except OSError:
            pass  # a cache that cannot be written only costs a re-read next time


def code_dir(spec: Any) -> Path:
    return Path(spec.script_path.parent if spec.script_path else spec.base_dir)


def code_hash(spec: Any, *, cache: HashCache | None = None) -> str:
    """The content hash of the code package: what `batchsweep.aws.codepkg` would pack, minus the files any of the
    sweep's `inputs:` could name (`data/{symbol}.csv` leaves out `data/*.csv`): those are keyed per task, by
    content, so adding a data file for a new coin pair does not change the code of the others."""
    from fnmatch import fnmatch

    from batchsweep.aws import codepkg

    cache = cache or HashCache()
    root = code_dir(spec)
    contents = codepkg.survey(root, exclude=spec.code.exclude, include=spec.code.include)
    skip = input_globs(root, Path(spec.base_dir), spec.inputs)
    stores = [rel.rsplit("/", 1)[0] + "/" for rel in contents.sizes if rel.endswith("/" + STORE_MARKER)]
    if spec.spec_file is not None:  # the spec's fields that matter are keyed one by one (a widened grid is no code change)
        skip += inputs_globs_literal(root, Path(spec.spec_file))

    def kept(rel: str) -> bool:
        return not (rel.startswith(tuple(stores)) or any(fnmatch(rel, g) or fnmatch(rel, g.rstrip("/") + "/*")
                                                          for g in skip))

    files = [rel for rel in contents.sizes if kept(rel)]
    links = {rel: target for rel, target in contents.links.items() if kept(rel)}
    return cache.tree(root, files, links)


class CodeWatch:
    """Whether the code a run's tasks were keyed by is still the code on disk, for engines whose tasks run the
    code directory as it is when each starts. A script edited while its sweep runs is new code for the tasks
    that start after the edit: they run, and once `fresh()` is False the engine gives them no key (their
    results are never offered for reuse under the old code's key). Looked at once per `every_s` at most (a walk
    over cached hashes), so an edit is noticed within that time; a tree that takes longer than every_s/20 to
    walk (a monorepo's `git ls-files`) is looked at less often, so the watch never takes more than 5% of a core.
    A change is final (an edit undone later is not trusted). Thread-safe."""

    def __init__(self, spec: Any, code: str, *, every_s: float = 1.0, clock: Clock = SYSTEM) -> None:
        import threading

        self.spec, self.code, self.every_s, self.clock = spec, code, every_s, clock
        self.cache = HashCache()
        self.changed_to: str | None = None
        self._checked = float("-inf")  # the first task looks (planning may have been a while ago)
        self._wait = every_s
        self._lock = threading.Lock()

    def fresh(self) -> bool:
        with self._lock:
            if self.changed_to is not None:
                return False
            now = self.clock.monotonic()
            if now - self._checked < self._wait:
                return True
            try:
                current = code_hash(self.spec, cache=self.cache)
            except Exception:  # noqa: BLE001 - an unreadable directory fails the task itself, more clearly
                return True
            finally:
                self._checked = self.clock.monotonic()
                self._wait = max(self.every_s, 20 * (self._checked - now))
            if current != self.code:
                self.changed_to = current
                import logging

                logging.getLogger("batchsweep").warning(
                    "the code in %s changed while the run runs (%s at the start, %s now): tasks that start from "
                    "now run it as it is, and are not recorded for reuse", code_dir(self.spec), self.code[:12],
                    current[:12])
            return self.changed_to is None


def inputs_globs_literal(root: Path, path: Path) -> list[str]:
    """A single file as a glob relative to root (none when it lies outside root)."""
    from glob import escape

    real_root, full = os.path.realpath(root), os.path.realpath(path)
    if os.path.commonpath([real_root, full]) != real_root or full == real_root:
        return []
    return [escape(os.path.relpath(full, real_root).replace(os.sep, "/"))]


def input_globs(root: Path, base_dir: Path, templates: Iterable[Any]) -> list[str]:
    """The `inputs:` templates that point inside root, as globs relative to root (`{param}` becomes `*`)."""
    import re

    real_root = os.path.realpath(root)
    globs = []
    for item in templates:
        template = item if isinstance(item, str) else item["src"] if isinstance(item, dict) else item.src
        if template.startswith("s3://"):
            continue
        marker = "\0STAR\0"
        full = os.path.normpath(os.path.join(os.path.realpath(base_dir), re.sub(r"\{[A-Za-z_]\w*\}", marker, template)))
        if os.path.commonpath([real_root, full]) == real_root and full != real_root:
            globs.append(os.path.relpath(full, real_root).replace(os.sep, "/").replace(marker, "*"))
    return globs


class InputStamps:
    """The content identity of each input: sha256 for local files and directories, ETag + version for s3://."""

    def __init__(self, base_dir: Path, cache: HashCache, *, s3_head: Callable[[str], str] | None = None) -> None:
        self.base_dir = base_dir
        self.cache = cache
        self._s3_head = s3_head
        self._seen: dict[str, str] = {}
        self.unkeyed: dict[str, str] = {}  # ref -> why it could not be identified (its tasks are never reused)

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
            pages = client[0].get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key + "/" if key else "")
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
            version = subprocess.run([python, "-c", "import platform; print(platform.python_implementation(), "
                                      "platform.python_version())"], capture_output=True, text=True, timeout=30,
                                     check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            version = f"unknown ({python})"
    return {"python": version, "machine": platform.machine()}


class Keyer:
    """Makes the content key of each task of one sweep; `common` is everything the tasks share."""

    def __init__(self, *, code: str, what: dict[str, Any], env: dict[str, Any], stamps: InputStamps | None) -> None:
        self.common = sha256_text(canonical({"v": KEY_VERSION, "code": code, "what": what, "env": env}))
        self.stamps = stamps

    @classmethod
    def from_common(cls, common: str, stamps: InputStamps | None) -> Keyer:
        """The keyer of a run whose common part was recorded (run.json `key_common`): a search's later trials."""
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
    }
