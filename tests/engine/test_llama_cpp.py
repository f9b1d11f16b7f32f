"""ollm's arithmetic held to a real llama.cpp: KV-cache bytes to the byte, and token counts.

Everything runs in-process through the cyllama bindings on models written at test time. No
decode here can exceed the batch or the context (llama.cpp would abort the process).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import ollm.memory
from ollm.events import ChatMessage, ChatRequested, Message, ReplyCompleted, RunnerOptions
from ollm.memory import Architecture, kv_cache_bytes
from ollm.tokens import Accounting

from .conftest import EngineLog, cy
from .tiny_gguf import SHAPES, Shape, model_info, write_model

GGML_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 8}
SIZES = (512, 1000, 4100, 8192)
SEQUENCES = ((1, False), (3, False), (4, True))
LINE = re.compile(
    r"llama_kv_cache: size =\s+([\d.]+) MiB \(\s*(\d+) cells,\s+(\d+) layers,\s+(\d+)/(\d+) seqs\)"
)


def make_context(model: Any, n_ctx: int, kind: str, n_seq: int = 1, unified: bool = False) -> Any:
    params = cy.LlamaContextParams()
    params.n_ctx = n_ctx
    params.type_k = params.type_v = GGML_TYPE[kind]
    params.n_seq_max = n_seq
    params.kv_unified = unified
    params.flash_attn_type = -1  # auto: on for this CPU build, which a quantized V cache needs
    return cy.LlamaContext(model, params)


def allocated(log: EngineLog, model: Any, n_ctx: int, kind: str, n_seq: int, unified: bool):
    """(cells per stream, streams, the log's MiB) as llama.cpp itself reported them."""
    log.clear()
    context = make_context(model, n_ctx, kind, n_seq, unified)
    found = [m for line in log.lines if (m := LINE.search(line))]
    del context
    assert found, "llama.cpp did not log its KV cache"
    mib, cells, _layers, _seqs, streams = found[-1].groups()
    return int(cells), int(streams), float(mib)


def state_bytes_per_token(model: Any, kind: str) -> float:
    """Bytes one cached token adds to a sequence's saved state (KV rows + per-cell metadata)."""
    sizes = []
    for count in (32, 64):
        context = make_context(model, 512, kind)
        context.decode(cy.llama_batch_get_one(list(range(40, 40 + count))))
        sizes.append(context.get_state_seq_size(0))
        del context
    return float(sizes[1] - sizes[0]) / 32


_per_cell_cache: dict[tuple[str, str], int] = {}


def kv_bytes_per_cell(shape: Shape, model: Any, kind: str) -> int:
    """KV bytes per cell, measured: f32 rows are twice f16 rows, which separates the KV rows
    from the per-cell metadata in the state size; the same metadata applies to every type."""
    key = (shape.name, kind)
    if key not in _per_cell_cache:
        f32, f16 = state_bytes_per_token(model, "f32"), state_bytes_per_token(model, "f16")
        metadata = f16 - (f32 - f16)
        measured = state_bytes_per_token(model, kind) - metadata
        assert measured == int(measured)
        _per_cell_cache[key] = int(measured)
    return _per_cell_cache[key]


def architecture(path: Path) -> Architecture:
    return Architecture.from_model_info(model_info(path))


def cases(shape: Shape) -> list[str]:
    return ["f16", "q8_0", "q4_0"] if shape.quantizable else ["f32", "f16"]


@pytest.mark.parametrize(
    ("shape_name", "kind"),
    [(s.name, k) for s in SHAPES for k in cases(s)],
)
def test_kv_bytes_equal_what_llama_cpp_allocates_to_the_byte(loaded, engine_log, shape_name, kind):
    shape, path, model = loaded[shape_name]
    arch = architecture(path)
    per_cell = kv_bytes_per_cell(shape, model, kind)
    checked = 0
    for n_ctx in SIZES:
        for n_seq, unified in SEQUENCES:
            cells, streams, mib = allocated(engine_log, model, n_ctx, kind, n_seq, unified)
            measured = cells * streams * per_cell
            assert abs(measured / 2**20 - mib) <= 0.005 + 1e-9, "the log agrees with the bytes"
            ours = kv_cache_bytes(arch, n_ctx, kind, n_seq=n_seq, unified=unified)
            assert ours == measured, (n_ctx, n_seq, unified, ours, measured)
            checked += 1
    assert checked == len(SIZES) * len(SEQUENCES)


def test_llama_cpp_refuses_a_quantized_cache_when_the_head_size_is_not_a_multiple_of_32(
    loaded, engine_log
):
    _shape, _path, model = loaded["mha-hd16-4l"]
    engine_log.clear()
    with pytest.raises(RuntimeError):
        make_context(model, 512, "q8_0")
    assert any("does not divide" in line for line in engine_log.lines)
    with pytest.raises(ValueError, match="multiples of 32"):
        kv_cache_bytes(architecture(_path), 512, "q8_0")


def test_a_deliberately_wrong_formula_is_caught(loaded, engine_log, monkeypatch):
    shape, path, model = loaded["gqa-hd32-2l"]
    arch = architecture(path)
    per_cell = kv_bytes_per_cell(shape, model, "f16")
    cells, streams, _ = allocated(engine_log, model, 4100, "f16", 1, False)
    measured = cells * streams * per_cell
    assert kv_cache_bytes(arch, 4100, "f16") == measured
    no_gqa = Architecture(
        name=arch.name,
        layers=arch.layers,
        kv_heads=(shape.n_head,) * arch.layers,
        key_length=arch.key_length,
        value_length=arch.value_length,
    )
    assert kv_cache_bytes(no_gqa, 4100, "f16") != measured, "ignoring GQA is caught"
    monkeypatch.setattr(ollm.memory, "CELL_PADDING", 32)
    assert kv_cache_bytes(arch, 4100, "f16") != measured, "padding to 32 is caught"


TURNS = [
    ("user", "Could you explain how the garbage collector in CPython handles reference cycles?"),
    (
        "assistant",
        "CPython counts references, and a separate cyclic collector finds groups of "
        "objects that only refer to each other, then frees them in generations.",
    ),
    ("user", "And when does the collector actually run? Is there a threshold I can tune?"),
    (
        "assistant",
        "It runs when allocations minus deallocations exceed a threshold per "
        "generation; gc.set_threshold changes them, and gc.collect forces a pass.",
    ),
    ("user", "Thanks. What happens to objects with a __del__ method inside such a cycle?"),
]


def true_prompt_tokens(model: Any, messages: list[tuple[str, str]]) -> int:
    chat = [cy.LlamaChatMessage(role=role, content=text) for role, text in messages]
    prompt = model.chat_apply_template(None, chat, True)
    return len(model.get_vocab().tokenize(prompt, True, True))


def test_after_one_reply_the_next_estimate_is_within_3_percent_of_llama_cpp(loaded):
    _shape, _path, model = loaded["gqa-hd32-3l"]
    system = ("system", "You are a precise assistant. Answer in two sentences at most.")
    conversation = [system, TURNS[0]]
    acc = Accounting(num_ctx=8192, model="tiny")
    for index, (role, text) in enumerate(conversation):
        acc.add(Message(id=f"m{index}", role=role, content=text))  # type: ignore[arg-type]
    acc.on_request(
        ChatRequested(
            request_id="r1",
            model="tiny",
            messages=tuple(ChatMessage(role=r, content=t) for r, t in conversation),  # type: ignore[arg-type]
            options=RunnerOptions(num_ctx=8192),
        )
    )
    reply = TURNS[1][1]
    vocab = model.get_vocab()
    truncated = acc.on_reply(
        ReplyCompleted(
            request_id="r1",
            content=reply,
            prompt_eval_count=true_prompt_tokens(model, conversation),
            eval_count=len(vocab.tokenize(reply, False, True)),
        )
    )
    assert truncated is None
    acc.add(Message(id="m2", role="assistant", content=reply))
    acc.add(Message(id="m3", role="user", content=TURNS[2][1]))
    truth = true_prompt_tokens(model, [*conversation, TURNS[1], TURNS[2]])
    error = abs(acc.used() - truth) / truth
    assert error <= 0.03, (acc.used(), truth, error)


def test_the_models_are_small(models):
    for _shape, path in models.values():
        assert path.stat().st_size < 1_500_000


SWA = Shape(
    "gemma2-swa512-4l",
    n_embd=64,
    n_head=4,
    n_kv=2,
    head_dim=32,
    n_layer=4,
    architecture="gemma2",
    sliding_window=512,
)
KV_SIZE = re.compile(r"llama_kv_cache: size =\s+([\d.]+) MiB \(\s*(\d+) cells")


def swa_allocation(log: EngineLog, model: Any, n_ctx: int, n_seq: int, unified: bool, full: bool):
    """llama.cpp's two KV caches for a sliding-window model: (cells, MiB) per cache."""
    log.clear()
    params = cy.LlamaContextParams()
    params.n_ctx = n_ctx
    params.n_batch = params.n_ubatch = 512
    params.n_seq_max = n_seq
    params.kv_unified = unified
    params.swa_full = full
    context = cy.LlamaContext(model, params)
    found = [
        (int(m.group(2)), float(m.group(1))) for line in log.lines if (m := KV_SIZE.search(line))
    ]
    context.close()
    assert len(found) == 2, "a non-SWA and an SWA cache"
    return found


def test_sliding_window_kv_matches_llama_cpp_as_ollama_runs_it(tmp_path, engine_log):
    """Ollama (v0.30+, `llm/llama_server.go`) launches llama-server without `--swa-full`,
    so llama.cpp's `common_params.swa_full = false` holds: sliding-window layers keep
    pad256(window + n_ubatch) cells. (The C API's own default, which cyllama exposes, is
    true — set here as Ollama's runner has it.)"""
    path = write_model(tmp_path / "swa.gguf", SWA)
    arch = architecture(path)
    assert arch.sliding_window == 512 and sum(arch.swa_layers) == 2
    model = cy.LlamaModel(path_model=str(path))
    try:
        for n_ctx in SIZES:
            for n_seq, unified in SEQUENCES:
                caches = swa_allocation(engine_log, model, n_ctx, n_seq, unified, full=False)
                logged = sum(mib for _cells, mib in caches)
                ours = kv_cache_bytes(arch, n_ctx, "f16", n_seq=n_seq, unified=unified)
                # each logged figure is rounded to 0.01 MiB
                assert abs(ours / 2**20 - logged) <= 0.005 * len(caches) + 1e-9, (
                    n_ctx,
                    n_seq,
                    caches,
                )
        full = swa_allocation(engine_log, model, 8192, 1, False, full=True)
        assert abs(kv_cache_bytes(arch, 8192, "f16") / 2**20 - sum(m for _c, m in full)) > 1, (
            "with swa_full the window layers would hold the whole context: not what Ollama runs"
        )
    finally:
        model.close()
