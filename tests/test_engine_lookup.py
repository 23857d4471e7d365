"""A run's start scans the installed distributions' entry points (registered engines) only when it needs one:
a built-in backend, or `--set` of the spec's own fields, needs none; a registered engine is still found."""

from __future__ import annotations

import textwrap
from importlib.metadata import EntryPoint
from typing import Any

import pytest

from batchsweep import registry
from batchsweep.engines.local.engine import LocalEngine
from batchsweep.spec import reader


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each entry-point scan, with one engine registered from outside (`myengine`)."""
    seen: list[str] = []

    def entry_points(*, group: str) -> list[EntryPoint]:
        seen.append(group)
        return [EntryPoint("myengine", "batchsweep.engines.local.engine:LocalEngine", group)]

    monkeypatch.setattr(registry, "entry_points", entry_points)
    return seen


def test_a_built_in_backend_is_found_without_a_scan(scans: list[str]) -> None:
    assert registry.get_engine("local") is LocalEngine
    assert scans == []
    assert registry.get_engine("myengine") is LocalEngine  # a registered one: scanned for
    assert scans == ["batchsweep.engines"]


def test_overrides_of_the_spec_s_fields_need_no_scan(scans: list[str], tmp_path: Any) -> None:
    spec = tmp_path / "sweep.yaml"
    spec.write_text(textwrap.dedent("""
        name: demo
        script: s.py
        params: {grid: {x: [1, 2]}}
    """))
    (tmp_path / "s.py").write_text("")
    loaded = reader.load(spec, overrides=["max_parallel=2", "params.grid.x=3,4"])
    assert loaded.max_parallel == 2 and scans == []
    assert "myengine" in reader.top_level_keys(["myengine.queue=q"]) and scans
    assert "myengine" in reader.top_level_keys() and "myengine" not in reader.top_level_keys(["timeout=1m"])
