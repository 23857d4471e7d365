"""batchsweep: run a Python script or function over many parameter sets, locally or on AWS Batch,
and get one results table.

    import batchsweep
    run = batchsweep.run("sweep.yaml", timeout="30m")
    df = run.results()

Names load lazily so `import batchsweep` (and the CLI) start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "run",
    "load_run",
    "load_sweep",
    "list_runs",
    "plan",
    "start",
    "log_metrics",
    "compare",
    "Run",
    "SweepError",
]

if TYPE_CHECKING:
    from batchsweep.errors import SweepError
    from batchsweep.planning.plan import plan
    from batchsweep.runs.catalog import list_runs, load_run
    from batchsweep.runs.compare import compare
    from batchsweep.runs.history import load_sweep
    from batchsweep.runs.run import Run
    from batchsweep.runs.start import run, start
    from batchsweep.task.api import log_metrics

_WHERE = {
    "run": "batchsweep.runs.start",
    "load_run": "batchsweep.runs.catalog",
    "list_runs": "batchsweep.runs.catalog",
    "plan": "batchsweep.planning.plan",
    "start": "batchsweep.runs.start",
    "Run": "batchsweep.runs.run",
    "log_metrics": "batchsweep.task.api",
    "SweepError": "batchsweep.errors",
    "load_sweep": "batchsweep.runs.history",
    "compare": "batchsweep.runs.compare",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'batchsweep' has no attribute {name!r}")
