"""The sweep spec (docs/design.md §1): loading, defaults, durations and the one-line errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchsweep.errors import SpecError
from batchsweep.spec.reader import load, validate
from batchsweep.spec.schema import Spec, parse_duration

BASE = {"name": "demo", "script": "s.py", "params": {"grid": {"x": [1, 2]}}}


def spec_of(tmp_path: Path, **changes: object) -> Spec:
    raw = {**BASE, **changes}
    return validate({k: v for k, v in raw.items() if v is not None}, source="sweep.yaml", base_dir=tmp_path)


def error_of(tmp_path: Path, **changes: object) -> str:
    with pytest.raises(SpecError) as e:
        spec_of(tmp_path, **changes)
    return str(e.value)


# -- durations ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (90, 90.0),
        ("90", 90.0),
        ("90s", 90.0),
        ("10m", 600.0),
        ("1h30m", 5400.0),
        ("1h", 3600.0),
        ("1.5h", 5400.0),
        ("2h5s", 7205.0),
        (2.5, 2.5),
    ],
)
def test_duration_is_parsed_to_seconds(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "10x", "30ms", "h", "", "-5", "ten minutes", True])
def test_bad_duration_is_rejected_with_examples(text: object) -> None:
    with pytest.raises(ValueError, match="30s, 10m or 1h30m"):
        parse_duration(text)


@pytest.mark.parametrize("text", [0, "0", "0s", -3])
def test_zero_or_negative_duration_is_rejected(text: object) -> None:
    with pytest.raises(ValueError, match="positive"):
        parse_duration(text)


def test_timeout_in_spec_becomes_seconds(tmp_path: Path) -> None:
    assert spec_of(tmp_path, timeout="1h30m").timeout == 5400.0


def test_bad_timeout_names_the_field_and_value(tmp_path: Path) -> None:
    message = error_of(tmp_path, timeout="soon")
    assert message.startswith("sweep.yaml: timeout:")
    assert "'soon'" in message


# -- defaults -------------------------------------------------------------------------------------
def test_defaults_of_a_minimal_spec(tmp_path: Path) -> None:
    spec = spec_of(tmp_path)
    assert spec.backend == "local"
    assert spec.metrics == "metrics.json"
    assert spec.timeout is None
    assert spec.retries == 0
    assert spec.max_parallel == 0
    assert spec.warm == "auto"
    assert spec.inputs == [] and spec.outputs == [] and spec.env == {}
    assert (spec.resources.vcpus, spec.resources.memory_mib, spec.resources.gpus) == (1, 2048, 0)
    assert spec.params is not None and spec.params.repeat == 1
    assert spec.search is None


def test_script_path_is_relative_to_the_spec_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "sweep.yaml").write_text("name: demo\nscript: ../s.py\nparams: {grid: {x: [1]}}\n")
    assert load(tmp_path / "sub" / "sweep.yaml").script_path == (tmp_path / "s.py").resolve()


def test_param_names_follow_block_order_and_include_repeat(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, params={"fixed": {"f": 1}, "grid": {"g": [1]}, "zip": {"z": [1]}, "repeat": 2})
    assert spec.param_names == ["z", "g", "f", "repeat"]


# -- unknown keys ---------------------------------------------------------------------------------
def test_unknown_top_level_key_suggests_the_closest(tmp_path: Path) -> None:
    message = error_of(tmp_path, retires=2)
    assert "retires: unknown key" in message
    assert "did you mean 'retries'?" in message
    assert "valid keys:" in message and "timeout" in message
    assert "base_dir" not in message


def test_unknown_nested_key_suggests_the_closest(tmp_path: Path) -> None:
    message = error_of(tmp_path, resources={"memroy_mib": 512})
    assert "resources.memroy_mib: unknown key" in message
    assert "did you mean 'memory_mib'?" in message
    assert "vcpus" in message


def test_unknown_key_in_params_suggests_the_block(tmp_path: Path) -> None:
    message = error_of(tmp_path, params={"gird": {"x": [1]}})
    assert "params.gird: unknown key; did you mean 'grid'?" in message


def test_unknown_key_far_from_any_lists_valid_keys_without_a_guess(tmp_path: Path) -> None:
    message = error_of(tmp_path, zzzzzz=1)
    assert "did you mean" not in message
    assert "valid keys: name, script" in message


def test_wrong_type_shows_the_value(tmp_path: Path) -> None:
    message = error_of(tmp_path, retries="many")
    assert "retries:" in message and "'many'" in message


def test_negative_retries_are_rejected(tmp_path: Path) -> None:
    assert "retries:" in error_of(tmp_path, retries=-1)


def test_unknown_backend_lists_the_backends(tmp_path: Path) -> None:
    message = error_of(tmp_path, backend="kubernetes")
    assert "backend:" in message and "'kubernetes'" in message and "aws-batch" in message


# -- name -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ma-crossover", "a", "x_1", "0abc"])
def test_good_sweep_names_are_accepted(tmp_path: Path, name: str) -> None:
    assert spec_of(tmp_path, name=name).name == name


@pytest.mark.parametrize("name", ["../x", "A B", "Upper", "a/b", "-lead", "", "x" * 65, "café"])
def test_bad_sweep_names_are_rejected(tmp_path: Path, name: str) -> None:
    assert "bad sweep name" in error_of(tmp_path, name=name)


# -- entry point ----------------------------------------------------------------------------------
def test_function_alone_is_an_entry_point(tmp_path: Path) -> None:
    spec = validate({**{k: v for k, v in BASE.items() if k != "script"}, "function": "pkg.mod:train"},
                    source="s", base_dir=tmp_path)
    assert spec.function == "pkg.mod:train" and spec.script is None


def test_script_and_function_together_are_rejected(tmp_path: Path) -> None:
    assert "exactly one of" in error_of(tmp_path, function="m:f")


def test_neither_script_nor_function_is_rejected(tmp_path: Path) -> None:
    raw = {k: v for k, v in BASE.items() if k != "script"}
    with pytest.raises(SpecError, match="exactly one of"):
        validate(raw, source="s", base_dir=tmp_path)


@pytest.mark.parametrize("function", ["train", "mod:", ":f", "a b:c", "mod:f:g"])
def test_function_must_be_module_colon_callable(tmp_path: Path, function: str) -> None:
    raw = {**{k: v for k, v in BASE.items() if k != "script"}, "function": function}
    with pytest.raises(SpecError, match="module:callable"):
        validate(raw, source="s", base_dir=tmp_path)


# -- params blocks --------------------------------------------------------------------------------
@pytest.mark.parametrize("params", [None, {}, {"grid": {}}, {"repeat": 3}])
def test_empty_parameter_space_is_rejected(tmp_path: Path, params: object) -> None:
    raw = {**BASE, "params": params}
    with pytest.raises(SpecError, match="parameter space is empty"):
        validate(raw, source="s", base_dir=tmp_path)


def test_grid_value_must_be_a_list(tmp_path: Path) -> None:
    message = error_of(tmp_path, params={"grid": {"x": 5}})
    assert "x: expected a list of values" in message and "x: [5]" in message


def test_grid_value_must_not_be_empty(tmp_path: Path) -> None:
    assert "x: the list of values is empty" in error_of(tmp_path, params={"grid": {"x": []}})


def test_zip_lists_must_have_the_same_length(tmp_path: Path) -> None:
    assert "same length" in error_of(tmp_path, params={"zip": {"a": [1, 2], "b": [1]}})


def test_a_param_in_two_blocks_is_rejected(tmp_path: Path) -> None:
    message = error_of(tmp_path, params={"grid": {"x": [1]}, "fixed": {"x": 2}})
    assert "'x' is set in both `grid` and `fixed`" in message


def test_repeat_must_be_at_least_one(tmp_path: Path) -> None:
    assert "params.repeat:" in error_of(tmp_path, params={"grid": {"x": [1]}, "repeat": 0})


def test_random_block_needs_positive_samples(tmp_path: Path) -> None:
    message = error_of(tmp_path, params={"random": {"samples": 0, "space": {"a": "uniform(0, 1)"}}})
    assert "params.random.samples:" in message


@pytest.mark.parametrize(
    ("dist", "expect"),
    [("unifrom(0, 1)", "unknown distribution 'unifrom'"), ("uniform(1, 0)", "low < high"),
     ("loguniform(0, 1)", "low > 0"), ("randint(1.5, 3)", "integers"), ("uniform(0)", "two numbers"),
     ("uniform", "bad distribution"), ("choice()", "at least one value")],
)
def test_bad_random_distribution_names_the_param(tmp_path: Path, dist: str, expect: str) -> None:
    message = error_of(tmp_path, params={"random": {"samples": 2, "space": {"lr": dist}}})
    assert "lr:" in message and expect in message


def test_env_names_reserved_for_batchsweep_are_rejected(tmp_path: Path) -> None:
    assert "'BATCHSWEEP_X' is reserved" in error_of(tmp_path, env={"BATCHSWEEP_X": "1"})


# -- metrics --------------------------------------------------------------------------------------
def test_metrics_from_stdout_last_is_accepted(tmp_path: Path) -> None:
    assert spec_of(tmp_path, metrics={"stdout": "last"}).metrics.stdout == "last"  # type: ignore[union-attr]


def test_metrics_regex_with_named_groups_is_accepted(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, metrics={"stdout": r"loss=(?P<loss>[0-9.]+)"})
    assert spec.metrics.stdout == r"loss=(?P<loss>[0-9.]+)"  # type: ignore[union-attr]


@pytest.mark.parametrize(("regex", "expect"), [("(", "bad regex"), (r"x=(\d+)", "named groups")])
def test_bad_metrics_regex_is_explained(tmp_path: Path, regex: str, expect: str) -> None:
    assert expect in error_of(tmp_path, metrics={"stdout": regex})


# -- search ---------------------------------------------------------------------------------------
def test_search_block_is_parsed_with_defaults(tmp_path: Path) -> None:
    spec = spec_of(
        tmp_path,
        params=None,
        search={"trials": 16, "metric": "sharpe", "space": {"lr": "loguniform(1e-4, 1e-1)", "d": [1, 2]}},
    )
    assert spec.search is not None
    assert (spec.search.sampler, spec.search.direction, spec.search.seed, spec.search.batch) == (
        "tpe",
        "minimize",
        0,
        None,
    )
    assert spec.search.trials == 16 and spec.search.metric == "sharpe"
    assert spec.param_names == ["lr", "d"]


def test_search_needs_a_metric(tmp_path: Path) -> None:
    assert "search.metric: required field is missing" in error_of(
        tmp_path, search={"trials": 4, "space": {"lr": "uniform(0, 1)"}})


def test_search_rejects_an_unknown_sampler(tmp_path: Path) -> None:
    message = error_of(
        tmp_path, search={"trials": 4, "metric": "m", "sampler": "grid", "space": {"a": "uniform(0, 1)"}}
    )
    assert "search.sampler:" in message and "'grid'" in message


def test_search_rejects_a_bad_distribution(tmp_path: Path) -> None:
    message = error_of(tmp_path, search={"trials": 4, "metric": "m", "space": {"a": "uniform(2, 1)"}})
    assert "search.space:" in message and "low < high" in message


# -- the file -------------------------------------------------------------------------------------
def test_missing_spec_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="nope.yaml: spec file not found"):
        load(tmp_path / "nope.yaml")


def test_yaml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text("name: demo\nscript: s.py\nparams: {grid: {x: [1, 2}\n")
    with pytest.raises(SpecError, match=r"YAML syntax error at line 3, column \d+"):
        load(path)


def test_spec_that_is_not_a_mapping_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="must be a mapping.*got list"):
        load(path)
    path.write_text("# a spec not written yet\n")
    with pytest.raises(SpecError, match=r"must be a mapping .*, got an empty file$"):
        load(path)


def test_load_applies_overrides_before_validation(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text("name: demo\nscript: s.py\nparams: {grid: {x: [1]}}\n")
    spec = load(path, overrides=["timeout=30m", "params.grid.x=1,2,3"])
    assert spec.timeout == 1800.0
    assert spec.params is not None and spec.params.grid == {"x": [1, 2, 3]}


# -- requirements ---------------------------------------------------------------------------------
def test_requirements_is_a_file_or_a_list_of_specifiers_and_never_empty(tmp_path: Path) -> None:
    assert spec_of(tmp_path, requirements="reqs.txt").requirements == "reqs.txt"
    assert spec_of(tmp_path, requirements=["numpy>=2", "humanize"]).requirements == ["numpy>=2", "humanize"]
    assert spec_of(tmp_path).requirements is None
    assert error_of(tmp_path, requirements=" ").startswith("sweep.yaml: requirements: empty path")
    assert "requirements: an empty specifier" in error_of(tmp_path, requirements=["numpy", ""])
    assert "requirement: unknown key; did you mean 'requirements'?" in error_of(tmp_path, requirement="r.txt")


def test_the_spec_file_is_known_but_never_part_of_the_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text("name: demo\nscript: s.py\nparams: {grid: {x: [1]}}\n")
    spec = load(path)
    assert spec.spec_file == path
    assert "spec_file" not in spec.model_dump(mode="json", by_alias=True, exclude={"base_dir"})
    assert "spec_file" not in error_of(tmp_path, scrpit="s.py")


@pytest.mark.parametrize("path", ["results.csv", "out/summary.CSV", "metrics.yaml", "scores.parquet"])
def test_a_metrics_file_that_is_not_json_is_refused_before_the_run(tmp_path: Path, path: str) -> None:
    # before, every task ran and then failed on "results.csv is not valid JSON"
    err = error_of(tmp_path, metrics=path)
    assert f"metrics: {path!r} is read as one JSON object" in err and "write its final values" in err


def test_a_metrics_file_named_like_json_or_without_a_suffix_is_taken(tmp_path: Path) -> None:
    assert spec_of(tmp_path, metrics="results/summary.json").metrics == "results/summary.json"
    assert spec_of(tmp_path, metrics="scores").metrics == "scores"
