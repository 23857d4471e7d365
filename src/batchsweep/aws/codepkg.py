"""The code package: a directory as a deterministic tar.gz named by its sha256.

Same files ⇒ same bytes ⇒ same name, so an unchanged project is never uploaded twice and a code change never
needs an image rebuild. Honours .gitignore (through git when the directory is in a repository, else every
.gitignore below it read with git's rules by pathspec) and `code.exclude`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from batchsweep.aws import credentials
from batchsweep.errors import SpecError
from batchsweep.files import exclude_spec  # low in the house: the spec checks `code.exclude` with it too

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec

# batchsweep.store.core.STORE_MARKER: the root of a local store (never code)
STORE_MARKER = ".batchsweep-store"
ALWAYS_EXCLUDED = (
    ".git",
    "__pycache__",
    ".batchsweep",
    ".venv",
    "venv",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
)



def _git_files(root: Path) -> list[str] | None:
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "."],
            cwd=root, capture_output=True, check=True, timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return [p for p in out.decode().split("\0") if p and ((root / p).is_symlink() or (root / p).is_file())]


def _gitignore_spec(directory: Path) -> GitIgnoreSpec | None:
    """The patterns of one directory's .gitignore, with git's own rules (pathspec's GitIgnoreSpec)."""
    import pathspec

    path = directory / ".gitignore"
    if not path.is_file():
        return None
    return pathspec.GitIgnoreSpec.from_lines(path.read_text(errors="replace").splitlines())


def _ignored(rel: str, is_dir: bool, specs: dict[str, GitIgnoreSpec]) -> bool:
    """Whether the .gitignore files of rel's directories leave it out, as git decides: each file's patterns
    are relative to its own directory, the last matching line of a file wins (`!keep.txt` takes a file back
    in), and a deeper .gitignore overrides a shallower one. `build/` names directories only, so rel ends in
    "/" for one."""
    path = rel + "/" if is_dir else rel
    parts = rel.split("/")
    for depth in range(len(parts) - 1, -1, -1):  # the deepest .gitignore that has a say decides
        base = "/".join(parts[:depth])
        spec = specs.get(base)
        if spec is not None:
            include = spec.check_file(path[len(base) + 1:] if base else path).include
            if include is not None:
                return include
    return False


def _walk(root: Path) -> list[str]:
    """Files and symlinks under root, minus what its .gitignore files (root's and every subdirectory's) leave
    out: `git ls-files --others --exclude-standard` for a directory outside a repository. A directory that is
    left out is not entered, so nothing below it comes back in, as with git."""
    specs: dict[str, GitIgnoreSpec] = {}
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        base = here.relative_to(root).as_posix() if here != root else ""
        # a batchsweep store: its marker says so (`survey` leaves it out),
        if base and STORE_MARKER in filenames:
            files.append(f"{base}/{STORE_MARKER}")  # and it is never walked (100,000 tasks' files, re-walked
            dirnames[:] = []  # each second while a run checks its code for edits, see keys.CodeWatch)
            continue
        spec = _gitignore_spec(here)
        if spec is not None:
            specs[base] = spec
        prefix = base + "/" if base else ""
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]  # never walked into
        dirnames[:] = sorted(d for d in dirnames if d not in ALWAYS_EXCLUDED and d not in links
                             and not _ignored(prefix + d, True, specs))
        files += [prefix + name for name in [*filenames, *links] if not _ignored(prefix + name, False, specs)]
    return files


