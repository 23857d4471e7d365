"""`batchsweep report RUN --serve`: the report served on 127.0.0.1 and refreshing itself in headless Chromium
while a local sweep runs; nothing but the page is served."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cdp import Browser
from helpers import ctrl_c_reaches_children, write_spec
from test_report_browser import CHROMIUM, OFFLINE

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make chromium)")
# Cut off from the network as the other browser tests are, but for the report server on 127.0.0.1.
LOOPBACK_ONLY = [f for f in OFFLINE if not f.startswith("--host-resolver-rules")] + [
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]

# Each task reports two steps, then waits for its own gate file: the test decides when each one finishes.
GATED = """\
import argparse, pathlib, time
import batchsweep
p = argparse.ArgumentParser()
p.add_argument("--g", type=int)
p.add_argument("--gates")
a = p.parse_args()
for step in (1, 2):
    batchsweep.log_metrics(step=step, loss=(a.g + 1) / step)
gate = pathlib.Path(a.gates) / str(a.g)
while not gate.exists():
    time.sleep(0.05)
batchsweep.log_metrics(loss=(a.g + 1) / 3)
"""


def _cli(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "BATCHSWEEP_STORE": str(tmp_path / "store"),
        "CI": "true",
        "BATCHSWEEP_SERIES_FLUSH_S": "0.2",
    }
    with ctrl_c_reaches_children():
        return subprocess.Popen([sys.executable, "-m", "batchsweep", *args], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _get(url: str, host: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as e:
        return e.code


def test_the_served_report_refreshes_itself_while_the_run_goes_and_stops_at_its_final_state(
    tmp_path: Path,
) -> None:
    gates = tmp_path / "gates"
    gates.mkdir()
    (tmp_path / "train.py").write_text(GATED)
    write_spec(tmp_path, f"""\
        name: live
        script: train.py
        params:
          grid: {{g: [0, 1, 2, 3]}}
          fixed: {{gates: "{gates}"}}
        max_parallel: 2
        warm: false
    """)
    run = _cli(tmp_path, "run", "sweep.yaml")
    server = None
    try:
        assert run.stdout is not None
        run_id = run.stdout.readline().strip()
        assert run_id.startswith("live-"), run.stderr.read() if run.stderr else ""
        server = _cli(tmp_path, "report", run_id, "--serve")
        assert server.stdout is not None
        line = server.stdout.readline()
        assert "serving the report of run " + run_id in line, line + (
            server.stderr.read() if server.stderr else ""
        )
        url = line.split(" at ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        with Browser(str(CHROMIUM), LOOPBACK_ONLY, tmp_path / "profile", url) as page:
            page.wait_for("document.body.dataset.ready === '1'")
            page.js("window.stayed = 1")  # gone if the page were reloaded instead of refreshing in place
            assert page.js("document.getElementById('live-total').textContent") == "4"
            assert page.js("document.body.dataset.live") == "1"
            # the running tasks' curves show while they run, before any task finished
            page.wait_for("document.querySelectorAll('svg[data-plot=curves] polyline.curve').length >= 2")
            assert page.js("document.getElementById('live-done').textContent") == "0"
            for g in (0, 1):
                (gates / str(g)).touch()
            page.wait_for("Number(document.getElementById('live-done').textContent) >= 2")
            assert page.js("document.body.dataset.live") == "1"
            for g in (2, 3):
                (gates / str(g)).touch()
            page.wait_for("document.body.dataset.live === '0'")
            assert page.js("document.getElementById('live-done').textContent") == "4"
            assert "final state" in page.js("document.getElementById('live-state').textContent")
            assert page.js("document.querySelectorAll('#tasks tbody tr').length") == 4
            assert page.js("window.stayed") == 1 and int(page.js("document.body.dataset.refreshes")) >= 2
        assert run.wait(timeout=120) == 0
        # one page at /, nothing else: no path reaches a file, and a page of another site cannot read it
        assert _get(url) == 200
        for path in ("etc/passwd", "../../../etc/passwd", "%2e%2e/%2e%2e/etc/passwd", "store", "train.py"):
            assert _get(url + path) == 404, path
        assert _get(url, host="attacker.example:80") == 403
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=60)
        assert server.returncode == 0, err
        assert "stopped serving the report" in out and "Traceback" not in err
    finally:
        for proc in (run, server):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()
