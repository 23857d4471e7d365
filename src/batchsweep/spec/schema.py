"""Load and validate a sweep spec (docs/design.md §1). Validation happens once, here, at the edge.

Every problem becomes one `SpecError` line naming the file, the field and the fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from batchsweep.errors import SpecError
from batchsweep.metrics import METRICS_FILE
from batchsweep.model import REPEAT_PARAM, RESULT_COLUMNS
from batchsweep.registry import BUILT_IN, DEFAULT_BACKEND, SPEC_FIELD_BLOCKS
from batchsweep.text import did_you_mean

BACKENDS = BUILT_IN  # others come through the `batchsweep.engines` entry points
_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s?)?\s*$")


MAX_DURATION_S = 365 * 24 * 3600.0


def parse_duration(value: Any) -> float | None:
    """`90`, `90s`, `10m`, `1h30m` → seconds."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r}; write e.g. 30s, 10m or 1h30m")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m or not any(m.groups()):
            raise ValueError(f"bad duration {value!r}; write e.g. 30s, 10m or 1h30m")
        h, mi, s = (float(g) if g else 0.0 for g in m.groups())
        seconds = h * 3600 + mi * 60 + s
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {value!r}")
    if not seconds <= MAX_DURATION_S:  # (NaN too) a timer that long overflows the waits that take it
        raise ValueError(f"duration {value!r} is longer than a year; write at most 8760h")
    return seconds


Duration = Annotated[float | None, BeforeValidator(parse_duration)]


def _confined(path: str, *, what: str) -> None:
    """A path the worker opens inside the task's working directory: never absolute, never through `..`."""
    parts = path.replace("\\", "/").split("/")
    if not path or path.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", path) or ".." in parts or "\0" in path:
        raise ValueError(f"{path!r}: {what} must be a relative path inside the task's working directory "
                         "(no leading /, ~ or ..)")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_space(space: dict[str, Any]) -> dict[str, Any]:
    from batchsweep.spec import distributions

    if not space:
        raise ValueError("space is empty; add e.g. `lr: loguniform(1e-4, 1e-1)`")
    for name, text in space.items():
        _check_param_name(name, "space")
        distributions.parse(text, where=name)
    return space


