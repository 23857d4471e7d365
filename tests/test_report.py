"""The HTML report: metric choice, the run summary, failures, escaping and every plot present."""

from __future__ import annotations

import fnmatch
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tomllib

from batchsweep.errors import SweepError
from batchsweep.report.html import build_report, timing
from batchsweep.report.ranking import choose_metric

SUMMARY = {"run_id": "20240601-120000-abcd", "name": "ma-crossover", "backend": "local",
           "created": "2024-06-01T12:00:00Z", "n_tasks": 30}
PARAMS = ["symbol", "fast", "slow"]
METRICS = ["total_return", "sharpe", "max_drawdown", "n_trades"]
PLOTS = ["importance", "parallel", "by-param", "heatmap", "durations", "timeline"]


def backtest_frame(seed: int = 7, workers: int = 4) -> pd.DataFrame:
    """5 symbols x 3 fast x 2 slow windows of a moving-average backtest, run on `workers` lanes, 2
    failures."""
    rng = np.random.default_rng(seed)
    drift = {"BTCUSDT": 0.55, "ETHUSDT": 0.35, "SOLUSDT": 0.9, "BNBUSDT": 0.15, "XRPUSDT": -0.25}
    rows, free = [], [0.0] * workers
    t0 = 1_717_243_200.0
    for task, (symbol, fast, slow) in enumerate(
            (s, f, sl) for s in drift for f in (5, 10, 20) for sl in (50, 100)):
        lane = int(np.argmin(free))
        duration = float(rng.uniform(2.0, 6.0) * (1.4 if slow == 100 else 1.0))
        start = t0 + free[lane] + 0.05
        free[lane] += duration + 0.05
        sharpe = (
            drift[symbol]
            + (0.25 if fast == 10 else -0.1 if fast == 5 else 0.0)
            + (0.3 if slow == 100 else 0.0)
        )
        sharpe = round(sharpe + float(rng.normal(0, 0.2)), 4)
        n_trades = int(400 / fast * (60 / slow) + rng.integers(0, 12))
        metrics = {"total_return": round(sharpe * 0.31 + float(rng.normal(0, 0.05)), 6), "sharpe": sharpe,
                   "max_drawdown": round(-abs(0.45 - 0.12 * sharpe + float(rng.normal(0, 0.04))), 6),
                   "n_trades": n_trades}
        row = {
            "task": task,
            "symbol": symbol,
            "fast": fast,
            "slow": slow,
            "status": "succeeded",
            "attempts": 1,
            "duration_s": round(duration, 3),
            "exit_code": 0,
            "error": None,
            "started_at": start,
            "ended_at": start + duration,
            "worker": f"local-{lane}",
            **metrics,
        }
        rows.append(row)
    df = pd.DataFrame(rows)
    failed = [(7, "exit code 1", 3), (22, "timeout after 10s", 3)]
    for task, error, attempts in failed:
        df.loc[task, ["status", "error", "attempts"]] = [
            "failed" if "exit" in error else "timeout",
            error,
            attempts,
        ]
        df.loc[task, METRICS] = np.nan
    df.loc[22, "duration_s"] = 10.0
    df["exit_code"] = pd.array([1 if t == 7 else None if t == 22 else 0 for t in df["task"]], dtype="Int64")
    return df


def plots_in(html: str) -> dict[str, int]:
    """data-plot name -> number of svgs; fails if any svg.plot is empty."""
    found: dict[str, int] = {}
    for name, body in re.findall(r'<svg class="plot" data-plot="([^"]+)"[^>]*>(.*?)</svg>', html, re.S):
        assert re.search(r"<(rect|line|polyline|circle|polygon|path)\b", body), f"plot {name} has no marks"
        found[name] = found.get(name, 0) + 1
    return found


def report(df: pd.DataFrame, **kw) -> tuple[str, str, bool]:
    kw.setdefault("params", PARAMS)
    kw.setdefault("metrics", METRICS)
    return build_report(df, summary=SUMMARY, **kw)


def test_default_metric_prefers_sharpe_and_maximizes() -> None:
    html, metric, maximize = report(backtest_frame())
    assert (metric, maximize) == ("sharpe", True)
    assert "Ranking by <b>sharpe</b> (maximize" in html
    assert "its name contains &#x27;sharpe&#x27;" in html


@pytest.mark.parametrize(("metrics", "expected"), [
    (["val_loss", "loss"], ("loss", False)),
    (["n_iter", "rmse"], ("rmse", False)),
    (["n_iter", "f1_macro"], ("f1_macro", True)),
    (["neg_mean_squared_error"], ("neg_mean_squared_error", True)),
    (["value"], ("value", False)),
    (["zeta", "alpha"], ("zeta", True)),
])
def test_default_metric_by_name(metrics: list[str], expected: tuple[str, bool]) -> None:
    df = pd.DataFrame({m: [1.0, 2.0] for m in metrics})
    assert choose_metric(df, metrics, None, None)[:2] == expected


