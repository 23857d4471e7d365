"""The warm fork server's reapers (`task/reaperpool.py`): what a reaper says reaches the client whole."""

from __future__ import annotations

import os
from typing import Any

from batchsweep.task import _reap, reaperpool


class Sent:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def send(self, msg: dict[str, Any]) -> None:
        self.messages.append(msg)


def test_a_task_that_ends_before_its_pid_is_read_is_told_started_and_ended():
    """A quick task's reaper writes its pid and its exit at once: the server reads both in one go and tells
    the client both (it once kept the pid and dropped the exit, and the runner waited for ever)."""
    down_r, down_w = os.pipe()
    up_r, up_w = os.pipe()
    try:
        reaper = reaperpool._Reaper(os.getpid(), down_w, up_r)
        os.write(
            up_w, _reap.frame({"pid": 4242}) + _reap.frame({"exit": 0, "reaped": True, "usage": [0.01, 9.0]})
        )
        channel = Sent()
        assert reaperpool._start({"id": 7, "argv": []}, [reaper], channel, -1, -1) is None
        assert channel.messages == [{"id": 7, "pid": 4242},
                                    {"id": 7, "exit": 0, "reaped": True, "usage": [0.01, 9.0]}]
        assert reaper.serving is None  # idle again: the next request goes to it
        assert _reap.Frames().feed(os.read(down_r, 1 << 16)) == [{"id": 7, "argv": []}]
    finally:
        for fd in (down_r, down_w, up_r, up_w):
            os.close(fd)
