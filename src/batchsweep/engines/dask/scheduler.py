"""The Dask driver's dealings with the scheduler: connecting to it (or starting the cluster batchsweep owns,
kept from one round of a search to the next), and what it is asked while a run goes on."""

from __future__ import annotations

import atexit
import gc
import logging
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batchsweep.engines.dask.settings import DaskEngineSettings, import_class
from batchsweep.engines.dask.worker import index_of
from batchsweep.errors import SpecError

if TYPE_CHECKING:
    from distributed import Client

# Scheduler task states that mean "not finished yet" (None: the scheduler has forgotten the key).
ACTIVE_STATES = frozenset({"released", "waiting", "queued", "processing", "no-worker"})
CONNECT_TIMEOUT_S = 5
# How long a search's connection (and the cluster it started) waits for the next round's engine to take it.
KEEP_S = 60.0


@dataclass
class Connection:
    """A client, and the cluster batchsweep started for it (None: an existing scheduler's). `kept`: handed
    over from the previous round of the same run, so what a fresh one needs (clearing the cancel Event) is
    done."""

    client: Client
    cluster: Any = None
    kept: bool = False

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


_KEPT: dict[str, tuple[Connection, threading.Timer]] = {}  # run id -> its connection, between two rounds
_KEPT_LOCK = threading.Lock()


def open_connection(run_id: str, settings: DaskEngineSettings) -> Connection:
    """The run's connection kept by its previous round, else a new one: to the scheduler, or to a cluster
    started here."""
    with _KEPT_LOCK:
        kept = _KEPT.pop(run_id, None)
    if kept is not None:
        kept[1].cancel()
        if kept[0].client.status == "running":
            kept[0].kept = True
            return kept[0]
        kept[0].close()
    from distributed import Client, LocalCluster

    if settings.scheduler is not None:
        return Connection(connect(settings.scheduler))
    spec = settings.cluster
    if spec == "local" or spec is None:
        # Workers as threads of this process: each task is a process of its own anyway, and a worker process
        # took seconds to start (spawned, importing Dask) where a thread takes milliseconds. Over TCP, so
        # `status` from another shell reaches the scheduler.
        cluster = LocalCluster(n_workers=settings.n_workers or os.cpu_count() or 1, threads_per_worker=1,
                               processes=False, protocol="tcp://", dashboard_address=":0",
                               silence_logs=logging.ERROR)
    else:
        cluster = import_class(spec.class_)(**spec.kwargs)
        if spec.scale:
            scale(cluster, spec.class_, spec.scale)
    try:
        return Connection(Client(cluster, set_as_default=False), cluster)
    except BaseException:
        cluster.close()
        raise


def scale(cluster: Any, class_: str, n: int) -> None:
    """Scale the cluster and, for a SpecCluster (dask-jobqueue's), wait until its workers' jobs are
    submitted: a job the batch system refuses (a partition or account it lacks) is one line naming the
    fix, not tracebacks and a run that waits for ever on workers that never come. Closes the cluster when
    it raises."""
    # Their tracebacks of the refused submission are the failure this reports in one line.
    names = ("tornado.application", "asyncio", "distributed.deploy.spec")
    quiet = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.CRITICAL)

    async def started() -> None:
        for worker in list(getattr(cluster, "workers", {}).values()):
            await worker  # a SpecCluster's worker whose start failed starts again here, and raises

    try:
        cluster.scale(n)
        if hasattr(cluster, "_correct_state") and hasattr(cluster, "sync"):
            cluster.sync(cluster._correct_state)
            cluster.sync(started)
    except Exception as e:
        # closing asserts that each worker started or failed: mark and forget those whose job was refused
        for name, worker in list(getattr(cluster, "workers", {}).items()):
            status = getattr(worker, "status", None)
            if getattr(status, "name", "") == "created":
                worker.status = type(status).failed  # type: ignore[union-attr]
                cluster.workers.pop(name, None)
                getattr(cluster, "worker_spec", {}).pop(name, None)
        cluster.close()
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        why = next((line for line in reversed(lines) if "error" in line.lower()),
                   lines[-1] if lines else type(e).__name__)
        raise SpecError(f"dask.cluster: {class_} could not start its workers ({why}); fix "
                        "dask.cluster.kwargs (queue, account, ...) to what the cluster takes") from None
    except BaseException:
        cluster.close()
        raise
    finally:
        gc.collect()  # a refused job's unretrieved futures log their traceback when collected
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)