class _SpaceBlock(_Strict):
    """A block with a `space` of distributions: `params.random` and `search`."""

    seed: int = 0
    space: dict[str, str | list[Any]]

    @field_validator("space")
    @classmethod
    def _valid_space(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _check_space(v)


class RandomBlock(_SpaceBlock):
    samples: int = Field(gt=0)


class Params(_Strict):
    grid: dict[str, list[Any]] = {}
    list_: list[dict[str, Any]] = Field(default=[], alias="list")
    zip: dict[str, list[Any]] = {}
    random: RandomBlock | None = None
    fixed: dict[str, Any] = {}
    repeat: int = Field(default=1, ge=1)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("grid", "zip", mode="before")
    @classmethod
    def _values_are_lists(cls, v: Any) -> Any:
        if isinstance(v, dict):
            for name, values in v.items():
                if not isinstance(values, list):
                    raise ValueError(f"{name}: expected a list of values, got {values!r}; write {name}: [{values}]")
                if not values:
                    raise ValueError(f"{name}: the list of values is empty; give at least one value")
        return v

    @field_validator("zip")
    @classmethod
    def _zip_same_length(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        lengths = {name: len(values) for name, values in v.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"zip lists must have the same length, got {lengths}")
        return v

    def names_by_block(self) -> dict[str, list[str]]:
        # The order tasks are expanded in (space.py), so results columns follow it.
        blocks: dict[str, list[str]] = {
            "list": list(dict.fromkeys(k for row in self.list_ for k in row)),
            "zip": list(self.zip),
            "grid": list(self.grid),
            "random": list(self.random.space) if self.random else [],
            "fixed": list(self.fixed),
        }
        return blocks

    @model_validator(mode="after")
    def _one_block_per_param(self) -> Params:
        seen: dict[str, str] = {}
        for block, names in self.names_by_block().items():
            for name in names:
                _check_param_name(name, block)
                if name in seen:
                    raise ValueError(f"param {name!r} is set in both `{seen[name]}` and `{block}`; keep it in one block")
                seen[name] = block
        for block, value in (("grid", self.grid), ("list", self.list_), ("zip", self.zip), ("fixed", self.fixed)):
            where = _find_nul(value)
            if where is not None:
                raise ValueError(f"{block}{where}: a value holds a NUL byte, which no argument or file name can carry")
        return self


# A flag name; dotted names and a leading +, ++ or ~ are Hydra overrides (`train.lr`, `+note`).
PARAM_NAME = re.compile(r"(?:\+\+|\+|~)?[A-Za-z_][A-Za-z0-9_.-]{0,127}")


def _check_param_name(name: Any, block: str) -> None:
    if not isinstance(name, str) or not PARAM_NAME.fullmatch(name):
        raise ValueError(f"{block}: param name {name!r} cannot be a command-line flag; use letters, digits, '_', "
                         "'-' and '.', starting with a letter or '_' (or +/~ for a Hydra override)")


def _find_nul(value: Any, where: str = "") -> str | None:
    """Where (`.name[2]`) a NUL byte hides in a param value, if anywhere."""
    if isinstance(value, str):
        return where if "\0" in value else None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = ((f"[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for key, item in items:
        label = key if str(key).startswith("[") else f".{key}"
        if isinstance(key, str) and "\0" in key:
            return where + label
        found = _find_nul(item, where + label)
        if found is not None:
            return found
    return None


class MetricsFromOutput(_Strict):
    """Metrics read from what the script prints: one stream (`stdout`, `stderr`, or `output` for both), each
    `last` or a regex with named groups; `match` picks the first or the last match."""

    stdout: str | None = None
    stderr: str | None = None
    output: str | None = None
    match: Literal["first", "last"] = "last"

    @model_validator(mode="after")
    def _one_stream(self) -> MetricsFromOutput:
        given = [s for s in ("stdout", "stderr", "output") if getattr(self, s) is not None]
        if len(given) != 1:
            raise ValueError("give one of stdout:, stderr: or output: (both streams), e.g. {stderr: last} or "
                             "{stdout: 'loss=(?P<loss>[0-9.]+)', match: last}")
        v = getattr(self, given[0])
        if v != "last":
            try:
                pattern = re.compile(v)
            except re.error as e:
                raise ValueError(f"bad regex {v!r}: {e}") from None
            if not pattern.groupindex:
                raise ValueError(f"regex {v!r} has no named groups; write e.g. 'loss=(?P<loss>[0-9.]+)'")
        return self


class MetricsFromMlflow(_Strict):
    """Metrics the script logs to MLflow (`mlflow.log_metric`) in its working directory, read with MLflow's own
    client (batchsweep.task.mlflowmetrics): `{mlflow: true}`."""

    mlflow: Literal[True]


class Args(_Strict):
    """How params become the command line, for what detection gets wrong."""

    style: Literal["argparse", "optparse", "click", "fire", "hydra", "plain", "env", "globals", "config"] | None = None
    dashes: bool = False
    upper: bool = False  # env: a param `lr` becomes the variable LR
    file: str | None = None  # config: the params file the script reads, written in each task's directory
    template: str | None = None  # config: a file (relative to the spec) whose values the params are merged over
    bool: Literal["flag", "value"] = "flag"


class StagedInput(_Strict):
    """An input staged at a path of its own in the task's directory (`{src: data/yhoo.txt, dst: datas/yhoo.txt}`)."""

    src: str
    dst: str


_GPUS_PLACEHOLDER = re.compile(r"\s*\{([A-Za-z_]\w*)\}\s*")


class Resources(_Strict):
    vcpus: float = Field(default=1, gt=0, le=1024)
    memory_mib: int = Field(default=2048, gt=0, le=64 << 20)  # locally a reservation and a hard limit, only when set
    gpus: float = Field(default=0, ge=0, le=64)  # locally a fraction below 1 shares a GPU; AWS Batch takes whole GPUs
    # Written `gpus: "{name}"`: each task takes the GPUs its param `name` says (engines with `per_task_gpus`).
    # `gpus` is then 1, so what reads it as one number still sees GPU tasks (warm start, GPU memory sampling).
    gpus_param: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _gpus_of_a_param(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("gpus"), str):
            found = _GPUS_PLACEHOLDER.fullmatch(data["gpus"])
            if found is None:
                raise ValueError(f"gpus: {data['gpus']!r} is neither a number nor a {{param}} placeholder; write "
                                 "e.g. `gpus: 1`, or `gpus: \"{n_gpus}\"` for as many as each task's param n_gpus says")
            data = {**data, "gpus": 1, "gpus_param": found.group(1)}
        return data

    @model_serializer(mode="wrap")
    def _without_unset_param(self, handler: Any) -> Any:
        dumped = handler(self)  # run.json keeps the shape earlier versions wrote unless a param gives the GPUs
        if isinstance(dumped, dict) and dumped.get("gpus_param") is None:
            dumped.pop("gpus_param", None)
        return dumped

    def of_task(self, params: dict[str, Any]) -> float:
        """The GPUs a task of these params takes: `gpus`, or its `gpus_param` value (SpecError when that is no
        GPU count)."""
        if self.gpus_param is None:
            return self.gpus
        value = params.get(self.gpus_param)
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < float("inf")
                and (value <= 1 or value == int(value))):
            raise SpecError(f"resources.gpus: \"{{{self.gpus_param}}}\" — a task's {self.gpus_param}={value!r} "
                            "is not a GPU count; give that param numbers: 0, a fraction below 1 (a share of one "
                            "GPU) or a whole number of GPUs")
        return float(value)


class Code(_Strict):
    exclude: list[str] = []  # .gitignore lines, as if in one more .gitignore at the code directory's root
    include: list[str] = []  # the same, for files packed although they look like credentials (by name or content)
    max_mib: float = Field(default=50, gt=0)
    # What counts as the tasks' code besides the script and what it imports (`batchsweep.planning.keys.CodeIdentity`):
    # .gitignore-style lines naming files of the code package, or `all` for every one of them.
    files: list[str] | Literal["all"] = []

    @field_validator("files")
    @classmethod
    def _files_lines(cls, patterns: list[str] | str) -> list[str] | str:
        if isinstance(patterns, str):
            return patterns
        from batchsweep.files import exclude_spec

        try:
            exclude_spec(patterns)
        except ValueError as e:
            raise ValueError(f"{e}; write .gitignore-style lines such as `config.yaml`, `conf/*.yaml` or `lib/`, "
                             "or `all` for every file of the folder") from None
        return patterns

    @field_validator("exclude", "include")
    @classmethod
    def _gitignore_lines(cls, patterns: list[str]) -> list[str]:
        from batchsweep.files import exclude_spec

        try:
            exclude_spec(patterns)
        except ValueError as e:
            raise ValueError(f"{e}; write .gitignore lines such as `data/`, `*.csv`, `/notes.md` or `!keep.csv`") from None
        return patterns


class Aws(_Strict):
    profile: str | None = None
    region: str | None = None
    stack: str | None = "batchsweep"
    bucket: str | None = None
    job_queue: str | None = None
    job_definition: str | None = None
    log_group: str | None = None
    spot: bool = True
    tasks_per_job: int | None = Field(default=None, ge=1, le=100_000)


class Search(_SpaceBlock):
    sampler: Literal["tpe", "cmaes", "random", "gp"] = "tpe"
    trials: int = Field(gt=0, le=1_000_000)
    batch: int | None = Field(default=None, gt=0, le=1_000_000)
    metric: str
    direction: Literal["minimize", "maximize"] = "minimize"


STOP_RULES = ("median", "percentile", "halving", "hyperband", "threshold")


class Stop(_Strict):
    """Early stopping (docs/design.md, "Series and early stopping"): a task whose series of `metric` the rule
    finds hopeless is stopped and ends `pruned`. The decision is an Optuna pruner's."""

    metric: str
    direction: Literal["minimize", "maximize"] | None = None  # None: from the metric's name (loss, acc...)
    rule: Literal["median", "percentile", "halving", "hyperband", "threshold"] = "median"
    min_steps: int = Field(default=0, ge=0)  # median/percentile/threshold: no decision before this step;
    #                                          halving/hyperband: the first rung (Optuna's min_resource, >= 1)
    min_trials: int = Field(default=5, ge=0)  # median/percentile: tasks that must have finished first
    interval: int = Field(default=1, ge=1)  # median/percentile/threshold: decide every N steps
    percentile: float = Field(default=25.0, gt=0, lt=100)  # percentile: keep the best N percent
    lower: float | None = None  # threshold: stop when the value goes below
    upper: float | None = None  # threshold: stop when the value goes above
    reduction_factor: int = Field(default=3, ge=2)  # halving/hyperband
    max_steps: int | None = Field(default=None, ge=1)  # hyperband: the last step of a full run (max_resource)

    @model_validator(mode="after")
    def _complete(self) -> Stop:
        from batchsweep.metrics import direction_from_name

        if self.direction is None and self.rule != "threshold":
            up = direction_from_name(self.metric)
            if up is None:
                raise ValueError(f"direction: the name {self.metric!r} does not say whether lower or higher is "
                                 "better; add direction: minimize (or maximize)")
            self.direction = "maximize" if up else "minimize"
        if self.rule == "threshold" and self.lower is None and self.upper is None:
            raise ValueError("rule threshold needs lower: X or upper: Y (stop below X / above Y)")
        if self.rule == "hyperband" and self.max_steps is None:
            raise ValueError("rule hyperband needs max_steps: the step a full run reaches (e.g. the last epoch)")
        if self.rule in ("halving", "hyperband") and self.min_steps < 1:
            self.min_steps = 1
        return self


class Spec(_Strict):
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
    requirements: str | list[str] | None = None  # aws-batch: a requirements file (relative to the spec) or pip specifiers
    code: Code = Code()
    search: Search | None = None
    stop: Stop | None = None
    backend: str = DEFAULT_BACKEND
    aws: Aws = Aws()
    dask: dict[str, Any] = {}  # the dask engine's block, validated by its settings model
    slurm: dict[str, Any] = {}  # the slurm engine's block (sbatch options), validated by its settings model
    # The blocks of engines registered from outside the package, by engine name (`k8s: {...}`), each validated by
    # its engine's settings model.
    engines: dict[str, dict[str, Any]] = {}
    base_dir: Path = Field(default=Path("."), exclude=True)
    spec_file: Path | None = Field(default=None, exclude=True)  # the file it was loaded from, for fixes in messages

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
                    raise ValueError(f"{where}: a param named {name!r} would overwrite the results column of that name "
                                     f"(batchsweep's columns: {', '.join(RESULT_COLUMNS)}); rename the param")
                if name == REPEAT_PARAM and self.params is not None and self.params.repeat > 1:
                    raise ValueError(f"{where}: a param named 'repeat' beside `params.repeat: {self.params.repeat}`, "
                                     "which numbers each point's runs in a param of that name; rename yours")
        return self

    @model_validator(mode="after")
    def _engine_settings(self, info: ValidationInfo) -> Spec:
        """Each engine's block, validated by that engine's own settings model (unknown keys refused with a hint)."""
        blocks = {**{name: getattr(self, name) for name in SPEC_FIELD_BLOCKS if getattr(self, name)}, **self.engines}
        if blocks and not _recorded(info):
            from batchsweep.registry import get_engine

            for name, raw in blocks.items():
                if raw is not None and not isinstance(raw, dict):
                    raise ValueError(f"{name}: must be a mapping of the {name} engine's settings, got {raw!r}")
                get_engine(name).settings_of(raw)
        return self

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", v):
            raise ValueError(f"bad sweep name {v!r}; use lower-case letters, digits, '-' and '_' (e.g. 'ma-crossover')")
        return v

    @field_validator("metrics")
    @classmethod
    def _metrics_file_inside(cls, v: Any) -> Any:
        if isinstance(v, str):
            _confined(v, what="the metrics file")
        return v

    @field_validator("outputs")
    @classmethod
    def _outputs_inside(cls, v: list[str]) -> list[str]:
        for pattern in v:
            _confined(pattern, what="an outputs glob")
        return v

    @field_validator("inputs")
    @classmethod
    def _inputs_named(cls, v: list[str | StagedInput]) -> list[str | StagedInput]:
        for item in v:
            ref = item.src if isinstance(item, StagedInput) else item
            if "\0" in ref or Path(ref.rstrip("/")).name in ("", ".", ".."):
                raise ValueError(f"{ref!r} names no file or directory to stage; give a path ending in its name")
            if isinstance(item, StagedInput):
                _confined(item.dst, what="an input's dst")
                if Path(item.dst.rstrip("/")).name in ("", "."):
                    raise ValueError(f"dst {item.dst!r} names no file or directory; give e.g. datas/yhoo.txt")
        return v

    @field_validator("metrics", mode="before")
    @classmethod
    def _metrics_rule(cls, v: Any) -> Any:
        if isinstance(v, dict):  # validate here so the error names the rule, not the union's `str` member
            model: type[_Strict] = MetricsFromMlflow if "mlflow" in v else MetricsFromOutput
            if "mlflow" in v and v.get("mlflow") is not True:
                raise ValueError(f"mlflow: {v.get('mlflow')!r}; write {{mlflow: true}} to read the metrics the "
                                 "script logs to MLflow, or leave the rule out")
            try:
                return model.model_validate(v)
            except ValidationError as e:
                err = _first_error(e)
                if err["type"] == "extra_forbidden":
                    key = str(err["loc"][-1])
                    if model is MetricsFromMlflow:
                        raise ValueError(f"unknown key {key!r}: an MLflow rule is just {{mlflow: true}}") from None
                    raise ValueError(f"unknown key {key!r}; {_suggest(key, [*MetricsFromOutput.model_fields, 'mlflow'])}") from None
                where = ".".join(str(p) for p in err["loc"])
                msg = err["msg"].removeprefix("Value error, ")
                raise ValueError(f"{where}: {msg} (got {err['input']!r})" if where else msg) from None
        return v

    @field_validator("backend", mode="before")
    @classmethod
    def _known_backend(cls, v: Any, info: ValidationInfo) -> Any:
        if isinstance(v, str) and v not in BACKENDS and not _recorded(info):
            from batchsweep.registry import available

            known = list(available())  # the built-ins and engines registered through the entry point group
            if v in known:
                return v
            raise ValueError(f"unknown backend {v!r}; {did_you_mean(v, known)}choose one of: {', '.join(known)}")
        return v

    @field_validator("requirements")
    @classmethod
    def _requirements_given(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, str) and not v.strip():
            raise ValueError("empty path; name a requirements file (e.g. requirements.txt) or list pip specifiers")
        if isinstance(v, list) and not all(item.strip() for item in v):
            raise ValueError("an empty specifier in the list; write e.g. [numpy>=2, scikit-learn]")
        return v

    @field_validator("env")
    @classmethod
    def _env_not_reserved(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not key or "=" in key or "\0" in key:
                raise ValueError(f"{key!r} cannot be an environment variable's name (empty, or with '=' or a NUL "
                                 "byte); name it with letters, digits and _")
            if "\0" in value:
                raise ValueError(f"env.{key}: the value holds a NUL byte, which no environment variable can")
            if key.startswith(("BATCHSWEEP_", "AWS_BATCH")):
                raise ValueError(f"env variable {key!r} is reserved; choose another name")
        return v

    @model_validator(mode="after")
    def _mlflow_store_is_the_tasks(self) -> Spec:
        if isinstance(self.metrics, MetricsFromMlflow) and "MLFLOW_TRACKING_URI" in self.env:
            raise ValueError("env.MLFLOW_TRACKING_URI: with metrics: {mlflow: true} each task logs to a store in its "
                             "own working directory (batchsweep sets MLFLOW_TRACKING_URI); drop it from env")
        return self

    @model_validator(mode="after")
    def _one_entry_point(self) -> Spec:
        if bool(self.script) == bool(self.function):
            raise ValueError("give exactly one of `script: path/to/script.py` or `function: module:callable`")
        if not self.search and (self.params is None or not any(self.params.names_by_block().values())):
            raise ValueError("params: the parameter space is empty; add e.g. `params: {grid: {x: [1, 2, 3]}}`")
        printed = (next(getattr(self.metrics, s) for s in ("stdout", "stderr", "output")
                        if getattr(self.metrics, s) is not None) if isinstance(self.metrics, MetricsFromOutput) else None)
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
            raise ValueError(f"function {self.function!r} must look like `module:callable` (e.g. mypkg.train:main)")
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


RECORDED = {"recorded": True}  # the validation context of a spec read back from run.json (`batchsweep.store.record`)


def _recorded(info: ValidationInfo) -> bool:
    """A spec read back from a run's record was judged when the run was planned: the engines installed today
    (an entry-point engine since removed, an engine's settings model grown stricter) do not judge it again."""
    return bool(info.context and info.context.get("recorded"))


def _first_error(e: ValidationError) -> dict[str, Any]:
    """The error to show: a misspelt key first (`sapce:` also makes `space` missing; the typo is the news)."""
    errors = [dict(err) for err in e.errors()]
    return next((err for err in errors if err["type"] == "extra_forbidden"), errors[0])


def _suggest(word: str, options: list[str]) -> str:
    return f"{did_you_mean(word, options)}valid keys: {', '.join(options)}"


def _model_for(loc: tuple[Any, ...], root: type[BaseModel]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = root
    for part in loc:
        if model is None or not isinstance(part, str):
            return model
        field = model.model_fields.get(part) or next(
            (f for f in model.model_fields.values() if f.alias == part), None
        )
        if field is None:
            return None
        ann = field.annotation
        candidates = [a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        model = candidates[0] if candidates else None
    return model


def describe_error(e: ValidationError, *, root: type[BaseModel], prefix: str = "") -> str:
    """One line for a validation error of `root` (the spec, or an engine's settings model whose block is
    `prefix`): the field's dotted path, a misspelt key with "did you mean" and the valid keys."""
    return _format_error(_first_error(e), root=root, prefix=prefix)


def _format_error(err: dict[str, Any], *, root: type[BaseModel], prefix: str) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
    path = ".".join(str(p) for p in loc if p not in ("list_",))
    where = ".".join(part for part in (prefix, path) if part)
    if err["type"] == "extra_forbidden":
        parent = _model_for(loc[:-1], root)
        options = [f.alias or n for n, f in parent.model_fields.items() if n not in ("base_dir", "spec_file")] if parent else []
        return f"{where}: unknown key; {_suggest(str(loc[-1]), options)}"
    if err["type"] == "missing":
        return f"{where or 'spec'}: required field is missing"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if not path:
        return f"{prefix}: {msg}" if prefix else msg
    value = err.get("input")
    if err["type"].endswith("_type") or err["type"].startswith(("int_", "float_", "bool_", "literal_")):
        return f"{where}: {msg} (got {value!r})"
    return f"{where}: {msg}"


def top_level_keys() -> set[str]:
    """The keys a spec may have at its top: its fields, and the blocks of engines registered from outside."""
    from batchsweep.registry import available

    fields = {f.alias or n for n, f in Spec.model_fields.items() if n not in ("base_dir", "spec_file", "engines")}
    return fields | {name for name in available() if name not in BACKENDS}


def validate(raw: Any, *, source: str, base_dir: Path, spec_file: Path | None = None) -> Spec:
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: the spec must be a mapping of keys (name:, script:, params: ...), got {type(raw).__name__}")
    try:
        spec = Spec.model_validate({**raw, "base_dir": base_dir, "spec_file": spec_file})
    except ValidationError as e:
        raise SpecError(f"{source}: {describe_error(e, root=Spec)}") from None
    return spec


MAX_SPEC_BYTES = 8 << 20


def load(path: str | os.PathLike[str], *, overrides: Sequence[str] = ()) -> Spec:
    """Read a spec file, apply `--set key=value` overrides, validate."""
    import yaml

    from batchsweep.spec.overrides import apply_overrides
    from batchsweep.spec.yamlread import DuplicateKey, TooComplex, bounded_yaml

    p = Path(path)
    if not p.is_file():
        raise SpecError(f"{p}: spec file not found; pass the path to a sweep.yaml (see `batchsweep init SCRIPT`)")
    if p.stat().st_size > MAX_SPEC_BYTES:
        raise SpecError(f"{p}: {p.stat().st_size >> 20} MiB is too large for a spec (limit {MAX_SPEC_BYTES >> 20} MiB); "
                        "put long value lists in a file the script reads")
    data = p.read_bytes()
    if b"\0" in data:
        raise SpecError(f"{p}: a binary file (it holds NUL bytes), not a YAML spec; pass the sweep.yaml")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"{p}: not UTF-8 text (byte {e.start}); save the spec as UTF-8") from None
    try:
        raw = bounded_yaml(text)
    except (TooComplex, DuplicateKey) as e:
        raise SpecError(f"{p}: {e}") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        line = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SpecError(f"{p}: YAML syntax error at {line}{e.problem}; fix the indentation or quoting there") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{p}: YAML error: {' '.join(str(e).split())}") from None
    if isinstance(raw, dict):
        raw = apply_overrides(raw, overrides, source=str(p), top_level=top_level_keys())
    return validate(raw, source=str(p), base_dir=p.resolve().parent, spec_file=p)
