"""Help that matches the README: every option of every command has a help line and a place in the README's CLI
table, and every file the docs and the code name exists in the repository."""

from __future__ import annotations

import argparse
import re
import subprocess
from pathlib import Path

import pytest

from batchsweep.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
# said once under the table, for every command taking them
SHARED = {"--store", "--stack", "--profile", "--region"}


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, its parser) for every command and subcommand, depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from commands(sub, (*path, name))


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a for a in parser._actions if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))
    ]


ALL = list(commands(build_parser()))


def test_the_tree_is_walked() -> None:
    names = {" ".join(path) for path, _ in ALL}
    assert {"run", "results", "logs", "estimate", "infra up", "image push", "doctor"} <= names


@pytest.mark.parametrize(("path", "parser"), ALL, ids=[" ".join(p) for p, _ in ALL])
def test_every_option_has_a_help_line(path: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
    missing = [
        a.option_strings or [a.dest] for a in options(parser) if not a.help or a.help == argparse.SUPPRESS
    ]
    assert missing == [], f"batchsweep {' '.join(path)}: no help for {missing}"


def test_the_readme_cli_section_lists_the_top_level_options() -> None:
    section = cli_section()
    for action in options(build_parser()):
        assert any(
            re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", section) for f in action.option_strings
        ), f"README's CLI section does not mention {action.option_strings[-1]}"


def test_top_level_help_names_the_three_engines() -> None:
    text = build_parser().format_help()
    assert all(engine in text for engine in ("local", "aws-batch", "dask"))


def cli_section() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("### CLI", 1)[1].split("\n### ", 1)[0]


def usage_spans(section: str) -> list[list[str]]:
    """Each `batchsweep ...` code span of the CLI table (and those after a ` · ` in the same cell), as
    words."""
    spans = re.findall(r"`([^`]+)`", section)
    return [s.replace("\\|", "|").removeprefix("batchsweep ").split() for s in spans if s.strip()]


def span_for(path: tuple[str, ...], spans: list[list[str]]) -> str | None:
    for words in spans:
        if len(words) >= len(path) and all(p in w.split("|") for p, w in zip(path, words, strict=False)):
            return " ".join(words)
    return None


@pytest.mark.parametrize(("path", "parser"), ALL, ids=[" ".join(p) for p, _ in ALL])
def test_the_readme_cli_table_lists_every_option(
    path: tuple[str, ...], parser: argparse.ArgumentParser
) -> None:
    section = cli_section()
    span = span_for(path, usage_spans(section))
    if any(isinstance(a, argparse._SubParsersAction) for a in parser._actions) and span is None:
        return  # `infra`, `image`: their subcommands carry the options
    assert span is not None, f"README's CLI table has no row for `batchsweep {' '.join(path)}`"
    for action in options(parser):
        flags = action.option_strings
        if not flags:
            continue
        where = section if flags[0] in SHARED else span
        assert any(re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", where) for f in flags), \
            f"README's CLI table: `batchsweep {' '.join(path)}` does not list {flags[-1]}"


# -- every path the docs name exists
# --------------------------------------------------------------------------
def tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", *patterns], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [ROOT / line for line in out.splitlines()]


DOCS = tracked("*.md")
TOP = ("src/", "bench/", "docs/", "examples/", "tests/")


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_every_path_a_doc_names_exists(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    missing = []
    for target in re.findall(r"\]\(([^)#\s]+)[^)]*\)", text):  # markdown links and images
        if not re.match(r"[a-z]+://|mailto:", target) and not (doc.parent / target).exists():
            missing.append(target)
    for span in re.findall(r"`([^`\s]+)`", text):  # `src/batchsweep/engines/base.py`, `bench/README.md`
        path = span.split("::")[0].rstrip(".,")
        if path.startswith(TOP) and not any(c in path for c in "*{<") and not (ROOT / path).exists():
            missing.append(path)
    assert missing == [], f"{doc.relative_to(ROOT)} names files the repository does not have: {missing}"


def test_no_file_points_at_a_document_the_repository_does_not_have() -> None:
    names = {p.name for p in tracked()} | {str(p.relative_to(ROOT)) for p in tracked()}
    bad = []
    for path in tracked("*.md", "*.py", "*.yaml", "*.toml", "Makefile"):
        for ref in re.findall(r"(?<![\w/.-])((?:[\w-]+/)*[A-Z][\w-]*\.md|(?:docs|bench)/[\w./-]+\.md)\b",
                              path.read_text(encoding="utf-8", errors="replace")):
            if ref not in names:
                bad.append(f"{path.relative_to(ROOT)}: {ref}")
    assert bad == []


def test_a_readme_block_headed_by_a_file_name_is_that_file() -> None:
    """A fenced block whose first line is `# path/of/a/file` shows that file as it is."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```\w*\n# ([\w./-]+\.\w+)\n(.*?)^```", readme, flags=re.M | re.S)
    assert blocks, "the tour shows examples/tutorial/sweep.yaml"
    for name, text in blocks:
        assert (ROOT / name).read_text() == text, f"README's block of {name} differs from the file"
