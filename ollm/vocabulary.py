"""The model's own tokenizer, built from the vocabulary Ollama hands out.

`POST /api/show` with `"verbose": true` returns the GGUF's whole vocabulary in `model_info`
(`tokenizer.ggml.*`). From it this module builds the tokenizer with Hugging Face
`tokenizers` — a maintained BPE, not a hand-written one. Control and user-defined tokens are
matched whole, as llama.cpp matches them in a rendered prompt.

Supported, each held to llama.cpp's own tokenizer in `tests/engine/test_vocabulary.py`:

- byte-level BPE (`tokenizer.ggml.model` = `gpt2`: llama 3, Qwen 2/2.5/3, SmolLM, …), text
  split first as llama.cpp splits it for the vocabulary's `tokenizer.ggml.pre` (its regexes,
  in its order), then the GGUF's merges;
- SentencePiece (`llama`: Llama 2, Mistral, Gemma, Phi-3, …), as llama.cpp runs it: the
  pieces' scores as merges, byte fallback, `▁` before the text and after each special token
  where `add_space_prefix` asks.

Other vocabularies and pre-tokenizers are refused (`Unsupported`): counting then stays with
the calibrated estimate.

The beginning-of-sequence token llama.cpp adds to every prompt (`add_bos_token`) is the
tokenizer's post-processor, so a cached `tokenizer.json` holds everything counting needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
NORMAL, CONTROL, USER_DEFINED = 1, 3, 4
SPACE = "\u2581"
"""SentencePiece's space, `▁`."""
"""`tokenizer.ggml.token_type` values matched whole in a prompt."""


@dataclass
class Vocabulary:
    """A model's tokenizer and the counts made with it so far (by text digest), shared by
    everything that counts with it: the token counter and the REPL's read model count each
    text once between them."""

    tokenizer: Any
    counts: dict[bytes, int] = field(default_factory=dict)


class Unsupported(ValueError):
    """The vocabulary cannot be tokenized faithfully here; `str()` says why."""


def build_tokenizer(info: Mapping[str, Any]) -> Any:
    """The `tokenizers.Tokenizer` for a model's `model_info` (from `/api/show` verbose).

    Raises:
        Unsupported: neither byte-level BPE nor SentencePiece, a pre-tokenizer not known
            here, or no vocabulary (an `/api/show` without `verbose` leaves the arrays empty).
    """
    from tokenizers import AddedToken, processors

    kind = info.get("tokenizer.ggml.model")
    tokens: Sequence[str] = info.get("tokenizer.ggml.tokens") or ()
    if not tokens:
        raise Unsupported("Ollama sent no vocabulary for it")
    if kind == "gpt2":
        tokenizer, bos_by_default = _byte_level(info, tokens)
    elif kind == "llama":
        tokenizer, bos_by_default = _sentencepiece(info, tokens), True
    else:
        raise Unsupported(f"its {str(kind)[:40]!r} vocabulary is not one ollm reproduces")
    types: Sequence[int] = info.get("tokenizer.ggml.token_type") or ()
    whole = [tokens[i] for i, t in enumerate(types) if t in (CONTROL, USER_DEFINED)]
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in whole])
    bos = info.get("tokenizer.ggml.bos_token_id")
    add_bos = info.get("tokenizer.ggml.add_bos_token", bos_by_default)
    if add_bos and isinstance(bos, int) and 0 <= bos < len(tokens):
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{tokens[bos]}:0 $A:0", special_tokens=[(tokens[bos], bos)]
        )
    return tokenizer


def _byte_level(info: Mapping[str, Any], tokens: Sequence[str]) -> tuple[Any, bool]:
    """Byte-level BPE split first by llama.cpp's regexes for the vocabulary's `pre`; and
    whether llama.cpp adds BOS to it when the GGUF does not say."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    pre = str(info.get("tokenizer.ggml.pre") or "default")
    splits = SPLITS.get(pre)
    if splits is None:
        raise Unsupported(f"its {pre[:40]!r} pre-tokenizer is not one ollm reproduces")
    merges: Sequence[str] = info.get("tokenizer.ggml.merges") or ()
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
    return tokenizer, pre in BOS_BY_DEFAULT


def _sentencepiece(info: Mapping[str, Any], tokens: Sequence[str]) -> Any:
    """SentencePiece's BPE as llama.cpp runs it: spaces as `▁` (one before the text, and after
    each special token, where the GGUF asks), then the adjacent pair whose joined piece scores
    highest merges first, and what no piece covers falls back to byte tokens. As merges:
    every split of a piece into two pieces, in the order of the piece's score."""
    from tokenizers import Tokenizer, decoders, models, normalizers

    scores: Sequence[float] = info.get("tokenizer.ggml.scores") or ()
    types: Sequence[int] = info.get("tokenizer.ggml.token_type") or ()
    if len(scores) != len(tokens) or len(types) != len(tokens):
        raise Unsupported("its SentencePiece vocabulary came without scores or token types")
    if info.get("tokenizer.ggml.remove_extra_whitespaces"):
        raise Unsupported("its SentencePiece vocabulary folds whitespace, which ollm does not")
    vocab = {token: index for index, token in enumerate(tokens)}
    ranked = sorted(
        (i for i, t in enumerate(types) if t in (NORMAL, USER_DEFINED)),
        key=lambda i: (-scores[i], i),
    )
    merges = [
        (piece[:cut], piece[cut:])
        for piece in (tokens[i] for i in ranked)
        for cut in range(1, len(piece))
        if piece[:cut] in vocab and piece[cut:] in vocab
    ]
    unknown = info.get("tokenizer.ggml.unknown_token_id", 0)
    tokenizer = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=merges,
            unk_token=tokens[unknown]
            if isinstance(unknown, int) and unknown < len(tokens)
            else None,
            fuse_unk=True,
            byte_fallback=True,
        )
    )
    prefix = (
        [normalizers.Prepend(SPACE)] if info.get("tokenizer.ggml.add_space_prefix", True) else []
    )
    tokenizer.normalizer = normalizers.Sequence([*prefix, normalizers.Replace(" ", SPACE)])
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
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
