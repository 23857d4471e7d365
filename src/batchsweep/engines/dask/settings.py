"""The Dask engine's resolved settings (run.json `engine`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

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
    """The Dask engine's: an existing scheduler's address, or the cluster it starts; the worker resources each task
    asks for (GPU, MEMORY in bytes)."""

    scheduler: str | None = None
    cluster: Literal["local"] | DaskClusterSettings | None = None
    n_workers: int | None = None  # cluster: local
    resources: dict[str, float] | None = None
