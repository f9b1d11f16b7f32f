"""The Ollama test server over a real model, in its own process (started and stopped by the
tests), and what it recorded."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).parents[2]
MODEL = "smollm2:135m"


@dataclass
class RealServer:
    process: subprocess.Popen[str]
    url: str

    def requests(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.url}/_test/requests", timeout=30).json()["requests"])

    def chats(self) -> list[dict[str, Any]]:
        """The `/api/chat` requests that carried messages, with the prompt's real size."""
        return [
            r
            for r in self.requests()
            if r["path"] == "/api/chat"
            and r["body"]
            and r["body"].get("messages")
            and not r["body"].get("_debug_render_only")
        ]

    def runners(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.url}/_test/runners", timeout=30).json()["runners"])

    def stop(self) -> str:
        """Stop the server; its standard error (empty unless it failed)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        assert self.process.stdout is not None and self.process.stderr is not None
        errors = self.process.stderr.read()
        self.process.stdout.close()
        self.process.stderr.close()
        return errors


def start(gguf: Path, *args: str) -> RealServer:
    """The server on the Go-template path (Ollama's default for its own models): an
    over-long prompt without `truncate: false` is cut to about half the window."""
    process = subprocess.Popen(
        [
            sys.executable,
            *("-m", "tests.fakes.ollama_server", "--gguf", str(gguf), "--path", "go", *args),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        server = RealServer(process, "")
        raise RuntimeError(f"the real-model server did not start: {server.stop()[-2000:]}")
    return RealServer(process, url)
