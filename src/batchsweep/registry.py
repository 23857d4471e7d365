"""Engine registry: the one place that maps a backend name to its engine class (built-ins, then the
`batchsweep.engines` entry point group). Low in the house: the spec validates `backend:` against it."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from batchsweep.errors import EngineUnavailable, SpecError

if TYPE_CHECKING:
    from batchsweep.engines.base import Engine

ENGINES = {
    "local": "batchsweep.engines.local.engine:LocalEngine",
    "aws-batch": "batchsweep.engines.aws_batch:AwsBatchEngine",
    "dask": "batchsweep.engines.dask.engine:DaskEngine",
    "slurm": "batchsweep.engines.slurm:SlurmEngine",
}

DEFAULT_BACKEND = "local"  # a spec without `backend:` runs on this machine
BUILT_IN = tuple(ENGINES)
# Built-in engines whose block is a field of the spec (`dask: {...}`); others' blocks are under `engines`.
SPEC_FIELD_BLOCKS = ("dask", "slurm")

# The engines whose packages come with an extra of batchsweep's (pyproject's optional-dependencies); the
# others need only batchsweep's own dependencies, or are installed with the package that registers them.
EXTRAS = {"dask": "dask"}


def available() -> dict[str, str]:
    found = dict(ENGINES)
    for ep in entry_points(group="batchsweep.engines"):
        found.setdefault(ep.name, ep.value)
    return found


def get_engine(name: str) -> type[Engine]:
    # a built-in name is never taken by a registered engine (`available`): no scan of every installed
    # distribution's entry points (~50 ms of CPU, three times a run)
    engines = ENGINES if name in ENGINES else available()
    if name not in engines:
        raise SpecError(f"backend {name!r} is unknown; choose one of: {', '.join(engines)}")
    module, _, attr = engines[name].partition(":")
    try:
        return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]
    except ImportError as e:
        fix = f"pip install 'batchsweep[{EXTRAS[name]}]'" if name in EXTRAS else f"install {e.name}"
        raise EngineUnavailable(
            f"backend {name!r} needs packages that are not installed ({e.name}); {fix}"
        ) from None
