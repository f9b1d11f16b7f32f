"""Whatever a server sends, ollm answers with a typed failure, never a traceback."""

from __future__ import annotations

import json

import anyio
import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ollm.config import Settings
from ollm.live import SelectionError, select_model
from ollm.profiles import load_profiles
from ollm.providers.ollama import OllamaClient, ProviderError

HOST = "http://fuzz.invalid"
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda c: (
        st.lists(c, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "message",
                    "content",
                    "done",
                    "error",
                    "prompt_eval_count",
                    "eval_count",
                    "tool_calls",
                    "function",
                    "arguments",
                    "thinking",
                    "model_info",
                    "capabilities",
                    "general.architecture",
                    "llama.context_length",
                    "version",
                    "models",
                    "x",
                ]
            ),
            c,
            max_size=5,
        )
    ),
    max_leaves=15,
)
lines = st.lists(st.builds(json.dumps, json_values) | st.text(max_size=30), max_size=6)


def client_for(status: int, body: bytes) -> tuple[httpx.AsyncClient, OllamaClient]:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, content=body))
    http = httpx.AsyncClient(transport=transport, base_url=HOST)
    return http, OllamaClient(http, HOST, 5.0)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(status=st.sampled_from([200, 200, 200, 400, 404, 500, 503]), body=lines)
def test_fuzzed_chat_streams_end_in_chunks_or_a_provider_error(status, body):
    async def run() -> None:
        http, client = client_for(status, "\n".join(body).encode())
        async with http:
            try:
                async for chunk in client.chat({"model": "m", "messages": []}):
                    assert chunk is not None
            except ProviderError as exc:
                assert exc.failure.message

    anyio.run(run, backend="asyncio")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    status=st.sampled_from([200, 200, 404, 500]),
    body=st.builds(json.dumps, json_values) | st.text(max_size=40),
)
def test_fuzzed_show_and_tags_give_a_selection_or_one_sentence(status, body):
    async def run() -> None:
        http, client = client_for(status, body.encode())
        async with http:
            for model in ("m", None):
                try:
                    selected = await select_model(client, Settings(), load_profiles(), model=model)
                except SelectionError as exc:
                    assert str(exc) and "\n" not in str(exc)
                else:
                    assert selected.num_ctx > 0

    anyio.run(run, backend="asyncio")