def test_default_metric_skips_non_numeric_metrics() -> None:
    df = pd.DataFrame({"score_label": ["good", "bad"], "steps": [3, 4]})
    metric, maximize, why = choose_metric(df, ["score_label", "steps"], None, None)
    assert (metric, maximize) == ("steps", True)
    assert "first numeric" in why


def test_explicit_minimize_ranks_lowest_first() -> None:
    df = backtest_frame()
    html, metric, maximize = report(df, metric="max_drawdown", maximize=False)
    assert (metric, maximize) == ("max_drawdown", False)
    worst = df.loc[df["max_drawdown"].idxmin(), "task"]
    first_row = re.search(r'<tbody><tr data-task="(\d+)"', html)
    assert first_row and int(first_row.group(1)) == worst


def test_explicit_metric_without_direction_uses_name() -> None:
    _, metric, maximize = report(backtest_frame(), metric="total_return")
    assert (metric, maximize) == ("total_return", True)


def test_unknown_metric_is_a_sweep_error_listing_known_ones() -> None:
    with pytest.raises(SweepError, match="unknown metric 'sortino'.*sharpe"):
        report(backtest_frame(), metric="sortino")


def test_non_numeric_metric_is_a_sweep_error() -> None:
    df = backtest_frame().assign(regime=lambda d: ["bull"] * len(d))
    with pytest.raises(SweepError, match="not numeric"):
        report(df, metrics=[*METRICS, "regime"], metric="regime")
    # a metric it does not know lists the ones it could rank by, not the text one
    with pytest.raises(SweepError, match="unknown metric 'sortino'") as raised:
        report(df, metrics=[*METRICS, "regime"], metric="sortino")
    assert "sharpe" in str(raised.value) and "regime" not in str(raised.value)


def test_every_plot_is_present_and_drawn() -> None:
    html, _, _ = report(backtest_frame())
    found = plots_in(html)
    assert set(found) == set(PLOTS)
    assert found["by-param"] == len(PARAMS)


def test_summary_counts_wall_time_and_efficiency() -> None:
    df = backtest_frame()
    t = timing(df)
    assert t["wall_s"] == pytest.approx(df["ended_at"].max() - df["started_at"].min())
    assert t["busy_s"] == pytest.approx(df["duration_s"].sum())
    assert t["workers"] == 4
    assert 0.9 < t["efficiency"] <= 1.0
    html, _, _ = report(df)
    assert '<div class="v">28</div><div class="k">succeeded</div>' in html
    assert '<div class="v">1</div><div class="k">timeout</div>' in html


def test_best_task_is_named() -> None:
    df = backtest_frame()
    html, _, _ = report(df)
    best = df.loc[df["sharpe"].idxmax()]
    assert f"Best task <b>#{best['task']}</b>: symbol=<b>{best['symbol']}</b>" in html


def test_failures_show_reason_and_log_tail() -> None:
    html, _, _ = report(backtest_frame(), log_tail=lambda task: f"Traceback for task {task}\nValueError: bad")
    assert "Failures (2)" in html
    assert "exit code 1" in html and "timeout after 10s" in html
    assert "Traceback for task 7" in html


def test_a_failing_log_tail_does_not_break_the_report() -> None:
    def missing(task: int) -> str:
        raise FileNotFoundError(f"stderr.log of task {task}")

    html, _, _ = report(backtest_frame(), log_tail=missing)
    assert "log unavailable" in html


def test_user_text_is_escaped() -> None:
    df = backtest_frame()
    df.loc[7, "error"] = '<script>alert("x")</script>'
    df["symbol"] = df["symbol"].replace("BTCUSDT", "<b>BTC</b>")
    summary = {**SUMMARY, "name": "<img src=x onerror=alert(1)>"}
    html, _, _ = build_report(df, params=PARAMS, metrics=METRICS, summary=summary,
                              log_tail=lambda task: "</pre><script>alert(2)</script>")
    assert html.count("<script>") == 1  # only the report's own
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "&lt;/pre&gt;&lt;script&gt;alert(2)" in html
    assert "<img" not in html and "<b>BTC" not in html


def test_all_tasks_failed() -> None:
    df = backtest_frame()
    df["status"], df["error"] = "failed", "exit code 2"
    df[METRICS] = np.nan
    html, metric, maximize = report(df)
    assert (metric, maximize) == ("sharpe", True)
    assert "Failures (30)" in html
    assert "No task produced a numeric" in html
    assert set(plots_in(html)) == {"durations", "timeline"}


def test_no_metrics_at_all() -> None:
    df = backtest_frame().drop(columns=METRICS).assign(status="failed")
    html, metric, _ = report(df, metrics=[])
    assert metric == ""
    assert "No metric to rank by" in html


