"""The code package unpacks only inside its target, on every Python the README promises.

Debian 12's python3 (3.11.2) has no `tarfile` filters; both the filter path and the hand-written fallback are
exercised here on whatever Python runs the tests.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from batchsweep.aws import codepkg

HAS_FILTER = hasattr(tarfile, "data_filter")
MODES = [
    pytest.param(False, id="fallback"),
    pytest.param(True, id="data-filter", marks=pytest.mark.skipif(not HAS_FILTER, reason="no tarfile filters here")),
]


def _archive(*members: tuple[tarfile.TarInfo, bytes | None]) -> tarfile.TarFile:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    raw.seek(0)
    return tarfile.open(fileobj=raw, mode="r")


def _file(name: str, data: bytes = b"x", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info, data


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def _fifo(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.FIFOTYPE
    return info, None


def test_a_built_package_round_trips(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "train.py").write_text("print(1)\n")
    (src / "pkg" / "util.py").write_text("X = 1\n")
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o755)
    _sha, data = codepkg.build(src)
    codepkg.extract(data, tmp_path / "out")
    assert (tmp_path / "out" / "train.py").read_text() == "print(1)\n"
    assert (tmp_path / "out" / "pkg" / "util.py").read_text() == "X = 1\n"
    assert (tmp_path / "out" / "run.sh").stat().st_mode & 0o100


@pytest.mark.parametrize("use_filter", MODES)
@pytest.mark.parametrize(
    "members",
    [
        pytest.param(lambda tmp: [_file(f"{tmp}/evil-abs")], id="absolute"),
        pytest.param(lambda tmp: [_file("../evil-up")], id="dotdot"),
        pytest.param(lambda tmp: [_file("a/../../evil-up")], id="inner-dotdot"),
        pytest.param(lambda tmp: [_link("out", "/etc")], id="absolute-symlink"),
        pytest.param(lambda tmp: [_link("out", "../..")], id="escaping-symlink"),
        pytest.param(lambda tmp: [_link("d", "."), _link("d/e", "../..")], id="escaping-via-link-chain"),
        pytest.param(lambda tmp: [_link("h", "../outside", tarfile.LNKTYPE)], id="escaping-hardlink"),
        pytest.param(lambda tmp: [_link("esc", ".."), _file("esc/evil-through-link")], id="write-through-link"),
        pytest.param(lambda tmp: [_fifo("pipe")], id="fifo"),
    ],
)
def test_hostile_archives_are_refused_and_nothing_lands_outside(
    tmp_path: Path, members: Callable[[Path], list[tuple[tarfile.TarInfo, bytes | None]]], use_filter: bool
) -> None:
    target = tmp_path / "deep" / "target"
    target.mkdir(parents=True)
    with _archive(*members(tmp_path)) as tar, pytest.raises(codepkg.UnsafeArchive):
        codepkg.safe_extractall(tar, target, use_filter=use_filter)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep"]
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["target"]


@pytest.mark.parametrize("use_filter", MODES)
def test_links_inside_the_target_and_plain_modes_are_kept(tmp_path: Path, use_filter: bool) -> None:
    target = tmp_path / "t"
    members = [_file("pkg/data.txt", b"hello"), _link("alias.txt", "pkg/data.txt"), _file("tool", b"#!", 0o4755)]
    with _archive(*members) as tar:
        codepkg.safe_extractall(tar, target, use_filter=use_filter)
    assert (target / "alias.txt").read_text() == "hello"
    mode = (target / "tool").stat().st_mode
    assert mode & 0o100 and not mode & 0o4000  # executable kept, set-uid dropped
