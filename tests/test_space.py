"""Expanding the parameter space into tasks: order, indices, blocks, placeholders and cache keys."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from batchsweep.errors import SpecError
from batchsweep.planning import space
from batchsweep.spec.reader import validate
from batchsweep.spec.schema import Spec


def make_spec(tmp_path: Path, params: dict[str, Any], **extra: Any) -> Spec:
    return validate({"name": "demo", "script": "s.py", "params": params, **extra}, source="sweep.yaml",
                    base_dir=tmp_path)


def params_of(tmp_path: Path, params: dict[str, Any], **extra: Any) -> list[dict[str, Any]]:
    return [t.params for t in space.expand(make_spec(tmp_path, params, **extra))]


# -- blocks ---------------------------------------------------------------------------------------
def test_grid_is_the_cartesian_product_with_the_last_name_varying_fastest(tmp_path: Path) -> None:
    rows = params_of(tmp_path, {"grid": {"symbol": ["A", "B"], "window": [5, 10, 15]}})
    assert rows == [
        {"symbol": "A", "window": 5}, {"symbol": "A", "window": 10}, {"symbol": "A", "window": 15},
        {"symbol": "B", "window": 5}, {"symbol": "B", "window": 10}, {"symbol": "B", "window": 15},
    ]


def test_task_indices_run_from_zero_in_order(tmp_path: Path) -> None:
    tasks = space.expand(make_spec(tmp_path, {"grid": {"a": [1, 2, 3], "b": [1, 2]}}))
    assert [t.index for t in tasks] == list(range(6))


def test_expansion_is_deterministic_across_calls(tmp_path: Path) -> None:
    params = {
        "grid": {"a": [3, 1, 2], "b": ["y", "x"]},
        "random": {"samples": 3, "space": {"r": "uniform(0, 1)"}},
    }
    first = space.expand(make_spec(tmp_path, params), code_hash="h")
    second = space.expand(make_spec(tmp_path, params), code_hash="h")
    assert first == second


def test_count_matches_the_expansion(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, {"grid": {"a": [1, 2, 3]}, "zip": {"b": [1, 2], "c": [3, 4]}, "repeat": 2})
    assert space.count(spec) == len(space.expand(spec)) == 12


def test_list_gives_one_task_per_entry(tmp_path: Path) -> None:
    rows = params_of(tmp_path, {"list": [{"a": 1, "b": 2}, {"a": 3, "b": 4}]})
    assert rows == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]


def test_zip_pairs_values_element_wise(tmp_path: Path) -> None:
    rows = params_of(tmp_path, {"zip": {"a": [1, 2, 3], "b": ["x", "y", "z"]}})
    assert rows == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}, {"a": 3, "b": "z"}]


def test_fixed_joins_every_task(tmp_path: Path) -> None:
    rows = params_of(tmp_path, {"grid": {"a": [1, 2]}, "fixed": {"fee_bps": 10}})
    assert rows == [{"a": 1, "fee_bps": 10}, {"a": 2, "fee_bps": 10}]


def test_fixed_alone_is_one_task(tmp_path: Path) -> None:
    assert params_of(tmp_path, {"fixed": {"a": 1}}) == [{"a": 1}]


def test_repeat_copies_each_task_with_a_repeat_param(tmp_path: Path) -> None:
    rows = params_of(tmp_path, {"grid": {"a": [1, 2]}, "repeat": 3})
    assert rows == [{"a": 1, "repeat": 0}, {"a": 1, "repeat": 1}, {"a": 1, "repeat": 2},
                    {"a": 2, "repeat": 0}, {"a": 2, "repeat": 1}, {"a": 2, "repeat": 2}]


def test_repeat_of_one_adds_no_param(tmp_path: Path) -> None:
    assert params_of(tmp_path, {"grid": {"a": [1]}, "repeat": 1}) == [{"a": 1}]


def test_blocks_combine_as_a_product_in_list_zip_grid_order(tmp_path: Path) -> None:
    rows = params_of(tmp_path, {
        "grid": {"g": [1, 2]},
        "zip": {"z": ["p", "q"]},
        "list": [{"l": "A"}, {"l": "B"}],
        "fixed": {"f": 0},
    })
    assert len(rows) == 8
    assert rows[:3] == [{"l": "A", "z": "p", "g": 1, "f": 0}, {"l": "A", "z": "p", "g": 2, "f": 0},
                        {"l": "A", "z": "q", "g": 1, "f": 0}]
    assert rows[-1] == {"l": "B", "z": "q", "g": 2, "f": 0}


# -- random ---------------------------------------------------------------------------------------
RANDOM_SPACE = {"lr": "loguniform(1e-4, 1e-1)", "drop": "uniform(0.1, 0.5)", "depth": "randint(2, 4)",
                "model": "choice(rf, svc)", "act": ["relu", "tanh"]}


def random_rows(tmp_path: Path, *, seed: int, samples: int = 40) -> list[dict[str, Any]]:
    return params_of(tmp_path, {"random": {"samples": samples, "seed": seed, "space": RANDOM_SPACE}})


def test_random_draws_samples_within_each_distribution(tmp_path: Path) -> None:
    rows = random_rows(tmp_path, seed=0)
    assert len(rows) == 40
    assert all(1e-4 <= r["lr"] <= 1e-1 for r in rows)
    assert all(0.1 <= r["drop"] <= 0.5 for r in rows)
    assert {r["depth"] for r in rows} == {2, 3, 4}  # both ends included
    assert all(isinstance(r["depth"], int) for r in rows)
    assert {r["model"] for r in rows} == {"rf", "svc"}
    assert {r["act"] for r in rows} == {"relu", "tanh"}


def test_loguniform_spreads_over_orders_of_magnitude(tmp_path: Path) -> None:
    exponents = {math.floor(math.log10(r["lr"])) for r in random_rows(tmp_path, seed=1)}
    assert exponents == {-4, -3, -2}


def test_same_seed_gives_the_same_tasks(tmp_path: Path) -> None:
    assert random_rows(tmp_path, seed=7) == random_rows(tmp_path, seed=7)


def test_different_seed_gives_different_tasks(tmp_path: Path) -> None:
    assert random_rows(tmp_path, seed=7) != random_rows(tmp_path, seed=8)


def test_random_combines_with_grid(tmp_path: Path) -> None:
    rows = params_of(
        tmp_path, {"grid": {"g": [1, 2]}, "random": {"samples": 3, "space": {"r": "uniform(0, 1)"}}}
    )
    assert [r["g"] for r in rows] == [1, 1, 1, 2, 2, 2]
    # the same random draws are crossed with every grid value
    assert [r["r"] for r in rows[:3]] == [r["r"] for r in rows[3:]]


# -- placeholders ---------------------------------------------------------------------------------
def test_string_params_are_filled_from_other_params(tmp_path: Path) -> None:
    rows = params_of(
        tmp_path, {"grid": {"var_a": [1, 2], "var_b": ["x"]}, "fixed": {"save_name": "run_{var_a}_{var_b}"}}
    )
    assert [r["save_name"] for r in rows] == ["run_1_x", "run_2_x"]


def test_inputs_are_filled_per_task(tmp_path: Path) -> None:
    tasks = space.expand(make_spec(tmp_path, {"grid": {"symbol": ["BTC", "ETH"]}},
                                   inputs=["data/{symbol}.parquet", "common.csv"]))
    assert [t.inputs for t in tasks] == [
        ("data/BTC.parquet", "common.csv"),
        ("data/ETH.parquet", "common.csv"),
    ]


def test_inputs_can_use_filled_string_params(tmp_path: Path) -> None:
    tasks = space.expand(
        make_spec(tmp_path, {"grid": {"s": ["a"]}, "fixed": {"stem": "in_{s}"}}, inputs=["{stem}.csv"])
    )
    assert tasks[0].inputs == ("in_a.csv",)


def test_repeat_can_be_a_placeholder(tmp_path: Path) -> None:
    rows = params_of(tmp_path, {"fixed": {"out": "seed{repeat}"}, "repeat": 2})
    assert [r["out"] for r in rows] == ["seed0", "seed1"]


def test_braces_that_are_not_placeholders_are_kept(tmp_path: Path) -> None:
    rows = params_of(tmp_path, {"fixed": {"fmt": "{:.2f}", "js": '{"a": 1}'}})
    assert rows == [{"fmt": "{:.2f}", "js": '{"a": 1}'}]


def test_unknown_placeholder_in_a_param_names_it_and_the_params(tmp_path: Path) -> None:
    with pytest.raises(
        SpecError, match=r"params.out: placeholder \{nope\} names no param; params are: a, out"
    ):
        params_of(tmp_path, {"grid": {"a": [1]}, "fixed": {"out": "x_{nope}"}})


def test_unknown_placeholder_in_inputs_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"inputs: placeholder \{sym\}"):
        space.expand(make_spec(tmp_path, {"grid": {"symbol": ["A"]}}, inputs=["data/{sym}.csv"]))


# -- cache key ------------------------------------------------------------------------------------
def keys(tmp_path: Path, params: dict[str, Any], code_hash: str = "c1", **extra: Any) -> list[str]:
    return [t.cache_key for t in space.expand(make_spec(tmp_path, params, **extra), code_hash=code_hash)]


def test_cache_key_is_stable_across_calls(tmp_path: Path) -> None:
    params = {"grid": {"a": [1, 2]}}
    assert keys(tmp_path, params) == keys(tmp_path, params)


def test_cache_key_differs_between_tasks(tmp_path: Path) -> None:
    first, second = keys(tmp_path, {"grid": {"a": [1, 2]}})
    assert first != second


def test_cache_key_does_not_depend_on_task_index(tmp_path: Path) -> None:
    assert keys(tmp_path, {"grid": {"a": [1, 2]}})[1] == keys(tmp_path, {"grid": {"a": [2]}})[0]


def test_cache_key_changes_with_params(tmp_path: Path) -> None:
    assert keys(tmp_path, {"grid": {"a": [1]}}) != keys(tmp_path, {"grid": {"a": [1]}, "fixed": {"b": 0}})


def test_cache_key_changes_with_code(tmp_path: Path) -> None:
    assert keys(tmp_path, {"grid": {"a": [1]}}, code_hash="c1") != keys(
        tmp_path, {"grid": {"a": [1]}}, code_hash="c2"
    )


def test_cache_key_changes_when_an_input_file_changes(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("1\n")
    before = keys(tmp_path, {"grid": {"a": [1]}}, inputs=["data.csv"])
    data.write_text("1\n2\n")
    assert keys(tmp_path, {"grid": {"a": [1]}}, inputs=["data.csv"]) != before


def test_code_hash_follows_the_script_content(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("print(1)\n")
    spec = make_spec(tmp_path, {"grid": {"a": [1]}})
    first = space.code_hash(spec)
    assert space.code_hash(spec) == first
    script.write_text("print(2)\n")
    assert space.code_hash(spec) != first
