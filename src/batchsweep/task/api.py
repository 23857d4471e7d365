"""What a task may call from inside: `batchsweep.log_metrics`. It writes what the reading side (`metrics`,
`series`) reads, and depends on it, never the other way round."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from batchsweep.metrics import METRICS_FILE, SERIES_FILE
from batchsweep.task.series import ENV_FILE, append, number


def log_metrics(step: Any = None, **values: Any) -> None:
    """Record metrics from inside a task (merged into the task's metrics.json). With `step`, the values are
    also appended to the task's series (metrics.jsonl), which `stop:` rules and the report's curves read."""
    if step is not None:
        series = os.environ.get(ENV_FILE) or str(
            Path(os.environ.get("BATCHSWEEP_TASK_DIR", ".")) / SERIES_FILE
        )
        numbers = {k: v for k, v in ((k, number(v)) for k, v in values.items()) if v is not None}
        if number(step) is not None and numbers:
            append(Path(series), [{"step": number(step), **numbers, "t": round(time.time(), 3)}])
    path = Path(os.environ.get("BATCHSWEEP_TASK_DIR", ".")) / METRICS_FILE
    current: dict[str, Any] = {}
    if path.exists():
        try:
            current = json.loads(path.read_text())
        except ValueError:
            current = {}
    current.update(values)
    path.write_text(json.dumps(current, default=str))
