"""Metrics a script logs to MLflow (`metrics: {mlflow: true}`), read through MLflow's own client
(MlflowClient).

Each task logs into its own working directory: batchsweep sets
`MLFLOW_TRACKING_URI=sqlite:///<work>/mlflow.db` for it (MLflow's own default store, made explicit so a
tracking server named in the caller's environment does not take the task's runs). A script that picks a local
store itself (`mlflow.set_tracking_uri("mlruns")`, a file store) is read too: after the task, every store
found in its working directory (`mlflow.db`, `mlruns/`) gives

- the task's metrics: each metric's latest value in the runs, a top-level run's over a nested run's (a
  parent's summary over its folds), a later-started run's over an earlier one's;
- the task's series (docs/design.md §2a): every step of the top-level runs, `{"step": s, name: value, "t":
  unix seconds}`, read while the task runs too, so `stop:` rules and the report's curves work as with a step
  regex.

MLflow is an optional extra (`pip install 'batchsweep[mlflow]'`: mlflow-skinny, SQLAlchemy, Alembic), imported
only here and only when a sweep asks for it.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sqlite3
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchsweep.files import held_dir
from batchsweep.metrics import UnsafeMetricsFile

ENV = "MLFLOW_TRACKING_URI"
DB = "mlflow.db"
FILE_STORE = "mlruns"
INSTALL = "pip install 'batchsweep[mlflow]'"
NEEDS = ("mlflow", "sqlalchemy", "alembic")


def missing() -> str | None:
    """What is missing to read MLflow stores here (None when nothing is), as the line to tell the user."""
    absent = [name for name in NEEDS if importlib.util.find_spec(name) is None]
    if not absent:
        return None
    return (f"metrics: {{mlflow: true}} reads the tasks' runs with MLflow's client, and {', '.join(absent)} "
            f"{'is' if len(absent) == 1 else 'are'} not installed for {sys.executable}: "
            f"{INSTALL}")


def tracking_uri(work: Path) -> str:
    """The store a task logs to: MLflow's default sqlite file, in the task's working directory."""
    return f"sqlite:///{work.resolve() / DB}"


def stores(work: Path, work_fd: int | None = None) -> list[str]:
    """The tracking URIs of the MLflow stores in a task's working directory, named through its descriptor
    `work_fd` when given (files.held_dir). UnsafeMetricsFile when a store's name is taken by anything else (a
    symlink out of the directory, a FIFO): never followed."""
    base = work.resolve() if work_fd is None else held_dir(work_fd, work)
    found = []
    for name, kind, uri in ((DB, stat.S_ISREG, f"sqlite:///{base / DB}"),
                            (FILE_STORE, stat.S_ISDIR, (base / FILE_STORE).as_uri())):
        try:
            st = os.lstat(name, dir_fd=work_fd) if work_fd is not None else os.lstat(work / name)
        except FileNotFoundError:
            continue
        if not kind(st.st_mode):
            raise UnsafeMetricsFile(f"{name} in the task's working directory is not a "
                                    f"{'file' if kind is stat.S_ISREG else 'directory'} (a symlink?); "
                                    "MLflow's metrics were not read")
        found.append(uri)
    return found


class MlflowReadError(Exception):
    """A store that MLflow's client could not read (another MLflow version's schema, a damaged file)."""


def _number(value: Any) -> float | None:
    """MLflow's metrics are doubles; NaN and infinities are missing values."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


