"""`batchsweep report --serve`: the report on http://127.0.0.1:PORT/, re-rendered from the store while the run
goes.

Only the report is served: one page at `/`, nothing else (no path from the URL reaches a file). Every render
reads the run from the store afresh, so it works for every engine and for a run driven by another process or
machine. While the run is active the page re-fetches itself (report.js) every `refresh_s` seconds, at least
three times as long as a render takes, so a large run's page does not keep a core busy; once the run has
ended, the final page is rendered once more and then served as it is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

MIN_REFRESH_S = 2.0
MAX_REFRESH_S = 60.0
# the refresh period -> (the page, whether the run is still going)
Render = Callable[[float], tuple[str, bool]]


@dataclass
class _Rendered:
    page: bytes
    active: bool
    at: float


class LivePage:
    """The page as the store has it now, rendered at most once per half refresh period however many tabs ask;
    the last good page is served again when a render fails (a store being written mid-read)."""

    def __init__(self, render: Render, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.render, self.clock = render, clock
        self.refresh_s = MIN_REFRESH_S
        self._last: _Rendered | None = None
        self._lock = threading.Lock()

    def get(self) -> bytes:
        with self._lock:
            last = self._last
            if last is not None and (not last.active or self.clock() - last.at < self.refresh_s / 2):
                return last.page
            started = self.clock()
            try:
                html, active = self.render(self.refresh_s)
            except Exception as exc:  # noqa: BLE001 - the page must survive a store read mid-write
                if last is None:
                    raise
                log.warning(
                    "report --serve: the store could not be read (%s); serving the previous page", exc
                )
                return last.page
            if last is not None:  # the first render pays the imports; later ones are what a refresh costs
                self.refresh_s = min(MAX_REFRESH_S, max(MIN_REFRESH_S, 3 * (self.clock() - started)))
            self._last = _Rendered(html.encode("utf-8"), active, self.clock())
            return self._last.page


class ReportServer:
    """A started server: `url`, then `stop()` (or use it as a context manager)."""

    def __init__(self, page: LivePage, *, host: str = "127.0.0.1", port: int = 0) -> None:
        hosts: set[str] = set()
        handler = type("Handler", (_Handler,), {"page": page, "hosts": hosts})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        hosts.update({f"{host}:{self.port}", f"localhost:{self.port}", f"127.0.0.1:{self.port}"})
        self.url = f"http://{host}:{self.port}/"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="batchsweep-report", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join()

    def __enter__(self) -> ReportServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    page: LivePage
    hosts: set[str] = set()
    server_version = "batchsweep"

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._answer(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(body=False)

    def _answer(self, *, body: bool) -> None:
        # Another site's page must not read the report through a name that resolves here (DNS rebinding).
        if self.headers.get("Host", "") not in self.hosts:
            return self._plain(403, "forbidden: open the report at the address batchsweep printed", body)
        if self.path.split("?", 1)[0] not in ("/", "/index.html"):
            return self._plain(404, "not found: this server has one page, /", body)
        try:
            page = self.page.get()
        except Exception as exc:  # noqa: BLE001 - said on the page instead of a dropped connection
            return self._plain(500, f"the report could not be rendered: {exc}", body)
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(page)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(page)

    def _plain(self, code: int, text: str, body: bool) -> None:
        data = (text + "\n").encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        log.debug("report --serve: " + format, *args)


def serve(render: Render, *, host: str = "127.0.0.1", port: int = 0) -> ReportServer:
    """Serve the page `render` makes on http://HOST:PORT/ (port 0: a free one) from a thread. The page is
    rendered once first, so a bad request (an unknown metric) raises here, before anything listens. Returns
    the started server; `stop()` ends it."""
    page = LivePage(render)
    page.get()
    return ReportServer(page, host=host, port=port)
