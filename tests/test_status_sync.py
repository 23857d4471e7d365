"""A task's status is written at once and fsync'ed in the background (`LocalBackend.write_soon`): the runner's
slot does not wait for the disk, and `flush_writes` returns once every status is on disk."""

from __future__ import annotations

import threading

from batchsweep.model import State, TaskStatus
from batchsweep.store import local
from batchsweep.store.core import Store


def test_a_status_is_readable_before_its_fsync_and_flush_waits_for_every_one(tmp_path, monkeypatch):
    store = Store.open(tmp_path)
    disk = threading.Event()
    synced: list[str] = []
    real_fsync, real_open = local.os.fsync, local.os.open
    names: dict[int, str] = {}

    def opened(path, flags, *args):
        fd = real_open(path, flags, *args)
        names[fd] = str(path)
        return fd

    def slow_fsync(fd: int) -> None:
        assert disk.wait(60), "the test never let the disk go"
        synced.append(names.get(fd, "?"))
        real_fsync(fd)

    monkeypatch.setattr(local.os, "open", opened)
    monkeypatch.setattr(local.os, "fsync", slow_fsync)
    for i in range(3):
        store.write_status("r", TaskStatus(index=i, state=State.SUCCEEDED))  # returns with the disk held up
    assert [s.state for s in store.read_task_statuses([("r", i) for i in range(3)])] == [State.SUCCEEDED] * 3
    assert synced == []

    flushed = threading.Event()
    waiter = threading.Thread(target=lambda: (store.flush_writes(), flushed.set()))
    waiter.start()
    assert not flushed.wait(0.2), "flush waits for the fsyncs"
    disk.set()
    assert flushed.wait(60)
    waiter.join()
    statuses = {str(store.local_path(store.task_status_key("r", i))) for i in range(3)}
    assert statuses <= set(synced), "every status"
