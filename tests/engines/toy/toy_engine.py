"""A fourth engine from outside the package: runs a run's tasks one after another in a thread.

Registered through the `batchsweep.engines` entry point group (see toy_engine-0.1.dist-info), exactly as a
third-party package would be."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from batchsweep.engines.base import (
    Engine,
    EngineRecord,
    EngineSettings,
    Progress,
    RunHandle,
    read_engine_record,
    write_engine_record,
)
from batchsweep.task.worker import ProcessRegistry, context_from_run, execute_task


class SerialSettings(BaseModel):
    """The spec's `serial:` block."""

    model_config = ConfigDict(extra="forbid")
    label: str = "serial"  # what the tasks' `worker` column says


class SerialRunSettings(EngineSettings):
    """What a run keeps of it (run.json `engine`): read back through this model."""

    label: str = "serial"


class SerialRecord(EngineRecord):
    """engine.json: the task the driver's thread runs now, for `status` in another process."""

    at: int | None = None


class SerialEngine(Engine):
    name = "serial"
    settings_model = SerialSettings
    engine_settings_model = SerialRunSettings
    record_model = SerialRecord

    @classmethod
    def check(cls, spec, tasks):  # type: ignore[no-untyped-def]
        """The engine's resolved settings, kept in run.json: its block of the spec, validated."""
        settings = cls.settings_of(spec.engines.get(cls.name))
        assert isinstance(settings, SerialSettings)
        return SerialRunSettings(label=settings.label)

    def __init__(self, run: RunHandle) -> None:
        super().__init__(run)
        self._thread: threading.Thread | None = None
        self._registry = ProcessRegistry()
        self._at: int | None = None  # the task the thread runs now

    def submit(self, indices: Sequence[int], *, detach: bool) -> None:
        tasks = {t.index: t for t in self.run.tasks()}
        ctx = context_from_run(self.run.record)
        base = Path(self.run.record.base_dir)

        def work() -> None:
            for i in indices:
                if self._registry.cancelled.is_set():
                    return
                self._at = i
                write_engine_record(self.run, SerialRecord(engine=self.name, at=i))
                execute_task(
                    ctx,
                    tasks[i],
                    self.run.store,
                    worker=self.run.record.engine_as(SerialRunSettings).label,
                    registry=self._registry,
                    resolve_input=lambda ref: base / ref,
                )
            self._at = None
            write_engine_record(self.run, SerialRecord(engine=self.name, at=None))

        self._thread = threading.Thread(target=work, daemon=True)
        self._thread.start()

    def poll(self) -> Progress:
        if self._thread is None:  # another process drives the run: its thread says which task it runs
            record = read_engine_record(self.run, SerialRecord)
            at = record.at if record is not None else None
        else:
            at = self._at
        return Progress(active=self._thread is not None and self._thread.is_alive(),
                        running=frozenset() if at is None else frozenset({at}))

    def cancel(self) -> None:
        self._registry.cancel_all()

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join()