def keep(run_id: str, connection: Connection) -> None:
    """Hold the connection for the run's next round (a search asks its next trials meanwhile): a cluster
    started per round cost seconds a round. Closed when no round takes it within KEEP_S, or at exit."""
    timer = threading.Timer(KEEP_S, drop, args=(run_id, connection))
    timer.daemon = True
    with _KEPT_LOCK:
        old = _KEPT.pop(run_id, None)
        _KEPT[run_id] = (connection, timer)
    if old is not None:
        old[1].cancel()
        old[0].close()
    timer.start()


def drop(run_id: str, connection: Connection | None = None) -> None:
    """Close the run's kept connection (only `connection`, when given: the timer's own)."""
    with _KEPT_LOCK:
        kept = _KEPT.get(run_id)
        if kept is None or (connection is not None and kept[0] is not connection):
            return
        del _KEPT[run_id]
    kept[1].cancel()
    kept[0].close()


@atexit.register
def _drop_all() -> None:
    for run_id in list(_KEPT):
        drop(run_id)


def connect(address: str) -> Client:
    from distributed import Client

    try:
        return Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as e:
        raise SpecError(f"dask.scheduler: cannot reach {address} ({e.__class__.__name__}); "
                        "start one with `dask scheduler` or fix the address") from None


def scheduler_of(client: Client) -> Any:
    """The client's connection to its scheduler: there once the client has connected, as ours have."""
    if client.scheduler is None:
        raise RuntimeError("the Dask client is not connected to a scheduler")
    return client.scheduler


def check_workers_declare(client: Client, resources: dict[str, float]) -> None:
    """A task no worker can take would wait for ever: say so before submitting."""
    workers = client.scheduler_info().get("workers", {}).values()
    if any(all(w.get("resources", {}).get(k, 0) >= v for k, v in resources.items()) for w in workers):
        return
    wanted = ",".join(f"{k}={v:.15g}" for k, v in resources.items())
    field = "resources.gpus" if "GPU" in resources else "resources.memory_mib"
    raise SpecError(f"{field}: no Dask worker declares {wanted}; start workers with "
                    f"`dask worker SCHEDULER --resources {wanted}` (or lower `resources:`)")


def describe_failure(result: Any) -> str:
    # An erred future's result without raising is (type, exception, traceback).
    exc = result[1] if isinstance(result, tuple) and len(result) == 3 else result
    return f"{type(exc).__name__}: {exc} (on the Dask worker)"[:500]


def running(client: Client, run_id: str) -> frozenset[int]:
    """This run's tasks on workers: each worker's first tasks by index, as many as it has threads (the
    scheduler queues the rest and a worker runs what it holds in submission order)."""
    processing = client.processing()
    nthreads = client.nthreads()
    found: set[int] = set()
    for worker, keys in processing.items():
        indices = sorted(i for i in (index_of(run_id, k) for k in keys) if i is not None)
        found.update(indices[:nthreads.get(worker, 0)])
    return frozenset(found)


def lost_workers(client: Client, run_id: str, since: float) -> int:
    """Workers that left unexpectedly while processing this run's tasks (Dask reschedules those tasks)."""
    lost = 0
    for stamp, event in client.get_events("all"):
        if (stamp >= since and isinstance(event, dict) and event.get("action") == "remove-worker"
                and not event.get("expected")
                and any(index_of(run_id, k) is not None for k in event.get("processing-tasks") or ())):
            lost += 1
    return lost


def lost_note(n: int) -> str:
    return f"{n} Dask worker{'s' if n != 1 else ''} lost mid-run; Dask ran their tasks again elsewhere"
