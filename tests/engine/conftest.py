"""A real llama.cpp engine (the cyllama wheel) in-process, on models written at test time."""

from __future__ import annotations

from pathlib import Path

import pytest

REASON = (
    "the cyllama wheel (llama.cpp bindings) and gguf are not installable on this platform "
    "(cp311 manylinux x86_64 only)"
)
cy = pytest.importorskip("cyllama.llama.llama_cpp", reason=REASON)
pytest.importorskip("gguf", reason=REASON)

from .tiny_gguf import SHAPES, Shape, write_model  # noqa: E402


class EngineLog:
    """llama.cpp's log, captured through the bindings' callback (the real reasons live there)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, level: object, text: str) -> None:
        self.lines.append(text)

    def clear(self) -> None:
        self.lines.clear()


@pytest.fixture(scope="session")
def engine_log() -> EngineLog:
    log = EngineLog()
    cy.set_log_callback(log)
    return log


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Shape, Path]]:
    root = tmp_path_factory.mktemp("gguf")
    return {s.name: (s, write_model(root / f"{s.name}.gguf", s)) for s in SHAPES}


@pytest.fixture(scope="session")
def loaded(models, engine_log):
    return {
        name: (shape, path, cy.LlamaModel(path_model=str(path)))
        for name, (shape, path) in models.items()
    }
