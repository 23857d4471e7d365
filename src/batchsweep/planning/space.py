"""Expand a spec's parameter space into a deterministic list of Tasks.

Blocks combine as a cartesian product in a fixed order (list × zip × grid × random), `fixed` joins every task,
`repeat` copies each task N times. `{param}` placeholders in string params and inputs are filled per task.
"""

from __future__ import annotations

import itertools
import posixpath
import random
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from batchsweep.errors import SpecError
from batchsweep.model import REPEAT_PARAM, STAGED_AT, Task
from batchsweep.planning import keys
from batchsweep.spec import distributions
from batchsweep.spec.schema import Params, Spec

_PLACEHOLDER = re.compile(r"\{([A-Za-z_]\w*)\}")


def _block_rows(params: Params) -> list[list[dict[str, Any]]]:
    blocks: list[list[dict[str, Any]]] = []
    if params.list_:
        blocks.append([dict(row) for row in params.list_])
    if params.zip:
        names = list(params.zip)
        blocks.append([dict(zip(names, values)) for values in zip(*params.zip.values())])
    if params.grid:
        names = list(params.grid)
        blocks.append([dict(zip(names, values)) for values in itertools.product(*params.grid.values())])
    if params.random:
        rng = random.Random(params.random.seed)
        dists = {n: distributions.parse(t, where=n) for n, t in params.random.space.items()}
        blocks.append([{n: d.sample(rng) for n, d in dists.items()} for _ in range(params.random.samples)])
    return blocks


def count(spec: Spec) -> int:
    """The number of tasks, computed from the blocks' sizes: nothing is expanded (a 10^8 grid costs
    nothing)."""
    params = spec.params
    if params is None:
        return 0
    n = 1
    if params.list_:
        n *= len(params.list_)
    if params.zip:
        n *= len(next(iter(params.zip.values())))
    for values in params.grid.values():
        n *= len(values)
    if params.random:
        n *= params.random.samples
    return n * params.repeat


def iter_params(spec: Spec) -> Iterator[dict[str, Any]]:
    params = spec.params
    if params is None:
        return
    for combo in itertools.product(*_block_rows(params)):
        row: dict[str, Any] = {}
        for part in combo:
            row.update(part)
        row.update(params.fixed)
        if params.repeat > 1:
            for r in range(params.repeat):
                yield {**row, REPEAT_PARAM: r}
        else:
            yield row


def fill(text: str, params: dict[str, Any], *, where: str) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in params:
            raise SpecError(
                f"{where}: placeholder {{{name}}} names no param; params are: {', '.join(params)}"
            )
        return str(params[name])

    return _PLACEHOLDER.sub(sub, text)


def resolve(
    raw: dict[str, Any], inputs: Sequence[Any], *, task: str = ""
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Params with their `{param}` placeholders filled, and the task's inputs: `src`, or `src => dst` for an
    input staged at a path of its own (`{src, dst}` in the spec, a model or its JSON form). `task` names the
    task in errors ("task 3")."""
    params = {
        k: fill(v, raw, where=f"params.{k}") if isinstance(v, str) and "{" in v else v for k, v in raw.items()
    }
    refs = []
    for item in inputs:
        if isinstance(item, str):
            refs.append(fill_path(item, params, task=task))
            continue
        src, dst = (item["src"], item["dst"]) if isinstance(item, dict) else (item.src, item.dst)
        refs.append(
            fill_path(src, params, task=task) + STAGED_AT + fill_path(dst, params, task=task, dst=True)
        )
    return params, tuple(refs)


def fill_path(template: str, params: dict[str, Any], *, task: str = "", dst: bool = False) -> str:
    """An input path with its placeholders filled, which a param value cannot take outside the directory the
    template itself names (the part before its first placeholder; the spec's directory when it starts with
    one): `data/{symbol}.csv` with symbol `../../etc/passwd` or `/etc/passwd` is bad input. A path the spec
    writes out (absolute, or with `..`) is the user's own choice and is left alone; an `s3://` key has no
    `..`. A `dst` is always inside the task's directory."""
    filled = fill(template, params, where="inputs")
    if filled == template or filled.startswith("s3://"):
        return filled
    prefix = template[: template.index("{")] if "{" in template else template
    base = prefix if not prefix or prefix.endswith("/") else posixpath.dirname(prefix)
    base = base + "/" if base and not base.endswith("/") else base
    norm_base = posixpath.normpath(base) if base else ""
    norm = posixpath.normpath(filled)
    if dst:
        inside = not posixpath.isabs(norm) and norm != ".." and not norm.startswith("../")
    elif not norm_base or norm_base == ".":
        inside = not posixpath.isabs(norm) and norm != ".." and not norm.startswith("../")
    else:
        inside = norm == norm_base or norm.startswith(norm_base.rstrip("/") + "/")
    if not inside:
        used = ", ".join(f"{name}={params[name]!r}" for name in dict.fromkeys(_PLACEHOLDER.findall(template))
                         if name in params)
        where = (
            "the task's directory"
            if dst
            else (f"{base}" if norm_base not in ("", ".") else "the spec's directory")
        )
        raise SpecError(
            f"inputs: {template!r} with {used}{f' ({task})' if task else ''} points outside {where} "
            f"(to {filled!r}); a param can only pick a path inside it — fix the value, or list a file "
            "elsewhere in inputs: yourself"
        )
    return filled


def expand(
    spec: Spec,
    *,
    code_hash: str = "",
    keyer: Callable[[dict[str, Any], tuple[str, ...]], str] | None = None,
) -> list[Task]:
    """All tasks of the spec, in a deterministic order with stable indices, each with its content key
    (`batchsweep.planning.keys`; `code_hash` stands for the whole environment when no keyer is given)."""
    if keyer is None:
        cache = keys.HashCache()
        keyer = keys.Keyer(code=code_hash, what={}, env={}, stamps=keys.InputStamps(spec.base_dir, cache))
    tasks = []
    for index, raw in enumerate(iter_params(spec)):
        params, inputs = resolve(raw, spec.inputs, task=f"task {index}")
        tasks.append(Task(index=index, params=params, inputs=inputs, cache_key=keyer(params, inputs)))
    return tasks


def code_hash(spec: Spec) -> str:
    """Hash of the code a task runs: the code package's content (see `batchsweep.planning.keys.code_hash`)."""
    return keys.code_hash(spec)


def module_file(spec: Spec) -> Path | None:
    if not spec.function:
        return None
    module = spec.function.split(":")[0].replace(".", "/")
    for candidate in (spec.base_dir / f"{module}.py", spec.base_dir / module / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None
