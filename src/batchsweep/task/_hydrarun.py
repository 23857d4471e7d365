"""Child process for Hydra apps: `python -m batchsweep.task._hydrarun SCRIPT OVERRIDE...`.

Runs the script as `__main__` with the overrides as its command line, as `python SCRIPT OVERRIDE...` would, and
keeps what its `@hydra.main` task function returns: a number or a dict of numbers becomes the task's metrics
(merged into metrics.json), the way Hydra's own sweepers read an objective.
"""

from __future__ import annotations

import functools
import json
import math
import os
import runpy
import sys
from typing import Any

from batchsweep.metrics import METRICS_FILE


def _record(result: Any) -> None:
    if isinstance(result, bool) or result is None:
        return
    if isinstance(result, (int, float)):
        values: dict[str, Any] = {"value": result}
    elif hasattr(result, "items"):
        try:  # an OmegaConf DictConfig or a plain dict
            values = {str(k): v for k, v in dict(result.items()).items() if isinstance(v, (int, float, str, bool))}
        except Exception:  # noqa: BLE001 - a return value we cannot read is not a task failure
            return
    else:
        return
    values = {k: v for k, v in values.items() if not (isinstance(v, float) and not math.isfinite(v))}
    path = os.path.join(os.environ.get("BATCHSWEEP_TASK_DIR", "."), METRICS_FILE)
    current: dict[str, Any] = {}
    if os.path.exists(path):
        try:
            current = json.loads(open(path).read())
        except ValueError:
            current = {}
    current.update(values)
    with open(path, "w") as f:
        json.dump(current, f, default=str)


def main() -> None:
    import hydra

    original = hydra.main

    def main(*dargs: Any, **dkwargs: Any) -> Any:
        decorate = original(*dargs, **dkwargs)

        def decorator(task_function: Any) -> Any:
            @functools.wraps(task_function)
            def keep_result(cfg: Any) -> Any:
                result = task_function(cfg)
                _record(result)
                return result

            return decorate(keep_result)

        return decorator

    hydra.main = main
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
