"""The report opened in headless Chromium (Debian's ``chromium``; ``make chromium`` installs it).

Checks what only a browser can: the inline JS runs without console errors, every plot has
rendered content in the live DOM, and a screenshot is not blank. Chromium is cut off from the
network (proxy to a closed port, every host unresolvable): the page must need nothing outside itself.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from test_report import METRICS, PARAMS, PLOTS, SUMMARY, backtest_frame

from batchsweep.report.html import build_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make chromium)")
OFFLINE = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND", "--hide-scrollbars"]


def chromium(tmp_path: Path, page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    cmd = [str(CHROMIUM), *OFFLINE, f"--user-data-dir={profile}", *args, page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


def read_png(path: Path) -> np.ndarray:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes) into an (h, w, channels) array."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body, pos = data[pos + 8:pos + 8 + length], pos + 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
    assert header is not None
    width, height, depth, ctype, _, _, interlace = header
    assert depth == 8 and ctype in (2, 6) and interlace == 0, f"unsupported PNG {header}"
    bpp = 3 if ctype == 2 else 4
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, 1 + width * bpp)
    out = np.zeros((height, width * bpp), dtype=np.uint8)
    prev = np.zeros(width * bpp, dtype=np.int32)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if kind == 0:
            cur = line
        elif kind == 2:
            cur = (line + prev) & 0xFF
        elif kind == 1:  # Sub: a running sum per channel
            cur = np.cumsum(line.reshape(width, bpp), axis=0).reshape(-1) & 0xFF
        else:  # Average and Paeth depend on the byte to the left: decode byte by byte
            cur = np.zeros_like(line)
            cl, pl = line.tolist(), prev.tolist()
            res = [0] * len(cl)
            for i, x in enumerate(cl):
                a = res[i - bpp] if i >= bpp else 0
                b, c = pl[i], pl[i - bpp] if i >= bpp else 0
                if kind == 3:
                    res[i] = (x + (a + b) // 2) & 0xFF
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    res[i] = (x + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
            cur = np.array(res, dtype=np.int32)
        out[y], prev = cur, cur
    return out.reshape(height, width, bpp)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    html, _, _ = build_report(backtest_frame(), params=PARAMS, metrics=METRICS, summary=SUMMARY,
                              log_tail=lambda task: f"Traceback ...\nValueError: task {task} <b>failed</b>")
    path = tmp_path_factory.mktemp("report with spaces") / "report ü.html"
    path.write_text(html, encoding="utf-8")
    return path


def test_every_plot_renders_and_the_script_runs_without_console_errors(page: Path, tmp_path: Path) -> None:
    run = chromium(tmp_path, page, "--enable-logging=stderr", "--v=0", "--dump-dom")
    dom = run.stdout
    assert re.search(r'<body[^>]*data-ready="1"', dom), "the report's inline script did not finish"
    plots = re.findall(r'<svg class="plot" data-plot="([^"]+)"[^>]*>(.*?)</svg>', dom, re.S)
    assert {name for name, _ in plots} == set(PLOTS)
    for name, body in plots:
        assert re.search(r"<(rect|polyline|circle|line|polygon)\b", body), f"plot {name} rendered empty"
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert console == [], "\n".join(console)


def test_the_screenshot_is_not_blank(page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    chromium(tmp_path, page, f"--screenshot={shot}", "--window-size=1280,2000")
    pixels = read_png(shot)[:, :, :3]
    assert pixels.shape[:2] == (2000, 1280)
    colours, counts = np.unique(pixels.reshape(-1, 3), axis=0, return_counts=True)
    background = counts.max() / counts.sum()
    assert len(colours) > 200, "too few colours: the plots did not paint"
    assert background < 0.9, f"{background:.0%} of the page is one colour"
    # the heatmap and the parallel coordinates paint the colour scale's saturated ends
    assert any(
        (abs(colours.astype(int) - rgb).sum(axis=1) < 30).any() for rgb in ([69, 117, 180], [215, 48, 39])
    )


def write_page(tmp_path: Path, html: str, name: str) -> Path:
    path = tmp_path / name
    path.write_text(html, encoding="utf-8")
    return path


def test_a_search_report_in_the_browser_history_first_scatter_no_heatmap(tmp_path: Path) -> None:
    from test_report import search_frame

    html, _, _ = build_report(
        search_frame(),
        params=["x1", "x2", "kind", "trial", "round"],
        metrics=["value"],
        summary=SUMMARY,
        sampled=["x1", "x2", "kind"],
    )
    dom = chromium(tmp_path, write_page(tmp_path, html, "search.html"), "--dump-dom").stdout
    assert re.search(r'<body[^>]*data-ready="1"', dom)
    headings = re.findall(r"<h2[^>]*>([^<(]+)", dom)
    assert headings[:4] == ["Optimisation history", "Slice, contour and distribution", "Parameter importance",
                            "All 48 tasks"]
    kinds = dict(re.findall(r'data-plot="by-param" data-param="([^"]+)" data-kind="([^"]+)"', dom))
    assert kinds == {"x1": "scatter", "x2": "scatter", "kind": "mean"}
    plots = {
        name for name, _ in re.findall(r'<svg class="plot" data-plot="([^"]+)"[^>]*>(.*?)</svg>', dom, re.S)
    }
    assert (
        "heatmap" not in plots and {"history", "importance", "parallel", "slice", "contour", "edf"} <= plots
    )
    for name, body in re.findall(
        r'<svg class="plot" data-plot="(slice|contour|edf)"[^>]*>(.*?)</svg>', dom, re.S
    ):
        assert re.search(r"<(rect|polyline|circle)\b", body), f"{name} rendered empty"


def test_a_sweep_with_a_derived_param_in_the_browser_and_the_table_filters(tmp_path: Path) -> None:
    df = backtest_frame().assign(data=lambda d: d["symbol"] + ".csv")
    html, _, _ = build_report(
        df, params=[*PARAMS, "data"], metrics=METRICS, summary=SUMMARY, derived=["data"]
    )
    page = write_page(tmp_path, html, "derived.html")
    dom = chromium(tmp_path, page, "--dump-dom").stdout
    assert set(re.findall(r'data-plot="by-param" data-param="([^"]+)"', dom)) == set(PARAMS)
    assert "Made of other params by a placeholder" in dom
    rows = re.findall(r'<tr data-task="\d+"( class="top")?( style="display: none;")?>', dom)
    assert (
        len(rows) == 30 and sum(1 for top, _ in rows if top) == 10 and not any(hidden for _, hidden in rows)
    )
    # report.html#filter=... opens with the rows filtered as if typed (any case, every word): task 7 alone
    filtered = subprocess.run(
        [
            str(CHROMIUM),
            *OFFLINE,
            f"--user-data-dir={tmp_path / 'profile-f'}",
            "--dump-dom",
            page.as_uri() + "#filter=ethusdt%20FAILED",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    shown = re.findall(r'<tr data-task="(\d+)"(?: class="top")?>', filtered)
    assert shown == ["7"] and '<span id="shown">1 shown</span>' in filtered


def test_the_timeline_in_the_browser_draws_a_lane_per_gpu_share_coloured_by_state(tmp_path: Path) -> None:
    from test_report import gpu_frame

    from batchsweep.report.svgplot import STATUS_COLORS

    df = gpu_frame()
    html, _, _ = build_report(df, params=["x"], metrics=["loss"], summary=SUMMARY)
    dom = chromium(tmp_path, write_page(tmp_path, html, "gpus.html"), "--dump-dom").stdout
    assert re.search(r'<body[^>]*data-ready="1"', dom)
    svg = re.search(r'<svg class="plot" data-plot="timeline"[^>]*>(.*?)</svg>', dom, re.S)
    assert svg is not None
    body = svg.group(1)
    assert "Timeline: tasks over GPUs" in dom
    labels = re.findall(
        r'<text class="tk"[^>]*text-anchor="end"[^>]*>(?:<title>[^<]*</title>)?([^<]+)</text>', body
    )
    assert labels == ["GPU 0", "GPU 1", "GPU 2 · 1", "GPU 2 · 2"]
    bars = [(float(x), float(y), float(w), fill, tip) for x, y, w, fill, tip in re.findall(
        r'<rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="[\d.]+" fill="([^"]+)" class="tb">'
        r"<title>([^<]+)</title>", body)]
    assert len(bars) == len(df) + 1  # task 2 is drawn on GPU 0 and GPU 1
    for _x, _y, _w, fill, tip in bars:
        task = int(re.match(r"task (\d+) on", tip).group(1))
        assert fill == STATUS_COLORS[df.at[task, "status"]], tip
    rows: dict[float, list[tuple[float, float]]] = {}
    for x, y, w, _fill, _tip in bars:
        rows.setdefault(y, []).append((x, x + w))
    assert len(rows) == 4
    for spans in rows.values():  # no bar hides another on its lane
        spans.sort()
        assert all(b[0] >= a[1] - 0.5 for a, b in zip(spans, spans[1:])), spans


def test_provenance_in_the_browser_each_reused_row_links_to_its_source_run(tmp_path: Path) -> None:
    from test_report import provenance_frame

    df, sources = provenance_frame()
    html, _, _ = build_report(df, params=PARAMS, metrics=METRICS, summary=SUMMARY, sources=sources)
    page = write_page(tmp_path, html, "provenance.html")
    run = chromium(tmp_path, page, "--enable-logging=stderr", "--v=0", "--dump-dom")
    dom = run.stdout
    assert re.search(r'<body[^>]*data-ready="1"', dom)
    assert [line for line in run.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line] == []
    # every run named by a reused row's link has its provenance row in the page
    links = set(re.findall(r'<td class="src" data-v="[^"]+"><a href="#prov-([^"]+)">', dom))
    rows = dict(
        re.findall(r'<tr id="prov-([^"]+)" data-run="[^"]+"><td><code>[^<]+</code></td><td>([^<]*)</td>', dom)
    )
    assert links == {"old-a", "old-b"} and rows == {SUMMARY["run_id"]: "this run", "old-a": "reused rows",
                                                     "old-b": "reused rows"}
    # report.html#filter=old-b keeps the rows reused from that run, and only them
    filtered = subprocess.run(
        [str(CHROMIUM), *OFFLINE, f"--user-data-dir={tmp_path / 'profile-f'}", "--dump-dom",
         page.as_uri() + "#filter=old-b"], capture_output=True, text=True, timeout=120, check=True).stdout
    shown = sorted(
        int(t)
        for t in re.findall(r'<tr data-task="(\d+)" data-reused="old-b/\d+"(?: class="top")?>', filtered)
    )
    hidden = re.findall(r'<tr data-task="\d+"[^>]*style="display: none;"', filtered)
    assert shown == [t for t in range(30) if t % 3 == 2 and t < 12] and len(hidden) == 30 - len(shown)


def test_curves_and_pruning_read_in_the_browser(tmp_path: Path) -> None:
    """A diverged curve (31 against ~0.1) gets a log y axis; every line's hover names its task and params; the
    pruned task's step and reason are on its curve and in the table; its heatmap cell is painted apart from a
    missing one."""
    import pandas as pd

    rows, series = [], {}
    for task, (a, b) in enumerate((a, b) for a in (1, 2, 3) for b in ("x", "y")):
        curve = [0.1 * a + 1 / s for s in range(1, 11)]
        status, error, loss = "succeeded", None, curve[-1]
        if task == 4:  # diverged and pruned at step 3
            curve, status, error, loss = (
                [5.0, 12.0, 31.0],
                "pruned",
                "pruned at step 3 by the median rule (loss=31)",
                None,
            )
        if task == 5:  # failed: no metric, no series
            curve, status, error, loss = [], "failed", "exit code 1", None
        rows.append(
            {"task": task, "a": a, "b": b, "status": status, "error": error, "loss": loss, "duration_s": 1.0}
        )
        if curve:
            series[task] = [{"step": s, "loss": v} for s, v in enumerate(curve, 1)]
    html, _, _ = build_report(
        pd.DataFrame(rows), params=["a", "b"], metrics=["loss"], summary=SUMMARY, series=series
    )
    page = write_page(tmp_path, html, "curves.html")
    run = chromium(tmp_path, page, "--enable-logging=stderr", "--v=0", "--dump-dom")
    dom = run.stdout
    assert re.search(r'<body[^>]*data-ready="1"', dom)
    assert [line for line in run.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line] == []
    curves = re.search(r'<svg class="plot" data-plot="curves" data-log="y"[^>]*>(.*?)</svg>', dom, re.S)
    assert curves is not None, "no log y axis for values spanning 0.2 to 31"
    tips = dict(re.findall(r'<polyline [^>]*data-task="(\d+)"><title>([^<]+)</title>', curves.group(1)))
    assert tips["0"].startswith("task 0 (a=1, b=x): loss ") and "pruned" not in tips["0"]
    assert tips["4"].startswith("task 4 (a=3, b=x): loss 31 at step 3; pruned at step 3 by the median rule")
    mark = re.findall(
        r'<circle [^>]*class="prune-mark" data-task="(\d+)"><title>([^<]+)</title>', curves.group(1)
    )
    assert mark == [("4", "task 4 (a=3, b=x): pruned at step 3 by the median rule (loss=31)")]
    why = dict(re.findall(r'<tr data-task="(\d+)"[^>]*>.*?<td class="why" data-v="([^"]*)">', dom))
    assert (
        why["4"] == "pruned at step 3 by the median rule (loss=31)"
        and why["5"] == "exit code 1"
        and why["0"] == ""
    )
    cells = dict(re.findall(r'<rect [^>]*class="cell (pruned|empty)"><title>([^<]+)</title>', dom))
    assert cells == {"pruned": "b=x, a=3: 1 task pruned by the stop rule, no final loss",
                     "empty": "b=y, a=3: no finite loss"}
    shot = tmp_path / "curves.png"
    chromium(tmp_path, page, f"--screenshot={shot}", "--window-size=1280,2400")
    colours = np.unique(read_png(shot)[:, :, :3].reshape(-1, 3), axis=0).astype(int)
    # the pruned cell's fill and the missing cell's, both painted
    for rgb in ([0xef, 0xe9, 0xc4], [0xf1, 0xf3, 0xf6]):
        assert (abs(colours - rgb).sum(axis=1) <= 3).any(), rgb
