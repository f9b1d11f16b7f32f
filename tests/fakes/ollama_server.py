"""An Ollama-compatible test server: real HTTP/1.1 on 127.0.0.1, Ollama's wire format.

- `/api/version`, `/api/tags`, `/api/show`, `/api/ps`, `/api/chat` (NDJSON streaming or not);
- a deterministic tokenizer and a llama3-like chat template, so `prompt_eval_count` counts
  template and role tokens the way a real server does (not the way ollm estimates);
- Ollama's overflow behaviour: with `truncate` absent or true, drop the oldest messages
  keeping every system message and the last one; with `truncate: false`, HTTP 400 (the
  llama-server JSON-inside-JSON error by default);
- runner options (`num_ctx`, …) remembered per loaded model: a change is a reload, counted
  and visible in `/api/ps`;
- every request recorded (`requests`), and faults on demand (`fault(...)`), also over HTTP
  (`POST /_test/fault`, `GET /_test/requests`) for a server in another process.

Run alone: `python -m tests.fakes.ollama_server [--port N]` (prints the URL).
"""

from __future__ import annotations

import argparse
import json
import re
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import anyio.abc
import anyio.from_thread
from anyio.streams.buffered import BufferedByteReceiveStream

TOKEN = re.compile(r"\w{1,6}|[^\w\s]")
ROLE_TOKENS = 4  # <|start_header_id|> role <|end_header_id|> \n\n
END_TOKENS = 1  # <|eot_id|>
BOS = 1
GENERATION_PROMPT = 4
RUNNER_KEYS = ("num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread")
DEFAULT_NUM_CTX = 4096

Fault = Literal[
    "not_found",
    "overflow",
    "overflow_runner",
    "oom",
    "error_midstream",
    "malformed",
    "reset",
    "stall",
    "busy",
]


def tokenize(text: str) -> list[str]:
    """Words in pieces of up to 6 characters, each punctuation mark a token."""
    return TOKEN.findall(text)


def count(text: str) -> int:
    return len(tokenize(text))


def message_tokens(message: dict[str, Any]) -> int:
    tokens = ROLE_TOKENS + count(str(message.get("content", ""))) + END_TOKENS
    for call in message.get("tool_calls") or []:
        function = call.get("function", {})
        tokens += (
            2 + count(function.get("name", "")) + count(json.dumps(function.get("arguments", {})))
        )
    return tokens


def prompt_tokens(messages: list[dict[str, Any]], tools: list[Any] | None = None) -> int:
    tool_tokens = sum(4 + count(json.dumps(t)) for t in tools or [])
    return BOS + tool_tokens + sum(message_tokens(m) for m in messages) + GENERATION_PROMPT


