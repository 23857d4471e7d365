"""What a credential looks like: the file names that hold one and the text that is one.

The code package lands in the store and in every container, so `aws.codepkg` leaves out the files named here
and refuses to pack a file whose content (or what a gzip, xz, bzip2 or zip archive inside it holds) looks like
a key. Reading an archive is bounded in bytes, so a compression bomb cannot hang packing.
"""

from __future__ import annotations

import bz2
import functools
import io
import lzma
import mmap
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import IO, BinaryIO, Protocol, cast

from batchsweep.errors import SpecError
from batchsweep.text import printable

# Never packed, whatever .gitignore says (unless `code.include` names it). Matched without regard to case;
# `id_*` spares Python modules (`id_utils.py`).
SECRET_FILES = (
    ".env*",
    "*.env",
    "id_*",
    "*.pem",
    "*.key",
    "*.ppk",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.kdbx",
    ".netrc",
    "_netrc",
    ".pypirc",
    ".npmrc",
    ".git-credentials",
    "credentials*",
    ".s3cfg",
    ".boto",
    "kaggle.json",
    "service-account*.json",
    "client_secret*.json",
    "token.pickle",
    ".pgpass",
    ".my.cnf",
    ".vault-token",
    ".dockercfg",
    "*.tfstate",
    "*.tfstate.*",
    "secrets.toml",
)
SECRET_PATHS = (".huggingface/token", ".docker/config.json")  # by their last parts
SECRET_DIRS = (".aws", ".ssh", ".gnupg", ".docker", ".kube", ".azure", "gcloud", "terraform.tfstate.d")

# What a credential looks like inside a file that would be packed. A secret access key follows its name
# however a language writes the assignment: `= "`, `: `, `"] = "` (os.environ[...]), `", "` (setdefault),
# and the same with the quotes escaped (a notebook's JSON). The documented example keys are no credentials.
SECRET_CONTENT = (
    (rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----", "a private key"),
    (
        rb"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)(?!IOSFODNN7EXAMPLE)[A-Z0-9]{16}(?![A-Z0-9])",
        "an AWS access key id",
    ),
    (
        rb"""(?ix)
        (?:aws_?)?secret_?access_?key
        [\s"'\\\])]* [=:,(] [\s"'\\]*
        (?!wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY)
        [A-Za-z0-9/+]{40} (?![A-Za-z0-9/+])
        """,
        "an AWS secret access key",
    ),
    (rb"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])", "a Google API key"),
    (rb'"type"\s*:\s*"(?:service_account|authorized_user)"', "Google credentials"),
    (rb"(?<![A-Za-z0-9_])hf_[A-Za-z0-9]{34,}(?![A-Za-z0-9])", "a Hugging Face token"),
    (
        rb"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{22,})(?![A-Za-z0-9_])",
        "a GitHub token",
    ),
)

# How much of what one archive holds is scanned (all its members together).
ARCHIVE_SCAN_BYTES = 1 << 20
# How many of a zip's members are scanned at the most: a million empty members are a bomb of their own.
ZIP_SCAN_MEMBERS = 10_000
GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"
BZIP2_MAGIC = b"BZh"
ZIP_MAGIC = b"PK\x03\x04"

# What a damaged stream raises while it is decompressed: it is then scanned up to where it broke.
_DAMAGED = (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError)


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = ..., /) -> bytes: ...


def is_secret(rel: str) -> bool:
    """Whether a file's path (relative to the code directory) names a well-known credential file."""
    lower = rel.lower()
    parts = lower.split("/")
    name = parts[-1]
    if name.startswith("id_") and name.endswith((".py", ".pyi")):
        return False
    return (any(fnmatch(name, p) for p in SECRET_FILES) or any(part in SECRET_DIRS for part in parts[:-1])
            or any(lower == p or lower.endswith("/" + p) for p in SECRET_PATHS))


@functools.cache
def _content_patterns() -> list[tuple[re.Pattern[bytes], str]]:
    return [(re.compile(pattern), what) for pattern, what in SECRET_CONTENT]


# A file is scanned mapped, not read: a multi-GB data file beside the script costs page cache, not memory.
Buffer = bytes | mmap.mmap
# The most compressed bytes read for ARCHIVE_SCAN_BYTES of what a stream or zip member holds (deflate, xz and
# bzip2 grow incompressible data by far less than this).
COMPRESSED_READ_BYTES = 16 * ARCHIVE_SCAN_BYTES


def first_hit(data: Buffer) -> tuple[int, str] | None:
    """(line, what) of the first credential-looking text in data."""
    hits = [(m.start(), what) for pattern, what in _content_patterns() if (m := pattern.search(data))]
    if not hits:
        return None
    at, what = min(hits)
    step = 8 << 20  # counted a slice at a time: a hit deep in a mapped file copies no more than this
    return sum(data[i:min(i + step, at)].count(b"\n") for i in range(0, at, step)) + 1, what


def _stream_head(data: bytes, new: Callable[[], _Decompressor], limit: int) -> bytes:
    """The first `limit` bytes compressed data holds, stream after stream; what a damaged stream gives up to
    there."""
    out: list[bytes] = []
    got = 0
    while data and got < limit:
        stream = new()
        try:
            chunk = stream.decompress(data, limit - got)
        except _DAMAGED:
            break
        out.append(chunk)
        got += len(chunk)
        if not stream.eof:
            break
        data = stream.unused_data
    return b"".join(out)


