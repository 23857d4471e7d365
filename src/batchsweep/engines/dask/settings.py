"""The Dask engine's settings: the spec's `dask:` block as written (DaskSettings) and as resolved into
run.json `engine` (DaskEngineSettings)."""

from __future__ import annotations

import importlib
import os
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from batchsweep.engines.base import parse_settings
from batchsweep.errors import SpecError
from batchsweep.store.record import EngineSettings


class DaskClusterSettings(BaseModel):
    """A cluster class batchsweep starts for a Dask run, with its arguments and size."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)
    class_: str = Field(alias="class")
    kwargs: dict[str, Any] = {}
    scale: int | None = None

    @model_serializer(mode="wrap")
    def _by_its_name(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """`class`, as run.json has always spelt it."""
        return {("class" if k == "class_" else k): v for k, v in handler(self).items()}


class DaskEngineSettings(EngineSettings):
    """The Dask engine's: an existing scheduler's address, or the cluster it starts; the worker resources each
    task asks for (GPU, MEMORY in bytes)."""

    scheduler: str | None = None
    cluster: Literal["local"] | DaskClusterSettings | None = None
    n_workers: int | None = None  # cluster: local
    resources: dict[str, float] | None = None


class DaskCluster(BaseModel):
    """`cluster: {class: dask_jobqueue.SLURMCluster, kwargs: {...}, scale: N}`: a cluster it starts."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    class_: str = Field(alias="class")
    kwargs: dict[str, Any] = {}
    scale: int | None = Field(default=None, ge=1)


class DaskSettings(BaseModel):
    """The spec's `dask:` block: an existing scheduler, or a cluster batchsweep starts (default: `local`)."""

    model_config = ConfigDict(extra="forbid")
    scheduler: str | None = None
    cluster: Literal["local"] | DaskCluster | None = None

    @field_validator("scheduler")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("not an address; give e.g. tcp://127.0.0.1:8786")
        return v.strip() if v is not None else None

    @field_validator("cluster", mode="before")
    @classmethod
    def _cluster_shape(cls, v: Any) -> Any:
        if v is not None and v != "local" and not isinstance(v, dict):
            raise ValueError(f"{v!r} is not understood; give `local` or "
                             "{class: dask_jobqueue.SLURMCluster, kwargs: {...}, scale: N}")
        return v

    @model_validator(mode="after")
    def _one_of(self) -> DaskSettings:
        if self.scheduler is not None and self.cluster is not None:
            raise ValueError("give either `scheduler: tcp://HOST:PORT` or `cluster: ...`, not both "
                             "(drop one, e.g. --set dask.cluster=null)")
        return self


def import_class(path: str) -> type:
    """`dask.cluster.class` (`module.Class` or `module:Class`), imported; SpecError naming the fix."""
    module, sep, attr = path.partition(":")
    if not sep:
        module, _, attr = path.rpartition(".")
    fix = (f"pip install {module.split('.')[0].replace('_', '-')} or fix the name "
           "(e.g. dask_jobqueue.SLURMCluster)")
    try:
        cls = getattr(importlib.import_module(module), attr) if module and attr else None
    except ImportError as e:
        raise SpecError(f"dask.cluster.class: cannot import {path!r} ({e}); {fix}") from None
    except AttributeError:
        cls = None
    if not isinstance(cls, type):
        raise SpecError(f"dask.cluster.class: {path!r} is not a class; {fix}")
    return cls


def resolve_settings(raw: dict[str, Any], *, max_parallel: int) -> DaskEngineSettings:
    """The spec's `dask:` block, validated by DaskSettings: the settings run.json keeps as `engine`."""
    try:
        settings = parse_settings(DaskSettings, "dask", raw)
    except ValueError as e:
        raise SpecError(str(e)) from None
    if settings.scheduler is not None:
        address = settings.scheduler
        return DaskEngineSettings(scheduler=address if "://" in address else f"tcp://{address}")
    cluster = settings.cluster or "local"
    if cluster == "local":
        return DaskEngineSettings(cluster="local", n_workers=max_parallel or os.cpu_count() or 1)
    assert isinstance(cluster, DaskCluster)
    import_class(cluster.class_)
    return DaskEngineSettings(cluster=DaskClusterSettings.model_validate(
        {"class": cluster.class_, "kwargs": cluster.kwargs, "scale": cluster.scale}))
