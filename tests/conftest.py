from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _private_home(tmp_path_factory, monkeypatch):
    """Tests never touch the real home: every run gets its own data and config roots."""
    root = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("OLLM_HOME", str(root / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(root / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(root / "share"))
    monkeypatch.setenv("XDG_STATE_HOME", str(root / "state"))
    monkeypatch.setenv("HOME", str(root))
    # Nor this machine's Ollama: its process and service unit are not the tests' server.
    monkeypatch.setattr("ollm.live._server_env.PROC", root / "proc")
    monkeypatch.setattr("ollm.live._server_env.UNITS", ())


@pytest.fixture(params=["v0.34", "v0.13"])
def ollama_rules(request, monkeypatch) -> str:
    """Run a test against the Ollama test server as current Ollama behaves, then as v0.13
    did (`tests.fakes.ollama_server.Rules`); opt in with `usefixtures("ollama_rules")`."""
    monkeypatch.setenv("OLLM_TEST_OLLAMA_RULES", request.param)
    return str(request.param)
