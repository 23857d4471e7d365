import logging
import os
from collections.abc import Iterator

import pytest
from aws_fixtures import *  # noqa: F401,F403
from slurm_fixtures import *  # noqa: F401,F403 - defined once, here: one Slurm cluster per test session


@pytest.fixture(autouse=True)
def _file_hash_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The content keys' file-hash cache lives in a test's own directory, never in the developer's
    ~/.cache."""
    monkeypatch.setenv("BATCHSWEEP_CACHE_DIR", str(tmp_path_factory.mktemp("hash-cache")))


@pytest.fixture(autouse=True)
def _library_logger_as_found() -> Iterator[None]:
    """A test that calls the CLI in-process gives the `batchsweep` logger the CLI's stderr handler and stops
    it propagating; later tests in the process then capture none of its records with `caplog` (pytest before
    9.1)."""
    logger = logging.getLogger("batchsweep")
    saved = logger.handlers[:], logger.propagate, logger.level
    yield
    logger.handlers[:], logger.propagate, logger.level = saved[0], saved[1], saved[2]


@pytest.fixture(autouse=True)
def _gpu_lease_table(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's GPU lease table (batchsweep.engines.local.leases.MachineGpus) is a test's own: tests
    lease made-up GPUs (BATCHSWEEP_GPUS=0,1), which the test runs of other checkouts on this machine lease
    too."""
    monkeypatch.setenv("BATCHSWEEP_RUNTIME_DIR", str(tmp_path_factory.mktemp("runtime")))


@pytest.fixture(autouse=True)
def _played_children_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    """A played AWS Batch child is forked from the player's zygote (boto3 and the worker imported once per
    test process, batchsweep.emulator.zygote), not started as a fresh interpreter: ~0.5 CPU-s less per child.
    The image test and tests/engines/test_aws_submit.py's fresh-interpreter test still start real ones."""
    monkeypatch.setenv("BATCHSWEEP_PLAY_FORK", "1")


# Module-scoped fixtures that start servers (seconds each): under pytest-xdist (`make test` runs `-n`) the
# tests of one module that use one stay on one worker (`--dist loadgroup`), so each module starts its server
# once.
ONE_WORKER_PER_MODULE = ("dask_processes", "iam_world", "batch_scheduler")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `image` build a real task image (minutes): they run under `make test-image`
    (BATCHSWEEP_IMAGE_TESTS=1), not in every `make test`."""
    for item in items:
        engine = item.callspec.params.get("engine") if hasattr(item, "callspec") else None
        for fixture in ONE_WORKER_PER_MODULE:
            # the conformance suite's dask engine asks for the cluster while the test runs
            if fixture in getattr(item, "fixturenames", ()) or (
                fixture == "dask_processes" and engine == "dask"
            ):
                item.add_marker(pytest.mark.xdist_group(f"{item.nodeid.split('::')[0]}:{fixture}"))
        # The tests that use the Slurm cluster (one per test process) go to one worker together.
        if "slurm_cluster" in getattr(item, "fixturenames", ()) or engine == "slurm":
            item.add_marker(pytest.mark.xdist_group("slurm_cluster"))
    if os.environ.get("BATCHSWEEP_IMAGE_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="builds a real task image: `make test-image`")
    for item in items:
        if item.get_closest_marker("image"):
            item.add_marker(skip)
