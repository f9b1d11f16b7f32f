from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ollm.providers.failures import classify_error, unwrap_error, version_at_least

HOST, MODEL = "http://127.0.0.1:11434", "llama3.1:8b"
LLAMA_SERVER = {
    "error": {
        "code": 400,
        "message": "request (5010 tokens) exceeds the available context size (2048 tokens), "
        "try increasing it",
        "type": "exceed_context_size_error",
        "n_prompt_tokens": 5010,
        "n_ctx": 2048,
    }
}


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"error": json.dumps(LLAMA_SERVER)}),  # JSON inside JSON, as Ollama forwards
        json.dumps({"error": json.dumps(json.dumps(LLAMA_SERVER))}),  # encoded twice
        json.dumps(LLAMA_SERVER),
    ],
)
def test_an_overflow_reads_the_sizes_even_json_inside_json(body):
    failure = classify_error(400, body, host=HOST, model=MODEL)
    assert failure.kind == "context_overflow"
    assert (failure.n_prompt_tokens, failure.n_ctx) == (5010, 2048)
    assert "(5010 tokens for a 2048-token context)" in failure.message


@pytest.mark.parametrize(
    "text",
    [
        "the prompt is longer than the context length currently available to the model; "
        "shorten the prompt, adjust the context length in settings, or use a model with a "
        "longer context length",
        "the input length exceeds the context length",
        "request (9000 tokens) exceeds the available context size (8192 tokens), try increasing it",
    ],
)
def test_older_overflow_texts(text):
    failure = classify_error(400, json.dumps({"error": text}), host=HOST, model=MODEL)
    assert failure.kind == "context_overflow"


def test_out_of_memory_not_found_and_busy():
    oom = classify_error(
        500,
        json.dumps(
            {"error": "model runner has unexpectedly stopped: cudaMalloc failed: out of memory"}
        ),
        host=HOST,
        model=MODEL,
    )
    assert oom.kind == "out_of_memory"
    missing = classify_error(404, '{"error":"model \'x\' not found"}', host=HOST, model="x")
    assert missing.kind == "model_not_found"
    assert "ollama pull x" in missing.message
    busy = classify_error(503, '{"error":"server busy"}', host=HOST, model=MODEL)
    assert busy.kind == "server_error"


def test_versions():
    assert version_at_least("0.12.6", (0, 12, 6))
    assert version_at_least("0.33.0-rc2", (0, 12, 6))
    assert not version_at_least("0.12.5", (0, 12, 6))
    assert not version_at_least("", (0, 12, 6))
    assert not version_at_least("dev", (0, 12, 6))


@given(
    status=st.integers(0, 599),
    body=st.text(max_size=200)
    | st.builds(
        json.dumps,
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=10),
            lambda c: (
                st.lists(c, max_size=3)
                | st.dictionaries(
                    st.sampled_from(["error", "message", "n_ctx", "n_prompt_tokens", "type"]),
                    c,
                    max_size=4,
                )
            ),
            max_leaves=10,
        ),
    ),
)
def test_fuzzed_error_bodies_always_give_one_sentence(status, body):
    failure = classify_error(status, body, host=HOST, model=MODEL)
    assert failure.message
    assert failure.n_prompt_tokens >= 0
    message, _ = unwrap_error(body)
    assert isinstance(message, str)