def test_single_task() -> None:
    df = backtest_frame().head(1)
    html, metric, _ = report(df)
    assert metric == "sharpe"
    assert "Best task <b>#0</b>: the only task" in html
    assert "No parameter varies" in html
    assert set(plots_in(html)) == {"durations", "timeline"}


def test_nan_metrics_and_missing_times_are_tolerated() -> None:
    df = backtest_frame()
    df.loc[[1, 2], "sharpe"] = np.nan
    df.loc[3, ["started_at", "ended_at", "duration_s"]] = np.nan
    df = df.drop(columns=["worker"])
    html, _, _ = report(df)
    assert set(plots_in(html)) == set(PLOTS)
    assert not re.search(r"(?<![a-z])nan(?![a-z])", html, re.I)


def test_list_params_are_categories() -> None:
    df = pd.DataFrame({"task": range(6), "layers": [[64], [64, 64], [128], [64], [64, 64], [128]],
                       "lr": [1e-4, 1e-4, 1e-4, 1e-2, 1e-2, 1e-2], "status": "succeeded",
                       "accuracy": [0.8, 0.85, 0.82, 0.7, 0.75, 0.71], "duration_s": 1.0})
    html, metric, _ = build_report(df, params=["layers", "lr"], metrics=["accuracy"], summary=SUMMARY)
    assert metric == "accuracy"
    assert "[64, 64]" in html
    assert set(plots_in(html)) == {"parallel", "by-param", "heatmap", "durations"}


def test_many_distinct_values_give_a_scatter_and_no_heatmap() -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "task": range(80),
            "lr": 10 ** rng.uniform(-5, -1, 80),
            "depth": rng.integers(2, 9, 80),
            "status": "succeeded",
            "loss": rng.uniform(0.1, 1, 80),
            "trial": range(80),
            "round": np.arange(80) // 8,
            "duration_s": rng.uniform(1, 3, 80),
        }
    )
    html, metric, maximize = build_report(df, params=["lr", "depth"], metrics=["loss"], summary=SUMMARY)
    assert (metric, maximize) == ("loss", False)
    found = plots_in(html)
    assert "heatmap" not in found and found["history"] == 1
    assert "No heatmap" in html


def test_the_page_is_self_contained() -> None:
    html, _, _ = report(backtest_frame())
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert "@import" not in html and "url(" not in html
    assert math.isfinite(len(html)) and len(html) < 400_000


