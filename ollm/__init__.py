"""ollm: a context manager and chat REPL for local LLMs served by Ollama."""

from __future__ import annotations

__version__ = "0.1.0"
