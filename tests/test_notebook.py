"""Notebook use: progress in a Jupyter kernel, a Run that shows itself, a report that displays inline.

Jupyter is not installed in the test environment, so a stand-in `IPython` (a shell with a kernel, and a
`display` that records what it is shown) is put in `sys.modules`; the run itself is real."""

from __future__ import annotations

import html
import re
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest

import batchsweep
from batchsweep.report.progress import in_jupyter

SCRIPTS = Path(__file__).parent / "scripts"


class FakeHTML:
    def __init__(self, data: str) -> None:
        self.data = data


class FakeHandle:
    def __init__(self, shown: list[str]) -> None:
        self.shown = shown

    def update(self, obj: FakeHTML) -> None:
        self.shown.append(obj.data)


class FakeIPython:
    """What the display calls record: every HTML shown, first by display() then by handle.update()."""

    def __init__(self, *, kernel: bool) -> None:
        self.shown: list[str] = []
        self.displays = 0
        self.kernel = object() if kernel else None

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        ipython = types.ModuleType("IPython")
        ipython.get_ipython = lambda: types.SimpleNamespace(kernel=self.kernel)  # type: ignore[attr-defined]
        display_mod = types.ModuleType("IPython.display")
        display_mod.HTML = FakeHTML  # type: ignore[attr-defined]
        display_mod.display = self.display  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "IPython", ipython)
        monkeypatch.setitem(sys.modules, "IPython.display", display_mod)
        monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))

    def display(self, obj: FakeHTML, *, display_id: Any = None) -> FakeHandle:
        self.displays += 1
        self.shown.append(obj.data)
        return FakeHandle(self.shown)


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: nb
        script: {SCRIPTS / 'writes_metrics.py'}
        params:
          grid: {{a: [1, 2, 3], sleep: [0.2]}}
        """))
    return path


def test_not_in_jupyter_outside_a_kernel() -> None:
    assert "ipykernel" not in sys.modules
    assert in_jupyter() is False


def test_in_jupyter_inside_a_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeIPython(kernel=True).install(monkeypatch)
    assert in_jupyter() is True


def test_terminal_ipython_is_not_jupyter(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeIPython(kernel=False).install(monkeypatch)
    assert in_jupyter() is False


def test_run_in_a_kernel_shows_one_progress_bar_updated_in_place(spec: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    ipy = FakeIPython(kernel=True)
    ipy.install(monkeypatch)
    run = batchsweep.run(spec, store=tmp_path / "store")
    assert ipy.displays == 1
    assert "<progress" in ipy.shown[0]
    assert "<progress value='3' max='3'" in ipy.shown[-1] and "3/3 · 3 succeeded" in ipy.shown[-1]
    df = run.results()
    assert list(df["status"]) == ["succeeded"] * 3 and list(df["a_seen"]) == [1, 2, 3]


def test_a_run_shows_itself_as_a_small_table(spec: Path, tmp_path: Path) -> None:
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    page = run._repr_html_()
    assert run.id in page and "3 succeeded" in page and "<table>" in page


def test_report_without_a_path_displays_inline_in_an_iframe(spec: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    FakeIPython(kernel=True).install(monkeypatch)
    shown = run.report()
    assert isinstance(shown, FakeHTML)
    assert shown.data.startswith('<iframe srcdoc="')
    page = html.unescape(shown.data.split('srcdoc="', 1)[1].split('" style=', 1)[0])
    assert page.lstrip().lower().startswith("<!doctype html") and run.id in page


def test_report_without_ipython_returns_the_page(
    spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    monkeypatch.setitem(sys.modules, "IPython", None)  # an import of it fails
    page = run.report()
    assert isinstance(page, str) and run.id in page and "<svg" in page


def test_the_progress_in_a_kernel_shows_each_running_tasks_latest_step_best_and_curve(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHSWEEP_SERIES_FLUSH_S", "0.05")
    spec = tmp_path / "curves.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: nbcurves
        script: {SCRIPTS / 'curve.py'}
        params:
          grid: {{quality: [0.5, 0.1]}}
          fixed: {{pace: 0.25, epochs: 10}}
        metrics: {{stdout: 'epoch (?P<step>\\d+) .*val_loss=(?P<val_loss>[\\d.]+)'}}
        """))
    ipy = FakeIPython(kernel=True)
    ipy.install(monkeypatch)
    run = batchsweep.run(spec, store=tmp_path / "store")
    assert ipy.displays == 1
    live = [page for page in ipy.shown if "batchsweep-live" in page]
    assert live, "no update showed the running tasks"
    page = live[-1]
    rows = dict(re.findall(r"<tr data-task='(\d+)'><td>\d+</td><td>(\d+)</td>", page))
    assert set(rows) == {"0", "1"} and all(1 <= int(step) <= 10 for step in rows.values())
    for task, quality in (("0", 0.5), ("1", 0.1)):  # latest and best of val_loss = quality + 1/step
        step = int(rows[task])
        cells = re.search(
            rf"<tr data-task='{task}'><td>{task}</td><td>{step}</td><td>([\d.]+)</td><td>([\d.]+)</td>"
            r"<td><svg class=\"spark\"[^>]*><polyline[^>]*points=\"([^\"]+)\"",
            page,
        )
        assert cells is not None, page
        assert float(cells.group(1)) == pytest.approx(quality + 1 / step, abs=1e-3)
        # falling: the latest is best
        assert float(cells.group(2)) == pytest.approx(quality + 1 / step, abs=1e-3)
        assert len(cells.group(3).split()) == step  # a point per step so far
    assert page.index("data-task='1'") < page.index("data-task='0'")  # best first
    assert "batchsweep-live" not in ipy.shown[-1]  # the finished run shows the bar alone
    assert list(run.results()["status"]) == ["succeeded"] * 2


def test_a_running_run_shows_its_running_tasks_series_in_its_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    monkeypatch.setenv("BATCHSWEEP_SERIES_FLUSH_S", "0.05")  # the detached runner inherits it
    spec = tmp_path / "curves.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: nbcell
        script: {SCRIPTS / 'curve.py'}
        params:
          grid: {{quality: [0.3]}}
          fixed: {{pace: 0.3, epochs: 12, hold: "{tmp_path / 'release'}"}}
        metrics: {{stdout: 'epoch (?P<step>\\d+) .*val_loss=(?P<val_loss>[\\d.]+)'}}
        """))
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True, progress=False)
    # The task holds after epoch 2 until the cell was read: a slow first read on a loaded machine (imports)
    # outlasted the 3.6 s the task ran, and then found it finished.
    page, deadline = "", time.monotonic() + 120
    try:
        while "batchsweep-live" not in page and time.monotonic() < deadline:
            time.sleep(0.2)
            page = run._repr_html_()
    finally:
        (tmp_path / "release").touch()
    run.wait(progress=False)
    assert "batchsweep-live" in page and "<svg class=\"spark\"" in page and "quality=0.3" in page
    assert "batchsweep-live" not in run._repr_html_()  # finished: the counts alone