# -- searches, derived params, log axes, the whole table, 10,000 tasks
# -----------------------------------------
def search_frame(n: int = 48, seed: int = 0) -> pd.DataFrame:
    """A search's results: x1, x2 drawn at random, a choice, trial and round; value depends on x1 and the
    choice."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.uniform(-5, 10, n), rng.uniform(0, 15, n)
    kind = rng.choice(["a", "b"], n)
    value = (x1 - 3) ** 2 + np.where(kind == "a", 0.0, 40.0) + rng.normal(0, 0.5, n)
    return pd.DataFrame({"task": range(n), "x1": x1, "x2": x2, "kind": kind, "trial": range(n),
                         "round": np.arange(n) // 8, "status": "succeeded", "value": value,
                         "duration_s": rng.uniform(0.1, 0.3, n)})


def sections(html: str) -> list[str]:
    return re.findall(r"<h2[^>]*>([^<(]+)", html)


def by_param_charts(html: str) -> dict[str, str]:
    return dict(
        re.findall(r'<svg class="plot" data-plot="by-param" data-param="([^"]+)" data-kind="([^"]+)"', html)
    )


def test_a_search_report_puts_history_first_and_treats_trial_and_round_as_run_structure() -> None:
    html, metric, maximize = build_report(search_frame(), params=["x1", "x2", "kind", "trial", "round"],
                                          metrics=["value"], summary=SUMMARY, sampled=["x1", "x2", "kind"])
    assert (metric, maximize) == ("value", False)
    assert sections(html)[:4] == [
        "Optimisation history",
        "Slice, contour and distribution",
        "Parameter importance",
        "All 48 tasks",
    ]
    assert by_param_charts(html) == {"x1": "scatter", "x2": "scatter", "kind": "mean"}  # no trial, no round
    assert "Run structure, not params: <code>trial</code>, <code>round</code>" in html
    found = plots_in(html)
    assert "heatmap" not in found and found["importance"] == 1  # continuous x continuous: no heatmap
    axes = re.search(r'data-plot="parallel".*?</svg>', html, re.S).group(0)
    assert ">trial<" not in axes and ">round<" not in axes


def test_a_search_has_slice_contour_and_edf_views_as_the_optuna_dashboard_draws_them() -> None:
    df = search_frame()
    html, _, _ = build_report(
        df,
        params=["x1", "x2", "kind", "trial", "round"],
        metrics=["value"],
        summary=SUMMARY,
        sampled=["x1", "x2", "kind"],
        log_params=[],
    )
    slices = dict(re.findall(r'data-plot="slice" data-param="([^"]+)"[^>]*>(.*?)</svg>', html, re.S))
    assert set(slices) == {"x1", "x2", "kind"}
    for body in slices.values():  # one dot per trial, trial 0 lightest, the last trial darkest
        fills = re.findall(r'<circle [^>]*fill="(#[0-9a-f]{6})" class="slice-pt"', body)
        assert len(fills) == 48 and "#c6dbef" in fills and "#08306b" in fills
    first = re.search(r'<circle [^>]*fill="#c6dbef" class="slice-pt"><title>([^<]+)', slices["x1"]).group(1)
    assert first.startswith("trial 0:")
    # the contour: the two most important numeric params (kind, the most important, is a choice)
    contour = re.search(r'data-plot="contour" data-x="([^"]+)" data-y="([^"]+)"[^>]*>(.*?)</svg>', html, re.S)
    assert contour is not None and contour.group(1, 2) == ("x1", "x2")
    assert len(re.findall(r'class="ccell"', contour.group(3))) == 24 * 24
    assert len(re.findall(r'class="contour-pt"', contour.group(3))) == 48
    # the EDF: a step from 0 to every trial, its share never falling
    edf = re.search(r'data-plot="edf".*?<polyline [^>]*points="([^"]+)" class="edf-line"', html, re.S).group(
        1
    )
    pts = [tuple(map(float, p.split(","))) for p in edf.split()]
    assert len(pts) == 1 + 2 * 48
    assert all(b[0] >= a[0] and b[1] <= a[1] for a, b in zip(pts, pts[1:]))  # x rises, the share rises (y up)
    assert pts[-1][1] < pts[0][1]


def test_a_searchs_curves_are_its_intermediate_values_with_prune_marks() -> None:
    df = search_frame(8).assign(status=["succeeded"] * 7 + ["pruned"],
                                error=[None] * 7 + ["pruned at step 2 by the median rule (value=9)"])
    series = {i: [{"step": s, "value": 10.0 / s + i} for s in range(1, 5 if i < 7 else 3)] for i in range(8)}
    html, _, _ = build_report(
        df,
        params=["x1", "x2", "kind", "trial", "round"],
        metrics=["value"],
        summary=SUMMARY,
        sampled=["x1", "x2", "kind"],
        series=series,
    )
    assert "Intermediate values" in sections(html) and "Curves" not in sections(html)
    marks = re.findall(r'<circle [^>]*class="prune-mark"[^>]*><title>([^<]+)', html)
    assert marks == ["task 7 (x1=" + marks[0].split("(x1=")[1]] and "pruned at step 2" in marks[0]


def test_importance_names_the_param_that_moves_the_metric() -> None:
    from batchsweep.report.importance import _eta_squared, param_importance
    from batchsweep.report.svgplot import dim_from

    df = search_frame(200)
    dims = {p: dim_from(p, df[p].tolist()) for p in ("x1", "x2", "kind")}
    values = df["value"].tolist()
    scores, method = param_importance(["x1", "x2", "kind"], dims, values, False)
    assert method in ("fANOVA", "η²") and abs(sum(scores.values()) - 1) < 1e-6
    assert max(scores, key=scores.get) == "kind" and scores["x2"] < 0.1
    eta = _eta_squared(["x1", "x2", "kind"], dims, values, list(range(200)))  # the measure without Optuna
    assert max(eta, key=eta.get) == "kind" and eta["x2"] < 0.1


def test_importance_of_a_grid_or_a_few_tasks_needs_no_forest() -> None:
    from batchsweep.report.importance import param_importance
    from batchsweep.report.svgplot import dim_from

    lr, width = [1e-4, 1e-3, 1e-2, 1e-1, 1.0] * 4, [w for w in (8, 16, 32, 64) for _ in range(5)]
    values = [(math.log10(a) + 2.5) ** 2 + 8 / b for a, b in zip(lr, width)]
    dims = {"lr": dim_from("lr", lr), "width": dim_from("width", width)}
    scores, method = param_importance(["lr", "width"], dims, values, False)
    assert method == "η²" and max(scores, key=scores.get) == "lr"  # a 5 x 4 grid
    df = search_frame(30)
    dims = {p: dim_from(p, df[p].tolist()) for p in ("x1", "x2", "kind")}
    assert param_importance(["x1", "x2", "kind"], dims, df["value"].tolist(), False)[1] == "η²"  # 30 tasks
    df = search_frame(200)
    dims = {p: dim_from(p, df[p].tolist()) for p in ("x1", "x2", "kind")}
    assert param_importance(["x1", "x2", "kind"], dims, df["value"].tolist(), False)[1] == "fANOVA"
    # a large run: 10 bins of hundreds of tasks each give the main effects; the forest would cost seconds for
    # the same
    df = search_frame(2000)
    dims = {p: dim_from(p, df[p].tolist()) for p in ("x1", "x2", "kind")}
    scores, method = param_importance(["x1", "x2", "kind"], dims, df["value"].tolist(), False)
    assert method == "η²" and max(scores, key=scores.get) == "kind" and scores["x1"] > 0.1 > scores["x2"]


def _run_train(tmp_path: Path, script: str, spec: str) -> Any:
    """A run of `script` as train.py under the spec `spec` (sweep.yaml beside it)."""
    import batchsweep

    (tmp_path / "train.py").write_text(script)
    (tmp_path / "sweep.yaml").write_text(spec)
    return batchsweep.run(tmp_path / "sweep.yaml", store=tmp_path / "store", progress=False)


def test_a_small_runs_report_does_not_import_scikit_learn(tmp_path: Path) -> None:
    import subprocess
    import sys

    run = _run_train(
        tmp_path,
        "import argparse, json, math\np = argparse.ArgumentParser()\np.add_argument('--lr', type=float)\n"
        "p.add_argument('--width', type=int)\na = p.parse_args()\n"
        "json.dump({'val_loss': (math.log10(a.lr) + 2.5) ** 2 + 8 / a.width}, open('metrics.json', 'w'))\n",
        "name: small\nscript: train.py\n"
        "params: {grid: {lr: [0.0001, 0.001, 0.01, 0.1, 1.0], width: [8, 16, 32, 64]}}\n",
    )
    assert run.exit_code == 0
    probe = (
        f"import sys, batchsweep\nbatchsweep.load_run({run.id!r}, "
        f"store={str(tmp_path / 'store')!r}).report({str(tmp_path / 'r.html')!r})\nprint(sorted(m for m in "
        "('sklearn', 'optuna') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout
    assert "Parameter importance" in (tmp_path / "r.html").read_text()


def test_derived_and_constant_params_are_not_dimensions() -> None:
    df = backtest_frame().assign(fee_bps=10, data=lambda d: d["symbol"] + ".csv")
    html, _, _ = report(df, params=[*PARAMS, "fee_bps", "data"], derived=["data"])
    assert set(by_param_charts(html)) == set(PARAMS)
    assert "Made of other params by a placeholder, so not a dimension of the sweep: <code>data</code>" in html
    assert "Fixed for every task: <code>fee_bps=10</code>" in html


def test_a_param_spanning_two_orders_of_magnitude_gets_a_log_axis() -> None:
    from batchsweep.report.svgplot import dim_from

    assert dim_from("lr", [0.001, 0.01, 0.1]).log and not dim_from("window", [5, 10, 20]).log
    df = pd.DataFrame({"task": range(6), "lr": [0.001, 0.01, 0.1] * 2, "seed": [0, 0, 0, 1, 1, 1],
                       "status": "succeeded", "loss": [0.3, 0.2, 0.5, 0.31, 0.19, 0.52]})
    html, _, _ = build_report(df, params=["lr", "seed"], metrics=["loss"], summary=SUMMARY)
    chart = re.search(r'data-param="lr".*?</svg>', html, re.S).group(0)
    xs = [float(x) for x in re.findall(r'<circle cx="([0-9.]+)"[^>]*class="(?:mdot|best)"', chart)]
    assert len(xs) == 3 and abs((xs[1] - xs[0]) - (xs[2] - xs[1])) < 1  # 0.001, 0.01, 0.1 evenly spaced


def test_the_table_holds_every_task_best_first_with_the_top_ten_highlighted() -> None:
    df = backtest_frame()
    html, _, _ = report(df)
    table = re.search(r'<table class="sortable" id="tasks">.*?</table>', html, re.S).group(0)
    rows = re.findall(r'<tr data-task="(\d+)"( class="top")?>', table)
    assert len(rows) == len(df) and sum(1 for _, top in rows if top) == 10
    ranked = df.dropna(subset=["sharpe"]).sort_values("sharpe", ascending=False)["task"].tolist()
    # failed last
    assert [int(t) for t, _ in rows[:28]] == ranked and {int(t) for t, _ in rows[28:]} == {7, 22}
    assert 'id="filter"' in html


def test_ten_thousand_tasks_make_a_usable_page_that_says_it_samples() -> None:
    rng = np.random.default_rng(1)
    n = 10_000
    df = pd.DataFrame(
        {
            "task": range(n),
            "lr": 10 ** rng.uniform(-5, -1, n),
            "depth": rng.integers(2, 9, n),
            "model": rng.choice(["rf", "svc"], n),
            "status": "succeeded",
            "loss": rng.uniform(0.1, 1, n),
            "duration_s": rng.uniform(1, 3, n),
            "started_at": 1e9 + np.arange(n) * 0.5,
            "ended_at": 1e9 + np.arange(n) * 0.5 + 1,
            "worker": [f"w{i % 16}" for i in range(n)],
        }
    )
    html, _, _ = build_report(df, params=["lr", "depth", "model"], metrics=["loss"], summary=SUMMARY,
                              sampled=["lr", "depth", "model"])
    assert len(html) < 8_000_000
    assert 'id="sampled"' in html and "10,000 tasks: the line, dot and bar plots draw an even sample" in html
    assert html.count("<tr data-task=") == n
    for name, body in re.findall(r'<svg class="plot" data-plot="([^"]+)"[^>]*>(.*?)</svg>', html, re.S):
        marks = len(re.findall(r"<(polyline|circle|rect)\b", body))
        assert marks <= 3_200, f"{name} draws {marks} marks"


def test_a_sampled_pages_lines_and_bars_name_their_own_task_and_only_drawn_ones_get_a_tip(monkeypatch):
    """A 100,000-task report spent seconds and tens of MB making a tip for every task's line and bar, of which
    the charts draw ~3,000: each drawn line and bar still names its own task (and worker), and the tips of the
    tasks not drawn are never made."""
    from batchsweep.report import plotsections, svgplot

    made = []
    monkeypatch.setattr(plotsections, "fmt", lambda v: made.append(v) or svgplot.fmt(v))
    rng = np.random.default_rng(3)
    n = 10_000
    df = pd.DataFrame({"task": range(100, 100 + n), "lr": 10 ** rng.uniform(-5, -1, n),
                       "depth": rng.integers(2, 9, n), "status": "succeeded", "loss": rng.uniform(0.1, 1, n),
                       "duration_s": 1.0, "started_at": 1e9 + np.arange(n) * 0.5,
                       "ended_at": 1e9 + np.arange(n) * 0.5 + 1, "worker": [f"w{i % 16}" for i in range(n)]})
    html, _, _ = build_report(df, params=["lr", "depth"], metrics=["loss"], summary=SUMMARY)
    lines = re.findall(r'<polyline [^>]*data-task="(\d+)"[^>]*><title>task (\d+): lr=', html)
    bars = re.findall(r"<rect [^>]*><title>task (\d+) on (w\d+): succeeded", html)
    assert 2_000 < len(lines) <= 3_100 and 2_000 < len(bars) <= 3_100
    assert all(a == b for a, b in lines)
    assert all(w == f"w{(int(t) - 100) % 16}" for t, w in bars)
    # three values a line's tip (two params and the metric), two a bar's: for the drawn ones only
    assert len(made) <= 3 * len(lines) + 2 * len(bars) + 100, len(made)


def test_the_page_inlines_its_style_and_script_from_the_package_data_files() -> None:
    data = resources.files("batchsweep").joinpath("data")
    css, js = data.joinpath("report.css").read_text(), data.joinpath("report.js").read_text()
    html, _, _ = build_report(backtest_frame(), params=PARAMS, metrics=METRICS, summary=SUMMARY)
    style = re.search(r"<style>(.*?)</style>", html, re.S)
    script = re.search(r"<script>(.*?)</script>", html, re.S)
    assert style and style.group(1).strip() == css.strip() and ".card .v{" in css
    assert script and script.group(1).strip() == js.strip() and 'getElementById("filter")' in js


def test_every_non_python_file_of_the_package_is_listed_as_package_data() -> None:
    """What setuptools ships in a wheel besides modules: a file the globs miss is absent from an installed
    copy."""
    root = Path(__file__).resolve().parents[1]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "batchsweep"
    ]
    pkg = root / "src" / "batchsweep"
    files = [p.relative_to(pkg).as_posix() for p in pkg.rglob("*")
             if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert {"data/report.css", "data/report.js", "data/fargate_prices.json"} <= set(files)
    missed = [f for f in files if not any(fnmatch.fnmatch(f, g) for g in globs)]
    assert not missed, f"not in [tool.setuptools.package-data]: {missed}"


def gpu_frame() -> pd.DataFrame:
    """Seven tasks on a 3-GPU box: GPU 0 and 1 whole (task 2 holds both), GPU 2 shared by two tasks at a
    time."""
    t0 = 1_717_243_200.0
    runs = [  # task, gpu, start, end, status, worker
        (0, "0", 0, 4, "succeeded", "local-0"), (1, "1", 0, 3, "failed", "local-1"),
        (2, "0,1", 4.5, 8, "succeeded", "local-0"), (3, "2", 0, 6, "succeeded", "local-2"),
        (4, "2", 1, 5, "pruned", "local-3"), (5, "2", 6.2, 9, "succeeded", "local-2"),
        (6, "2", 5.5, 7, "timeout", "local-3")]
    return pd.DataFrame(
        [
            {
                "task": t,
                "x": t % 3,
                "status": s,
                "gpu": g,
                "worker": w,
                "started_at": t0 + a,
                "ended_at": t0 + b,
                "duration_s": b - a,
                "loss": float(t),
            }
            for t, g, a, b, s, w in runs
        ]
    )


def _lane_overlaps(lanes: list[str], placed: list[tuple[int, int]], df: pd.DataFrame) -> list[str]:
    spans: dict[int, list[tuple[float, float]]] = {}
    for lane, i in placed:
        spans.setdefault(lane, []).append((df.at[i, "started_at"], df.at[i, "ended_at"]))
    return [lanes[lane] for lane, s in spans.items()
            if any(b[0] < a[1] for a, b in zip(sorted(s), sorted(s)[1:]))]


def test_the_timeline_has_a_lane_per_gpu_and_a_row_per_share_so_no_bar_hides_another() -> None:
    from batchsweep.report.plotsections import timeline_lanes

    df = gpu_frame()
    lanes, placed, kind = timeline_lanes(df)
    assert kind == "GPUs"
    assert lanes == ["GPU 0", "GPU 1", "GPU 2 · 1", "GPU 2 · 2"]
    on = {}
    for lane, i in placed:
        on.setdefault(int(df.at[i, "task"]), set()).add(lanes[lane])
    assert on[2] == {"GPU 0", "GPU 1"}  # a task on two GPUs is drawn on both
    assert on[0] == {"GPU 0"} and on[1] == {"GPU 1"}
    assert all(lanes[lane].startswith("GPU 2") for lane, i in placed if df.at[i, "gpu"] == "2")
    assert _lane_overlaps(lanes, placed, df) == []
    html, _, _ = build_report(df, params=["x"], metrics=["loss"], summary=SUMMARY)
    assert "Timeline: tasks over GPUs" in html and "task 4 on GPU 2 · 2 of local-3: pruned" in html


def test_a_worker_running_tasks_at_once_gets_a_row_per_task_running_and_workers_stay_lanes() -> None:
    from batchsweep.report.plotsections import timeline_lanes

    df = gpu_frame().drop(columns=["gpu"])
    df["worker"] = ["tcp://10.0.0.2:4000"] * 4 + ["tcp://10.0.0.3:4000"] * 3  # Dask workers with threads
    lanes, placed, kind = timeline_lanes(df)
    assert kind == "workers"  # at most 3 tasks at once on the first worker (0, 1, 3), 2 on the second (5, 6)
    assert lanes == [f"tcp://10.0.0.2:4000 · {r}" for r in (1, 2, 3)] + [
        f"tcp://10.0.0.3:4000 · {r}" for r in (1, 2)
    ]
    assert len(placed) == len(df) and _lane_overlaps(lanes, placed, df) == []
    lanes, placed, _ = timeline_lanes(backtest_frame())  # one task at a time per local slot: a lane each
    assert lanes == ["local-0", "local-1", "local-2", "local-3"]


def provenance_frame() -> tuple[pd.DataFrame, list[dict]]:
    """The backtest with tasks 0-11 reused (every third from run old-a, old-b, and computed here), and the
    runs' provenance."""
    df = backtest_frame()
    df["reused_from"] = [(f"old-a/{t + 100}" if t % 3 == 1 else f"old-b/{t + 200}" if t % 3 == 2 else None)
                         if t < 12 else None for t in df["task"]]
    df["key"] = [f"{t:02d}" + "ab" * 31 for t in df["task"]]
    prov = {
        "git": {"commit": "c0ffee" * 6 + "abcd", "dirty": True, "diff_sha256": "d1ff" * 16},
        "python": "CPython 3.11.9",
        "platform": "Linux-6.1-x86_64 x86_64",
        "batchsweep": "0.9.0",
        "packages_sha256": "9a" * 32,
        "packages": 87,
    }
    sources = [{"run_id": SUMMARY["run_id"], "role": "this run", "found": True, "code_hash": "c0de" * 16,
                "provenance": prov, "env": {"MODE": "fast"}, "created": "2024-06-01T12:00:00Z"},
               {"run_id": "old-a", "role": "reused rows", "found": True, "code_hash": "c0de" * 16,
                "provenance": {**prov, "git": None}, "env": {}, "created": "2024-05-01T12:00:00Z"},
               {"run_id": "old-b", "role": "reused rows", "found": False}]
    return df, sources


