"""`--set key=value` overrides (Hydra-like), applied to the raw spec before validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from batchsweep.errors import SpecError
from batchsweep.spec.overrides import apply_overrides, parse_value
from batchsweep.spec.reader import load, top_level_keys

RAW: dict[str, Any] = {
    "name": "demo",
    "script": "s.py",
    "params": {"grid": {"symbol": ["A", "B"], "window": [5]}, "fixed": {"fee_bps": 10, "cash": 100}},
}


def apply(*items: str) -> dict[str, Any]:
    return apply_overrides(RAW, list(items), source="sweep.yaml", top_level=top_level_keys())


def test_dotted_grid_path_sets_a_list_of_values() -> None:
    assert apply("params.grid.window=5,10,20")["params"]["grid"]["window"] == [5, 10, 20]


def test_dotted_grid_path_with_one_value_is_still_a_list() -> None:
    assert apply("params.grid.window=7")["params"]["grid"]["window"] == [7]


def test_top_level_field_is_set() -> None:
    assert apply("timeout=30m")["timeout"] == "30m"


def test_nested_field_is_created_when_missing() -> None:
    assert apply("resources.memory_mib=512")["resources"] == {"memory_mib": 512}


def test_values_are_typed_like_yaml() -> None:
    out = apply("retries=2", "warm=true", "params.fixed.rate=0.5", "params.fixed.label=abc")
    assert (out["retries"], out["warm"]) == (2, True)
    assert out["params"]["fixed"]["rate"] == 0.5 and out["params"]["fixed"]["label"] == "abc"


def test_bare_param_with_a_comma_list_becomes_a_grid_param() -> None:
    params = apply("cash=50,100")["params"]
    assert params["grid"]["cash"] == [50, 100]
    assert "cash" not in params["fixed"]


def test_bare_param_replaces_its_grid_values() -> None:
    assert apply("window=5,10")["params"]["grid"]["window"] == [5, 10]


def test_bare_param_keeps_its_place_in_the_grid_so_task_order_and_columns_follow_the_spec() -> None:
    # the README's `--set var_a=1,2` numbered the tasks var_b-first and put var_b's column before var_a's
    assert list(apply("symbol=A,C")["params"]["grid"]) == ["symbol", "window"]
    assert list(apply("fee_bps=7")["params"]["fixed"]) == ["fee_bps", "cash"]


def test_bare_param_with_one_value_becomes_fixed_and_leaves_the_grid() -> None:
    params = apply("window=8")["params"]
    assert params["fixed"]["window"] == 8
    assert "window" not in params["grid"]


def test_bare_param_replaces_a_fixed_value() -> None:
    assert apply("fee_bps=5")["params"]["fixed"]["fee_bps"] == 5


def test_bare_param_not_yet_in_the_spec_is_added() -> None:
    assert apply("seed=3")["params"]["fixed"]["seed"] == 3


def test_bare_param_leaves_the_random_space() -> None:
    raw = {
        **RAW,
        "params": {"random": {"samples": 2, "space": {"lr": "uniform(0, 1)", "d": "randint(1, 3)"}}},
    }
    params = apply_overrides(raw, ["lr=0.1"], source="s", top_level=top_level_keys())["params"]
    assert params["random"]["space"] == {"d": "randint(1, 3)"}
    assert params["fixed"] == {"lr": 0.1}


def test_the_original_spec_is_not_modified() -> None:
    apply("window=1,2", "timeout=1m")
    assert RAW["params"]["grid"]["window"] == [5] and "timeout" not in RAW


def test_inputs_override_is_a_list() -> None:
    assert apply("inputs=a.csv")["inputs"] == ["a.csv"]


def test_bracketed_value_is_yaml_not_a_comma_list() -> None:
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value('"a,b"') == "a,b"


def test_later_override_wins() -> None:
    assert apply("timeout=1m", "timeout=2m")["timeout"] == "2m"


@pytest.mark.parametrize("item", ["timeout", "=5", "  =x", ""])
def test_override_without_key_and_equals_is_rejected(item: str) -> None:
    with pytest.raises(SpecError, match="expected key=value"):
        apply(item)


def test_override_into_a_scalar_field_is_rejected() -> None:
    with pytest.raises(SpecError, match="'timeout' is not a mapping"):
        apply_overrides({**RAW, "timeout": "1m"}, ["timeout.x=1"], source="s", top_level=top_level_keys())


def test_overrides_reach_the_validated_spec(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text("name: demo\nscript: s.py\nparams: {grid: {window: [5]}, fixed: {fee_bps: 10}}\n")
    spec = load(path, overrides=["window=5,10", "fee_bps=5", "timeout=30m"])
    assert spec.params is not None
    assert spec.params.grid == {"window": [5, 10]} and spec.params.fixed == {"fee_bps": 5}
    assert spec.timeout == 1800.0


def test_override_with_a_bad_value_is_reported_by_validation(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text("name: demo\nscript: s.py\nparams: {grid: {window: [5]}}\n")
    with pytest.raises(SpecError, match="timeout: bad duration 'soon'"):
        load(path, overrides=["timeout=soon"])


def test_bare_param_replaces_a_param_defined_in_list_rows(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text("name: demo\nscript: s.py\nparams: {list: [{a: 1, b: 2}, {a: 3, b: 4}]}\n")
    spec = load(path, overrides=["a=5"])
    assert spec.params is not None
    assert spec.params.fixed == {"a": 5}
    assert spec.params.list_ == [{"b": 2}, {"b": 4}]


def test_every_spec_field_is_settable_not_taken_for_a_param():
    """`--set stop.rule=percentile` sets the spec's `stop:` block (any field the spec has), never a param."""
    raw = apply_overrides({**RAW, "stop": {"metric": "loss", "rule": "median"}}, ["stop.rule=percentile",
                          "requirements=reqs.txt"], source="s", top_level=top_level_keys())
    assert raw["stop"]["rule"] == "percentile" and raw["requirements"] == "reqs.txt"
    assert "stop.rule" not in str(raw.get("params"))
