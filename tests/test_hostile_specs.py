"""Hostile specs and huge spaces fail fast (issue 15, item 5): each is one `error:` line and exit 2, within
seconds, in bounded memory (the CLI runs under a 1 GiB address-space limit), with no run left behind."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import write_spec

import batchsweep

SCRIPTS = Path(__file__).parent / "scripts"
HEAD = b"name: demo\nscript: target.py\n"


def _bomb() -> bytes:
    lines = [b'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]".encode())
    return (
        b"anchors:\n"
        + b"\n".join(b"  " + line for line in lines)
        + b"\nname: demo\nscript: target.py\nparams: {grid: {window: *a9}}\n"
    )


CASES = {
    "alias bomb": (_bomb(), "alias bomb"),
    "recursive anchor": (HEAD + b"params: &p {fixed: {save_name: *p}}\n", "recursive"),
    "nesting 10,000 deep": (
        HEAD + b"params: {fixed: {save_name: " + b"[" * 10_000 + b"]" * 10_000 + b"}}\n",
        "nested deeper",
    ),
    "10^8 grid": (
        HEAD
        + b"params:\n  grid:\n"
        + b"".join(f"    p{i}: [0,1,2,3,4,5,6,7,8,9]\n".encode() for i in range(8)),
        "the space has 10^8 tasks; the limit is 10^6, raise it with --max-tasks",
    ),
    "10^12 random samples": (
        HEAD + b"params: {random: {samples: 1000000000000, space: {window: 'randint(1, 9)'}}}\n",
        "10^12 tasks",
    ),
    "binary file": (b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)), "binary file"),
    "not UTF-8": (HEAD + b"params: {grid: {window: [5]}, fixed: {save_name: caf\xe9}}\n", "not UTF-8"),
    "a list, not a mapping": (b"- name: demo\n- script: target.py\n", "must be a mapping"),
    "a NUL byte in a value": (
        HEAD + b'params: {grid: {window: [5]}, fixed: {save_name: "a\\0b"}}\n',
        "NUL byte",
    ),
    "a param name that is no flag": (
        HEAD + b"params: {grid: {'window; rm -rf /': [5]}}\n",
        "cannot be a command-line flag",
    ),
    "a param name that is an option": (
        HEAD + b"params: {grid: {'--window': [5]}}\n",
        "cannot be a command-line flag",
    ),
    "a 200 KiB value": (
        HEAD + b"params: {grid: {window: [5]}, fixed: {save_name: " + b"x" * 200_000 + b"}}\n",
        "longer than one command-line argument",
    ),
    "a 9 MiB spec": (HEAD + b"# " + b"x" * (9 << 20) + b"\n", "too large for a spec"),
    # issue 30, item 6: a param never overwrites a column of the results, nor one key another
    "a param named like a results column": (
        HEAD + b"params: {grid: {window: [5], status: [ok, bad]}}\n",
        "params.grid: a param named 'status' would overwrite the results column",
    ),
    "a param named error in a list": (
        HEAD + b"params: {list: [{window: 5, error: 0.1}]}\n",
        "params.list: a param named 'error' would overwrite",
    ),
    "a search param named attempts": (
        HEAD + b"search: {trials: 4, metric: x, space: {attempts: 'randint(1, 3)'}}\n",
        "search.space: a param named 'attempts' would overwrite",
    ),
    "a grid repeat beside repeat:": (
        HEAD + b"params: {grid: {window: [5], repeat: [1, 2]}, repeat: 3}\n",
        "params.grid: a param named 'repeat' beside `params.repeat: 3`",
    ),
    "a key written twice": (
        HEAD + b"params:\n  grid: {window: [5]}\n  fixed: {save_name: a}\nname: other\n",
        "key 'name' appears twice in one mapping, on lines 1 and 6",
    ),
    "a param written twice": (
        HEAD + b"params:\n  grid:\n    window: [5]\n    window: [10, 20]\n",
        "key 'window' appears twice in one mapping, on lines 5 and 6",
    ),
}


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


@pytest.mark.parametrize("name", list(CASES))
def test_a_hostile_spec_is_one_line_and_exit_2_fast_in_bounded_memory(name, tmp_path):
    text, expect = CASES[name]
    shutil.copy(SCRIPTS / "u_target.py", tmp_path / "target.py")
    (tmp_path / "sweep.yaml").write_bytes(text)
    # CPU time, not wall time: a loaded machine stretches the CLI's start, not the work a spec makes it do.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-m", "batchsweep", "run", "sweep.yaml", "--store", "store"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, preexec_fn=_limit_memory,
                          env={**os.environ, "CI": "1"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert expect in lines[0], lines[0]
    assert cpu_s < 10, f"{cpu_s:.1f} CPU-s"
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("run.json"))


def test_max_tasks_raises_the_limit(tmp_path):
    spec = write_spec(tmp_path, f"""
        name: many
        script: {SCRIPTS / 'hostile_task.py'}
        params: {{grid: {{a: [1, 2, 3]}}}}
    """)
    with pytest.raises(batchsweep.SweepError, match="the space has 3 tasks; the limit is 2"):
        batchsweep.plan(spec, max_tasks=2)
    assert len(batchsweep.plan(spec, max_tasks=3).tasks) == 3


def test_a_20000_element_list_param_runs_like_any_other(tmp_path):
    xs = list(range(100_000, 120_000))  # 160 KB as JSON: more than one environment string may hold
    spec = write_spec(tmp_path, f"""
        name: longlist
        script: {SCRIPTS / 'hostile_task.py'}
        params: {{grid: {{a: [1]}}, fixed: {{xs: {xs}, _note: internal}}}}
    """)
    df = batchsweep.run(spec, store=tmp_path / "store", progress=False).results()
    assert list(df["status"]) == ["succeeded"], df["error"][0]
    assert list(df["n_xs"]) == [20_000]
    assert list(df["env_params"]) == ["a,xs"]  # `_note` stays with batchsweep


@pytest.mark.parametrize("c_parser", [True, False], ids=["libyaml events", "pure Python"])
def test_both_yaml_parsers_read_every_spec_alike_and_cap_it_alike(c_parser):
    """Specs are parsed by libyaml's C parser when PyYAML has it (5x faster on a big grid), composed by
    PyYAML's composer where depth is capped; without libyaml, PyYAML's own parser. Both read what
    yaml.safe_load reads."""
    import yaml

    from batchsweep.spec.yamlread import DuplicateKey, TooComplex, bounded_yaml

    root = Path(__file__).parent.parent
    texts = [p.read_text() for p in [*root.glob("examples/**/*.yaml"), *SCRIPTS.glob("*.yaml")]]
    texts.append("a: &x [1, 2.5, 'q']\nb: *x\nc: 2020-01-01\nd: !!str 3\ne: {f: [null, true, ~, 0x1f]}\n")
    assert len(texts) > 5
    for text in texts:
        assert bounded_yaml(text, c_parser=c_parser) == yaml.safe_load(text)
    for hostile in (CASES["alias bomb"][0], CASES["recursive anchor"][0], CASES["nesting 10,000 deep"][0],
                    HEAD + b"params: {fixed: {x: " + b"[" * 65 + b"]" * 65 + b"}}\n"):
        with pytest.raises(TooComplex):
            bounded_yaml(hostile.decode(), c_parser=c_parser)
    assert bounded_yaml("x: " + "[" * 63 + "]" * 63, c_parser=c_parser)["x"] is not None
    with pytest.raises(DuplicateKey, match="key 'a' appears twice in one mapping, on lines 2 and 4"):
        bounded_yaml("b: 1\na: 1\nc: {x: 1}\na: 2\n", c_parser=c_parser)
    assert bounded_yaml("base: &b {x: 1, y: 2}\nover: {<<: *b, x: 3}\n", c_parser=c_parser)["over"] == {
        "x": 3,
        "y": 2,
    }
