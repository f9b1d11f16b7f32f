"""The Ollama test server follows current Ollama (v0.34), and v0.13 behind a switch: the rules
ollm depends on, over real HTTP."""

from __future__ import annotations

import httpx
import pytest

from tests.fakes.ollama_server import (
    CURRENT,
    V0_13,
    FakeModel,
    OllamaTestServer,
    open_ollama_server,
    prompt_tokens,
)

pytestmark = pytest.mark.anyio

SMALL = FakeModel("small:1b", context_length=8192)


def server(rules, **kwargs) -> OllamaTestServer:
    return OllamaTestServer(models={"small:1b": SMALL}, rules=rules, **kwargs)


async def chat(url: str, **body) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await client.post("/api/chat", json={"model": "small:1b", "stream": False, **body})


@pytest.mark.parametrize(("rules", "shown"), [(CURRENT, 8192), (V0_13, 32768)])
async def test_ps_shows_the_real_capped_context_since_v0_15_5(rules, shown):
    async with open_ollama_server(server(rules)) as running:
        await chat(running.url, messages=[], options={"num_ctx": 32768})
        async with httpx.AsyncClient(base_url=running.url) as client:
            (ps,) = (await client.get("/api/ps")).json()["models"]
    assert ps["context_length"] == shown


@pytest.mark.parametrize(("rules", "listed"), [(CURRENT, True), (V0_13, False)])
async def test_tags_list_context_length_and_capabilities_since_v0_30(rules, listed):
    async with (
        open_ollama_server(server(rules)) as running,
        httpx.AsyncClient(base_url=running.url) as client,
    ):
        (tag,) = (await client.get("/api/tags")).json()["models"]
    assert ("context_length" in tag["details"]) is listed
    assert ("capabilities" in tag) is listed


@pytest.mark.parametrize(("rules", "reloads"), [(CURRENT, 2), (V0_13, 1)])
async def test_a_different_shift_reloads_since_v0_30(rules, reloads):
    async with open_ollama_server(server(rules)) as running:
        await chat(running.url, messages=[], options={"num_ctx": 4096})
        await chat(running.url, messages=[], options={"num_ctx": 4096}, shift=False)
    assert len(running.reloads) == reloads


@pytest.mark.parametrize(
    ("rules", "vram_gib", "default"),
    [(CURRENT, 16, 4096), (CURRENT, 24, 8192), (V0_13, 80, 4096)],
)
async def test_the_default_context_is_tiered_by_vram_and_capped_since_v0_15_5(
    rules, vram_gib, default
):
    async with open_ollama_server(server(rules, vram_total=vram_gib * 2**30)) as running:
        await chat(running.url, messages=[])
    assert running.loaded["small:1b"].num_ctx == default, "32768 capped at the trained 8192"


@pytest.mark.parametrize(("rules", "counted"), [(CURRENT, 4096 - (4096 - 5) // 2), (V0_13, 4096)])
async def test_an_over_long_prompt_is_cut_to_half_the_window_now_to_the_window_before(
    rules, counted
):
    long = [{"role": "user", "content": "word " * 6000}]
    async with open_ollama_server(server(rules, path="go")) as running:
        cut = await chat(running.url, messages=long, options={"num_ctx": 4096})
        refused = await chat(running.url, messages=long, options={"num_ctx": 4096}, truncate=False)
    assert cut.status_code == 200 and cut.json()["prompt_eval_count"] == counted
    assert refused.status_code == 400
    style = "exceed_context_size_error" if rules is CURRENT else "the input length exceeds"
    assert style in refused.json()["error"]


@pytest.mark.parametrize(("rules", "status"), [(CURRENT, 400), (V0_13, 200)])
async def test_a_prompt_of_exactly_num_ctx_tokens_is_over_since_v0_30(rules, status):
    words = 512 - prompt_tokens([{"role": "user", "content": ""}])
    exact = [{"role": "user", "content": "word " * words}]
    assert prompt_tokens(exact) == 512
    async with open_ollama_server(server(rules)) as running:
        answer = await chat(running.url, messages=exact, options={"num_ctx": 512}, truncate=False)
    assert answer.status_code == status
