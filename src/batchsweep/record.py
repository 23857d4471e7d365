"""run.json, typed: what a run was when it was planned (the spec as recorded, code hash, the engine's resolved
settings) and what happened to it since (cancelled, resumed, compacted). An engine's `prepare()` may add fields
of its own (the code package's key, the inputs map): they are kept as extras, untyped."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict


class RunRecord(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    run_id: str
    name: str
    backend: str
    created: str
    created_ts: float
    n_tasks: int
    code_hash: str = ""
    key_common: str | None = None  # code, what runs and environment: a search keys its trials with it
    spec_file: str | None = None
    provenance: dict[str, Any] = {}
    base_dir: str = "."
    code_dir: str = "."
    script_name: str | None = None
    spec: dict[str, Any] = {}  # the spec as recorded (the script by its name in code_dir, `python:` resolved)
    flags: dict[str, Any] = {}  # what the script's command line accepts (`scriptargs.flags_to_json`)
    timeout_s: float | None = None
    max_parallel: int = 0
    param_names: list[str] = []
    engine: dict[str, Any] = {}  # the engine's resolved settings (`Engine.check`)
    search: dict[str, Any] | None = None  # an adaptive search's own fields
    store: str | None = None  # the store the run lives in (an S3 prefix for remote engines)
    reused: int = 0  # tasks copied from earlier runs at start
    cancelled: bool = False
    resumed_at: float | None = None
    compacted_at: float | None = None
    median_task_s: float | None = None

    @classmethod
    def of(cls, info: Mapping[str, Any]) -> RunRecord:
        return cls.model_validate(dict(info))

    def to_json(self) -> dict[str, Any]:
        """run.json's content: the fields that were given (no defaults written out), extras included."""
        return self.model_dump(mode="json", exclude_unset=True)
