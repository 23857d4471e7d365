"""Gather a run's store into one table: a row per task, `task`, each param, `status`, `attempts`, `duration_s`,
`exit_code`, `error`, timings and worker, then each metric (and `outputs` when any task kept files)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchsweep.model import State

if TYPE_CHECKING:
    import pandas as pd

    from batchsweep.runs import Run

FIXED_COLUMNS = ("status", "attempts", "duration_s", "exit_code", "error", "started_at", "ended_at", "worker")


def gather(run: Run, *, refresh: bool = False) -> pd.DataFrame:
    import pandas as pd

    cache = run.store.run_key(run.id, "results.parquet")
    if not refresh:
        try:
            return pd.read_parquet(io.BytesIO(run.store.backend.read_bytes(cache)))
        except FileNotFoundError:
            pass
    statuses, progress = run.snapshot()
    states = run._states(statuses, progress)
    metrics = run.store.read_metrics(run.id, [i for i, s in statuses.items() if s.state is not State.CANCELLED])
    reasons = run.engine.failure_reasons() if State.LOST in states.values() else {}
    param_names = list(run.info.get("param_names") or [])
    rows: list[dict[str, Any]] = []
    for task in run.tasks():
        row: dict[str, Any] = {"task": task.index}
        row.update({name: task.params.get(name) for name in param_names})
        row.update({k: v for k, v in task.params.items() if k not in row})
        status = statuses.get(task.index)
        row.update({
            "status": states[task.index].value,
            "attempts": status.attempts if status else 0,
            "duration_s": status.duration_s if status else None,
            "exit_code": status.exit_code if status else None,
            "error": status.error if status else reasons.get(task.index),
            "started_at": status.started_at if status else None,
            "ended_at": status.ended_at if status else None,
            "worker": status.worker if status else None,
        })
        for name, value in metrics.get(task.index, {}).items():
            row[name if name not in row else f"metric_{name}"] = value
        if status and status.outputs:
            row["outputs"] = list(status.outputs)
        rows.append(row)
    df = pd.DataFrame(rows)
    if "exit_code" in df:
        df["exit_code"] = df["exit_code"].astype("Int64")
    if "attempts" in df:
        df["attempts"] = df["attempts"].astype("int64")
    finished = all(s.done for s in states.values()) and not progress.active
    if finished:
        try:
            run.store.backend.write_bytes(cache, to_parquet_bytes(df))
            _write_sweep_stats(run, df)
        except Exception:  # noqa: BLE001 - a cache that cannot be written is only slower next time
            pass
    return df


def _write_sweep_stats(run: Run, df: pd.DataFrame) -> None:
    """The median task time of a finished run sizes the next submit of the same sweep (remote engines)."""
    durations = df.loc[df["status"] == "succeeded", "duration_s"].dropna()
    if len(durations):
        run.store.write_json(run.store.sweep_stats_key(run.name),
                             {"median_task_s": float(durations.median()), "run_id": run.id, "tasks": len(durations)})


def to_parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    try:
        df.to_parquet(buf, index=False)
    except Exception:  # noqa: BLE001 - mixed-type columns (e.g. choice(1, "a")): store them as text
        buf = io.BytesIO()
        safe = df.copy()
        for col in safe.columns:
            if safe[col].dtype == object:
                safe[col] = safe[col].map(lambda v: v if v is None or isinstance(v, (str, list)) else str(v))
        safe.to_parquet(buf, index=False)
    return buf.getvalue()


def metric_columns(run: Run, df: pd.DataFrame) -> list[str]:
    known = {"task", "outputs", *FIXED_COLUMNS, *(run.info.get("param_names") or [])}
    return [c for c in df.columns if c not in known]


def export(df: pd.DataFrame, fmt: str, path: str | os.PathLike[str] | None) -> str | None:
    """Write the table as csv/json/parquet (to path) or return it as text. `table` is the CLI's business."""
    if fmt == "parquet":
        if path is None:
            raise ValueError("parquet needs -o FILE")
        Path(path).write_bytes(to_parquet_bytes(df))
        return None
    text = df.to_csv(index=False) if fmt == "csv" else df.to_json(orient="records", indent=1)
    if path is not None:
        Path(path).write_text(text)
        return None
    return text


def write_report(run: Run, path: str | os.PathLike[str] | None = None, *, metric: str | None = None,
                 maximize: bool | None = None) -> Any:
    from batchsweep.report import build_report

    df = gather(run)
    summary = {k: run.info.get(k) for k in ("run_id", "name", "backend", "created", "n_tasks")}
    summary.update(_cost_fields(run, df))
    # A text param unique to every task (`save_name: run_{a}_{b}`) names the task; it is not a dimension.
    params = [p for p in run.info.get("param_names") or []
              if not (p in df and len(df) > 2 and df[p].dtype == object and df[p].astype(str).nunique() == len(df))]
    html, chosen, maximize = build_report(
        df, params=params, metrics=metric_columns(run, df), summary=summary,
        log_tail=lambda i: "\n".join(run.logs(i, stderr=True).splitlines()[-20:]), metric=metric, maximize=maximize,
    )
    if path is None:
        try:
            from IPython.display import HTML
        except ImportError:
            return html
        return HTML(inline_html(html))
    Path(path).write_text(html, encoding="utf-8")
    return chosen, maximize


def inline_html(page: str, *, height: int = 900) -> str:
    """The report inside a notebook cell: in an iframe, so the page's own CSS and script leave the notebook alone."""
    from html import escape

    return (f'<iframe srcdoc="{escape(page, quote=True)}" style="width:100%;height:{height}px;border:0" '
            'sandbox="allow-scripts"></iframe>')


def _cost_fields(run: Run, df: pd.DataFrame) -> dict[str, Any]:
    from batchsweep.estimate import cost_summary, run_cost

    durations = df["duration_s"].dropna().tolist() if "duration_s" in df else []
    est = run_cost(run.info, durations) if durations else None
    if est is None:
        return {}
    note = (f"{cost_summary(est)}; the card shows the upper end. An estimate from a price table, not a bill. "
            "It assumes: " + "; ".join(est.assumptions))
    return {"cost_usd": est.high_usd, "cost_note": note}
