"""The count ollm acts on before each request equals llama.cpp's count of the prompt it then
renders, for each pre-tokenizer ollm reproduces: GGUFs written at test time (merges across
every boundary the pre-tokenizers draw differently, BOS added or not), served by the Ollama
test server through llama.cpp, with ollm as a real process."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollm.events import ChatRequested, VocabularyLoaded

from .real_server import start
from .test_real_model import config, journal, lines, run
from .test_vocabulary import MERGES, PIECES, TEXTS
from .tiny_gguf import SHAPES, write_model

SAID = [TEXTS[kind] for kind in ("prose", "code", "non-English", "identifiers")]


@pytest.mark.parametrize(
    ("pre", "add_bos"),
    [
        ("gpt-2", False),
        ("llama-bpe", True),
        ("qwen2", False),
        ("smollm", False),
        ("sentencepiece", True),
    ],
)
def test_every_prompt_is_predicted_to_the_token_before_it_is_sent(tmp_path: Path, pre, add_bos):
    pieces = PIECES if pre == "sentencepiece" else ()
    gguf = write_model(
        tmp_path / f"{pre}.gguf", SHAPES[1], pre=pre, merges=MERGES, add_bos=add_bos, pieces=pieces
    )
    server = start(gguf)
    try:
        result = run(server, config(tmp_path, size=2048, reply=16), stdin=lines(*SAID))
        assert result.returncode == 0, result.stderr
        events = journal()
        assert [e.cached for e in events if isinstance(e, VocabularyLoaded)] == [False]
        predicted = [e.prompt_tokens for e in events if isinstance(e, ChatRequested)]
        counted = [c["prompt_tokens"] for c in server.chats()]
    finally:
        errors = server.stop()
    assert "Traceback" not in errors, errors
    assert len(predicted) == len(SAID)
    assert predicted == counted, f"{pre}: predicted {predicted}, llama.cpp counted {counted}"
