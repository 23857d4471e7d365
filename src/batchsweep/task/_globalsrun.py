"""Child process for scripts configured by module-level values: `python -m batchsweep.task._globalsrun SCRIPT
NAME=JSON...`.

Runs the script as `__main__`, as `python SCRIPT` would, with each named module-level literal assignment
(`kernel = "rbf"`, `C: float = 1.0`, also inside a top-level `if`) replaced by the given value before the code
is compiled: the file is never changed, and the script's own later computations (`gamma = 1 / C`) see the new
value. The warm-start fork server runs a task the same way (`run`), in its forked child.
"""

from __future__ import annotations

import ast
import json
import os
import sys
from typing import Any


def _value(value: Any, original: Any) -> ast.expr:
    if isinstance(original, tuple) and isinstance(value, list):
        value = tuple(value)
    return ast.parse(repr(value), mode="eval").body


def overridden(source: str, filename: str, values: dict[str, Any]) -> Any:
    """The script compiled with the named module-level literal assignments replaced (every one of them)."""
    from batchsweep.scripts.scan import literal_assignments, top_level

    tree = ast.parse(source, filename)
    for node in top_level(tree.body):
        for name, original in literal_assignments(node):
            if name in values:
                new = _value(values[name], original)
                ast.copy_location(new, node.value)  # type: ignore[attr-defined]
                ast.fix_missing_locations(new)
                node.value = new  # type: ignore[attr-defined]
    return compile(tree, filename, "exec")


def parse(argv: list[str]) -> dict[str, Any]:
    values = {}
    for item in argv:
        name, _, text = item.partition("=")
        values[name] = json.loads(text)
    return values


def run(script: str, values: dict[str, Any]) -> None:
    """Run the script as __main__ with the values in place (sys.argv is the script alone, as for `python
    SCRIPT`)."""
    import types

    with open(script, "rb") as f:
        source = f.read().decode("utf-8", errors="replace")
    code = overridden(source, script, values)
    module = types.ModuleType("__main__")
    module.__file__ = script
    module.__builtins__ = __builtins__  # type: ignore[attr-defined]
    sys.modules["__main__"] = module
    sys.argv = [script]
    exec(code, module.__dict__)  # noqa: S102 - the user's own script, as `python SCRIPT` would run it


def main() -> None:
    script = sys.argv[1]
    values = parse(sys.argv[2:])
    sys.path[0] = os.path.dirname(os.path.abspath(script))  # as `python SCRIPT` has it (not ours)
    run(script, values)


if __name__ == "__main__":
    main()
