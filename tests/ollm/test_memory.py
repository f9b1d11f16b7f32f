"""KV-cache arithmetic against the reference tables, and the fit."""

from __future__ import annotations

import pytest

from ollm.memory import (
    Architecture,
    ArchitectureError,
    Footprint,
    MiB,
    kv_bytes_per_token,
    largest_fitting,
    needed_bytes,
    ollama_kv_bytes,
)

MODELS = {
    "llama3.1:8b": {
        "general.architecture": "llama",
        "llama.block_count": 32,
        "llama.attention.head_count": 32,
        "llama.attention.head_count_kv": 8,
        "llama.embedding_length": 4096,
        "llama.context_length": 131072,
    },
    "qwen2.5:7b": {
        "general.architecture": "qwen2",
        "qwen2.block_count": 28,
        "qwen2.attention.head_count": 28,
        "qwen2.attention.head_count_kv": 4,
        "qwen2.embedding_length": 3584,
        "qwen2.context_length": 32768,
    },
    "mistral:7b": {
        "general.architecture": "llama",
        "llama.block_count": 32,
        "llama.attention.head_count": 32,
        "llama.attention.head_count_kv": 8,
        "llama.embedding_length": 4096,
        "llama.context_length": 32768,
    },
    "gemma2:9b": {
        "general.architecture": "gemma2",
        "gemma2.block_count": 42,
        "gemma2.attention.head_count": 16,
        "gemma2.attention.head_count_kv": 8,
        "gemma2.attention.key_length": 256,
        "gemma2.attention.value_length": 256,
        "gemma2.embedding_length": 3584,
        "gemma2.context_length": 8192,
        "gemma2.attention.sliding_window": 4096,
    },
    "gemma3:12b": {
        "general.architecture": "gemma3",
        "gemma3.block_count": 48,
        "gemma3.attention.head_count": 16,
        "gemma3.attention.head_count_kv": 8,
        "gemma3.attention.key_length": 256,
        "gemma3.attention.value_length": 256,
        "gemma3.embedding_length": 3840,
        "gemma3.context_length": 131072,
        "gemma3.attention.sliding_window": 1024,
    },
}

# ollama-api-and-memory.md §8: total KV in MiB at P = 1, n_ubatch = 512 (f16 / q8_0 / q4_0).
REFERENCE = {
    ("llama3.1:8b", 4096): (512, 272, 144),
    ("llama3.1:8b", 8192): (1024, 544, 288),
    ("llama3.1:8b", 32768): (4096, 2176, 1152),
    ("qwen2.5:7b", 4096): (224, 119, 63),
    ("qwen2.5:7b", 8192): (448, 238, 126),
    ("qwen2.5:7b", 32768): (1792, 952, 504),
    ("mistral:7b", 4096): (512, 272, 144),
    ("mistral:7b", 8192): (1024, 544, 288),
    ("mistral:7b", 32768): (4096, 2176, 1152),
    ("gemma2:9b", 4096): (1344, 714, 378),
    ("gemma2:9b", 8192): (2100, 1116, 591),
    ("gemma3:12b", 4096): (736, 391, 207),
    ("gemma3:12b", 8192): (992, 527, 279),
    ("gemma3:12b", 32768): (2528, 1343, 711),
}
PER_TOKEN = {"llama3.1:8b": (131072, 69632, 36864), "qwen2.5:7b": (57344, 30464, 16128)}


@pytest.mark.parametrize(("model", "ctx"), sorted(REFERENCE))
def test_kv_totals_equal_the_reference_tables(model, ctx):
    arch = Architecture.from_model_info(MODELS[model])
    got = tuple(round(ollama_kv_bytes(arch, ctx, t) / MiB) for t in ("f16", "q8_0", "q4_0"))
    assert got == REFERENCE[(model, ctx)]


@pytest.mark.parametrize("model", sorted(PER_TOKEN))
def test_kv_bytes_per_token(model):
    arch = Architecture.from_model_info(MODELS[model])
    assert tuple(kv_bytes_per_token(arch, t) for t in ("f16", "q8_0", "q4_0")) == PER_TOKEN[model]


def test_contexts_are_padded_to_256_cells_and_slots_multiply():
    arch = Architecture.from_model_info(MODELS["llama3.1:8b"])
    assert ollama_kv_bytes(arch, 4100, "f16") == ollama_kv_bytes(arch, 4352, "f16")
    assert ollama_kv_bytes(arch, 4096, "f16", parallel=4) == 4 * ollama_kv_bytes(arch, 4096, "f16")


def test_a_missing_key_is_one_sentence():
    with pytest.raises(ArchitectureError, match=r"llama\.block_count"):
        Architecture.from_model_info({"general.architecture": "llama"})
    with pytest.raises(ArchitectureError, match=r"general\.architecture"):
        Architecture.from_model_info({})


def test_the_largest_fitting_context():
    arch = Architecture.from_model_info(MODELS["llama3.1:8b"])
    fp = Footprint(weights_bytes=4_900_000_000)
    budget = 8 * 1024 * MiB
    best = largest_fitting(arch, budget, fp, "q8_0")
    assert best % 256 == 0
    assert needed_bytes(arch, best, fp, "q8_0") <= budget
    assert needed_bytes(arch, best + 256, fp, "q8_0") > budget
    assert largest_fitting(arch, 1000, fp, "q8_0") == 0
