"""The sweep spec (docs/design.md §1): `Spec`, the top-level model, and the checks that span its blocks.

Validation happens once, at the edge (`batchsweep.spec.reader.load`); every problem becomes one `SpecError`
line naming the file, the field and the fix.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from batchsweep.metrics import METRICS_FILE
from batchsweep.model import REPEAT_PARAM, RESULT_COLUMNS
from batchsweep.registry import DEFAULT_BACKEND, SPEC_FIELD_BLOCKS
from batchsweep.spec.blocks import (
    BACKENDS,
    Args,
    Aws,
    Code,
    Duration,
    MetricsFromMlflow,
    MetricsFromOutput,
    Params,
    RandomBlock,
    Resources,
    Search,
    StagedInput,
    Stop,
    StrictModel,
    confined,
    parse_duration,
)
from batchsweep.spec.messages import describe_error, first_error, suggest_keys
from batchsweep.text import did_you_mean

__all__ = [
    "BACKENDS", "RECORDED", "Args", "Aws", "Code", "MetricsFromMlflow", "MetricsFromOutput", "Params",
    "RandomBlock", "Resources", "Search", "Spec", "StagedInput", "Stop", "describe_error",
    "parse_duration",
]

# files a `metrics:` file rule cannot read: it reads one JSON object
NOT_JSON_SUFFIXES = frozenset({".csv", ".tsv", ".parquet", ".pkl", ".pickle", ".npy", ".npz", ".h5", ".hdf5",
                               ".feather", ".xlsx", ".xls", ".yaml", ".yml", ".toml"})


class Spec(StrictModel):
    name: str
    script: str | None = None
    function: str | None = None
    params: Params | None = None
    inputs: list[str | StagedInput] = []
    outputs: list[str] = []
    metrics: str | MetricsFromOutput | MetricsFromMlflow = METRICS_FILE
    args: Args | None = None
    python: str | None = None
    resources: Resources = Resources()
    timeout: Duration = None
    retries: int = Field(default=0, ge=0, le=9)
    max_parallel: int = Field(default=0, ge=0, le=100_000)
    warm: bool | Literal["auto"] = "auto"  # auto: warm start where the fork server finds it safe (warm.py)
    env: dict[str, str] = {}
    secrets: dict[str, str] = {}
    # aws-batch: a requirements file (relative to the spec) or pip specifiers
    requirements: str | list[str] | None = None
    code: Code = Code()
    search: Search | None = None
    stop: Stop | None = None
    backend: str = DEFAULT_BACKEND
    aws: Aws = Aws()
    dask: dict[str, Any] = {}  # the dask engine's block, validated by its settings model
    slurm: dict[str, Any] = {}  # the slurm engine's block (sbatch options), validated by its settings model
    # The blocks of engines registered from outside the package, by engine name (`k8s: {...}`), each validated
    # by its engine's settings model.
    engines: dict[str, dict[str, Any]] = {}
    base_dir: Path = Field(default=Path("."), exclude=True)
    # the file it was loaded from, for fixes in messages
    spec_file: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _engine_blocks(cls, data: Any) -> Any:
        """A top-level key naming an engine registered from outside (`k8s:`) is that engine's block."""
        if not isinstance(data, dict):
            return data
        fields = {f.alias or n for n, f in cls.model_fields.items()} | set(cls.model_fields)
        strange = [k for k in data if k not in fields]
        if not strange:
            return data
        from batchsweep.registry import available

        plugins = [k for k in strange if k in available() and k not in BACKENDS]
        if not plugins:
            return data
        blocks = {**(data.get("engines") or {}), **{k: data[k] for k in plugins}}
        return {**{k: v for k, v in data.items() if k not in plugins}, "engines": blocks}

    @model_validator(mode="after")
    def _params_are_not_columns(self, info: ValidationInfo) -> Spec:
        """A param never takes the name of a results column (it would overwrite it), nor `repeat` beside
        `params.repeat` (which numbers the repeats in a param of that name)."""
        if _recorded(info):
            return self
        blocks = dict((self.params or Params()).names_by_block())
        if self.search:
            blocks["search.space"] = list(self.search.space)
        for block, names in blocks.items():
            where = block if block.startswith("search") else f"params.{block}"
            for name in names:
                if name in RESULT_COLUMNS:
                    raise ValueError(
                        f"{where}: a param named {name!r} would overwrite the results column of that name "
                        f"(batchsweep's columns: {', '.join(RESULT_COLUMNS)}); rename the param"
                    )
                if name == REPEAT_PARAM and self.params is not None and self.params.repeat > 1:
                    raise ValueError(
                        f"{where}: a param named 'repeat' beside `params.repeat: {self.params.repeat}`, "
                        "which numbers each point's runs in a param of that name; rename yours"
                    )
        return self

    @model_validator(mode="after")
    def _engine_settings(self, info: ValidationInfo) -> Spec:
        """Each engine's block, validated by that engine's own settings model (unknown keys refused with a
        hint)."""
        blocks = {
            **{name: getattr(self, name) for name in SPEC_FIELD_BLOCKS if getattr(self, name)},
            **self.engines,
        }
        if blocks and not _recorded(info):
            from batchsweep.registry import get_engine

            for name, raw in blocks.items():
                if raw is not None and not isinstance(raw, dict):
                    raise ValueError(
                        f"{name}: must be a mapping of the {name} engine's settings, got {raw!r}"
                    )
                get_engine(name).settings_of(raw)
        return self

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", v):
            raise ValueError(
                f"bad sweep name {v!r}; use lower-case letters, digits, '-' and '_' (e.g. 'ma-crossover')"
            )
        return v

    @field_validator("metrics")
    @classmethod
    def _metrics_file_inside(cls, v: Any) -> Any:
        if isinstance(v, str):
            confined(v, what="the metrics file")
        return v

    @field_validator("outputs")
    @classmethod
    def _outputs_inside(cls, v: list[str]) -> list[str]:
        for pattern in v:
            confined(pattern, what="an outputs glob")
        return v

    @field_validator("inputs")
    @classmethod
    def _inputs_named(cls, v: list[str | StagedInput]) -> list[str | StagedInput]:
        for item in v:
            ref = item.src if isinstance(item, StagedInput) else item
            if "\0" in ref or Path(ref.rstrip("/")).name in ("", ".", ".."):
                raise ValueError(
                    f"{ref!r} names no file or directory to stage; give a path ending in its name"
                )
            if isinstance(item, StagedInput):
                confined(item.dst, what="an input's dst")
                if Path(item.dst.rstrip("/")).name in ("", "."):
                    raise ValueError(f"dst {item.dst!r} names no file or directory; give e.g. datas/yhoo.txt")
        return v

    @field_validator("metrics", mode="before")
    @classmethod
    def _metrics_rule(cls, v: Any) -> Any:
        if isinstance(v, dict):  # validate here so the error names the rule, not the union's `str` member
            model: type[StrictModel] = MetricsFromMlflow if "mlflow" in v else MetricsFromOutput
            if "mlflow" in v and v.get("mlflow") is not True:
                raise ValueError(
                    f"mlflow: {v.get('mlflow')!r}; write {{mlflow: true}} to read the metrics the "
                    "script logs to MLflow, or leave the rule out"
                )
            try:
                return model.model_validate(v)
            except ValidationError as e:
                err = first_error(e)
                if err["type"] == "extra_forbidden":
                    key = str(err["loc"][-1])
                    if model is MetricsFromMlflow:
                        raise ValueError(
                            f"unknown key {key!r}: an MLflow rule is just {{mlflow: true}}"
                        ) from None
                    raise ValueError(
                        f"unknown key {key!r}; "
                        f"{suggest_keys(key, [*MetricsFromOutput.model_fields, 'mlflow'])}"
                    ) from None
                where = ".".join(str(p) for p in err["loc"])
                msg = err["msg"].removeprefix("Value error, ")
                raise ValueError(f"{where}: {msg} (got {err['input']!r})" if where else msg) from None
        if isinstance(v, str) and Path(v).suffix.lower() in NOT_JSON_SUFFIXES:
            # refused before the run: else every task runs and then fails on a file it cannot read
            raise ValueError(
                f"{v!r} is read as one JSON object of metrics ({{\"name\": number, ...}}), and a "
                f"{Path(v).suffix.lower()} file is not JSON: have the script also write its final values to "
                "a .json file and name that, or print them and read them with {stdout: 'loss=(?P<loss>\\S+)'}"
            )
        return v

    @field_validator("backend", mode="before")
    @classmethod
    def _known_backend(cls, v: Any, info: ValidationInfo) -> Any:
        if isinstance(v, str) and v not in BACKENDS and not _recorded(info):
            from batchsweep.registry import available

            known = list(available())  # the built-ins and engines registered through the entry point group
            if v in known:
                return v
            raise ValueError(
                f"unknown backend {v!r}; {did_you_mean(v, known)}choose one of: {', '.join(known)}"
            )
        return v

    @field_validator("requirements")
    @classmethod
    def _requirements_given(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, str) and not v.strip():
            raise ValueError(
                "empty path; name a requirements file (e.g. requirements.txt) or list pip specifiers"
            )
        if isinstance(v, list) and not all(item.strip() for item in v):
            raise ValueError("an empty specifier in the list; write e.g. [numpy>=2, scikit-learn]")
        return v

    @field_validator("env")
    @classmethod
    def _env_not_reserved(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not key or "=" in key or "\0" in key:
                raise ValueError(
                    f"{key!r} cannot be an environment variable's name (empty, or with '=' or a NUL "
                    "byte); name it with letters, digits and _"
                )
            if "\0" in value:
                raise ValueError(f"env.{key}: the value holds a NUL byte, which no environment variable can")
            if key.startswith(("BATCHSWEEP_", "AWS_BATCH")):
                raise ValueError(f"env variable {key!r} is reserved; choose another name")
        return v

    @model_validator(mode="after")
    def _mlflow_store_is_the_tasks(self) -> Spec:
        if isinstance(self.metrics, MetricsFromMlflow) and "MLFLOW_TRACKING_URI" in self.env:
            raise ValueError(
                "env.MLFLOW_TRACKING_URI: with metrics: {mlflow: true} each task logs to a store in its "
                "own working directory (batchsweep sets MLFLOW_TRACKING_URI); drop it from env"
            )
        return self

    @model_validator(mode="after")
    def _one_entry_point(self) -> Spec:
        if bool(self.script) == bool(self.function):
            raise ValueError("give exactly one of `script: path/to/script.py` or `function: module:callable`")
        if not self.search and (self.params is None or not any(self.params.names_by_block().values())):
            raise ValueError(
                "params: the parameter space is empty; add e.g. `params: {grid: {x: [1, 2, 3]}}`"
            )
        printed = (
            next(
                getattr(self.metrics, s)
                for s in ("stdout", "stderr", "output")
                if getattr(self.metrics, s) is not None
            )
            if isinstance(self.metrics, MetricsFromOutput)
            else None
        )
        if self.stop is not None and printed is not None and printed != "last":
            groups = re.compile(printed).groupindex
            if "step" not in groups:
                raise ValueError("stop: needs a series; name the step in the metrics rule, e.g. "
                                 "'epoch (?P<step>\\d+) .*val_loss=(?P<val_loss>[\\d.]+)' (or call "
                                 "batchsweep.log_metrics(step=..., ...) from the script)")
            if self.stop.metric not in groups:
                raise ValueError(f"stop.metric: {self.stop.metric!r} is not a group of the metrics rule "
                                 f"(its groups: {', '.join(groups)})")
        if self.function and not re.fullmatch(r"[\w.]+:[\w.]+", self.function):
            raise ValueError(
                f"function {self.function!r} must look like `module:callable` (e.g. mypkg.train:main)"
            )
        return self

    @property
    def script_path(self) -> Path | None:
        return (self.base_dir / self.script).resolve() if self.script else None

    @property
    def param_names(self) -> list[str]:
        params = self.params or Params()
        names = [n for names in params.names_by_block().values() for n in names]
        if self.search:
            names += [n for n in self.search.space if n not in names]
        if params.repeat > 1:
            names.append(REPEAT_PARAM)
        return names


# the validation context of a spec read back from run.json (`batchsweep.store.record`)
RECORDED = {"recorded": True}


def _recorded(info: ValidationInfo) -> bool:
    """A spec read back from a run's record was judged when the run was planned: the engines installed today
    (an entry-point engine since removed, an engine's settings model grown stricter) do not judge it again."""
    return bool(info.context and info.context.get("recorded"))

