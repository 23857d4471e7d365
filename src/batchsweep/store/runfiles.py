"""A run's own records in the store: run.json and tasks.jsonl written, read, updated and deleted; the runs a
store holds; its shared code packages and inputs no run uses any more."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

from batchsweep.errors import RunDamaged, RunNotFound
from batchsweep.model import Task, load_json
from batchsweep.store.backend import StoreBase, _why
from batchsweep.store.layout import CODE_PREFIX, INPUTS_PREFIX, STORE_MARKER


class RunFiles(StoreBase):
    """run.json, tasks.jsonl and the run's directory as a whole."""

    def mark(self) -> None:
        """A local store's marker file: a code directory that holds this store leaves it out of its package
        and key."""
        if self.is_local and not self.backend.exists(STORE_MARKER):
            marker = b"a batchsweep store: not code, never part of a content key\n"
            self.backend.write_bytes(STORE_MARKER, marker)

    def create_run(self, run_id: str, info: dict[str, Any], tasks: Iterable[Task]) -> None:
        """Write a new run: tasks.jsonl first, then run.json (`info`), so a run exists only once it is whole.
        """
        self.mark()
        self.write_tasks(run_id, tasks)
        self.write_json(self.run_record_key(run_id), info)

    def write_tasks(self, run_id: str, tasks: Iterable[Task]) -> None:
        """Replace the run's tasks.jsonl (a search adds each round's trials), in one atomic write."""
        data = "".join(t.to_json() + "\n" for t in tasks).encode()
        self.backend.write_bytes(self.tasks_file_key(run_id), data)

    def run_ids(self) -> list[str]:
        """The ids of the runs in the store (one listing of `runs/`), including damaged ones."""
        return self.backend.list_dirs("runs")

    def run_info(self, run_id: str) -> dict[str, Any]:
        """run.json as a dict. RunNotFound when the run has none; RunDamaged, naming why, when it is not JSON.
        """
        try:
            info = self.read_json(self.run_record_key(run_id))
        except FileNotFoundError:
            raise RunNotFound(f"run {run_id!r} not found in store {self.url}; `batchsweep runs` lists the "
                              "runs") from None
        except ValueError as e:
            reason = _why(e)
        else:
            if isinstance(info, dict) and "run_id" in info:
                return info
            reason = "not a run record"
        raise RunDamaged(f"run {run_id}: run.json in {self.url} is damaged ({reason}); its task files are "
                         "intact, "
                         "but the run cannot be read without it", reason=reason)

    def update_run_info(self, run_id: str, **changes: Any) -> dict[str, Any]:
        """Merge `changes` into run.json (read, then written whole); returns the new record."""
        info = {**self.run_info(run_id), **changes}
        self.write_json(self.run_record_key(run_id), info)
        return info

    def tasks(self, run_id: str) -> list[Task]:
        """Every readable task; a damaged line is left out with a warning (the others stay readable)."""
        return list(self.iter_tasks(run_id))

    def iter_tasks(self, run_id: str) -> Iterator[Task]:
        """`tasks`, one at a time (a table of 100,000 tasks need not hold 100,000 Task objects)."""
        text = self.backend.read_bytes(self.tasks_file_key(run_id)).decode("utf-8", errors="replace")
        lines = text.splitlines()
        del text
        bad = []
        # A parse per 1,000 lines; a damaged one sends them one by one.
        for start in range(0, len(lines), 1000):
            chunk = lines[start:start + 1000]
            try:
                array = "[" + ",".join(line for line in chunk if line) + "]"
                tasks = [Task.from_dict(d) for d in load_json(array)]
            except (ValueError, TypeError, KeyError):
                tasks = []
            if len(tasks) == sum(1 for line in chunk if line):
                yield from tasks
                continue
            for number, line in enumerate(chunk, start):
                if not line:
                    continue
                try:
                    task = Task.from_json(line)
                except (ValueError, TypeError, KeyError):
                    bad.append(number)
                    continue
                yield task
        if bad:
            self._warn_damaged(run_id, "lines in tasks.jsonl", bad, "those tasks are left out")

    def remove_stale_temp(self, run_id: str) -> None:
        """Temp files a killed writer left in the run's directory (local stores; S3 writes are whole objects).
        Called by the run's one driver, so no live writer owns them."""
        if not self.is_local:
            return
        for entry in os.scandir(self.local_path(self.run_prefix(run_id))):
            temp = entry.name.startswith(".") and entry.name.endswith(".tmp")
            if temp and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)

    def delete_run(self, run_id: str) -> None:
        """Delete everything under the run's directory (local: never through a symlink out of the store)."""
        self.backend.delete_prefix(self.run_prefix(run_id))

    def unused_shared_files(self, used: set[str]) -> list[str]:
        """Code packages and staged inputs in the store that no key in `used` names. An input staged as a
        directory (`inputs/<sha>/<name>/...`) counts as used when any file of it is."""
        def group(key: str) -> str:
            return "/".join(key.split("/")[:3])

        blobs = self.backend.list_files(CODE_PREFIX) + self.backend.list_files(INPUTS_PREFIX)
        inputs = {group(k) for k in used if k.startswith(f"{INPUTS_PREFIX}/")}
        return sorted(k for k in blobs
                      if k not in used and not (k.startswith(f"{INPUTS_PREFIX}/") and group(k) in inputs))
