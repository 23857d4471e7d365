"""`batchsweep report RUN1 RUN2 …`: runs overlaid on one page with what differs between them; a sweep's report
overlays its runs."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

import batchsweep
from batchsweep import cli

SCRIPT = (
    "import argparse, json\np = argparse.ArgumentParser()\np.add_argument('--lr', type=float)\n"
    "p.add_argument('--width', type=int)\np.add_argument('--offset', type=float)\na = p.parse_args()\n"
    "json.dump({'val_loss': a.offset + abs(a.lr - 0.01) * 10 + 8 / a.width}, open('metrics.json', 'w'))\n"
)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """Two grids of one sweep that differ in `retries`, a fixed param (`offset`) and the grid's widths."""
    tmp = tmp_path_factory.mktemp("compare")
    (tmp / "train.py").write_text(SCRIPT)
    ids = []
    for retries, offset, widths in ((0, 0.0, "[8, 16]"), (1, 0.5, "[16, 32]")):
        (tmp / "sweep.yaml").write_text(f"name: grid\nscript: train.py\nwarm: false\nretries: {retries}\n"
                                        f"params: {{grid: {{lr: [0.001, 0.01, 0.1], width: {widths}}}, "
                                        f"fixed: {{offset: {offset}}}}}\n")
        run = batchsweep.run(tmp / "sweep.yaml", store=tmp / "store", progress=False)
        assert run.exit_code == 0
        ids.append(run.id)
    return tmp, ids[0], ids[1]


def test_two_runs_on_one_page_name_both_with_their_differences(
    two_runs: tuple[Path, str, str], capsys
) -> None:
    tmp, a, b = two_runs
    out = tmp / "compare.html"
    assert cli.main(["report", a, b[-4:], "-o", str(out), "--store", str(tmp / "store")]) == 0
    assert f"wrote {out}: 2 runs compared (metric: val_loss, minimize)" in capsys.readouterr().out
    page = out.read_text()
    listed = re.findall(r'<li data-run="([^"]+)">', page)
    assert listed == [a, b]
    # the differences, as `batchsweep diff A B` says them
    pre = re.search(r'<pre class="diff" data-a="([^"]+)" data-b="([^"]+)">(.*?)</pre>', page, re.S)
    assert pre is not None and pre.group(1, 2) == (a, b)
    said = html.unescape(pre.group(3))
    assert f"A {a}" in said and f"B {b}" in said and "retries: 0 -> 1" in said
    assert 'only in B: {"lr": 0.01, "offset": 0.5, "width": 32}' in said
    # each run's best: run A (offset 0) at lr=0.01, width=16, the best both runs share
    best = dict(re.findall(r'<tr data-run="([^"]+)">.*?<td class="m" data-v="([^"]+)"', page))
    assert float(best[a]) == pytest.approx(0.5) and float(best[b]) == pytest.approx(0.75)
    # best so far: one line per run; each param's chart has dots of both runs
    lines = re.findall(r'<polyline [^>]*class="run-best" data-run="([^"]+)"', page)
    assert lines == [a, b]
    charts = dict(re.findall(r'data-plot="by-param-runs" data-param="([^"]+)"[^>]*>(.*?)</svg>', page, re.S))
    assert set(charts) == {"lr", "width"}
    for body in charts.values():
        dots = re.findall(r'<circle [^>]*data-run="([^"]+)"', body)
        assert dots.count(a) == 6 and dots.count(b) == 6
    assert "offset" not in charts  # fixed in each run: a difference, not a dimension


def test_a_run_named_twice_is_refused_and_nothing_written(two_runs: tuple[Path, str, str], capsys) -> None:
    tmp, a, _ = two_runs
    out = tmp / "twice.html"
    assert cli.main(["report", a, a, "-o", str(out), "--store", str(tmp / "store")]) == 2
    assert f"run {a} is named twice" in capsys.readouterr().err
    assert not out.exists()


def test_a_sweeps_report_overlays_its_runs(two_runs: tuple[Path, str, str], capsys) -> None:
    tmp, a, b = two_runs
    out = tmp / "sweep.html"
    assert cli.main(["report", "--sweep", "grid", "-o", str(out), "--store", str(tmp / "store")]) == 0
    page = out.read_text()
    assert "The sweep&#x27;s 2 runs compared" in page or "The sweep's 2 runs compared" in page
    assert re.findall(r'<polyline [^>]*class="run-best" data-run="([^"]+)"', page) == [a, b]
    assert "retries: 0 -&gt; 1" in page
