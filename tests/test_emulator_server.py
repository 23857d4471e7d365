"""The emulator's moto server (`batchsweep.emulator.server.MotoServer`), which every AWS test starts."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from batchsweep.emulator import server


def test_a_port_taken_before_moto_binds_it_is_given_up_for_another_free_one(monkeypatch):
    """The free port the server chose is bound by another process in the seconds moto_server spends on its
    imports (another test session's server, a Dask scheduler): moto_server exits, and the server starts again
    on another free port instead of failing every AWS test of the session."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken])
        real = server.free_port
        monkeypatch.setattr(server, "free_port", lambda: next(ports, None) or real())
        with server.MotoServer() as moto:
            assert moto.port != taken
            with urllib.request.urlopen(f"{moto.url}/moto-api/config", timeout=30) as response:
                assert response.status < 300


def test_a_port_given_by_the_caller_is_never_changed(monkeypatch):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        with pytest.raises(RuntimeError, match="moto_server exited early"):
            server.MotoServer(taken).start()
