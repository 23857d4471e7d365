import pytest
from aws_fixtures import *  # noqa: F401,F403


@pytest.fixture(autouse=True)
def _file_hash_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The content keys' file-hash cache lives in a test's own directory, never in the developer's ~/.cache."""
    monkeypatch.setenv("BATCHSWEEP_CACHE_DIR", str(tmp_path_factory.mktemp("hash-cache")))