@dataclass
class Reader:
    """Reads one task's MLflow stores; `series()` returns only the steps not returned before (for live
    polling). It never writes to them: a sqlite store is opened read-only, so a script still creating or
    migrating its store (or logging to it) is never raced. With `work_fd` (the working directory the runner
    made, open) the stores are reached through it, whatever is swapped in for `work` meanwhile."""

    work: Path
    work_fd: int | None = None
    # (store, run, metric) -> points returned
    _seen: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def final(self) -> dict[str, Any]:
        """Each metric's latest value (see the module's doc for which run wins)."""
        values: dict[str, Any] = {}
        for uri in stores(self.work, self.work_fd):
            with _open(uri) as client:
                for run in sorted(_runs(client), key=_rank):
                    for key, value in run.data.metrics.items():
                        number = _number(value)
                        if number is not None:
                            values[key] = number
                        else:
                            # a later run's NaN: the metric is missing, not an older value
                            values.pop(key, None)
        return values

    def series(self) -> list[dict[str, Any]]:
        """New points of the top-level runs' metrics, one record per (step, time) they were logged at."""
        records: dict[tuple[int | float, float], dict[str, Any]] = {}
        for uri in stores(self.work, self.work_fd):
            with _open(uri) as client:
                for run in sorted(_runs(client), key=_rank):
                    if run.data.tags.get("mlflow.parentRunId"):
                        continue
                    for key in run.data.metrics:
                        history = client.get_metric_history(run.info.run_id, key)
                        seen = (uri, run.info.run_id, key)
                        new = history[self._seen.get(seen, 0):]
                        self._seen[seen] = len(history)
                        for point in new:
                            value = _number(point.value)
                            if value is not None:
                                t = round(point.timestamp / 1000, 3)
                                records.setdefault((point.step, t), {"step": point.step})[key] = value
        return [
            {**r, "t": t} for (_, t), r in sorted(records.items(), key=lambda item: (item[0][1], item[0][0]))
        ]


@contextmanager
def _open(uri: str) -> Iterator[Any]:
    """MLflow's client on one store, read-only; any error reading it is an MlflowReadError."""
    try:
        if uri.startswith("sqlite:"):
            _read_only(uri)
        else:
            # newer MLflow refuses a file store without it
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.tracking import MlflowClient

        yield MlflowClient(tracking_uri=uri)
    except MlflowReadError:
        raise
    except Exception as e:  # noqa: BLE001 - MLflow raises its own and SQLAlchemy's errors alike
        text = str(e).strip().splitlines()
        raise MlflowReadError(f"MLflow could not read {uri.rsplit('/', 1)[-1]}: {type(e).__name__}: "
                              f"{text[0][:200] if text else ''}") from e
    finally:
        _release(uri)


def _read_only(uri: str) -> None:
    """Have MLflow read a sqlite store through a read-only connection: its client would otherwise create
    tables or a default experiment in a store the script is still setting up. MLflow keeps one engine per
    store URI (SqlAlchemyStore._engine_map, its internal); an MLflow without that map reads as it would by
    itself."""
    path = uri.removeprefix("sqlite:///")
    probe = sqlite3.connect(f"{Path(path).as_uri()}?mode=ro", uri=True)
    try:
        tables = {row[0] for row in probe.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        probe.close()
    import sqlalchemy
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    try:  # every table of MLflow's schema (what its store checks before creating them)
        from mlflow.store.db.base_sql_model import Base

        expected = set(Base.metadata.tables)
    except ImportError:
        expected = {"experiments", "runs", "metrics"}
    if not expected <= tables:
        raise MlflowReadError(
            f"{Path(path).name} is not an MLflow store yet (the script may still be creating it)"
        )

    engines = getattr(SqlAlchemyStore, "_engine_map", None)
    if isinstance(engines, dict) and uri not in engines:
        engines[uri] = sqlalchemy.create_engine(f"sqlite:///{Path(path).as_uri()}?mode=ro&uri=true")


def _runs(client: Any) -> list[Any]:
    from mlflow.entities import ViewType

    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    if not experiments:
        return []
    return list(client.search_runs(experiments, run_view_type=ViewType.ACTIVE_ONLY, max_results=50000))


def _rank(run: Any) -> tuple[int, int]:
    """Sort key: nested runs first, then by start time, so that the run that should win comes last."""
    return (0 if run.data.tags.get("mlflow.parentRunId") else 1, run.info.start_time or 0)


def _release(uri: str) -> None:
    """Dispose of the database engine MLflow keeps per sqlite file for the life of the process (one per task
    would pile up over a long sweep). Best effort: the map is MLflow's internal."""
    if not uri.startswith("sqlite:"):
        return
    try:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    except ImportError:
        return
    engines = getattr(SqlAlchemyStore, "_engine_map", None)
    if isinstance(engines, dict):
        engine = engines.pop(uri, None)
        if engine is not None:
            engine.dispose()
