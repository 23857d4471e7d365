"""The HTML report: metric choice, the run summary, failures, escaping and every plot present."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from batchsweep.errors import SweepError
from batchsweep.report import build_report, choose_metric, timing

SUMMARY = {"run_id": "20240601-120000-abcd", "name": "ma-crossover", "backend": "local",
           "created": "2024-06-01T12:00:00Z", "n_tasks": 30}
PARAMS = ["symbol", "fast", "slow"]
METRICS = ["total_return", "sharpe", "max_drawdown", "n_trades"]
PLOTS = ["parallel", "by-param", "heatmap", "durations", "timeline"]


def backtest_frame(seed: int = 7, workers: int = 4) -> pd.DataFrame:
    """5 symbols x 3 fast x 2 slow windows of a moving-average backtest, run on `workers` lanes, 2 failures."""
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
        sharpe = drift[symbol] + (0.25 if fast == 10 else -0.1 if fast == 5 else 0.0) + (0.3 if slow == 100 else 0.0)
        sharpe = round(sharpe + float(rng.normal(0, 0.2)), 4)
        n_trades = int(400 / fast * (60 / slow) + rng.integers(0, 12))
        metrics = {"total_return": round(sharpe * 0.31 + float(rng.normal(0, 0.05)), 6), "sharpe": sharpe,
                   "max_drawdown": round(-abs(0.45 - 0.12 * sharpe + float(rng.normal(0, 0.04))), 6),
                   "n_trades": n_trades}
        row = {"task": task, "symbol": symbol, "fast": fast, "slow": slow, "status": "succeeded", "attempts": 1,
               "duration_s": round(duration, 3), "exit_code": 0, "error": None, "started_at": start,
               "ended_at": start + duration, "worker": f"local-{lane}", **metrics}
        rows.append(row)
    df = pd.DataFrame(rows)
    failed = [(7, "exit code 1", 3), (22, "timeout after 10s", 3)]
    for task, error, attempts in failed:
        df.loc[task, ["status", "error", "attempts"]] = ["failed" if "exit" in error else "timeout", error, attempts]
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
    df = pd.DataFrame({"task": range(80), "lr": 10 ** rng.uniform(-5, -1, 80), "depth": rng.integers(2, 9, 80),
                       "status": "succeeded", "loss": rng.uniform(0.1, 1, 80), "trial": range(80),
                       "round": np.arange(80) // 8, "duration_s": rng.uniform(1, 3, 80)})
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
