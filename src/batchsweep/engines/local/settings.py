"""The local engine's resolved settings (run.json `engine`)."""

from __future__ import annotations

from batchsweep.store.record import EngineSettings


class LocalEngineSettings(EngineSettings):
    """The local engine's: the GPUs it may lease, and the memory it reserves per task (only when the spec set
    it)."""

    gpus: list[str] = []
    memory_limit_mib: int | None = None
