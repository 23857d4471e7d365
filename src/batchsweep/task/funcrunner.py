"""Child process for `function:` tasks: `python -m batchsweep.task.funcrunner CODE_DIR module:callable`.

The params come in BATCHSWEEP_PARAMS (or, when large, the file BATCHSWEEP_PARAMS_FILE names); a returned dict
becomes metrics.json. Running in a child keeps a crash (even a segfault) in the user's function from taking
the runner down.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
from typing import Any

from batchsweep.metrics import METRICS_FILE


def _accepted(func: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Our own params (repeat, trial, round) reach the function only if it declares them (or takes
    **kwargs)."""
    from batchsweep.model import OWN_PARAMS

    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return params
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        return params
    return {k: v for k, v in params.items() if k not in OWN_PARAMS or k in signature.parameters}


def main() -> int:
    code_dir, target = sys.argv[1], sys.argv[2]
    sys.path.insert(0, code_dir)
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    text = os.environ.get("BATCHSWEEP_PARAMS")
    if text is None:  # large params come in a file
        with open(os.environ["BATCHSWEEP_PARAMS_FILE"], encoding="utf-8") as f:
            text = f.read()
    params = {k: v for k, v in json.loads(text).items() if not k.startswith("_")}
    result = obj(**_accepted(obj, params))
    if isinstance(result, dict):
        with open(METRICS_FILE, "w") as f:
            json.dump(result, f, default=str)
    elif isinstance(result, (int, float)) and not isinstance(result, bool):
        with open(METRICS_FILE, "w") as f:
            json.dump({"value": result}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
