"""A 100,000-task sweep: expansion, manifest and dry run (behaviour only; bench/scale.py has the timings)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from batchsweep import cli
from batchsweep.planning import plan as planning
from batchsweep.store.core import Store

SCRIPT = """\
import argparse

parser = argparse.ArgumentParser()
parser.add_argument("--symbol")
parser.add_argument("--window", type=int)
parser.add_argument("--fee_bps", type=int)
parser.parse_args()
"""


@pytest.fixture(scope="module")
def big_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("big")
    (tmp_path / "task.py").write_text(SCRIPT)
    symbols = ", ".join(f"S{i:03d}" for i in range(1000))
    windows = ", ".join(map(str, range(1, 101)))
    spec = tmp_path / "sweep.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: big
        script: task.py
        params:
          grid:
            symbol: [{symbols}]
            window: [{windows}]
          fixed: {{fee_bps: 10}}
    """))
    return spec


@pytest.fixture(scope="module")
def big_plan(big_spec: Path) -> planning.Plan:
    """Planned once for the module: each plan of 100,000 tasks takes seconds, and these tests only read it."""
    return planning.plan(big_spec)


def test_100k_tasks_expand_in_grid_order_with_stable_indices(big_plan):
    p = big_plan
    assert len(p.tasks) == 100_000 and p.info["n_tasks"] == 100_000
    first, last = p.tasks[0], p.tasks[-1]
    assert (first.index, first.params) == (0, {"symbol": "S000", "window": 1, "fee_bps": 10})
    assert (last.index, last.params) == (99_999, {"symbol": "S999", "window": 100, "fee_bps": 10})
    assert p.tasks[12_345].params == {"symbol": "S123", "window": 46, "fee_bps": 10}
    assert [t.index for t in p.tasks] == list(range(100_000))


def test_100k_task_manifest_reads_back_whole(big_plan, tmp_path):
    p = big_plan
    store = Store.open(tmp_path / "store")
    store.create_run(p.info["run_id"], p.info, p.tasks)
    back = store.tasks(p.info["run_id"])
    assert len(back) == 100_000
    assert back[0] == p.tasks[0] and back[-1] == p.tasks[-1]


def test_dry_run_of_100k_tasks_prints_the_count_and_writes_nothing(big_spec, tmp_path, capsys):
    store = tmp_path / "store"
    assert cli.main(["run", str(big_spec), "--dry-run", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\b100000\b", out) and "tasks" in out
    assert "S999" in out  # the last task is shown
    assert not store.exists()
