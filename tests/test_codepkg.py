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
from batchsweep.errors import SpecError

HAS_FILTER = hasattr(tarfile, "data_filter")
MODES = [
    pytest.param(False, id="fallback"),
    pytest.param(
        True, id="data-filter", marks=pytest.mark.skipif(not HAS_FILTER, reason="no tarfile filters here")
    ),
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
        pytest.param(
            lambda tmp: [_link("esc", ".."), _file("esc/evil-through-link")], id="write-through-link"
        ),
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
    members = [
        _file("pkg/data.txt", b"hello"),
        _link("alias.txt", "pkg/data.txt"),
        _file("tool", b"#!", 0o4755),
    ]
    with _archive(*members) as tar:
        codepkg.safe_extractall(tar, target, use_filter=use_filter)
    assert (target / "alias.txt").read_text() == "hello"
    mode = (target / "tool").stat().st_mode
    assert mode & 0o100 and not mode & 0o4000  # executable kept, set-uid dropped


# -- issue 15, item 4: no secrets in the code package -------------------------------------------
def _project_with_secrets(root: Path) -> None:
    (root / "sub").mkdir(parents=True)
    (root / ".aws").mkdir()
    (root / "train.py").write_text("print(1)\n")
    (root / "sub" / "util.py").write_text("X = 1\n")
    for name in (".env", ".env.local", "id_rsa", "id_ed25519.pub", "server.pem", ".netrc", ".pypirc",
                 "credentials.json", "sub/.netrc", ".aws/credentials"):
        (root / name).write_text("SECRET=hunter2\n")
    (root.parent / "outside.txt").write_text("hunter2\n")
    (root / "link_in").symlink_to("train.py")
    (root / "link_abs").symlink_to("/etc/passwd")
    (root / "link_up").symlink_to("../outside.txt")
    (root / "link_dir").symlink_to("/etc", target_is_directory=True)


@pytest.mark.parametrize("git", [False, True], ids=["plain", "git"])
def test_secret_files_and_outside_symlinks_never_enter_the_package(tmp_path, git):
    root = tmp_path / "proj"
    _project_with_secrets(root)
    if git:
        import subprocess

        subprocess.run(["git", "init", "-q", str(root)], check=True)
    package = codepkg.pack(root)
    with tarfile.open(fileobj=io.BytesIO(package.data), mode="r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        contents = b"".join(tar.extractfile(m).read() for m in members.values() if m.isfile())
    assert sorted(members) == ["link_in", "sub/util.py", "train.py"]
    assert members["link_in"].issym() and members["link_in"].linkname == "train.py"
    assert b"hunter2" not in contents
    line = package.contents.left_out_line()
    assert ".env, .env.local" in line and "(looks like a secret)" in line and ".aws/credentials" in line
    assert "link_abs, link_dir, link_up (symlink to outside the code directory)" in line
    codepkg.extract(package.data, tmp_path / "out")
    assert (tmp_path / "out" / "link_in").is_symlink() and (
        tmp_path / "out" / "link_in"
    ).read_text() == "print(1)\n"


def test_dry_run_on_aws_lists_the_package_and_what_it_leaves_out(tmp_path, capsys):
    from batchsweep import cli

    root = tmp_path / "proj"
    _project_with_secrets(root)
    (root / "sweep.yaml").write_text(
        "name: pkg\nscript: train.py\nparams: {grid: {_x: [1]}}\nbackend: aws-batch\n"
    )
    assert cli.main(["run", str(root / "sweep.yaml"), "--dry-run", "--store", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "code package: 3 files, 1 symlinks" in out and "largest: " in out
    assert "left out: " in out and "id_rsa" in out


# -- issue 16: .gitignore read with git's rules, with or without git ------------------------------
GITIGNORE_TREE = {
    ".gitignore": "# a comment, then git's edge cases\n*.log\n!keep.log\n/build\nout/\ncache/\n"
    "!cache/back.txt\ndata/*.csv\ndocs/**/*.tmp\n\\#literal\nspaced.txt   \n",
    "train.py": "",
    "run.log": "",
    "keep.log": "",
    "#literal": "",
    "spaced.txt": "",
    "build/a.o": "",
    "out/a.txt": "",
    "cache/back.txt": "",
    "data/a.csv": "",
    "data/nested/b.csv": "",
    "docs/x.tmp": "",
    "docs/a/b/y.tmp": "",
    "docs/guide.txt": "",
    "sub/.gitignore": "!important.log\n/local.txt\n*.csv\n",
    "sub/important.log": "",
    "sub/other.log": "",
    "sub/keep.log": "",
    "sub/local.txt": "",
    "sub/x.csv": "",
    "sub/build/b.o": "",
    "sub/out/c.txt": "",
    "sub/deeper/local.txt": "",
    "sub/deeper/important.log": "",
    "file_named_out/out": "",
}
# What git itself lists (checked below against `git ls-files --others --exclude-standard` on the same tree).
GITIGNORE_KEPT = [
    ".gitignore",
    "data/nested/b.csv",
    "docs/guide.txt",
    "file_named_out/out",
    "keep.log",
    "sub/.gitignore",
    "sub/build/b.o",
    "sub/deeper/important.log",
    "sub/deeper/local.txt",
    "sub/important.log",
    "sub/keep.log",
    "train.py",
]


@pytest.mark.parametrize("git", [False, True], ids=["plain", "git"])
def test_gitignore_negation_anchors_directories_and_nested_files_follow_git(
    tmp_path: Path, git: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    monkeypatch.setenv("HOME", str(tmp_path))  # no global excludes file of the machine's
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    root = tmp_path / "proj"
    for rel, text in GITIGNORE_TREE.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    if git:
        subprocess.run(["git", "init", "-q", str(root)], check=True)
        listed = subprocess.run(["git", "ls-files", "--others", "--exclude-standard"], cwd=root,
                                capture_output=True, text=True, check=True).stdout.split()
        assert sorted(listed) == GITIGNORE_KEPT  # the expectation is git's own answer
    assert codepkg.list_files(root) == GITIGNORE_KEPT


# `code.exclude` means what the same lines would mean in .git/info/exclude (checked against git below).
EXCLUDE_TREE = [
    "train.py",
    "notes.md",
    "guide/notes.md",
    "data/a.csv",
    "data/raw/b.csv",
    "data/keep.csv",
    "runs/1/out.txt",
    "lib/runs/x.py",
    "lib/util.py",
    "results.csv",
    "lib/results.csv",
    "scratch/t.py",
]
EXCLUDE = ["data/*.csv", "!data/keep.csv", "/notes.md", "runs/", "*.py[co]", "results.csv", "scratch"]
EXCLUDE_KEPT = ["data/keep.csv", "data/raw/b.csv", "guide/notes.md", "lib/util.py", "train.py"]


@pytest.mark.parametrize("git", [False, True], ids=["plain", "git"])
def test_code_exclude_lines_read_as_gitignore_lines(
    tmp_path: Path, git: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    root = tmp_path / "proj"
    for rel in EXCLUDE_TREE:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("")
    if git:
        subprocess.run(["git", "init", "-q", str(root)], check=True)
        (root / ".git/info/exclude").write_text("\n".join(EXCLUDE) + "\n")
        listed = subprocess.run(["git", "ls-files", "--others", "--exclude-standard"], cwd=root,
                                capture_output=True, text=True, check=True).stdout.split()
        assert sorted(listed) == EXCLUDE_KEPT  # the expectation is git's own answer
        (root / ".git/info/exclude").write_text("")
    assert codepkg.list_files(root, exclude=EXCLUDE) == EXCLUDE_KEPT


def test_an_exclude_line_git_cannot_read_is_one_line_naming_the_field(tmp_path: Path) -> None:
    from batchsweep.spec.reader import load

    (tmp_path / "t.py").write_text("print(1)\n")
    (tmp_path / "sweep.yaml").write_text(
        "name: ex\nscript: t.py\nparams: {grid: {x: [1]}}\ncode: {exclude: ['!']}\n"
    )
    with pytest.raises(SpecError) as err:
        load(tmp_path / "sweep.yaml")
    assert (
        str(err.value).endswith("`!keep.csv`")
        and "sweep.yaml: code.exclude: " in str(err.value)
        and "\n" not in str(err.value)
    )
    assert "`data/`" in str(err.value)


def test_a_store_inside_the_code_directory_is_left_out_without_being_walked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from batchsweep.store.core import Store

    (tmp_path / "task.py").write_text("print(1)\n")
    store = Store.open(tmp_path / "results")  # not the default .batchsweep: found by its marker
    store.mark()
    for i in range(3):
        (tmp_path / "results" / "runs" / "r" / "tasks" / str(i)).mkdir(parents=True)
        (tmp_path / "results" / "runs" / "r" / "tasks" / str(i) / "status.json").write_text("{}")
    visited: list[Path] = []
    real = codepkg._gitignore_spec
    monkeypatch.setattr(codepkg, "_gitignore_spec", lambda d: visited.append(d) or real(d))
    monkeypatch.setattr(codepkg, "_git_files", lambda root: None)  # outside a repository
    contents = codepkg.survey(tmp_path)
    assert sorted(contents.sizes) == ["task.py"]
    assert contents.left_out == {"results/": "a batchsweep store"}
    assert visited == [tmp_path]  # the store below it never entered