def test_provenance_section_and_where_each_reused_row_came_from() -> None:
    df, sources = provenance_frame()
    html, _, _ = report(df, sources=sources)
    rows = dict(re.findall(r'<tr data-task="(\d+)"[^>]*>(.*?)</tr>', html))
    assert re.search(
        r'<td class="src" data-v="old-a/101"><a href="#prov-old-a"><code>old-a</code></a> task 101</td>',
        rows["1"],
    )
    assert '<td class="src" data-v="">–</td>' in rows["12"]
    assert (
        f'<td class="key" data-v="05{"ab" * 31}" title="05{"ab" * 31}"><code>05ababababab</code></td>'
        in rows["5"]
    )
    prov = html[html.index('<h2 id="provenance">'):]
    this = re.search(rf'<tr id="prov-{SUMMARY["run_id"]}".*?</tr>', prov).group(0)
    assert "<td>this run</td><td>22</td>" in this  # 30 tasks, 8 of them reused from the other two runs
    assert "git <code>c0ffeec0ff</code> + uncommitted changes (diff <code>d1ffd1ffd1</code>)" in this
    assert all(
        t in this
        for t in (
            "CPython 3.11.9",
            "Linux-6.1-x86_64",
            "0.9.0",
            "87 (9a9a9a9a9a)",
            "MODE=fast",
            f'title="{"c0de" * 16}"',
        )
    )
    assert re.search(r'<tr id="prov-old-a".*?<td>reused rows</td><td>4</td>.*?not in a git repository', prov)
    assert re.search(
        r'<tr id="prov-old-b".*?<td>4</td><td colspan="8" class="err">not in the store any more', prov
    )
    assert '<div class="v">8</div><div class="k">reused, not run</div>' in html
    assert "c0de" * 3 in html[:html.index("</header>")]  # the header names the code hash


