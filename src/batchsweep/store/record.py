"""run.json, typed: what a run was when it was planned (the spec as recorded, code hash, the engine's resolved
settings) and what happened to it since (cancelled, resumed, compacted). An engine's `prepare()` may add
fields of its own (the code package's key, the inputs map): they are kept as extras, untyped.

The engine's resolved settings (`engine`) are an `EngineSettings`: read back as one (every field kept, so a
run whose engine is no longer installed still opens), and typed by the reader that knows its engine through
that engine's model (`RunRecord.engine_as(AwsEngineSettings)`; `Engine.engine_settings_model`). engine.json is
typed the same way (`EngineRecord`, `read_engine_record`, `write_engine_record`): here, below the engines, so
that what reads a run without its engine (the AWS emulator's player) reads it through the same models.

The spec is a `batchsweep.spec.schema.Spec`, read back with the `RECORDED` context: it was judged when the run
was planned, so today's engine registry does not judge it again. On disk it stays the spec's JSON dump
(aliases, every field, no `base_dir`/`spec_file`: those are the record's own fields and are given back to it
on reading), as every earlier version wrote it; fields a later version added take their defaults when an older
record lacks them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializeAsAny,
    ValidationError,
    field_serializer,
    model_validator,
)

from batchsweep.errors import RunDamaged
from batchsweep.model import MAX_RUN_TASKS
from batchsweep.spec.schema import RECORDED, Spec

if TYPE_CHECKING:
    from batchsweep.store.core import Store


def _first_error(e: ValidationError) -> tuple[str, str]:
    """Where the first error is (`submissions.0.jobs.0.id`) and what it says."""
    error = e.errors()[0]
    return ".".join(str(p) for p in error["loc"]), error["msg"]


class EngineSettings(BaseModel):
    """run.json `engine`: an engine's resolved settings (what `Engine.check` returned when the run was
    planned). Each engine declares its own subclass (`Engine.engine_settings_model`); read back from run.json
    it is this class, every field kept, and the reader that knows the engine types it (`RunRecord.engine_as`).
    Fields another version wrote are kept; an older record's missing fields take their defaults."""

    model_config = ConfigDict(extra="allow", frozen=True)


class StoreAccess(EngineSettings):
    """What opens a run's store when it is elsewhere (an S3 store): the AWS profile and region the engine
    used."""

    profile: str | None = None
    region: str | None = None


Settings = TypeVar("Settings", bound=BaseModel)


class ShippedInput(BaseModel):
    """An input an aws-batch run copied into the store (run.json `inputs_map`, by its reference in the
    spec)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    key: str  # its object in the store (`Store.input_key`)
    dir: bool = False  # a directory, shipped as a tar.gz


class CodeChange(BaseModel):
    """A resume that found the code changed (a live-code engine runs it as it is): from `at` on, the tasks it
    ran ran `code_hash`, kept in the store as `code_sha256` for `rerun` (None: not kept, `code.max_mib`)."""

    at: float
    code_hash: str
    code_sha256: str | None = None


class SearchRecord(BaseModel):
    """What an adaptive search adds to its run's record: trials per round and its Optuna journal's file
    name."""

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
    n_tasks: int = Field(ge=0, le=MAX_RUN_TASKS)
    code_hash: str = ""
    # `keys.CodeIdentity.to_json()`: files, packages (runs since key v2)
    code_identity: dict[str, Any] | None = None
    key_common: str | None = None  # code, what runs and environment: a search keys its trials with it
    # the parts of key_common besides the code: a resume after the code
    key_what: dict[str, Any] | None = None
    # changed keys its tasks with the code as it is then (planning.keyed_as_now)
    key_env: dict[str, Any] | None = None
    resumed_code_hash: str | None = None  # the code the last resume keyed its tasks by, when it had changed
    # each resume that ran changed code, oldest first (`rerun` replays it)
    code_changes: list[CodeChange] = []
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
    # the engine's resolved settings (`Engine.check`), typed by a reader that knows the engine: `engine_as`
    engine: SerializeAsAny[EngineSettings] = EngineSettings()
    search: SearchRecord | None = None  # an adaptive search's own fields
    store: str | None = None  # the store the run lives in (an S3 prefix for remote engines)
    reused: int = 0  # tasks copied from earlier runs at start
    reuse: bool = False  # started with reuse on: a search's rounds and `resume` reuse only then
    # `reuse.Reuse.account()`: what was reused and why the rest missed
    reuse_account: dict[str, Any] | None = None
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
        """The recorded spec as JSON, as run.json holds it (a record from an earlier version: with today's
        defaults)."""
        return self.spec.model_dump(mode="json", by_alias=True)

    def engine_as(self, model: type[Settings]) -> Settings:
        """The engine's resolved settings through its model (`AwsEngineSettings`, `LocalEngineSettings`...): a
        record an earlier version wrote reads with today's defaults; RunDamaged in one line naming the field
        when a field does not hold what the model needs."""
        if isinstance(self.engine, model):
            return self.engine
        try:
            return model.model_validate(self.engine.model_dump(mode="json"))
        except ValidationError as e:
            where, msg = _first_error(e)
            raise RunDamaged(f"run {self.run_id}: run.json is damaged (engine.{where}: {msg})",
                             reason=f"engine.{where}: {msg}") from None

    @classmethod
    def of(cls, info: Mapping[str, Any]) -> RunRecord:
        return cls.model_validate(dict(info), context=RECORDED)

    def code_ran_by(self, started_at: float | None) -> CodeChange | None:
        """The changed code a task that started at `started_at` ran (the latest resume's before it), or None
        when it ran the code the run started with."""
        if started_at is None:
            return None
        return next((c for c in reversed(self.code_changes) if c.at <= started_at), None)

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
            where, msg = _first_error(e)
            raise RunDamaged(
                f"run {run_id}: run.json is damaged ({where}: {msg})", reason=f"{where}: {msg}"
            ) from None

    def to_json(self) -> dict[str, Any]:
        """run.json's content: the fields that were given (no defaults written out), extras included."""
        return self.model_dump(mode="json", exclude_unset=True)


class EngineRecord(BaseModel):
    """engine.json: what an engine keeps so that `status`, `wait` and `cancel` in another process (or on
    another host) find its work (a pid, a scheduler and its keys, submitted array jobs). Each engine declares
    its own subclass (`Engine.record_model`) and reads and writes the file through it (`read_engine_record`,
    `write_engine_record`); fields another version wrote are kept."""

    model_config = ConfigDict(extra="allow")

    engine: str = ""  # the engine's name


RecordModel = TypeVar("RecordModel", bound=EngineRecord)


class RunInStore(Protocol):
    """What names a run's files: its id and its store (a `RunHandle`, a `Run`)."""

    @property
    def id(self) -> str: ...

    @property
    def store(self) -> Store: ...


def read_engine_record(run: RunInStore, model: type[RecordModel]) -> RecordModel | None:
    """The run's engine.json through the engine's record model; None when there is none. A damaged one (not
    JSON, or without a field the engine needs) is one warning line naming the field, and the command goes on
    without it (as without a record: the run lock still tells a live local runner)."""
    store = run.store
    key = store.engine_record_key(run.id)
    raw = store.read_record(key)
    if raw is None:
        return None
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        where, msg = _first_error(e)
        store.warn(f"{key} in {store.url} is damaged ({where or 'the record'}: {msg}); going on without it")
        return None


def write_engine_record(run: RunInStore, record: EngineRecord) -> None:
    """Write the run's engine.json (whole: every field of the engine's record model)."""
    run.store.write_json(run.store.engine_record_key(run.id), record.model_dump(mode="json"))
