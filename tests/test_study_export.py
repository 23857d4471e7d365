"""`batchsweep study RUN --to STORAGE`: a search opened with Optuna's own API — every trial's params,
distributions, value, state and intermediate values as the store has them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from helpers import write_spec

import batchsweep
from batchsweep import cli
from batchsweep.task.series import parse, values_by_step

optuna = pytest.importorskip("optuna")
SCRIPTS = Path(__file__).parent / "scripts"


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory, ) -> tuple[Path, batchsweep.Run]:
    """A random search whose worst trials the threshold rule prunes (val_loss = quality + 1/epoch, above
    1.5)."""
    tmp = tmp_path_factory.mktemp("study")
    spec = write_spec(tmp, f"""
        name: study
        script: {SCRIPTS / 'curve.py'}
        params: {{fixed: {{pace: 0.3, epochs: 6, api: true}}}}
        search: {{sampler: random, trials: 6, batch: 3, metric: val_loss, direction: minimize, seed: 3,
                  space: {{quality: 'uniform(0.0, 2.5)'}}}}
        stop: {{metric: val_loss, rule: threshold, upper: 1.5, min_steps: 1}}
        warm: false
    """)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BATCHSWEEP_SERIES_FLUSH_S", "0.1")
        run = batchsweep.run(spec, store=tmp / "store", progress=False)
    return tmp, run


def test_optuna_loads_the_exported_study_with_every_trial_as_the_store_has_it(search, capsys) -> None:
    tmp, run = search
    url = f"sqlite:///{tmp / 'study.db'}"
    assert cli.main(["study", run.id[-4:], "--to", url, "--store", str(tmp / "store")]) == 0
    said = capsys.readouterr().out
    assert f"wrote study '{run.id}' to {url}: 6 trials" in said and "minimize val_loss" in said
    study = optuna.load_study(study_name=run.id, storage=url)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    df = run.results().set_index("trial")
    assert {t.number for t in study.trials} == set(range(6)) and set(df.index) == set(range(6))
    states = optuna.trial.TrialState
    for t in study.trials:
        row = df.loc[t.number]
        assert t.user_attrs["task"] == int(row["task"]) and t.user_attrs["round"] == int(row["round"])
        assert t.params == {"quality": pytest.approx(float(row["quality"]))}
        assert t.distributions == {"quality": optuna.distributions.FloatDistribution(0.0, 2.5)}
        series = values_by_step(
            parse(run.store.backend.read_bytes(run.store.task_series_key(run.id, int(row["task"])))),
            "val_loss",
        )
        assert t.intermediate_values == pytest.approx(series) and series
        if row["status"] == "pruned":
            assert t.state is states.PRUNED and t.value is None and "threshold" in t.user_attrs["why"]
            assert max(series.values()) > 1.5
        else:
            assert row["status"] == "succeeded" and t.state is states.COMPLETE
            assert math.isclose(t.value, float(row["val_loss"]))
    assert any(t.state is states.PRUNED for t in study.trials), (
        "a quality above 1.5 is pruned at its first step"
    )
    assert study.best_trial.value == pytest.approx(df.loc[df["status"] == "succeeded", "val_loss"].min())


def test_a_journal_file_needs_no_database_and_a_taken_name_is_refused(search, capsys) -> None:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    tmp, run = search
    path = str(tmp / "study.log")
    assert (
        cli.main(["study", run.id, "--to", path, "--study-name", "mine", "--store", str(tmp / "store")]) == 0
    )
    study = optuna.load_study(study_name="mine", storage=JournalStorage(JournalFileBackend(path)))
    assert len(study.trials) == 6
    size = Path(path).stat().st_size
    assert (
        cli.main(["study", run.id, "--to", path, "--study-name", "mine", "--store", str(tmp / "store")]) == 2
    )
    assert "already holds a study named 'mine'" in capsys.readouterr().err
    assert Path(path).stat().st_size == size


@pytest.mark.parametrize(
    "to, said",
    [
        ("sqlite:///", "an in-memory database is gone when batchsweep exits"),
        ("sqlite:///:memory:", "an in-memory database"),
        ("sqlite:///{tmp}", "cannot open that database (unable to open database file)"),
        ("{tmp}/dir.log", "is not a regular file"),
        ("bogus://x", "cannot open that database"),
    ],
)
def test_a_storage_that_cannot_keep_the_study_is_one_line_and_exit_2(search, capsys, to, said) -> None:
    """A careless --to: a database in memory (written, then gone: `wrote study` said before), a directory as
    the database file or the journal (a SQLAlchemy traceback before), an unknown dialect."""
    tmp, run = search
    (tmp / "dir.log").mkdir(exist_ok=True)
    capsys.readouterr()
    assert cli.main(["study", run.id, "--to", to.format(tmp=tmp), "--store", str(tmp / "store")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and said in err, err


def test_the_command_prints_its_own_lines_only(search) -> None:
    import subprocess
    import sys

    tmp, run = search
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "batchsweep",
            "study",
            run.id,
            "--to",
            str(tmp / "quiet.log"),
            "--store",
            str(tmp / "store"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    # no Optuna log line
    assert done.stdout.startswith(f"wrote study '{run.id}'") and done.stderr == "", done.stderr
