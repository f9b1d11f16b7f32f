"""The chat path stays light: starting `ollm` must not import the heavy libraries that only
the benchmarks and the llama.cpp tests use."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("numpy", "gguf", "cyllama", "torch", "lz4")


def test_the_chat_path_imports_nothing_heavy() -> None:
    probe = (
        "import sys, ollm.cli.main, ollm.cli.chat, ollm.cli.repl;"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
