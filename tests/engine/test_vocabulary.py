"""The tokenizer ollm builds from Ollama's `model_info` tokenizes exactly as llama.cpp does:
the same ids, on prose, code, non-English and identifier-heavy text and a rendered ChatML
prompt — on SmolLM2's real vocabulary, and on GGUFs written at test time for each
pre-tokenizer, with merges that make every difference between their regexes show."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollm.vocabulary import SPLITS, Unsupported, build_tokenizer

from .conftest import cy
from .smollm2 import Unavailable, model_path
from .tiny_gguf import SHAPES, model_info, write_model

TEXTS = {
    "prose": "The quick brown fox jumps over the lazy dog. It's 2026, isn't it? THEY'LL see.",
    "code": "def parse(path: Path) -> dict[str, Any]:\n    return yaml.safe_load(path.read_text())\n",
    "non-English": "Größenordnung: 東京は日本の首都です。 Привет, мир! ¿Qué tal? 🙂👍",
    "identifiers": "JOB-90211 order_id=7f3a9c2e-11b4 userId:42 HTTP/1.1 200 OK 3.14159 1,234,567.89",
    "whitespace": "  leading spaces\n\n\ttabs and\r\nCRLF   trailing   \n\n\n",
    "template": "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n",
}
# Merges across every boundary the pre-tokenizers draw differently: digit runs (whole, in
# threes, one by one), a space before punctuation, runs of newlines and of spaces, letters.
MERGES = (
    "Ġ t",
    "t h",
    "h e",
    "Ġt he",
    "1 2",
    "12 3",
    "2 0",
    "20 2",
    "202 6",
    "Ċ Ċ",
    "ĊĊ Ċ",
    "Ġ Ġ",
    "ĠĠ Ġ",
    "Ġ ?",
    "Ġ ,",
    "' s",
    "' t",
    "e r",
    "i n",
    "o n",
    ": Ċ",
    ". Ċ",
)

# A SentencePiece vocabulary, highest score first: pieces that merge across spaces (`▁`),
# newlines, digits and letters, then single characters; the rest falls back to bytes.
PIECES = (
    *("▁the", "▁qu", "ick", "▁▁▁▁", "▁▁", "\n\n", "er", "in", "on", "he", "▁t", "▁a"),
    *("123", "12", "202", "20", "▁", "\n", "Ö", "é", "東", "京"),
    *"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:;'?!-_()[]{}/=<>|",
)


def engine_ids(model: object, text: str) -> list[int]:
    """llama.cpp's own tokenization of `text` in a prompt: special tokens parsed, no BOS."""
    return list(model.get_vocab().tokenize(text, False, True))  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def smollm2() -> tuple[object, object]:
    """SmolLM2's tokenizer as ollm builds it, and the model as llama.cpp loads it (once)."""
    try:
        path: Path = model_path()
    except Unavailable as exc:
        pytest.skip(str(exc))
    return build_tokenizer(model_info(path, verbose=True)), cy.LlamaModel(path_model=str(path))


@pytest.mark.parametrize("kind", sorted(TEXTS))
def test_smollm2s_real_vocabulary_tokenizes_as_llama_cpp_does(smollm2, kind):
    tokenizer, model = smollm2
    text = TEXTS[kind]
    assert tokenizer.encode(text, add_special_tokens=False).ids == engine_ids(model, text)


@pytest.mark.parametrize("pre", ["gpt-2", "llama-bpe", "qwen2", "smollm"])
def test_each_pre_tokenizer_splits_as_llama_cpp_does(tmp_path, pre):
    path = write_model(tmp_path / f"{pre}.gguf", SHAPES[0], pre=pre, merges=MERGES)
    tokenizer = build_tokenizer(model_info(path, verbose=True))
    model = cy.LlamaModel(path_model=str(path))
    for kind, text in TEXTS.items():
        ours = tokenizer.encode(text, add_special_tokens=False).ids
        assert ours == engine_ids(model, text), (pre, kind)


@pytest.mark.parametrize("space_prefix", [True, False])
def test_a_sentencepiece_vocabulary_tokenizes_as_llama_cpp_does(tmp_path, space_prefix):
    """llama.cpp's SentencePiece BPE (scores, byte fallback, `▁` before the text and after
    each special token when `add_space_prefix`), built as merges for `tokenizers`."""
    path = write_model(
        tmp_path / "spm.gguf", SHAPES[0], pieces=PIECES, add_space_prefix=space_prefix
    )
    tokenizer = build_tokenizer(model_info(path, verbose=True))
    model = cy.LlamaModel(path_model=str(path))
    for kind, text in TEXTS.items():
        ours = tokenizer.encode(text, add_special_tokens=False).ids
        assert ours == engine_ids(model, text), (space_prefix, kind)


def test_the_texts_tell_the_pre_tokenizers_apart(tmp_path):
    """A wrong regex for a vocabulary is caught: each pair of these pre-tokenizers counts at
    least one of the texts differently."""
    counts = {}
    for pre in ("gpt-2", "llama-bpe", "qwen2", "smollm"):
        path = write_model(tmp_path / f"{pre}.gguf", SHAPES[0], pre=pre, merges=MERGES)
        model = cy.LlamaModel(path_model=str(path))
        counts[pre] = tuple(len(engine_ids(model, text)) for text in TEXTS.values())
    assert len(set(counts.values())) == len(counts), counts


def test_vocabularies_it_cannot_reproduce_are_refused_with_the_reason(tmp_path):
    path = write_model(tmp_path / "m.gguf", SHAPES[0])
    info = model_info(path, verbose=True)
    with pytest.raises(Unsupported, match="its SentencePiece vocabulary came without scores"):
        build_tokenizer({**info, "tokenizer.ggml.model": "llama"})
    with pytest.raises(Unsupported, match="its 'rwkv' vocabulary is not one ollm reproduces"):
        build_tokenizer({**info, "tokenizer.ggml.model": "rwkv"})
    with pytest.raises(Unsupported, match="'tekken' pre-tokenizer is not one ollm reproduces"):
        build_tokenizer({**info, "tokenizer.ggml.pre": "tekken"})
    with pytest.raises(Unsupported, match="Ollama sent no vocabulary for it"):
        build_tokenizer(model_info(path))  # as /api/show answers without verbose
    assert "tekken" not in SPLITS
