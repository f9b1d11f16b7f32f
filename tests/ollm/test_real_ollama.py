"""Against a real Ollama, only when one answers at OLLAMA_HOST (skipped otherwise)."""

from __future__ import annotations

import os

import anyio
import httpx
import pytest

from ollm.config import normalise_host
from ollm.events import MessageAdded, UsageChanged

from .live import open_live

HOST = normalise_host(os.environ.get("OLLAMA_HOST") or "127.0.0.1")


def _installed() -> list[str]:
    try:
        response = httpx.get(f"{HOST}/api/tags", timeout=1.0, trust_env=False)
        return [m["name"] for m in response.json().get("models", [])]
    except (httpx.HTTPError, ValueError, KeyError, AttributeError):
        return []


MODELS = _installed()
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not MODELS, reason=f"no Ollama with a model answers at {HOST}"),
]


class RealServer:
    url = HOST


async def test_a_real_ollama_gets_our_num_ctx_and_counts_within_3_percent():
    async with open_live(RealServer(), model=MODELS[0], size=4096, timeout=300) as live:  # type: ignore[arg-type]
        for question in ("Say hello in five words.", "Now say goodbye in five words."):
            assert isinstance(await live.say(question), MessageAdded)
        running = await live.client.ps()
        mine = next(m for m in running if MODELS[0] in (m.name, m.model))
        assert mine.context_length in (live.selected.num_ctx, 0)
        assert live.h.events(UsageChanged)[-1].limit_tokens == live.selected.num_ctx
        await anyio.lowlevel.checkpoint()
