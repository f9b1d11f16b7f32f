"""Small real GGUF models written at test time with `gguf` (llama.cpp's own writer).

Seeded random weights (F16), a byte-level BPE vocabulary with a few merges, BOS/EOS set
explicitly, and a ChatML chat template. Each file is a few hundred KB and takes milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MERGES = ["Ġ t", "t h", "h e", "i n", "e r", "Ġ a", "Ġt he", "o n", "Ġ s", "e n"]


@dataclass(frozen=True)
class Shape:
    name: str
    n_embd: int
    n_head: int
    n_kv: int
    head_dim: int
    n_layer: int
    n_ff: int = 128
    context: int = 4096
    architecture: str = "llama"
    sliding_window: int = 0
    """gemma2 only: every other layer attends over this many tokens."""

    @property
    def quantizable(self) -> bool:
        """llama.cpp refuses a quantized cache unless the head size is a multiple of 32."""
        return self.head_dim % 32 == 0


SHAPES = (
    Shape("gqa-hd32-2l", n_embd=64, n_head=4, n_kv=2, head_dim=32, n_layer=2),
    Shape("gqa-hd32-3l", n_embd=128, n_head=4, n_kv=2, head_dim=32, n_layer=3, n_ff=256),
    Shape("gqa-hd64-2l", n_embd=128, n_head=2, n_kv=1, head_dim=64, n_layer=2),
    Shape("mha-hd16-4l", n_embd=64, n_head=4, n_kv=4, head_dim=16, n_layer=4),
)


def bytes_to_unicode() -> dict[int, str]:
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


def write_model(
    path: Path,
    shape: Shape,
    seed: int = 0,
    *,
    pre: str = "gpt-2",
    merges: tuple[str, ...] = tuple(MERGES),
    add_bos: bool = False,
    pieces: tuple[str, ...] = (),
    add_space_prefix: bool = True,
) -> Path:
    """A GGUF of `shape`; `pre` names llama.cpp's pre-tokenizer, `merges` the BPE merges,
    `add_bos` whether llama.cpp puts BOS before every prompt. With `pieces` the vocabulary is
    SentencePiece's instead (`tokenizer.ggml.model` = `llama`): `<unk>`, `<s>`, `</s>`, the
    256 byte tokens, then `pieces`, highest score first (`add_space_prefix` as the GGUF says)."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    table = bytes_to_unicode()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    scores: list[float] = []
    if pieces:
        tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), *pieces]
        types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
        types += [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * len(pieces)
        scores = [0.0] * 259 + [-float(i) for i in range(len(pieces))]
        tokens += specials[1:]
        types += [gguf.TokenType.CONTROL] * 2
        scores += [0.0, 0.0]
        bos, eos = 1, len(tokens) - 1
    else:
        tokens = [table[b] for b in range(256)] + [m.replace(" ", "") for m in merges]
        tokens += specials
        normal = len(tokens) - len(specials)
        types = [gguf.TokenType.NORMAL] * normal + [gguf.TokenType.CONTROL] * len(specials)
        bos, eos = normal, normal + 2
    n_vocab = len(tokens)

    def weights(*dims: int) -> Any:
        # F16 weights keep every file well under 2 MB; norms stay F32.
        return (rng.standard_normal(dims) * 0.02).astype(np.float16)

    ones = np.ones(shape.n_embd, dtype=np.float32)
    w = gguf.GGUFWriter(str(path), shape.architecture)
    w.add_context_length(shape.context)
    w.add_embedding_length(shape.n_embd)
    w.add_block_count(shape.n_layer)
    w.add_feed_forward_length(shape.n_ff)
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.n_kv)
    w.add_key_length(shape.head_dim)
    w.add_value_length(shape.head_dim)
    w.add_layer_norm_rms_eps(1e-5)
    if shape.sliding_window:
        w.add_sliding_window(shape.sliding_window)
    if pieces:
        w.add_tokenizer_model("llama")
        w.add_token_list(tokens)
        w.add_token_types(types)
        w.add_token_scores(scores)
        w.add_unk_token_id(0)
        w.add_add_space_prefix(add_space_prefix)
    else:
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(pre)
        w.add_token_list(tokens)
        w.add_token_types(types)
        w.add_token_merges(list(merges))
    w.add_bos_token_id(bos)
    w.add_eos_token_id(eos)
    w.add_add_bos_token(add_bos)
    w.add_chat_template(CHATML)
    q, kv = shape.n_head * shape.head_dim, shape.n_kv * shape.head_dim
    w.add_tensor("token_embd.weight", weights(n_vocab, shape.n_embd))
    w.add_tensor("output_norm.weight", ones)
    if shape.architecture == "llama":  # gemma2 ties its output to the embeddings
        w.add_tensor("output.weight", weights(n_vocab, shape.n_embd))
    for i in range(shape.n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", ones)
        w.add_tensor(f"blk.{i}.ffn_norm.weight", ones)
        w.add_tensor(f"blk.{i}.attn_q.weight", weights(q, shape.n_embd))
        w.add_tensor(f"blk.{i}.attn_k.weight", weights(kv, shape.n_embd))
        w.add_tensor(f"blk.{i}.attn_v.weight", weights(kv, shape.n_embd))
        w.add_tensor(f"blk.{i}.attn_output.weight", weights(shape.n_embd, q))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", weights(shape.n_ff, shape.n_embd))
        w.add_tensor(f"blk.{i}.ffn_up.weight", weights(shape.n_ff, shape.n_embd))
        w.add_tensor(f"blk.{i}.ffn_down.weight", weights(shape.n_embd, shape.n_ff))
        if shape.architecture == "gemma2":
            w.add_tensor(f"blk.{i}.post_attention_norm.weight", ones)
            w.add_tensor(f"blk.{i}.post_ffw_norm.weight", ones)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def model_info(path: Path, verbose: bool = False) -> dict[str, Any]:
    """The GGUF's key/value map as Ollama's `/api/show` presents `model_info`: without
    `general.name` and `tokenizer.chat_template`, arrays longer than 5 elements as `[]`
    unless `verbose` (as `"verbose": true` asks)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    info: dict[str, Any] = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name in ("general.name", "tokenizer.chat_template"):
            continue
        kind = field.types[0] if field.types else None
        if kind == gguf.GGUFValueType.ARRAY:
            whole = verbose or len(field.data) <= 5
            info[name] = [_scalar(field, i) for i in field.data] if whole else []
        else:
            info[name] = _scalar(field, field.data[0])
    return info


def _scalar(field: Any, index: int) -> Any:
    import gguf

    part = field.parts[index]
    kind = field.types[-1]
    if kind == gguf.GGUFValueType.STRING:
        return bytes(part).decode("utf-8", "replace")
    value = part.tolist()
    value = value[0] if isinstance(value, list) and len(value) == 1 else value
    return bool(value) if kind == gguf.GGUFValueType.BOOL else value
