"""A sweep's whole history as one table: the union of every run of a sweep in a store, one row per distinct
content key, the latest success winning (else the latest attempt), with the run each row was computed in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batchsweep.errors import RunDamaged, RunNotFound
from batchsweep.store.core import Store

if TYPE_CHECKING:
    import pandas as pd

    from batchsweep.report.serve import ReportServer
    from batchsweep.runs.run import Run


@dataclass
class SweepHistory:
    """Every run of one sweep in a store, oldest first."""

    name: str
    runs: list[Run]

    def __repr__(self) -> str:
        return f"SweepHistory({self.name!r}, runs={len(self.runs)})"

    @property
    def latest(self) -> Run:
        return self.runs[-1]

    def results(self, *, latest_code: bool = False) -> pd.DataFrame:
        """One row per distinct task key across the runs: `run` (where its result was computed), `task` (its
        index there), `code` (the code identity it ran: a short hash and the first run of this sweep that ran
        it), the params, status and metrics, and `key`. A success beats any failure; among successes, the
        latest run's row wins. `latest_code`: only the rows of the newest run's code."""
        import pandas as pd

        first_seen: dict[str, str] = {}
        for run in self.runs:
            first_seen.setdefault(run.record.code_hash, run.id)
        frames = []
        for order, run in enumerate(self.runs):
            code = run.record.code_hash
            df = run.results().copy()
            # A row reused into this run has this run's key, and so its code (the code is part of the key).
            df["code"] = f"{code[:10]} ({first_seen[code]})" if code else "not recorded"
            keys = {t.index: t.cache_key for t in run.tasks()}
            df["key"] = [keys.get(i, f"{run.id}/{i}") or f"{run.id}/{i}" for i in df["task"]]
            source = df["reused_from"] if "reused_from" in df else pd.Series([None] * len(df), index=df.index)
            # Where the row was computed: a reused row's source run and task, else this run and task.
            df["run"] = [str(r).rsplit("/", 1)[0] if isinstance(r, str) and r else run.id for r in source]
            df["task"] = [int(str(r).rsplit("/", 1)[1]) if isinstance(r, str) and r else t
                          for r, t in zip(source, df["task"])]
            df["_order"] = order
            frames.append(df)
        whole = pd.concat(frames, ignore_index=True, sort=False)
        whole["_ok"] = whole["status"] == "succeeded"
        whole = whole.sort_values(["_ok", "_order"], kind="stable").drop_duplicates("key", keep="last")
        whole = whole.sort_values(["_order", "task"], ascending=[False, True], kind="stable")
        whole = whole.drop(columns=["_ok", "_order"]).reset_index(drop=True)
        if latest_code:
            code = self.latest.record.code_hash
            whole = whole[whole["code"] == (f"{code[:10]} ({first_seen[code]})" if code else "not recorded")]
            whole = whole.reset_index(drop=True)
        first = ["run", "task", "code"]
        return whole[first + [c for c in whole.columns if c not in first]]

    def report(self, path: Any = None, **kwargs: Any) -> Any:
        from batchsweep.report.page import write_report

        return write_report(self.latest, path, table=self.results(), runs={r.id: r for r in self.runs},
                            extra=self.compared(**kwargs), **kwargs)

    def compared(self, **kwargs: Any) -> list[str]:
        """The sweep's runs overlaid (`batchsweep.runs.compare`), a section of its report when it has two or
        more."""
        from batchsweep.runs.compare import comparison

        if len(self.runs) < 2:
            return []
        sections, _, _ = comparison(self.runs, **kwargs)
        return [f'<h2 id="runs-compared">The sweep\'s {len(self.runs)} runs compared</h2>', *sections]

    def serve(self, *, host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> ReportServer:
        """Serve the sweep's report as `Run.serve` does a run's, its runs re-read from the store at each
        refresh (a run started meanwhile joins it)."""
        from batchsweep.report.page import render_report
        from batchsweep.report.serve import serve

        def render(refresh_s: float) -> tuple[str, bool]:
            now = load_sweep(self.name, store=self.latest.store)
            active = now.latest.poll().active
            html, _, _ = render_report(
                now.latest,
                table=now.results(),
                runs={r.id: r for r in now.runs},
                live={"active": active, "refresh_s": refresh_s},
                extra=now.compared(**kwargs),
                **kwargs,
            )
            return html, active

        return serve(render, host=host, port=port)


def load_sweep(name: str, *, store: Store | str | None = None) -> SweepHistory:
    """Every run of sweep `name` recorded in the store (local runs and the pointers to remote ones)."""
    from batchsweep.runs.catalog import list_runs, open_run

    local = store if isinstance(store, Store) else Store.open(store)
    entries = [e for e in list_runs(store=local) if e.name == name and not e.damaged]
    runs = []
    for entry in entries:
        try:
            runs.append(open_run(local, entry.run_id))
        except (RunNotFound, RunDamaged):
            continue
    if not runs:
        names = sorted({e.name for e in list_runs(store=local) if e.name})
        raise RunNotFound(f"no runs of sweep {name!r} in store {local.url}"
                          + (f"; sweeps there: {', '.join(names)}" if names else ""))
    return SweepHistory(name, runs)
