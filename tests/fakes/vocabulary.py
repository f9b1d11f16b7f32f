"""A byte-level BPE vocabulary as `/api/show` verbose hands it out (`tokenizer.ggml.*`), and a
ChatML template in Python that renders as SmolLM2's does (a default system prompt when the
conversation has none): what the tests and benchmarks count against without a GGUF.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tests.engine.tiny_gguf import MERGES, bytes_to_unicode

CHATML_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
LLAMA3_SPECIALS = ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
"""The markers of the test server's own template (`FakeEngine.render_text`)."""
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def byte_vocabulary(
    pre: str = "gpt-2",
    merges: Sequence[str] = MERGES,
    add_bos: bool = False,
    specials: Sequence[str] = CHATML_SPECIALS,
) -> dict[str, Any]:
    """The `tokenizer.ggml.*` keys of a vocabulary: the 256 bytes, `merges`, and `specials`
    (control tokens; the first is BOS)."""
    table = bytes_to_unicode()
    tokens = [table[b] for b in range(256)] + [m.replace(" ", "") for m in merges]
    normal = len(tokens)
    tokens += specials
    return {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": pre,
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": [1] * normal + [3] * len(specials),
        "tokenizer.ggml.merges": list(merges),
        "tokenizer.ggml.bos_token_id": normal,
        "tokenizer.ggml.eos_token_id": normal + 2,
        "tokenizer.ggml.add_bos_token": add_bos,
    }


def render_chatml(messages: Sequence[dict[str, Any]]) -> str:
    """The prompt SmolLM2's template writes for `messages`, with the reply's header."""
    parts = []
    if not messages or messages[0].get("role") != "system":
        parts.append(f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n")
    for m in messages:
        parts.append(f"<|im_start|>{m.get('role', '')}\n{m.get('content', '')}<|im_end|>\n")
    return "".join(parts) + "<|im_start|>assistant\n"
