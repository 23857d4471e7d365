"""Inputs built from params stay where the spec says: a param value cannot take an input outside the directory
its template names (the spec's directory for `{path}`), so nothing outside the run is read, staged or uploaded
(docs/design.md §1). A path the spec writes out itself (absolute, or with ..) is the user's own choice."""

from __future__ import annotations

from pathlib import Path

import pytest

import batchsweep
from batchsweep import cli

SCRIPT = """\
import json, pathlib, sys
name = sys.argv[sys.argv.index("--name") + 1] if "--name" in sys.argv else ""
text = "".join(p.read_text() for p in sorted(pathlib.Path(".").glob("*.csv")))
json.dump({"chars": len(text)}, open("metrics.json", "w"))
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """proj/ with data/AAPL.csv and a script, beside a secret outside it."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.csv").write_text("do not upload me\n")
    proj = tmp_path / "proj"
    (proj / "data").mkdir(parents=True)
    (proj / "data" / "AAPL.csv").write_text("1,2,3\n")
    (proj / "read.py").write_text(SCRIPT)
    return proj


@pytest.mark.parametrize("backend", ["local", "aws-batch"])
@pytest.mark.parametrize(("template", "value", "where"), [
    ("data/{symbol}.csv", "../../outside/secret", "data/"),
    ("{symbol}", "ABSOLUTE", "the spec's directory"),  # a param that is the whole path
], ids=["dotdot", "absolute"])
def test_a_param_cannot_take_an_input_outside_its_directory(project: Path, capsys: pytest.CaptureFixture[str],
                                                           backend: str, template: str, value: str,
                                                           where: str) -> None:
    if value == "ABSOLUTE":
        value = str(project.parent / "outside" / "secret.csv")
    spec = project / "sweep.yaml"
    first = "AAPL" if template.startswith("data/") else "data/AAPL.csv"
    spec.write_text(f"name: conf\nscript: read.py\nparams: {{grid: {{symbol: [{first}, '{value}']}}}}\n"
                    f"inputs: ['{template}']\n")
    store = project / "store"
    argv = ["run", str(spec), "--store", str(store), "--backend", backend]
    assert cli.main(argv + (["--dry-run"] if backend == "aws-batch" else [])) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"inputs: '{template}' with symbol='{value}' (task 1) points outside {where}" in err
    assert "fix the value, or list a file elsewhere in inputs: yourself" in err
    assert not store.exists()


def test_a_staged_dst_built_from_a_param_stays_in_the_tasks_directory(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = project / "sweep.yaml"
    spec.write_text("name: conf\nscript: read.py\nparams: {grid: {to: [x, ../../../escaped]}}\n"
                    "inputs: [{src: data/AAPL.csv, dst: 'in/{to}.csv'}]\n")
    assert cli.main(["run", str(spec), "--store", str(project / "store")]) == 2
    assert (
        "with to='../../../escaped' (task 1) points outside the task's directory" in capsys.readouterr().err
    )
    assert not (project / "store").exists()


def test_inputs_the_spec_writes_out_itself_may_be_anywhere(project: Path) -> None:
    shared = project.parent / "outside"
    (shared / "MSFT.csv").write_text("4,5,6,7\n")
    spec = project / "sweep.yaml"
    spec.write_text(f"name: conf\nscript: read.py\nparams: {{grid: {{symbol: [MSFT]}}}}\n"
                    f"inputs: ['{shared}/{{symbol}}.csv', ../outside/secret.csv, data/AAPL.csv]\n")
    run = batchsweep.run(spec, store=project / "store", progress=False)
    df = run.results()
    assert list(df["status"]) == ["succeeded"]
    assert list(df["chars"]) == [len("1,2,3\n") + len("4,5,6,7\n") + len("do not upload me\n")]


def test_an_s3_prefix_input_is_fetched_as_a_directory_and_no_key_writes_outside_it(
    session, tmp_path: Path
) -> None:
    """Whoever writes the input's bucket names its keys: a key with a `..` component is refused whole."""
    from batchsweep.aws.s3store import S3Backend

    s3 = session.client("s3")
    s3.create_bucket(Bucket="ext-data")
    for key in ("prices/a.txt", "prices/2024/b.txt", "prices/empty/", "pricesX/not-under.txt"):
        s3.put_object(Bucket="ext-data", Key=key, Body=b"" if key.endswith("/") else key.encode())
    backend = S3Backend("ext-data", "", client=s3)
    backend.download_tree("prices", tmp_path / "in" / "prices")
    got = sorted(str(p.relative_to(tmp_path / "in")) for p in (tmp_path / "in").rglob("*"))
    assert got == ["prices", "prices/2024", "prices/2024/b.txt", "prices/a.txt", "prices/empty"]
    assert (tmp_path / "in" / "prices" / "2024" / "b.txt").read_text() == "prices/2024/b.txt"

    s3.put_object(Bucket="ext-data", Key="prices/../../escaped.txt", Body=b"x")
    with pytest.raises(ValueError, match=r"prices/\.\./\.\./escaped\.txt.*rename it"):
        backend.download_tree("prices", tmp_path / "again" / "prices")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "again").exists()
    with pytest.raises(FileNotFoundError, match="no objects under this prefix"):
        backend.download_tree("nothing", tmp_path / "none")


def test_a_file_the_script_reads_beside_it_but_not_staged_is_named_before_the_run(tmp_path: Path) -> None:
    from batchsweep.planning import plan as planning

    proj = tmp_path / "proj"
    (proj / "data").mkdir(parents=True)
    (proj / "data" / "prices.csv").write_text("x\n1\n")
    (proj / "bt.py").write_text(
        "import argparse, json\nimport pandas as pd\n"
        "p = argparse.ArgumentParser(); p.add_argument('--k', type=int)\n"
        "k = p.parse_args().k\nrows = open('data/prices.csv').read()\nopen('out.csv', 'w').write(rows)\n"
        "df = pd.read_csv('data/prices.csv')\nprint(json.dumps({'k': k}))\n")
    spec = proj / "sweep.yaml"
    body = "name: rel\nscript: bt.py\nparams: {grid: {k: [1, 2]}}\nmetrics: {stdout: last}\n"
    spec.write_text(body)
    assert planning.plan(spec).notes == [
        "bt.py reads data/prices.csv, which is beside it but not staged: each task runs in an empty "
        "directory; add `inputs: [{src: data/prices.csv, dst: data/prices.csv}]`"]
    for staged in ("[{src: data/prices.csv, dst: data/prices.csv}]", "[data/]"):
        spec.write_text(body + f"inputs: {staged}\n")
        assert planning.plan(spec).notes == [], staged
