"""A run's provenance: the installed packages' hash is computed once per process, yet never stale."""

from __future__ import annotations

import os
import time
from pathlib import Path

from batchsweep.store.provenance import packages_hash


def install(site: Path, name: str, version: str) -> Path:
    """What pip leaves in site-packages for a distribution: NAME-VERSION.dist-info with its METADATA."""
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return info


def age(path: Path) -> None:
    """Set back a directory's mtime, as a site-packages nobody installed into lately is."""
    old = time.time() - 3600
    os.utime(path, (old, old))


def test_installing_or_removing_a_package_changes_the_hash_at_once(tmp_path, monkeypatch):
    site = tmp_path / "site-packages"
    site.mkdir()
    info = install(site, "somepkg", "1.0")
    age(site)
    monkeypatch.syspath_prepend(str(site))
    digest, count = packages_hash()
    assert packages_hash() == (digest, count)
    install(site, "otherpkg", "2.0")  # a notebook's `pip install otherpkg` between two runs
    digest2, count2 = packages_hash()
    assert (count2, digest2 != digest) == (count + 1, True)
    age(site)
    assert packages_hash() == (digest2, count2)
    # `pip install somepkg==1.1`: the old .dist-info goes, a new one comes.
    (info / "METADATA").unlink()
    info.rmdir()
    install(site, "somepkg", "1.1")
    digest3, count3 = packages_hash()
    assert count3 == count2 and digest3 not in (digest, digest2)


def test_the_hash_is_kept_while_no_package_directory_changes(tmp_path, monkeypatch):
    """The cache is used: metadata edited inside a .dist-info (which no installer does) leaves the directories
    holding the distributions as they were, so the hash stays the one computed first."""
    site = tmp_path / "site-packages"
    site.mkdir()
    info = install(site, "somepkg", "1.0")
    age(site)
    monkeypatch.syspath_prepend(str(site))
    first = packages_hash()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: somepkg\nVersion: 9.9\n")
    assert packages_hash() == first
    age(site)
    os.utime(site)  # anything that touches the directory: computed again
    assert packages_hash() != first


def test_installed_versions_are_what_importlib_metadata_reads_from_the_whole_metadata(tmp_path, monkeypatch):
    """Read from the metadata's headers alone, the names and versions are those `dist.metadata["Name"]` and
    `dist.version` give (a long description with header-like lines and CRLF line ends included)."""
    from importlib.metadata import distributions

    from batchsweep.store import provenance

    site = tmp_path / "site-packages"
    site.mkdir()
    install(site, "Plain_Pkg", "1.0")
    info = site / "crlf-2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_bytes(b"Metadata-Version: 2.1\r\nName: CrLf\r\nVersion: 2.0\r\n\r\n"
                                    b"Name: not-this\r\nVersion: 9\r\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(provenance, "_packages", None)
    expected = dict(sorted({(d.metadata["Name"] or "").lower(): d.version for d in distributions()}.items()))
    assert provenance.installed_versions() == expected
    assert expected["crlf"] == "2.0" and expected["plain_pkg"] == "1.0"
