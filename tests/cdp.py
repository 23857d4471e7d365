"""Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: fd 3 in, fd 4
out, messages ending in NUL), standard library only: a page that changes itself can be read again and again in
one browser session."""

from __future__ import annotations

import fcntl
import json
import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any


class Browser:
    """One Chromium showing `url`; `js(expression)` evaluates in the page and returns the value."""

    def __init__(self, chromium: str, flags: list[str], profile: Path, url: str) -> None:
        to_child, self._write = os.pipe()
        self._read, from_child = os.pipe()
        # The child's fd 3 and 4 must be these pipes: moved above 10 first so dup2 cannot clobber one with the
        # other.
        high_in, high_out = (
            fcntl.fcntl(to_child, fcntl.F_DUPFD, 10),
            fcntl.fcntl(from_child, fcntl.F_DUPFD, 10),
        )

        def wire() -> None:
            os.dup2(high_in, 3)
            os.dup2(high_out, 4)

        self.proc = subprocess.Popen(
            [chromium, *flags, f"--user-data-dir={profile}", "--remote-debugging-pipe", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(3, 4),
            preexec_fn=wire,
        )
        for fd in (to_child, from_child, high_in, high_out):
            os.close(fd)
        self._buf, self._id = b"", 0
        self.session = self._attach(url)

    def _attach(self, url: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pages = [t for t in self.call("Target.getTargets")["targetInfos"] if t["type"] == "page"]
            if pages:
                return str(
                    self.call("Target.attachToTarget", targetId=pages[0]["targetId"], flatten=True)[
                        "sessionId"
                    ]
                )
            time.sleep(0.2)
        raise TimeoutError(f"no page target for {url}")

    def call(self, method: str, *, session: str | None = None, timeout: float = 120, **params: Any) -> Any:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self._read], [], [], left)[0]:
                    raise TimeoutError(f"{method}: no answer from Chromium in {timeout} s")
                chunk = os.read(self._read, 1 << 16)
                if not chunk:
                    raise RuntimeError(
                        "Chromium exited: "
                        f"{self.proc.stderr.read().decode()[-2000:] if self.proc.stderr else ''}"
                    )
                self._buf += chunk
            raw, self._buf = self._buf.split(b"\0", 1)
            answer = json.loads(raw)
            if answer.get("id") == self._id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})

    def js(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate", session=self.session, expression=expression, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, *, timeout: float = 180, every: float = 0.3) -> Any:
        """Evaluate until the value is truthy; returns it (TimeoutError naming the expression otherwise). An
        exception in the page (the document still loading: no body yet) counts as not yet."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.js(expression)
            except RuntimeError as e:
                value = f"an exception: {e}"[:500]
            else:
                if value:
                    return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression} stayed {value!r} for {timeout} s")
            time.sleep(every)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (TimeoutError, RuntimeError, OSError):
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._read, self._write):
            os.close(fd)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