def _gzip() -> _Decompressor:
    return zlib.decompressobj(wbits=31)


def _raw_deflate() -> _Decompressor:
    return zlib.decompressobj(wbits=-15)


def _zip_lzma(raw: bytes, limit: int) -> bytes:
    """A zip member's LZMA data (a 4-byte version and size header, then the 5 property bytes) read as the
    .lzma format, whose header is the same properties and an unknown size."""
    if len(raw) < 9:
        return b""
    props_size = struct.unpack_from("<H", raw, 2)[0]
    alone = raw[4:4 + props_size] + b"\xff" * 8 + raw[4 + props_size:]
    return _stream_head(alone, lambda: lzma.LZMADecompressor(lzma.FORMAT_ALONE), limit)


def _zip_member(data: Buffer, info: zipfile.ZipInfo, limit: int) -> bytes:
    """The first `limit` bytes one member holds, decompressed here (not by zipfile, whose bzip2 and LZMA
    readers are unbounded) from its bytes after its local header."""
    at = info.header_offset
    if data[at:at + 4] != ZIP_MAGIC:
        return b""
    name_size, extra_size = struct.unpack_from("<HH", data, at + 26)
    start = at + 30 + name_size + extra_size
    raw = data[start:start + min(info.compress_size, COMPRESSED_READ_BYTES)]
    if info.compress_type == zipfile.ZIP_STORED:
        return raw[:limit]
    if info.compress_type == zipfile.ZIP_DEFLATED:
        return _stream_head(raw, _raw_deflate, limit)
    if info.compress_type == zipfile.ZIP_BZIP2:
        return _stream_head(raw, bz2.BZ2Decompressor, limit)
    if info.compress_type == zipfile.ZIP_LZMA:
        return _zip_lzma(raw, limit)
    return b""


def _zip_members(data: Buffer, limit: int) -> Iterator[tuple[str, bytes]]:
    """(name, first bytes) of a zip's unencrypted members, ARCHIVE_SCAN_BYTES of them in all."""
    try:
        # a mapped file is read in place (mmap is a seekable binary file); bytes through BytesIO
        with zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else cast(IO[bytes], data)) as zf:
            infos = zf.infolist()[:ZIP_SCAN_MEMBERS]
    except (zipfile.BadZipFile, *_DAMAGED):
        return
    left = limit
    for info in infos:
        if left <= 0:
            return
        if info.is_dir() or info.flag_bits & 0x1:  # bit 0: encrypted, nothing to read without its password
            continue
        try:
            head = _zip_member(data, info, left)
        except (struct.error, *_DAMAGED):
            continue
        left -= len(head)
        yield info.filename, head


def archive_hit(data: Buffer, limit: int = ARCHIVE_SCAN_BYTES) -> tuple[int, str] | None:
    """(line, what) of the first credential-looking text in what a gzip, xz, bzip2 or zip file holds (its
    first `limit` bytes), the line counted in the member that holds it."""
    streams = {GZIP_MAGIC: ("gzip", _gzip), XZ_MAGIC: ("xz", lzma.LZMADecompressor),
               BZIP2_MAGIC: ("bzip2", bz2.BZ2Decompressor)}
    for magic, (kind, new) in streams.items():
        if data[:len(magic)] == magic:
            hit = first_hit(_stream_head(data[:COMPRESSED_READ_BYTES], new, limit))
            return (hit[0], f"{hit[1]} in its {kind}-compressed data") if hit else None
    if data[:len(ZIP_MAGIC)] == ZIP_MAGIC:
        for name, head in _zip_members(data, limit):
            hit = first_hit(head)
            if hit:
                return hit[0], f"{hit[1]} in its zip member {printable(name)}"
    return None


def scan(root: Path, rels: Iterable[str]) -> list[tuple[str, int, str]]:
    """(path, line, what) of each of these files below root that looks like it holds a credential, in path
    order; an archive is scanned in the first ARCHIVE_SCAN_BYTES of what it holds."""
    found = []
    for rel in sorted(rels):
        try:
            with open(root / rel, "rb") as f:
                hit = _file_hit(f)
        except OSError:
            continue
        if hit is not None:
            found.append((rel, *hit))
    return found


def _file_hit(f: BinaryIO) -> tuple[int, str] | None:
    try:
        data: Buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except ValueError:  # an empty file (nothing to find), or one that cannot be mapped: read as it is
        data = f.read()
    try:
        return archive_hit(data) or first_hit(data)
    finally:
        if isinstance(data, mmap.mmap):
            data.close()


def refuse(root: Path, found: list[tuple[str, int, str]]) -> None:
    """SpecError (one line, the fix named) for what `scan` found; nothing when it found nothing."""
    if not found:
        return
    rel, line, what = found[0]
    more = (
        f" (and {len(found) - 1} more: "
        f"{', '.join(r for r, _, _ in found[1:4])}{' ...' if len(found) > 4 else ''})"
        if len(found) > 1
        else ""
    )
    raise SpecError(
        f"code: {root / rel} line {line} holds what looks like {what}{more}; the code package goes to "
        f"the store and every container, so it is refused: leave the file out with `code: {{exclude: "
        f"[{rel}]}}` (or .gitignore) and pass the credential as a secret, or if it is none, pack it with "
        f"`code: {{include: [{rel}]}}`"
    )