@dataclass
class FakeModel:
    name: str
    architecture: str = "llama"
    context_length: int = 131072
    layers: int = 32
    kv_heads: int = 8
    heads: int = 32
    head_dim: int = 128
    embedding: int = 4096
    weights_bytes: int = 4_900_000_000
    capabilities: tuple[str, ...] = ("completion", "tools")

    def model_info(self) -> dict[str, Any]:
        a = self.architecture
        return {
            "general.architecture": a,
            "general.parameter_count": 8_030_261_248,
            f"{a}.block_count": self.layers,
            f"{a}.attention.head_count": self.heads,
            f"{a}.attention.head_count_kv": self.kv_heads,
            f"{a}.attention.key_length": self.head_dim,
            f"{a}.attention.value_length": self.head_dim,
            f"{a}.embedding_length": self.embedding,
            f"{a}.context_length": self.context_length,
            "tokenizer.ggml.tokens": [],
        }

    def kv_bytes(self, num_ctx: int) -> int:
        cells = -(-num_ctx // 256) * 256
        return cells * self.layers * self.kv_heads * self.head_dim * 2 * 2


@dataclass
class Loaded:
    model: FakeModel
    options: dict[str, Any]

    cap: int = 0

    @property
    def num_ctx(self) -> int:
        asked = int(self.options.get("num_ctx") or DEFAULT_NUM_CTX)
        return min(asked, self.cap) if self.cap else asked


@dataclass
class Recorded:
    method: str
    path: str
    body: dict[str, Any] | None


def _default_reply(messages: list[dict[str, Any]]) -> str:
    last: dict[str, Any] = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    text = str(last.get("content", ""))
    words = [
        "the",
        "model",
        "answers",
        "with",
        "a",
        "few",
        "words",
        "about",
        "that",
        "and",
        "then",
        "it",
        "stops",
        "here",
    ]
    length = 12 + sum(map(ord, text)) % 24
    filler = " ".join(words[i % len(words)] for i in range(length))
    return f"You said {len(text)} characters. {filler}."


@dataclass
class OllamaTestServer:
    """State and behaviour; `open_ollama_server` puts it on a socket."""

    models: dict[str, FakeModel] = field(
        default_factory=lambda: {"llama3.1:8b": FakeModel("llama3.1:8b")}
    )
    version: str = "0.33.0"
    requests: list[Recorded] = field(default_factory=list)
    faults: deque[Fault] = field(default_factory=deque)
    replies: deque[str] = field(default_factory=deque)
    loaded: dict[str, Loaded] = field(default_factory=dict)
    reloads: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    url: str = ""
    closing: anyio.Event = field(default_factory=anyio.Event)
    chats_started: int = 0
    cap_num_ctx: int = 0
    """Give every runner at most this context, whatever is asked (0: no cap), as a server
    with a lower limit would; `/api/ps` shows the real value."""

    def fault(self, *faults: Fault) -> None:
        """The next chat requests (that carry messages) fail this way, one fault each."""
        self.faults.extend(faults)

    def reply(self, *texts: str) -> None:
        """The next replies, in order (otherwise a deterministic default)."""
        self.replies.extend(texts)

    def chats(self) -> list[dict[str, Any]]:
        """Every `/api/chat` body received, in order."""
        return [r.body for r in self.requests if r.path == "/api/chat" and r.body is not None]

    # --- routing --------------------------------------------------------------------------

    async def respond(self, method: str, path: str, body: bytes, send: _Sender) -> None:
        data: dict[str, Any] | None = None
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                await send.json(400, {"error": "invalid character in request body"})
                return
            data = parsed if isinstance(parsed, dict) else None
        if not path.startswith("/_test/"):
            self.requests.append(Recorded(method, path, data))
        route = (method, path)
        if route == ("GET", "/api/version"):
            await send.json(200, {"version": self.version})
        elif route == ("GET", "/api/tags"):
            await send.json(200, {"models": [self._tag(m) for m in self.models.values()]})
        elif route == ("POST", "/api/show"):
            await self._show(data or {}, send)
        elif route == ("GET", "/api/ps"):
            await send.json(200, {"models": [self._ps(v) for v in self.loaded.values()]})
        elif route == ("POST", "/api/chat"):
            await self._chat(data or {}, send)
        elif route == ("POST", "/_test/fault"):
            self.fault(*(data or {}).get("faults", []))
            await send.json(200, {"ok": True})
        elif route == ("POST", "/_test/reply"):
            self.reply(*(data or {}).get("replies", []))
            await send.json(200, {"ok": True})
        elif route == ("GET", "/_test/requests"):
            await send.json(200, {"requests": [r.__dict__ for r in self.requests]})
        else:
            await send.json(404, {"error": f"404 page not found: {path}"})

    def _tag(self, model: FakeModel) -> dict[str, Any]:
        return {
            "name": model.name,
            "model": model.name,
            "size": model.weights_bytes,
            "details": {"family": model.architecture, "parameter_size": "8.0B"},
        }

    def _ps(self, loaded: Loaded) -> dict[str, Any]:
        size = loaded.model.weights_bytes + loaded.model.kv_bytes(loaded.num_ctx)
        return {
            "name": loaded.model.name,
            "model": loaded.model.name,
            "size": size,
            "size_vram": size,
            "context_length": min(loaded.num_ctx, loaded.model.context_length),
            "expires_at": "2099-01-01T00:00:00Z",
        }

    async def _show(self, data: dict[str, Any], send: _Sender) -> None:
        model = self.models.get(str(data.get("model", "")))
        if model is None:
            await send.json(404, {"error": f"model '{data.get('model')}' not found"})
            return
        await send.json(
            200,
            {
                "model_info": model.model_info(),
                "capabilities": list(model.capabilities),
                "details": {"family": model.architecture, "format": "gguf"},
                "template": "{{ .Prompt }}",
                "parameters": "",
            },
        )

    def _load(self, model: FakeModel, options: dict[str, Any]) -> Loaded:
        runner = {k: options[k] for k in RUNNER_KEYS if k in options}
        current = self.loaded.get(model.name)
        if current is None or current.options != runner:
            self.reloads.append((model.name, runner))
            current = Loaded(model, runner, self.cap_num_ctx)
            self.loaded[model.name] = current
        return current

    async def _chat(self, data: dict[str, Any], send: _Sender) -> None:
        model = self.models.get(str(data.get("model", "")))
        messages = [m for m in data.get("messages") or [] if isinstance(m, dict)]
        fault = self.faults.popleft() if messages and self.faults else None
        if model is None or fault == "not_found":
            await send.json(404, {"error": f"model '{data.get('model')}' not found"})
            return
        if fault == "busy":
            await send.json(
                503, {"error": "server busy, please try again.  maximum pending requests exceeded"}
            )
            return
        if fault == "oom":
            await send.json(
                500,
                {
                    "error": "model runner has unexpectedly stopped, this may be due to resource "
                    "limitations or an internal error, check ollama server logs for details: "
                    "cudaMalloc failed: out of memory"
                },
            )
            return
        options = data.get("options") or {}
        loaded = self._load(model, options)
        if not messages:
            await send.json(200, {"model": model.name, "done": True, "done_reason": "load"})
            return
        num_ctx = min(loaded.num_ctx, model.context_length)
        tools = data.get("tools") or None
        total = prompt_tokens(messages, tools)
        if fault in ("overflow", "overflow_runner") or (
            data.get("truncate") is False and total > num_ctx
        ):
            await send.json(
                400, {"error": _overflow_error(fault, max(total, num_ctx + 1), num_ctx)}
            )
            return
        kept = _fit(messages, tools, num_ctx) if total > num_ctx else messages
        prompt_count = prompt_tokens(kept, tools)
        if prompt_count > num_ctx:
            await send.json(400, {"error": _overflow_error("overflow", prompt_count, num_ctx)})
            return
        self.chats_started += 1
        reply = self.replies.popleft() if self.replies else _default_reply(kept)
        pieces = re.findall(r"\S+\s*", reply)
        limit = int(options.get("num_predict", -1))
        done_reason = "stop"
        if limit >= 0 and count(reply) > limit:
            cut, used = [], 0
            for piece in pieces:
                used += count(piece)
                if used > limit:
                    break
                cut.append(piece)
            pieces, done_reason = cut, "length"
        text = "".join(pieces)
        final: dict[str, Any] = {
            "model": model.name,
            "created_at": "2026-11-21T00:00:00Z",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": done_reason,
            "total_duration": 1000,
            "prompt_eval_count": prompt_count,
            "eval_count": count(text) + 1,
        }
        thinking = data.get("think") is True and "thinking" in model.capabilities
        if data.get("stream") is False:
            final["message"] = {"role": "assistant", "content": text}
            if thinking:
                final["message"]["thinking"] = "Let me think."
            await send.json(200, final)
            return
        await self._stream(model, pieces, final, fault, thinking, send)

    async def _stream(
        self,
        model: FakeModel,
        pieces: list[str],
        final: dict[str, Any],
        fault: Fault | None,
        thinking: bool,
        send: _Sender,
    ) -> None:
        await send.start_stream()
        if thinking:
            await send.line(
                {
                    "model": model.name,
                    "message": {"role": "assistant", "content": "", "thinking": "Let me think."},
                    "done": False,
                }
            )
        for index, piece in enumerate(pieces):
            if index == 2 and fault is not None:
                if fault == "error_midstream":
                    await send.line(
                        {
                            "error": "an error was encountered while running the model: GGML_ASSERT failed"
                        }
                    )
                    await send.end_stream()
                    return
                if fault == "malformed":
                    await send.raw_chunk(b'{"model": "x", "message": {"content": "tor\n')
                    await send.end_stream()
                    return
                if fault == "reset":
                    await send.abort()
                    return
                if fault == "stall":
                    await self.closing.wait()
                    return
            await send.line(
                {
                    "model": model.name,
                    "created_at": "2026-11-21T00:00:00Z",
                    "message": {"role": "assistant", "content": piece},
                    "done": False,
                }
            )
        await send.line(final)
        await send.end_stream()


def _overflow_error(style: Fault | None, n_prompt: int, n_ctx: int) -> str:
    if style == "overflow_runner":
        return "the input length exceeds the context length"
    inner = {
        "error": {
            "code": 400,
            "message": f"request ({n_prompt} tokens) exceeds the available context size "
            f"({n_ctx} tokens), try increasing it",
            "type": "exceed_context_size_error",
            "n_prompt_tokens": n_prompt,
            "n_ctx": n_ctx,
        }
    }
    return json.dumps(inner)


def _fit(
    messages: list[dict[str, Any]], tools: list[Any] | None, num_ctx: int
) -> list[dict[str, Any]]:
    """Ollama's stage A: the first suffix that fits, with every earlier system message kept."""
    for start in range(len(messages)):
        systems = [m for m in messages[:start] if m.get("role") == "system"]
        candidate = systems + messages[start:]
        if prompt_tokens(candidate, tools) <= num_ctx:
            return candidate
    systems = [m for m in messages[:-1] if m.get("role") == "system"]
    return [*systems, messages[-1]]


class _Sender:
    """Writes one HTTP/1.1 response on a connection."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.broken = False

    async def json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        reason = {
            200: "OK",
            400: "Bad Request",
            404: "Not Found",
            500: "Internal Server Error",
            503: "Service Unavailable",
        }.get(status, "Error")
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        )
        await self.stream.send(head.encode() + data)

    async def start_stream(self) -> None:
        await self.stream.send(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )

    async def raw_chunk(self, data: bytes) -> None:
        await self.stream.send(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    async def line(self, body: dict[str, Any]) -> None:
        await self.raw_chunk(json.dumps(body).encode() + b"\n")

    async def end_stream(self) -> None:
        await self.stream.send(b"0\r\n\r\n")

    async def abort(self) -> None:
        self.broken = True
        await self.stream.aclose()


async def _serve_connection(server: OllamaTestServer, stream: anyio.abc.SocketStream) -> None:
    buffered = BufferedByteReceiveStream(stream)
    async with stream:
        while True:
            try:
                head = await buffered.receive_until(b"\r\n\r\n", 65536)
            except (
                anyio.EndOfStream,
                anyio.IncompleteRead,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
            ):
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for raw in lines[1:]:
                key, _, value = raw.partition(":")
                headers[key.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            try:
                body = await buffered.receive_exactly(length) if length else b""
            except (anyio.EndOfStream, anyio.IncompleteRead):
                return
            sender = _Sender(stream)
            try:
                await server.respond(method, target.split("?", 1)[0], body, sender)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return
            if sender.broken or headers.get("connection", "").lower() == "close":
                return


@asynccontextmanager
async def open_ollama_server(
    server: OllamaTestServer | None = None,
) -> AsyncIterator[OllamaTestServer]:
    """Serve on 127.0.0.1 at a free port for the duration of the block."""
    server = server or OllamaTestServer()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    server.url = f"http://127.0.0.1:{port}"
    async with listener, anyio.create_task_group() as tg:

        async def handle(stream: anyio.abc.SocketStream) -> None:
            await _serve_connection(server, stream)

        tg.start_soon(listener.serve, handle)
        try:
            yield server
        finally:
            server.closing.set()
            tg.cancel_scope.cancel()


@contextmanager
def ollama_server_thread(server: OllamaTestServer | None = None) -> Iterator[OllamaTestServer]:
    """The same server in a background thread with its own event loop (for subprocess clients)."""
    with anyio.from_thread.start_blocking_portal(backend="asyncio") as portal:
        cm = portal.wrap_async_context_manager(open_ollama_server(server))
        with cm as running:
            yield running


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the Ollama-compatible test server.")
    parser.parse_args()

    async def run() -> None:
        async with open_ollama_server() as server:
            print(server.url, flush=True)
            await anyio.sleep_forever()

    anyio.run(run, backend="asyncio")


if __name__ == "__main__":
    main()
