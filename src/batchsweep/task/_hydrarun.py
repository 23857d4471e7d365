"""Child process for Hydra apps: `python -m batchsweep.task._hydrarun SCRIPT OVERRIDE...`.

Runs the script as `__main__` with the overrides as its command line, as `python SCRIPT OVERRIDE...` would,
and keeps what its `@hydra.main` task function returns: a number or a dict of numbers becomes the task's
metrics (merged into metrics.json), the way Hydra's own sweepers read an objective.

Hydra's run directory is the task's own (`hydra.run.dir=.` on the command line), so its log file and `.hydra/`
land there. An app whose own config names another, relative, run directory (`hydra.run.dir: outputs/${name}`)
may write there itself, as it does when run by hand where Hydra creates it: that directory is created too,
inside the task's directory. HYDRA_FULL_ERROR is set so a failing task's last stderr line is its exception,
not Hydra's hint about that variable.
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
            values = {
                str(k): v for k, v in dict(result.items()).items() if isinstance(v, (int, float, str, bool))
            }
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


def _make_own_run_dir() -> None:
    """Create, under the working directory, the run directory the app's own config names (resolved with this
    task's overrides); best effort: an app whose config cannot be loaded again here runs as it would
    anyway."""
    try:
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
        from omegaconf import OmegaConf

        hc = HydraConfig.get()
        loader = GlobalHydra.instance().config_loader()
        full = loader.load_configuration(config_name=hc.job.config_name, overrides=list(hc.overrides.task),
                                         run_mode=RunMode.RUN)
        full.hydra.job.name = hc.job.name
        own = OmegaConf.select(full, "hydra.run.dir")
    except Exception:  # noqa: BLE001 - only a convenience for apps that write into their own run directory
        return
    if isinstance(own, str) and own and not os.path.isabs(own) and ".." not in own.split(os.sep):
        os.makedirs(own, exist_ok=True)


def main() -> None:
    import hydra

    os.environ.setdefault("HYDRA_FULL_ERROR", "1")

    original = hydra.main

    def main(*dargs: Any, **dkwargs: Any) -> Any:
        decorate = original(*dargs, **dkwargs)

        def decorator(task_function: Any) -> Any:
            @functools.wraps(task_function)
            def keep_result(cfg: Any) -> Any:
                _make_own_run_dir()
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