def test_a_report_without_reuse_has_no_reuse_columns_and_no_provenance_without_sources() -> None:
    df = backtest_frame().assign(key="k" * 64)
    html, _, _ = report(df)
    assert 'class="src"' not in html and 'class="key"' not in html and "reused, not run" not in html
    assert 'id="provenance"' not in html
    html, _, _ = report(df, sources=provenance_frame()[1][:1])
    assert 'class="key"' not in html and re.search(r"<td>this run</td><td>30</td>", html)


def test_a_searchs_history_marks_where_each_round_begins() -> None:
    df = search_frame(48)  # 6 rounds of 8 trials
    html, _, _ = build_report(
        df,
        params=["x1", "x2", "kind", "trial", "round"],
        metrics=["value"],
        summary=SUMMARY,
        sampled=["x1", "x2", "kind"],
    )
    chart = re.search(r'data-plot="history".*?</svg>', html, re.S).group(0)
    marks = re.findall(r'<line [^>]*class="round"><title>([^<]+)</title>', chart)
    assert marks == [f"round {r} begins at trial {8 * r}" for r in range(1, 6)]
    assert "marks where each round of proposals begins" in html


def test_a_sampled_params_axis_is_logarithmic_only_when_its_distribution_is(tmp_path: Path) -> None:
    run = _run_train(
        tmp_path,
        "import argparse, json\np = argparse.ArgumentParser()\np.add_argument('--x', type=float)\n"
        "p.add_argument('--lr', type=float)\na = p.parse_args()\n"
        "json.dump({'loss': (a.x - 0.5) ** 2 + a.lr}, open('metrics.json', 'w'))\n",
        "name: axes\nscript: train.py\nparams: {random: {samples: 16, seed: 5, space: {x: 'uniform(0.001, "
        "1)', lr: 'loguniform(0.0001, 0.1)'}}}\n",
    )
    xs = run.results()["x"]
    assert xs.max() / xs.min() > 100, "premise: x spans two decades, as uniform(0.001, 1) samples do"
    run.report(tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()

    def ticks(param: str) -> list[str]:
        chart = re.search(rf'data-plot="by-param" data-param="{param}".*?</svg>', html, re.S).group(0)
        return re.findall(
            r'<text class="tk" x="[\d.]+" y="[\d.]+" text-anchor="middle">([^<]+)</text>', chart
        )

    assert "0.5" in ticks("x") and "0.01" not in ticks("x")  # uniform: linear, whatever its span
    assert {"0.001", "0.01"} <= set(ticks("lr"))  # loguniform: powers of ten


def test_a_served_searchs_progress_counts_against_the_trials_it_will_run() -> None:
    # two rounds of 4 proposed so far of a 12-trial search: 8 tasks in the store, 12 to come
    df = search_frame(8).assign(status=["succeeded"] * 5 + ["running"] * 3)
    live = {"active": True, "refresh_s": 2.0}
    html, _, _ = build_report(
        df,
        params=["x1", "x2", "kind", "trial", "round"],
        metrics=["value"],
        summary={**SUMMARY, "n_tasks": 8, "search_trials": 12},
        sampled=["x1", "x2", "kind"],
        live=live,
    )
    banner = re.search(r'<p class="live on" id="live">(.*?)</p>', html).group(1)
    assert re.sub("<[^>]+>", "", banner).startswith("5 of 12 trials done, 3 running"), banner
    grid, _, _ = build_report(
        df, params=["x1", "x2", "kind"], metrics=["value"], summary={**SUMMARY, "n_tasks": 8}, live=live
    )
    assert '<b id="live-done">5</b> of <b id="live-total">8</b> tasks done' in grid
