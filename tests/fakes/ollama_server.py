"""An Ollama-compatible test server: real HTTP/1.1 on 127.0.0.1, Ollama's wire format.

Ollama's side lives here (`OllamaTestServer`); the model behind it is an `Engine`: the fake
one below (a deterministic tokenizer and a llama3-like template, so `prompt_eval_count`
counts template and role tokens the way a real server does, not the way ollm estimates), or
a real model through llama.cpp (`tests.engine.llama_engine`).

- `/api/version`, `/api/tags` (with each model's digest), `/api/show` (every array longer
  than 5 left empty unless `"verbose": true`, as `getModelData` does: the vocabulary comes
  only with verbose), `/api/ps`, `/api/chat` (NDJSON streaming or not, and
  `_debug_render_only`);
- Ollama's overflow behaviour: stage A (with `truncate` absent or true, drop the oldest
  messages, keeping every system message and the last one, against `num_ctx` capped at the
  trained length); then a prompt of `num_ctx` tokens or more is cut to about half the window
  on the Go-template path (the default: Ollama's own models) or refused with llama-server's
  400 on the native path (`path="native"`); `truncate: false` is always the 400; v0.13's
  rules instead with `rules=V0_13` or `OLLM_TEST_OLLAMA_RULES=v0.13`; one request at a time;
- runner options (`num_ctx`, …) remembered per loaded model: a change is a reload, counted
  and visible in `/api/ps` (with the engine's real allocation);
- every request recorded (`requests`: body, the prompt's real size, status, reply, final
  chunk), and faults on demand (`fault(...)`), also over HTTP (`POST /_test/fault`,
  `GET /_test/requests`, `GET /_test/runners`) for a server in another process.

Run alone: `python -m tests.fakes.ollama_server [--gguf PATH] [--path go|native]
[--hide-vocabulary]` (prints the URL; with `--gguf`, the model is served through llama.cpp).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import pathlib
import re
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

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
RENDER_ONLY = "_debug_render_only"

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
    "nested_error",
    "nested_stream",
    "oom_midstream",
    "escape_error",
    "huge_counts",
    "negative_counts",
    "load_crash",
]
"""Each a way a request can go wrong; the last five are hostile: an error body nested
200,000 deep (as a JSON string, and as arrays mid-stream), terminal escapes in an error, and
counts no model can produce in the final chunk. `load_crash` fails the next warm-up (a request
with no messages) as a runner that died while loading does: HTTP 500."""

NESTING = 200_000
ESCAPES = "boom \x1b[2J\x1b]0;TITLE\x07\x1b]52;c;cm0gLXJmIH4=\x07\x9b31m\rDONE"
"""Clear-screen, a window title, an OSC 52 clipboard write, a C1 CSI, a bell and a CR."""


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


Token = Hashable
"""One token of a rendered prompt: a piece of text for the fake engine, an id for llama.cpp."""

PromptPath = Literal["native", "go"]
"""How current Ollama gets an over-long prompt to the model (`ollama-since-v0.30.md`):
"native" — llama-server renders the GGUF's own template and refuses (HTTP 400);
"go" — Ollama renders a Go template and cuts the prompt to about half the window."""


@dataclass(frozen=True)
class Rules:
    """The behaviours ollm depends on that changed between Ollama versions
    (`ollama-api-and-memory.md` for v0.13, `ollama-since-v0.30.md` for v0.30–v0.34)."""

    name: str
    capped: bool
    """Stage A and `/api/ps` use `num_ctx` capped at the trained length (v0.30+; before,
    the configured value)."""
    refuse_at_equal: bool
    """A prompt of exactly `num_ctx` tokens is over (llama-server's rule, v0.30+)."""
    half_cut: bool
    """An over-long prompt is cut to about half the window (v0.30+ Go-template path);
    before, to its first `num_keep` and last `num_ctx − num_keep` tokens."""
    tiered_default: bool
    """With no `num_ctx`, 4096 / 32768 / 262144 by total VRAM (v0.15.5+), else 4096."""
    shift_reloads: bool
    """A different `shift` reloads the model (a llama-server launch flag, v0.30+)."""
    rich_tags: bool
    """`/api/tags` lists `context_length` and `capabilities` (v0.30+)."""


CURRENT = Rules("v0.34", True, True, True, True, True, True)
V0_13 = Rules("v0.13", False, False, False, False, False, False)
RULES = {r.name: r for r in (CURRENT, V0_13)}
RULES_ENV = "OLLM_TEST_OLLAMA_RULES"


@dataclass(frozen=True)
class Allocation:
    """What a runner really got: its context (after padding and caps) and its buffers."""

    context_length: int
    kv_bytes: int
    compute_bytes: int = 0


@dataclass(frozen=True)
class Piece:
    """A stretch of generated text and the tokens it took."""

    text: str
    tokens: int


class Engine(Protocol):
    """The model behind the API: what it renders, counts, allocates and generates.

    `OllamaTestServer` is Ollama's side (routes, stage A, truncation, reloads, the record,
    faults); an engine is the runner's side. Two exist: `FakeEngine` (below) and
    `tests.engine.llama_engine.LlamaEngine` (a real model through llama.cpp)."""

    @property
    def models(self) -> dict[str, Any]:
        """Every installed model by name; each has `card() -> Card`."""
        ...

    def render(
        self, model: Any, messages: list[dict[str, Any]], tools: list[Any] | None
    ) -> list[Token]:
        """The prompt the model sees for these messages, as tokens."""
        ...

    def render_text(
        self, model: Any, messages: list[dict[str, Any]], tools: list[Any] | None
    ) -> str:
        """The same prompt as text (what `_debug_render_only` answers)."""
        ...

    def count_text(self, model: Any, text: str) -> int: ...

    def load(self, model: Any, num_ctx: int, options: dict[str, Any]) -> Allocation:
        """Start a runner for `num_ctx` (a reload replaces the previous one)."""
        ...

    def generate(
        self, model: Any, prompt: list[Token], messages: list[dict[str, Any]], limit: int
    ) -> AsyncIterator[Piece]:
        """The reply to `prompt`, at most `limit` tokens (-1: until the model stops)."""
        ...


@dataclass(frozen=True)
class Card:
    """What `/api/tags` and `/api/show` say about a model."""

    name: str
    family: str
    context_length: int
    weights_bytes: int
    capabilities: tuple[str, ...]
    model_info: dict[str, Any]
    parameter_size: str
    add_bos: bool = True
    template: str = "{{ .Prompt }}"
    quantization: str = "Q4_K_M"

    @property
    def digest(self) -> str:
        """As `/api/tags` gives it: the SHA-256 of the model's manifest (here, of what the
        card says, so another model — another vocabulary — has another digest)."""
        facts = sorted(
            (k, len(v) if isinstance(v, list) else v) for k, v in self.model_info.items()
        )
        return hashlib.sha256(repr((self.name, self.weights_bytes, facts)).encode()).hexdigest()


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
    kv_type: str = "f16"
    """The KV cache type the server runs for it (`OLLAMA_KV_CACHE_TYPE` with flash attention)."""
    parallel: int = 1
    """The server's `OLLAMA_NUM_PARALLEL`: its runner holds a whole context per slot."""
    vocabulary: dict[str, Any] = field(default_factory=dict)
    """`tokenizer.ggml.*` keys, as `/api/show` verbose gives them (none: an empty vocabulary,
    as for a model whose vocabulary ollm cannot use)."""

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
            **self.vocabulary,
        }

    def card(self) -> Card:
        return Card(
            name=self.name,
            family=self.architecture,
            context_length=self.context_length,
            weights_bytes=self.weights_bytes,
            capabilities=self.capabilities,
            model_info=self.model_info(),
            parameter_size="8.0B",
        )

    def kv_bytes(self, num_ctx: int) -> int:
        """The runner's cache with the server's `kv_type` (f16: 2 bytes an element; q8_0 and
        q4_0: blocks of 32 elements in 34 and 18 bytes)."""
        cells = -(-num_ctx // 256) * 256
        per_block = {"f16": 64, "q8_0": 34, "q4_0": 18}[self.kv_type]
        per_slot = cells * self.layers * self.kv_heads * self.head_dim * 2 * per_block // 32
        return per_slot * self.parallel


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
class FakeEngine:
    """A deterministic stand-in for a model: the tokenizer and llama3-like template above,
    and a reply that says how long the last user message was."""

    models: dict[str, FakeModel]
    piece_delay: float = 0.0
    """Seconds each piece of a reply takes to generate (0: at once), for a slow model."""

    def render(
        self, model: FakeModel, messages: list[dict[str, Any]], tools: list[Any] | None
    ) -> list[Token]:
        return ["·"] * prompt_tokens(messages, tools)

    def render_text(
        self, model: FakeModel, messages: list[dict[str, Any]], tools: list[Any] | None
    ) -> str:
        parts = ["<|begin_of_text|>"]
        for message in messages:
            parts.append(
                f"<|start_header_id|>{message.get('role', '')}<|end_header_id|>\n\n"
                f"{message.get('content', '')}<|eot_id|>"
            )
        parts.append("<|start_header_id|>assistant<|end_header_id|>\n\n")
        return "".join(parts)

    def count_text(self, model: FakeModel, text: str) -> int:
        return count(text)

    def load(self, model: FakeModel, num_ctx: int, options: dict[str, Any]) -> Allocation:
        return Allocation(num_ctx, model.kv_bytes(num_ctx))

    async def generate(
        self, model: FakeModel, prompt: list[Token], messages: list[dict[str, Any]], limit: int
    ) -> AsyncIterator[Piece]:
        for piece in pieces_within(_default_reply(messages), count, limit):
            if self.piece_delay:
                await anyio.sleep(self.piece_delay)  # sleep-ok: a slow model generating
            yield piece


def pieces_within(text: str, counter: Callable[[str], int], limit: int) -> Iterator[Piece]:
    """`text` word by word, stopping before the piece that would pass `limit` tokens."""
    used = 0
    for word in re.findall(r"\S+\s*", text):
        tokens = counter(word)
        if 0 <= limit < used + tokens:
            return
        used += tokens
        yield Piece(word, tokens)


@dataclass
class Loaded:
    model: Any
    options: dict[str, Any]
    allocation: Allocation
    configured: int = 0
    """The `num_ctx` the runner was asked for (before any cap)."""

    @property
    def num_ctx(self) -> int:
        return self.allocation.context_length


@dataclass
class Recorded:
    method: str
    path: str
    body: dict[str, Any] | None
    prompt_tokens: int = 0
    """For a chat: the tokens of the whole rendered prompt as sent (before any truncation)."""
    status: int = 0
    reply: str = ""
    """For a chat: the text the server sent back (streamed or not)."""
    final: dict[str, Any] | None = None
    """For a chat that completed: its last chunk (`prompt_eval_count`, `done_reason`, …)."""


@dataclass
class OllamaTestServer:
    """Ollama's side of the API; `open_ollama_server` puts it on a socket, `engine` runs the
    model (the fake one unless another is given)."""

    models: dict[str, Any] = field(
        default_factory=lambda: {"llama3.1:8b": FakeModel("llama3.1:8b")}
    )
    engine: Engine | None = None
    version: str = "0.33.0"
    requests: list[Recorded] = field(default_factory=list)
    faults: deque[Fault] = field(default_factory=deque)
    replies: deque[str] = field(default_factory=deque)
    loaded: dict[str, Loaded] = field(default_factory=dict)
    reloads: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    url: str = ""
    closing: anyio.Event = field(default_factory=anyio.Event)
    chats_started: int = 0
    connections: int = 0
    """TCP connections accepted so far (a client that reuses its connection opens one)."""
    cap_num_ctx: int = 0
    """Give every runner at most this context, whatever is asked (0: no cap), as a server
    with a lower limit would; `/api/ps` shows the real value."""
    path: PromptPath = "go"
    rules: Rules = field(default_factory=lambda: RULES[os.environ.get(RULES_ENV, CURRENT.name)])
    """Current Ollama's behaviour unless `OLLM_TEST_OLLAMA_RULES=v0.13` asks for v0.13's."""
    vram_total: int = 16 * 2**30
    """Total VRAM the server sees (only its default `num_ctx` depends on it)."""
    render_status: int = 200
    """How `_debug_render_only` is answered: 200 with the prompt, or this error status."""
    busy: anyio.Lock = field(default_factory=anyio.Lock)
    """One request runs at a time (Ollama's default `OLLAMA_NUM_PARALLEL=1`); others wait."""
    holds: dict[str, anyio.Event] = field(default_factory=dict)
    """Paths whose requests wait until released (`POST /_test/hold`, `/_test/release`): a
    server slow to answer, held exactly as long as a test needs."""

    def __post_init__(self) -> None:
        if self.engine is None:
            self.engine = FakeEngine(self.models)
        else:
            self.models = self.engine.models

    @property
    def runner(self) -> Engine:
        assert self.engine is not None
        return self.engine

    def fault(self, *faults: Fault) -> None:
        """The next chat requests (that carry messages) fail this way, one fault each."""
        self.faults.extend(faults)

    def reply(self, *texts: str) -> None:
        """The next replies, in order, instead of the model's own (counted by its tokenizer)."""
        self.replies.extend(texts)

    def chats(self) -> list[dict[str, Any]]:
        """Every `/api/chat` body received, in order (not the render-only ones)."""
        return [
            r.body
            for r in self.requests
            if r.path == "/api/chat" and r.body is not None and not r.body.get(RENDER_ONLY)
        ]

    def renders(self) -> list[dict[str, Any]]:
        """Every `/api/chat` body that asked only for the rendered prompt."""
        return [r.body for r in self.requests if r.body is not None and r.body.get(RENDER_ONLY)]

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
        record = Recorded(method, path, data)
        if not path.startswith("/_test/"):
            self.requests.append(record)
        gate = self.holds.get(path)
        if gate is not None:
            await gate.wait()
        try:
            await self._route(method, path, data, send, record)
        finally:
            record.status = send.status

    async def _route(
        self, method: str, path: str, data: dict[str, Any] | None, send: _Sender, record: Recorded
    ) -> None:
        route = (method, path)
        if route == ("GET", "/api/version"):
            await send.json(200, {"version": self.version})
        elif route == ("GET", "/api/tags"):
            await send.json(200, {"models": [self._tag(m.card()) for m in self.models.values()]})
        elif route == ("POST", "/api/show"):
            await self._show(data or {}, send)
        elif route == ("GET", "/api/ps"):
            await send.json(200, {"models": [self._ps(v) for v in self.loaded.values()]})
        elif route == ("POST", "/api/chat"):
            async with self.busy:
                await self._chat(data or {}, send, record)
        elif route == ("POST", "/_test/hold"):
            self.holds[str((data or {}).get("path", ""))] = anyio.Event()
            await send.json(200, {"ok": True})
        elif route == ("POST", "/_test/release"):
            gate = self.holds.pop(str((data or {}).get("path", "")), None)
            if gate is not None:
                gate.set()
            await send.json(200, {"ok": True})
        elif route == ("POST", "/_test/fault"):
            self.fault(*(data or {}).get("faults", []))
            await send.json(200, {"ok": True})
        elif route == ("POST", "/_test/reply"):
            self.reply(*(data or {}).get("replies", []))
            await send.json(200, {"ok": True})
        elif route == ("GET", "/_test/requests"):
            await send.json(200, {"requests": [r.__dict__ for r in self.requests]})
        elif route == ("GET", "/_test/runners"):
            await send.json(200, {"runners": [self._runner(v) for v in self.loaded.values()]})
        else:
            await send.json(404, {"error": f"404 page not found: {path}"})

    def _tag(self, card: Card) -> dict[str, Any]:
        tag: dict[str, Any] = {
            "name": card.name,
            "model": card.name,
            "size": card.weights_bytes,
            "digest": card.digest,
            "details": {"family": card.family, "parameter_size": card.parameter_size},
        }
        if self.rules.rich_tags:
            tag["details"]["context_length"] = card.context_length
            tag["capabilities"] = list(card.capabilities)
        return tag

    def _ps(self, loaded: Loaded) -> dict[str, Any]:
        card, allocation = loaded.model.card(), loaded.allocation
        size = card.weights_bytes + allocation.kv_bytes + allocation.compute_bytes
        return {
            "name": card.name,
            "model": card.name,
            "size": size,
            "size_vram": size,
            "context_length": allocation.context_length if self.rules.capped else loaded.configured,
            "expires_at": "2099-01-01T00:00:00Z",
        }

    def _runner(self, loaded: Loaded) -> dict[str, Any]:
        return {"model": loaded.model.name, "options": loaded.options, **loaded.allocation.__dict__}

    async def _show(self, data: dict[str, Any], send: _Sender) -> None:
        model = self.models.get(str(data.get("model", "")))
        if model is None:
            await send.json(404, {"error": f"model '{data.get('model')}' not found"})
            return
        card = model.card()
        info = card.model_info
        if data.get("verbose") is not True:  # `getModelData`: long arrays are left out
            info = {k: [] if isinstance(v, list) and len(v) > 5 else v for k, v in info.items()}
        await send.json(
            200,
            {
                "model_info": info,
                "capabilities": list(card.capabilities),
                "details": {
                    "format": "gguf",
                    "family": card.family,
                    "families": [card.family],
                    "parameter_size": card.parameter_size,
                    "quantization_level": card.quantization,
                },
                "template": card.template,
                "parameters": "",
            },
        )

    def _default_num_ctx(self) -> int:
        if not self.rules.tiered_default:
            return DEFAULT_NUM_CTX
        gib = self.vram_total / 2**30
        return 4096 if gib < 23 else 32768 if gib < 47 else 262144

    def _load(self, model: Any, options: dict[str, Any], shift: object = None) -> Loaded:
        runner = {k: options[k] for k in RUNNER_KEYS if k in options}
        if self.rules.shift_reloads and shift is not None:
            runner["shift"] = shift
        current = self.loaded.get(model.name)
        if current is None or current.options != runner:
            self.reloads.append((model.name, runner))
            configured = int(runner.get("num_ctx") or self._default_num_ctx())
            real = min(configured, model.card().context_length)
            if self.cap_num_ctx:
                real = min(real, self.cap_num_ctx)
            allocation = self.runner.load(model, real, runner)
            current = Loaded(model, runner, allocation, configured)
            self.loaded[model.name] = current
        return current

    async def _chat(self, data: dict[str, Any], send: _Sender, record: Recorded) -> None:
        model = self.models.get(str(data.get("model", "")))
        messages = [m for m in data.get("messages") or [] if isinstance(m, dict)]
        if model is not None and data.get(RENDER_ONLY) is True:
            await self._render_only(model, messages, data, send)
            return
        warm_up = not messages and self.faults and self.faults[0] == "load_crash"
        fault = self.faults.popleft() if (messages or warm_up) and self.faults else None
        if fault == "load_crash":
            await send.json(500, {"error": "llama runner process has terminated: exit status 2"})
            return
        if model is None or fault == "not_found":
            await send.json(404, {"error": f"model '{data.get('model')}' not found"})
            return
        if fault == "busy":
            await send.json(
                503, {"error": "server busy, please try again.  maximum pending requests exceeded"}
            )
            return
        if fault == "nested_error":
            await send.json(500, {"error": '{"a":' * NESTING})
            return
        if fault == "escape_error":
            await send.json(500, {"error": ESCAPES})
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
        loaded = self._load(model, options, data.get("shift"))
        if not messages:
            await send.json(200, {"model": model.name, "done": True, "done_reason": "load"})
            return
        card = model.card()
        # Stage A's window: capped at the trained length since v0.30, configured before;
        # the runner's own window is what it was really given.
        num_ctx = loaded.num_ctx if self.rules.capped else loaded.configured
        window = loaded.num_ctx
        tools = data.get("tools") or None
        prompt = self.runner.render(model, messages, tools)
        record.prompt_tokens = len(prompt)
        if fault in ("overflow", "overflow_runner"):
            await send.json(400, {"error": _overflow_error(fault, len(prompt) + num_ctx, num_ctx)})
            return
        kept = messages
        if data.get("truncate") is not False and len(prompt) > num_ctx:
            kept = self._fit(model, messages, tools, num_ctx)
            prompt = self.runner.render(model, kept, tools)
        over = len(prompt) >= window if self.rules.refuse_at_equal else len(prompt) > window
        if over:
            refusal = self._over_long(card, prompt, data, options, window)
            if refusal is not None:
                await send.json(400, {"error": refusal})
                return
            prompt = _cut(prompt, _keep(card, options), window, half=self.rules.half_cut)
        self.chats_started += 1
        limit = int(options.get("num_predict", -1))
        if self.replies:
            text = self.replies.popleft()
            pieces: AsyncIterator[Piece] = _scripted(
                pieces_within(text, lambda t: self.runner.count_text(model, t), limit)
            )
        else:
            pieces = self.runner.generate(model, prompt, kept, limit)
        reply = _Reply(model.name, len(prompt), limit)
        thinking = data.get("think") is True and "thinking" in card.capabilities
        if data.get("stream") is False:
            async for piece in pieces:
                reply.add(piece)
            final = reply.final()
            record.reply, record.final = reply.text, final
            final["message"] = {"role": "assistant", "content": reply.text}
            if thinking:
                final["message"]["thinking"] = "Let me think."
            await send.json(200, final)
            return
        try:
            record.final = await self._stream(reply, pieces, fault, thinking, send)
        finally:
            record.reply = reply.text

    async def _render_only(
        self, model: Any, messages: list[dict[str, Any]], data: dict[str, Any], send: _Sender
    ) -> None:
        """`_debug_render_only`: the prompt the model would see, after stage A, without
        generating; the model is still scheduled (same runner options, or it reloads)."""
        if self.render_status != 200:
            await send.json(self.render_status, {"error": "cannot render this template"})
            return
        loaded = self._load(model, data.get("options") or {}, data.get("shift"))
        tools = data.get("tools") or None
        over = bool(messages) and len(self.runner.render(model, messages, tools)) > loaded.num_ctx
        if over and data.get("truncate") is not False:
            messages = self._fit(model, messages, tools, loaded.num_ctx)
        await send.json(
            200,
            {
                "model": model.name,
                "created_at": "2026-11-21T00:00:00Z",
                "message": {"role": "", "content": ""},
                "done": False,
                "_debug_info": {
                    "rendered_template": self.runner.render_text(model, messages, tools)
                },
            },
        )

    def _over_long(
        self,
        card: Card,
        prompt: list[Token],
        data: dict[str, Any],
        options: dict[str, Any],
        num_ctx: int,
    ) -> str | None:
        """Why an over-long prompt is refused, or None when it is cut."""
        if not self.rules.half_cut:  # v0.12.6–v0.29: the runner cuts, or refuses on request
            if data.get("truncate") is False:
                return _overflow_error("overflow_runner", len(prompt), num_ctx)
            return None
        if data.get("truncate") is False or self.path == "native":
            return _overflow_error("overflow", len(prompt), num_ctx)
        if data.get("shift") is False:
            return (
                "the prompt is longer than the context length currently available to the "
                "model; shorten the prompt, adjust the context length in settings, or use a "
                "model with a longer context length"
            )
        return None

    def _fit(
        self, model: Any, messages: list[dict[str, Any]], tools: list[Any] | None, num_ctx: int
    ) -> list[dict[str, Any]]:
        """Ollama's stage A: the first suffix that fits, with every earlier system message
        kept; the last message alone (with the system messages) when nothing fits."""
        for start in range(len(messages)):
            systems = [m for m in messages[:start] if m.get("role") == "system"]
            candidate = systems + messages[start:]
            if len(self.runner.render(model, candidate, tools)) <= num_ctx:
                return candidate
        systems = [m for m in messages[:-1] if m.get("role") == "system"]
        return [*systems, messages[-1]]

    async def _stream(
        self,
        reply: _Reply,
        pieces: AsyncIterator[Piece],
        fault: Fault | None,
        thinking: bool,
        send: _Sender,
    ) -> dict[str, Any] | None:
        """Stream the reply; its final chunk, or None when a fault cut it short."""
        await send.start_stream()
        if thinking:
            await send.line(
                {
                    "model": reply.model,
                    "message": {"role": "assistant", "content": "", "thinking": "Let me think."},
                    "done": False,
                }
            )
        index = 0
        async for piece in pieces:
            if index == 2 and fault is not None:
                if fault == "error_midstream":
                    await send.line(
                        {
                            "error": "an error was encountered while running the model: GGML_ASSERT failed"
                        }
                    )
                    await send.end_stream()
                    return None
                if fault == "oom_midstream":
                    await send.line({"error": "cudaMalloc failed: out of memory"})
                    await send.end_stream()
                    return None
                if fault == "nested_stream":
                    await send.raw_chunk(b'{"error":' + b"[" * NESTING + b"]" * NESTING + b"}\n")
                    await send.end_stream()
                    return None
                if fault == "malformed":
                    await send.raw_chunk(b'{"model": "x", "message": {"content": "tor\n')
                    await send.end_stream()
                    return None
                if fault == "reset":
                    await send.abort()
                    return None
                if fault == "stall":
                    await send.until_gone(self.closing)
                    return None
            index += 1
            reply.add(piece)
            await send.line(
                {
                    "model": reply.model,
                    "created_at": "2026-11-21T00:00:00Z",
                    "message": {"role": "assistant", "content": piece.text},
                    "done": False,
                }
            )
        final = reply.final()
        if fault == "huge_counts":
            final["eval_count"] = 10**30
        if fault == "negative_counts":
            final["prompt_eval_count"] = -7
        await send.line(final)
        await send.end_stream()
        return final


@dataclass
class _Reply:
    """A reply as it streams: its text, its tokens, and its final chunk."""

    model: str
    prompt_tokens: int
    limit: int
    text: str = ""
    tokens: int = 0

    def add(self, piece: Piece) -> None:
        self.text += piece.text
        self.tokens += piece.tokens

    def final(self) -> dict[str, Any]:
        stopped = 0 <= self.limit <= self.tokens
        return {
            "model": self.model,
            "created_at": "2026-11-21T00:00:00Z",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "length" if stopped else "stop",
            "total_duration": 1000,
            "prompt_eval_count": self.prompt_tokens,
            "eval_count": self.tokens if stopped else self.tokens + 1,
        }


async def _scripted(pieces: Iterator[Piece]) -> AsyncIterator[Piece]:
    for piece in pieces:
        yield piece


def _keep(card: Card, options: dict[str, Any]) -> int:
    """Tokens at the front that a cut keeps: `num_keep` (4), one more for a BOS token."""
    return int(options.get("num_keep", 4)) + (1 if card.add_bos else 0)


def _cut(prompt: list[Token], keep: int, num_ctx: int, *, half: bool = True) -> list[Token]:
    """An over-long prompt cut: the first `keep` tokens and the last `limit − keep`, where
    current Ollama's completion path has `limit = num_ctx − max((num_ctx − keep) / 2, 1)`
    (about half the window) and v0.12.6–v0.29's runner had `limit = num_ctx`."""
    limit = num_ctx - max((num_ctx - keep) // 2, 1) if half else num_ctx
    return prompt[:keep] + prompt[len(prompt) - (limit - keep) :]


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


class _Sender:
    """Writes one HTTP/1.1 response on a connection."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.broken = False
        self.status = 0

    async def json(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
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
        self.status = 200
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

    async def until_gone(self, closing: anyio.Event) -> None:
        """Wait until the client hangs up (or the server closes), as a stalled runner would
        until Ollama cancels the request."""
        async with anyio.create_task_group() as tg:

            async def hang_up() -> None:
                with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                    while await self.stream.receive():
                        pass
                tg.cancel_scope.cancel()

            async def close() -> None:
                await closing.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(hang_up)
            tg.start_soon(close)

    async def abort(self) -> None:
        self.broken = True
        await self.stream.aclose()


async def _serve_connection(server: OllamaTestServer, stream: anyio.abc.SocketStream) -> None:
    server.connections += 1
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
    parser.add_argument("--gguf", type=pathlib.Path, help="serve this model through llama.cpp")
    parser.add_argument("--name", default="smollm2:135m", help="the model's name (with --gguf)")
    parser.add_argument("--kv-type", default="f16", help="the KV cache type (with --gguf)")
    parser.add_argument(
        "--path",
        choices=("native", "go"),
        default="go",
        help="how an over-long prompt is met: cut to half the window (go) or refused (native)",
    )
    parser.add_argument(
        "--hide-vocabulary",
        action="store_true",
        help="`/api/show` leaves the vocabulary out even with verbose (with --gguf)",
    )
    args = parser.parse_args()

    async def run() -> None:
        server = OllamaTestServer(path=args.path)
        engine = None
        if args.gguf:
            from tests.engine.llama_engine import LlamaEngine

            engine = LlamaEngine(
                args.gguf, args.name, args.kv_type, vocabulary=not args.hide_vocabulary
            )
            server = OllamaTestServer(engine=engine, path=args.path)
        try:
            async with open_ollama_server(server) as running:
                print(running.url, flush=True)
                await anyio.sleep_forever()
        finally:
            if engine is not None:
                engine.close()

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(run, backend="asyncio")


if __name__ == "__main__":
    main()
