"""The store (docs/design.md §4): every file of a run, on a local directory or an S3 prefix. `Store` is its
parts, each a job of its own module, on the layout of its keys (store/layout.py):

    store/backend.py    `Backend` (local or S3 blobs) and the reads of one or many keys every part shares
    store/runfiles.py   run.json and tasks.jsonl: a run created, read, updated, deleted; the runs listed
    store/reuse.py      the reuse index: succeeded tasks by content key
    store/taskfiles.py  each task's status and metrics, from its own files or the packs that cover it
    store/packs.py      many tasks' statuses and metrics in one object
    store/logpacks.py   a compacted run's logs in one file, with an index per task

Engines and the rest of the package import from here (`Store`, `TaskDir`, `PackEntry`, ...).
"""

from __future__ import annotations

import os
import stat

from batchsweep.errors import SweepError
from batchsweep.store.backend import PARALLEL_READS as PARALLEL_READS
from batchsweep.store.backend import Backend as Backend
from batchsweep.store.layout import CODE_PREFIX as CODE_PREFIX
from batchsweep.store.layout import INPUTS_PREFIX as INPUTS_PREFIX
from batchsweep.store.layout import PACKS as PACKS
from batchsweep.store.layout import SEARCH_JOURNAL as SEARCH_JOURNAL
from batchsweep.store.layout import STORE_MARKER as STORE_MARKER
from batchsweep.store.layout import TASK_FILES as TASK_FILES
from batchsweep.store.layout import TaskDir as TaskDir
from batchsweep.store.layout import valid_run_id as valid_run_id
from batchsweep.store.local import FILE_MODE as FILE_MODE
from batchsweep.store.local import LocalBackend as LocalBackend
from batchsweep.store.local import OutsideStore as OutsideStore
from batchsweep.store.logpacks import LOG_PACK_MAX as LOG_PACK_MAX
from batchsweep.store.packs import PackEntry as PackEntry
from batchsweep.store.packs import current_packs as current_packs
from batchsweep.store.packs import json_line as json_line
from batchsweep.store.reuse import ReuseIndex
from batchsweep.store.runfiles import RunFiles
from batchsweep.store.taskfiles import PACK_GAP_GETS as PACK_GAP_GETS
from batchsweep.store.taskfiles import TaskFiles
from batchsweep.store.taskfiles import _parse_status as _parse_status

DEFAULT_STORE = ".batchsweep"


def _a_directory_or_none(location: str) -> None:
    """A local store's path names a directory, or nothing yet (it is made on the first write)."""
    try:
        mode = os.stat(location).st_mode
    except FileNotFoundError:
        return
    except NotADirectoryError:
        mode = 0
    except OSError:
        return  # unreadable: the first read says so
    if not stat.S_ISDIR(mode):
        raise SweepError(f"store {location}: not a directory; name a directory (made when missing) or "
                         "s3://bucket/prefix with --store or BATCHSWEEP_STORE")


class Store(TaskFiles, RunFiles, ReuseIndex):
    """A store location, the layout of everything in it and every read and write of it."""

    @classmethod
    def open(cls, location: str | os.PathLike[str] | None = None, *, aws_profile: str | None = None,
             aws_region: str | None = None) -> Store:
        """The store at `location` (a directory, or s3://bucket/prefix), else $BATCHSWEEP_STORE, else
        `.batchsweep` here. Opening reads and writes nothing; a local path that is not a directory (a file,
        /dev/null) is a SweepError in one line."""
        location = str(location or os.environ.get("BATCHSWEEP_STORE") or DEFAULT_STORE)
        if location.startswith("s3://"):
            from batchsweep.aws.s3store import S3Backend

            return cls(S3Backend.from_url(location, profile=aws_profile, region=aws_region))
        _a_directory_or_none(location)
        return cls(LocalBackend(location))