def list_files(root: Path, *, exclude: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Files and symlinks under root that .gitignore, `exclude` and ALWAYS_EXCLUDED leave in (secrets
    included: `survey` sorts them out). Inside a git repository git itself lists them; elsewhere the
    .gitignore files are read with git's rules."""
    files = _git_files(root)
    if files is None:
        files = _walk(root)
    excluded = exclude_spec(exclude)
    kept = []
    for rel in files:
        if any(part in ALWAYS_EXCLUDED for part in rel.split("/")[:-1]):
            continue
        if excluded is not None and excluded.match_file(rel):
            continue
        kept.append(rel)
    return sorted(kept)


def check_no_secrets(root: Path, contents: Contents) -> None:
    """SpecError (one line, the fix named) when a file the package would hold looks like a credential."""
    credentials.refuse(root, credentials.scan(root, contents.scanned()))


@dataclass
class Contents:
    """What a package holds: regular files with their sizes, symlinks kept as links, and what was left out."""

    sizes: dict[str, int] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)  # path -> why
    included: set[str] = field(default_factory=set)  # packed because `code.include` names them: never scanned

    @property
    def total(self) -> int:
        return sum(self.sizes.values())

    def largest(self, n: int = 3) -> str:
        ranked = sorted(self.sizes.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
        return ", ".join(f"{rel} ({_size(size)})" for rel, size in ranked)

    def scanned(self) -> list[str]:
        """The files a credential scan reads: every packed file but those `code.include` names."""
        return [rel for rel in self.sizes if rel not in self.included]

    def left_out_line(self) -> str | None:
        if not self.left_out:
            return None
        by_reason: dict[str, list[str]] = {}
        for rel, why in sorted(self.left_out.items()):
            by_reason.setdefault(why, []).append(rel)
        return "; ".join(f"{', '.join(rels[:8])}{' ...' if len(rels) > 8 else ''} ({why})"
                         for why, rels in by_reason.items())

    def summary(self) -> str:
        links = f", {len(self.links)} symlinks" if self.links else ""
        largest = f" (largest: {self.largest()})" if self.sizes else ""
        return f"{len(self.sizes)} files{links}, {_size(self.total)}{largest}"


def _size(n: float) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB" if n >= 2**10 else f"{int(n)} B"


def survey(root: Path, *, exclude: list[str] | tuple[str, ...] = (), include: list[str] | tuple[str, ...] = ()
           ) -> Contents:
    """What `build` would pack: secrets never (unless `include` names them), a batchsweep store kept inside
    root never (its directory has the store's marker file); a symlink as a link when it stays inside root,
    else left out."""
    contents = Contents()
    real_root = os.path.realpath(root)
    files = list_files(root, exclude=exclude)
    included = exclude_spec(include)
    stores = tuple(rel[:-len(STORE_MARKER)] for rel in files if rel.endswith("/" + STORE_MARKER))
    for store in stores:
        contents.left_out[store.rstrip("/") + "/"] = "a batchsweep store"
    for rel in files:
        path = root / rel
        if rel.startswith(stores) or rel == STORE_MARKER:
            continue
        trusted = included is not None and included.match_file(rel)
        if trusted:
            contents.included.add(rel)
        if credentials.is_secret(rel) and not trusted:
            contents.left_out[rel] = "looks like a secret"
        elif path.is_symlink():
            target = os.readlink(path)
            resolved = os.path.realpath(path)
            inside = os.path.commonpath([real_root, resolved]) == real_root
            if os.path.isabs(target) or not inside:
                contents.left_out[rel] = "symlink to outside the code directory"
            else:
                contents.links[rel] = target
        else:
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                contents.sizes[rel] = st.st_size
    return contents


@dataclass
class Package:
    sha256: str
    data: bytes
    contents: Contents


def pack(root: Path, *, exclude: list[str] | tuple[str, ...] = (), include: list[str] | tuple[str, ...] = (),
         max_mib: float = 50.0) -> Package:
    """The package of `root`; raises SpecError if larger than max_mib or when a file looks like a
    credential."""
    contents = survey(root, exclude=exclude, include=include)
    if contents.total > max_mib * 1024 * 1024:
        raise SpecError(
            f"code: {root} holds {_size(contents.total)} of files (cap {max_mib:g} MiB; largest: "
            f"{contents.largest()}); add data to `code: {{exclude: [...]}}` or .gitignore and pass it as "
            "`inputs:`, or raise code.max_mib"
        )
    check_no_secrets(root, contents)
    raw = io.BytesIO()
    _write(root, contents, raw)
    data = raw.getvalue()
    return Package(hashlib.sha256(data).hexdigest(), data, contents)


class _HashingFile:
    """A file being written whose sha256 is computed on the way (a package never held whole in memory)."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.sha = f, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def pack_to_file(root: Path, out: Path, *, exclude: list[str] | tuple[str, ...] = (),
                 include: list[str] | tuple[str, ...] = (), max_mib: float = 50.0) -> tuple[str, Contents]:
    """Like `pack`, streamed into the file `out`: (sha256, contents). The same bytes as `pack`."""
    contents = survey(root, exclude=exclude, include=include)
    if contents.total > max_mib * 1024 * 1024:
        # raises the SpecError that names the largest files
        pack(root, exclude=exclude, include=include, max_mib=max_mib)
    check_no_secrets(root, contents)
    with open(out, "wb") as f:
        hashing = _HashingFile(f)
        _write(root, contents, hashing)  # type: ignore[arg-type]
    return hashing.sha.hexdigest(), contents


def _write(root: Path, contents: Contents, raw: BinaryIO) -> None:
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=6) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in sorted([*contents.sizes, *contents.links]):
            info = tarfile.TarInfo(rel)
            info.mtime = 0
            if rel in contents.links:
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, contents.links[rel], 0o777
                tar.addfile(info)
                continue
            path = root / rel
            info.size = contents.sizes[rel]
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            with open(path, "rb") as f:
                tar.addfile(info, f)


def build(root: Path, *, exclude: list[str] | tuple[str, ...] = (), include: list[str] | tuple[str, ...] = (),
          max_mib: float = 50.0) -> tuple[str, bytes]:
    """(sha256, tar.gz bytes) of `root`; raises SpecError if larger than max_mib or when a file looks like a
    credential."""
    package = pack(root, exclude=exclude, include=include, max_mib=max_mib)
    return package.sha256, package.data


class UnsafeArchive(ValueError):
    """A member would land outside the target, or is not a plain file, directory or inside link."""


def extract_file(path: Path, target: Path) -> None:
    """`extract`, reading the archive from a file as it goes instead of from memory."""
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode="r:gz") as tar:
        safe_extractall(tar, target)


def extract(data: bytes, target: Path) -> None:
    """Unpack a code package or staged directory into `target`, refusing anything that could leave it."""
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        safe_extractall(tar, target)


def safe_extractall(tar: tarfile.TarFile, target: Path, *, use_filter: bool | None = None) -> None:
    """tarfile's "data" filter where this Python has it (3.10.12+, 3.11.4+), the same rules by hand before.

    Refused: absolute names, `..`, device and FIFO members, and links whose target resolves outside `target`
    (checked member by member, so a link extracted earlier cannot be used as a way out). Set-uid/gid bits are
    dropped and files get their owner's read/write bits, as the data filter does.
    """
    if use_filter is None:
        use_filter = hasattr(tarfile, "data_filter")
    if use_filter:
        for member in tar.getmembers():
            _check_name(member.name)
        try:
            tar.extractall(target, filter="data")
        except tarfile.FilterError as exc:
            raise UnsafeArchive(str(exc)) from exc
        return
    root = os.path.realpath(target)
    for member in tar:
        _check_member(member, root)
        tar.extract(member, root, set_attrs=False)
        if member.isfile() or member.isdir():
            dest = os.path.join(root, member.name)
            os.chmod(dest, (member.mode & 0o777 & ~0o7000) | (0o700 if member.isdir() else 0o600))


def _inside(root: str, path: str) -> bool:
    return os.path.commonpath([root, path]) == root


def _check_name(name: str) -> None:
    if name.startswith(("/", "\\")) or os.path.isabs(name) or ".." in Path(name).parts:
        raise UnsafeArchive(f"{name!r}: absolute path or '..' in an archive member")


def _check_member(member: tarfile.TarInfo, root: str) -> None:
    name = member.name
    _check_name(name)
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise UnsafeArchive(f"{name!r}: a device or FIFO in an archive")
    dest = os.path.realpath(os.path.join(root, name))
    if not _inside(root, dest):
        raise UnsafeArchive(f"{name!r} would be written outside {root}")
    if member.issym():
        link = os.path.join(os.path.dirname(os.path.join(root, name)), member.linkname)
        if os.path.isabs(member.linkname) or not _inside(root, os.path.realpath(link)):
            raise UnsafeArchive(f"{name!r} links to {member.linkname!r}, outside the target")
    elif member.islnk():
        if os.path.isabs(member.linkname) or not _inside(
            root, os.path.realpath(os.path.join(root, member.linkname))
        ):
            raise UnsafeArchive(f"{name!r} hard-links to {member.linkname!r}, outside the target")


def file_sha256(path: Path, size: int | None = None) -> str:
    """`size`: hash only that many bytes, the size the file was stat'ed at, so a file still being written
    beside the script (a log) is hashed as it was then rather than chased as it grows."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while size is None or size > 0:
            chunk = f.read(1 << 20 if size is None else min(size, 1 << 20))
            if not chunk:
                break
            h.update(chunk)
            if size is not None:
                size -= len(chunk)
    return h.hexdigest()
