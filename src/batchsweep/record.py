"""run.json, typed: what a run was when it was planned (the spec as recorded, code hash, the engine's resolved
settings) and what happened to it since (cancelled, resumed, compacted). An engine's `prepare()` may add fields
of its own (the code package's key, the inputs map): they are kept as extras, untyped.

The spec is a `batchsweep.spec.Spec`, read back with the `RECORDED` context: it was judged when the run was
planned, so today's engine registry does not judge it again. On disk it stays the spec's JSON dump (aliases,
every field, no `base_dir`/`spec_file`: those are the record's own fields and are given back to it on reading),
as every earlier version wrote it; fields a later version added take their defaults when an older record lacks them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    SerializationInfo,
    ValidationError,
    field_serializer,
    model_validator,
)

from batchsweep.errors import RunDamaged
from batchsweep.spec import RECORDED, Spec


class ShippedInput(BaseModel):
    """An input an aws-batch run copied into the store (run.json `inputs_map`, by its reference in the spec)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    key: str  # its object in the store (`Store.input_key`)
    dir: bool = False  # a directory, shipped as a tar.gz


class SearchRecord(BaseModel):
    """What an adaptive search adds to its run's record: trials per round and its Optuna journal's file name."""

    model_config = ConfigDict(extra="allow", frozen=True)

    batch: int
    journal: str


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
    key_what: dict[str, Any] | None = None  # the parts of key_common besides the code: a resume after the code
    key_env: dict[str, Any] | None = None  # changed keys its tasks with the code as it is then (planning.keyed_as_now)
    resumed_code_hash: str | None = None  # the code the last resume keyed its tasks by, when it had changed
    spec_file: str | None = None
    provenance: dict[str, Any] = {}
    base_dir: str = "."
    code_dir: str = "."
    script_name: str | None = None
    spec: Spec  # the spec as recorded (the script by its name in code_dir, `python:` resolved)
    flags: dict[str, Any] = {}  # what the script's command line accepts (`scriptargs.flags_to_json`)
    timeout_s: float | None = None
    max_parallel: int = 0
    param_names: list[str] = []
    engine: dict[str, Any] = {}  # the engine's resolved settings (`Engine.check`)
    search: SearchRecord | None = None  # an adaptive search's own fields
    store: str | None = None  # the store the run lives in (an S3 prefix for remote engines)
    reused: int = 0  # tasks copied from earlier runs at start
    reuse: bool = False  # started with reuse on: a search's rounds and `resume` reuse only then
    code_sha256: str | None = None  # the code package kept in the store (`Engine.prepare`)
    code_package: str | None = None  # why no code package was kept
    inputs_map: dict[str, ShippedInput] | None = None  # aws-batch: the inputs shipped to the store
    cancelled: bool = False
    resumed_at: float | None = None
    compacted_at: float | None = None
    median_task_s: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _spec_where_planned(cls, data: Any) -> Any:
        """The recorded spec without its `base_dir` and `spec_file` (the record's own fields): given back."""
        if isinstance(data, dict) and isinstance(data.get("spec"), dict):
            spec = {"base_dir": data.get("base_dir") or ".", **data["spec"]}
            if data.get("spec_file") and "spec_file" not in spec:
                spec["spec_file"] = data["spec_file"]
            data = {**data, "spec": spec}
        return data

    @field_serializer("spec")
    def _spec_as_recorded(self, spec: Spec, info: SerializationInfo) -> dict[str, Any]:
        """The spec's whole dump by its keys' names (`list:`), as every version wrote it."""
        return spec.model_dump(mode=info.mode, by_alias=True)

    def spec_json(self) -> dict[str, Any]:
        """The recorded spec as JSON, as run.json holds it (a record from an earlier version: with today's defaults)."""
        return self.spec.model_dump(mode="json", by_alias=True)

    @classmethod
    def of(cls, info: Mapping[str, Any]) -> RunRecord:
        return cls.model_validate(dict(info), context=RECORDED)

    @property
    def keyed_code(self) -> str:
        """The code hash the tasks that run now were keyed by: the start's, or the last resume's."""
        return self.resumed_code_hash or self.code_hash

    def code_spec(self) -> Spec:
        """The recorded spec with its script where the tasks run it (`code_dir`/`script_name`): what
        `keys.code_hash` reads to tell the code as it is now from the code the run's tasks were keyed by."""
        if not self.script_name:
            return self.spec
        return self.spec.model_copy(update={"script": str(Path(self.code_dir) / self.script_name)})

    @classmethod
    def of_run(cls, run_id: str, info: Mapping[str, Any]) -> RunRecord:
        """run.json of run `run_id`, typed; RunDamaged in one line when it does not hold a run's fields."""
        try:
            return cls.of(info)
        except ValidationError as e:
            error = e.errors()[0]
            where = ".".join(str(p) for p in error["loc"])
            raise RunDamaged(f"run {run_id}: run.json is damaged ({where}: {error['msg']})",
                             reason=f"{where}: {error['msg']}") from None

    def to_json(self) -> dict[str, Any]:
        """run.json's content: the fields that were given (no defaults written out), extras included."""
        return self.model_dump(mode="json", exclude_unset=True)
