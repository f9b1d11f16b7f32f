"""The chat path stays light: starting `ollm` must not import the heavy libraries that only
the benchmarks and the llama.cpp tests use."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("numpy", "gguf", "cyllama", "torch", "lz4", "tokenizers")


def test_the_chat_path_imports_nothing_heavy() -> None:
    probe = (
        "import sys, ollm.cli.main, ollm.cli.chat, ollm.cli.repl;"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


BEHIND_THE_PROMPT = (
    "ollm.live",
    "ollm.events",
    "ollm.config",
    "msgspec",
    "actors",
    "httpx",
    "ollm.cli.chat",
    "psutil",
)


def test_the_prompt_path_imports_none_of_the_session_machinery():
    """What `ollm` on a terminal imports before it draws the prompt: the rest, the settings
    included, is imported behind it (`ollm.cli.terminal`), so the prompt is there at once."""
    probe = (
        "import sys, ollm.cli.main, ollm.cli.terminal, prompt_toolkit;"
        "ollm.cli.terminal.history_file();"
        f"print(','.join(m for m in {BEHIND_THE_PROMPT!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
