import os

import pytest
from aws_fixtures import *  # noqa: F401,F403


@pytest.fixture(autouse=True)
def _file_hash_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The content keys' file-hash cache lives in a test's own directory, never in the developer's ~/.cache."""
    monkeypatch.setenv("BATCHSWEEP_CACHE_DIR", str(tmp_path_factory.mktemp("hash-cache")))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `image` build a real task image (minutes): they run under `make test-image`
    (BATCHSWEEP_IMAGE_TESTS=1), not in every `make test`."""
    if os.environ.get("BATCHSWEEP_IMAGE_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="builds a real task image: `make test-image`")
    for item in items:
        if item.get_closest_marker("image"):
            item.add_marker(skip)
