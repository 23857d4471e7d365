"""The blocks of a sweep spec (docs/design.md §1): params, resources, code, metrics, search, stop, ... and the
value types they share (durations, paths confined to a task's directory, param names).

`batchsweep.spec.schema.Spec` puts them together; every model refuses unknown keys.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_serializer,
    model_validator,
)

from batchsweep.errors import SpecError
from batchsweep.registry import BUILT_IN

BACKENDS = BUILT_IN  # others come through the `batchsweep.engines` entry points
_DURATION = re.compile(
    r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s?)?\s*$"
)


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


def confined(path: str, *, what: str) -> None:
    """A path the worker opens inside the task's working directory: never absolute, never through `..`."""
    parts = path.replace("\\", "/").split("/")
    if (
        not path
        or path.startswith(("/", "~"))
        or re.match(r"^[A-Za-z]:", path)
        or ".." in parts
        or "\0" in path
    ):
        raise ValueError(f"{path!r}: {what} must be a relative path inside the task's working directory "
                         "(no leading /, ~ or ..)")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_space(space: dict[str, Any]) -> dict[str, Any]:
    from batchsweep.spec import distributions

    if not space:
        raise ValueError("space is empty; add e.g. `lr: loguniform(1e-4, 1e-1)`")
    for name, text in space.items():
        _check_param_name(name, "space")
        distributions.parse(text, where=name)
    return space


class _SpaceBlock(StrictModel):
    """A block with a `space` of distributions: `params.random` and `search`."""

    seed: int = 0
    space: dict[str, str | list[Any]]

    @field_validator("space")
    @classmethod
    def _valid_space(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _check_space(v)


class RandomBlock(_SpaceBlock):
    samples: int = Field(gt=0)


class Params(StrictModel):
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
                    raise ValueError(
                        f"{name}: expected a list of values, got {values!r}; write {name}: [{values}]"
                    )
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
                    raise ValueError(
                        f"param {name!r} is set in both `{seen[name]}` and `{block}`; keep it in one block"
                    )
                seen[name] = block
        for block, value in (
            ("grid", self.grid),
            ("list", self.list_),
            ("zip", self.zip),
            ("fixed", self.fixed),
        ):
            where = _find_nul(value)
            if where is not None:
                raise ValueError(
                    f"{block}{where}: a value holds a NUL byte, which no argument or file name can carry"
                )
        return self


# A flag name; dotted names and a leading +, ++ or ~ are Hydra overrides (`train.lr`, `+note`).
PARAM_NAME = re.compile(r"(?:\+\+|\+|~)?[A-Za-z_][A-Za-z0-9_.-]{0,127}")


def _check_param_name(name: Any, block: str) -> None:
    if not isinstance(name, str) or not PARAM_NAME.fullmatch(name):
        raise ValueError(
            f"{block}: param name {name!r} cannot be a command-line flag; use letters, digits, '_', "
            "'-' and '.', starting with a letter or '_' (or +/~ for a Hydra override)"
        )


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


class MetricsFromOutput(StrictModel):
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


class MetricsFromMlflow(StrictModel):
    """Metrics the script logs to MLflow (`mlflow.log_metric`) in its working directory, read with MLflow's
    own client (batchsweep.task.mlflowmetrics): `{mlflow: true}`."""

    mlflow: Literal[True]


class Args(StrictModel):
    """How params become the command line, for what detection gets wrong."""

    style: (
        Literal["argparse", "optparse", "click", "fire", "hydra", "plain", "argv", "env", "globals", "config"]
        | None
    ) = None
    dashes: bool = False
    upper: bool = False  # env: a param `lr` becomes the variable LR
    file: str | None = None  # config: the params file the script reads, written in each task's directory
    # config: a file (relative to the spec) whose values the params are merged over
    template: str | None = None
    bool: Literal["flag", "value"] = "flag"


class StagedInput(StrictModel):
    """An input staged at a path of its own in the task's directory (`{src: data/yhoo.txt, dst:
    datas/yhoo.txt}`)."""

    src: str
    dst: str


_GPUS_PLACEHOLDER = re.compile(r"\s*\{([A-Za-z_]\w*)\}\s*")


class Resources(StrictModel):
    vcpus: float = Field(default=1, gt=0, le=1024)
    # locally a reservation and a hard limit, only when set
    memory_mib: int = Field(default=2048, gt=0, le=64 << 20)
    # locally a fraction below 1 shares a GPU; AWS Batch takes whole GPUs
    gpus: float = Field(default=0, ge=0, le=64)
    # Written `gpus: "{name}"`: each task takes the GPUs its param `name` says (engines with `per_task_gpus`).
    # `gpus` is then 1, so what reads it as one number still sees GPU tasks (warm start, GPU memory sampling).
    gpus_param: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _gpus_of_a_param(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("gpus"), str):
            found = _GPUS_PLACEHOLDER.fullmatch(data["gpus"])
            if found is None:
                raise ValueError(
                    f"gpus: {data['gpus']!r} is neither a number nor a {{param}} placeholder; write "
                    'e.g. `gpus: 1`, or `gpus: "{n_gpus}"` for as many as each task\'s param n_gpus says'
                )
            data = {**data, "gpus": 1, "gpus_param": found.group(1)}
        return data

    @model_serializer(mode="wrap")
    def _without_unset_param(self, handler: Any) -> Any:
        # run.json keeps the shape earlier versions wrote unless a param gives the GPUs
        dumped = handler(self)
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
            raise SpecError(
                f'resources.gpus: "{{{self.gpus_param}}}" — a task\'s {self.gpus_param}={value!r} '
                "is not a GPU count; give that param numbers: 0, a fraction below 1 (a share of one "
                "GPU) or a whole number of GPUs"
            )
        return float(value)


class Code(StrictModel):
    exclude: list[str] = []  # .gitignore lines, as if in one more .gitignore at the code directory's root
    # the same, for files packed although they look like credentials (by name or content)
    include: list[str] = []
    max_mib: float = Field(default=50, gt=0)
    # What counts as the tasks' code besides the script and what it imports
    # (`batchsweep.planning.keys.CodeIdentity`): .gitignore-style lines naming files of the code package, or
    # `all` for every one of them.
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
            raise ValueError(
                f"{e}; write .gitignore-style lines such as `config.yaml`, `conf/*.yaml` or `lib/`, "
                "or `all` for every file of the folder"
            ) from None
        return patterns

    @field_validator("exclude", "include")
    @classmethod
    def _gitignore_lines(cls, patterns: list[str]) -> list[str]:
        from batchsweep.files import exclude_spec

        try:
            exclude_spec(patterns)
        except ValueError as e:
            raise ValueError(
                f"{e}; write .gitignore lines such as `data/`, `*.csv`, `/notes.md` or `!keep.csv`"
            ) from None
        return patterns


class Aws(StrictModel):
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


class Stop(StrictModel):
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
                raise ValueError(
                    f"direction: the name {self.metric!r} does not say whether lower or higher is "
                    "better; add direction: minimize (or maximize)"
                )
            self.direction = "maximize" if up else "minimize"
        if self.rule == "threshold" and self.lower is None and self.upper is None:
            raise ValueError("rule threshold needs lower: X or upper: Y (stop below X / above Y)")
        if self.rule == "hyperband" and self.max_steps is None:
            raise ValueError(
                "rule hyperband needs max_steps: the step a full run reaches (e.g. the last epoch)"
            )
        if self.rule in ("halving", "hyperband") and self.min_steps < 1:
            self.min_steps = 1
        return self


