"""The model's own tokenizer, built from the vocabulary Ollama hands out.

`POST /api/show` with `"verbose": true` returns the GGUF's whole vocabulary in `model_info`
(`tokenizer.ggml.*`). From it this module builds the tokenizer with Hugging Face
`tokenizers` — a maintained BPE, not a hand-written one — splitting text first as llama.cpp
does for the vocabulary's `tokenizer.ggml.pre` (its regexes, in its order), then byte-level
BPE with the GGUF's merges. Control and user-defined tokens are matched whole, as llama.cpp
matches them in a rendered prompt.

Supported: byte-level BPE (`tokenizer.ggml.model` = `gpt2`) with the pre-tokenizers below,
each held to llama.cpp's own tokenizer in `tests/engine/test_vocabulary.py`. SentencePiece
vocabularies (`llama`) and other pre-tokenizers are refused (`Unsupported`): counting then
stays with the calibrated estimate.

The beginning-of-sequence token llama.cpp adds to every prompt (`add_bos_token`) is the
tokenizer's post-processor, so a cached `tokenizer.json` holds everything counting needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
LLAMA3 = (
    _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2 = (
    _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

SPLITS: dict[str, tuple[str, ...]] = {
    # `tokenizer.ggml.pre` → llama.cpp's split regexes, applied in turn (`llama-vocab.cpp`)
    "gpt-2": (GPT2,),
    "mpt": (GPT2,),
    "olmo": (GPT2,),
    "llama3": (LLAMA3,),
    "llama-v3": (LLAMA3,),
    "llama-bpe": (LLAMA3,),
    "qwen2": (QWEN2,),
    "stablelm2": (QWEN2,),
    "smollm": (r"\p{N}", GPT2),
    "starcoder": (r"\p{N}", GPT2),
    "refact": (r"\p{N}", GPT2),
}
IGNORE_MERGES = frozenset({"llama3", "llama-v3", "llama-bpe"})
"""Where llama.cpp takes a piece that is itself in the vocabulary whole, before merging."""
BOS_BY_DEFAULT = IGNORE_MERGES
"""Where llama.cpp adds BOS when the GGUF does not say (`add_bos_token` absent)."""
CONTROL, USER_DEFINED = 3, 4
"""`tokenizer.ggml.token_type` values matched whole in a prompt."""


class Unsupported(ValueError):
    """The vocabulary cannot be tokenized faithfully here; `str()` says why."""


def build_tokenizer(info: Mapping[str, Any]) -> Any:
    """The `tokenizers.Tokenizer` for a model's `model_info` (from `/api/show` verbose).

    Raises:
        Unsupported: not byte-level BPE, a pre-tokenizer not known here, or no vocabulary
            (an `/api/show` without `verbose` leaves the arrays empty).
    """
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
    )

    kind = info.get("tokenizer.ggml.model")
    pre = str(info.get("tokenizer.ggml.pre") or "default")
    tokens: Sequence[str] = info.get("tokenizer.ggml.tokens") or ()
    merges: Sequence[str] = info.get("tokenizer.ggml.merges") or ()
    if not tokens:
        raise Unsupported("Ollama sent no vocabulary for it")
    if kind == "llama":
        raise Unsupported("its SentencePiece vocabulary is not one ollm reproduces exactly yet")
    if kind != "gpt2":
        raise Unsupported(f"its {str(kind)[:40]!r} vocabulary is not one ollm reproduces")
    splits = SPLITS.get(pre)
    if splits is None:
        raise Unsupported(f"its {pre[:40]!r} pre-tokenizer is not one ollm reproduces")
    vocab = {token: index for index, token in enumerate(tokens)}  # the last one wins
    pairs = [(left, right) for left, _, right in (m.partition(" ") for m in merges)]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=pairs, ignore_merges=pre in IGNORE_MERGES))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            *(pre_tokenizers.Split(Regex(r), behavior="isolated") for r in splits),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    types: Sequence[int] = info.get("tokenizer.ggml.token_type") or ()
    whole = [tokens[i] for i, t in enumerate(types) if t in (CONTROL, USER_DEFINED)]
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in whole])
    bos = info.get("tokenizer.ggml.bos_token_id")
    add_bos = info.get("tokenizer.ggml.add_bos_token", pre in BOS_BY_DEFAULT)
    if add_bos and isinstance(bos, int) and 0 <= bos < len(tokens):
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{tokens[bos]}:0 $A:0", special_tokens=[(tokens[bos], bos)]
        )
    return tokenizer


def count(tokenizer: Any, text: str) -> int:
    """The tokens of `text` as the model's engine counts it in a prompt (no BOS added)."""
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def prompt_start(tokenizer: Any) -> int:
    """Tokens the engine puts before every prompt on its own (BOS, where the model adds it)."""
    return int(tokenizer.num_special_tokens_to_add(False))


def vocabulary_size(tokenizer: Any) -> int:
    return int(tokenizer.get_vocab_size(with_added_tokens=True))


def to_json(tokenizer: Any) -> str:
    return str(tokenizer.to_str())


def from_json(text: str) -> Any:
    """A tokenizer `to_json` wrote.

    Raises:
        Unsupported: the text is not one (a damaged cache file).
    """
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_str(text)
    except Exception as exc:  # the library raises a bare Exception on bad JSON
        raise Unsupported(f"not a tokenizer ({str(exc)[:80]})") from exc
