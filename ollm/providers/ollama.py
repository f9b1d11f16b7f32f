"""Ollama over HTTP: a typed client on one injected `httpx.AsyncClient`, the request
payloads (built in one place), and the provider actor that streams replies onto the bus."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
import httpx
import msgspec

from actors import Actor, Context

from ..config import KeepAlive, shown_host
from ..events import (
    CancelRequested,
    ChatRequested,
    ContextSizeChosen,
    ModelLoaded,
    ModelLoadFailed,
    PromptRendered,
    ReplyCancelled,
    ReplyChunk,
    ReplyCompleted,
    ReplyFailed,
    RunnerOptions,
    ServerInfo,
    TemplateRendered,
    ToolCall,
)
from ..profiles import runner_options
from ..template_costs import probes
from . import failures
from .failures import Failure

TRUNCATE_SINCE = (0, 12, 6)
"""`truncate` (and `shift`) are request fields from Ollama v0.12.6 on."""


RENDER_SINCE = (0, 11, 5)
"""`_debug_render_only` (answer with the rendered prompt, generate nothing) from v0.11.5 on;
an older server ignores the field and would generate a whole reply."""


def supports_render(server_version: str) -> bool:
    return failures.version_at_least(server_version, RENDER_SINCE)


def supports_truncate(server_version: str) -> bool:
    """Whether a server of this version takes `truncate: false` (refuse, never cut)."""
    return failures.version_at_least(server_version, TRUNCATE_SINCE)


# --- wire types -----------------------------------------------------------------------------


class WireFunction(msgspec.Struct, frozen=True):
    name: str = ""
    arguments: msgspec.Raw = msgspec.Raw(b"{}")


class WireToolCall(msgspec.Struct):
    function: WireFunction = WireFunction()
    id: str = ""


class WireMessage(msgspec.Struct):
    role: str = "assistant"
    content: str = ""
    thinking: str = ""
    tool_calls: list[WireToolCall] = []


class ChatChunk(msgspec.Struct):
    """One NDJSON line of `/api/chat` (unknown fields are ignored)."""

    message: WireMessage | None = None
    done: bool = False
    done_reason: str = ""
    prompt_eval_count: int = 0
    eval_count: int = 0
    error: Any = None


class VersionResponse(msgspec.Struct):
    version: str = ""


Size = Annotated[int, msgspec.Meta(ge=0, le=1 << 50)]
"""A size in bytes from the server: never negative, never past a PiB (else not read)."""
Tokens = Annotated[int, msgspec.Meta(ge=0, le=1 << 30)]
"""A context length in tokens from the server, within what any model could have."""


class TagModel(msgspec.Struct):
    name: str = ""
    size: Size = 0
    digest: str = ""


class TagsResponse(msgspec.Struct):
    models: list[TagModel] = []


class ShowResponse(msgspec.Struct):
    model_info: dict[str, Any] = {}
    capabilities: list[str] = []


class DebugInfo(msgspec.Struct):
    rendered_template: str = ""


class RenderResponse(msgspec.Struct):
    debug_info: DebugInfo | None = msgspec.field(default=None, name="_debug_info")


class PsModel(msgspec.Struct):
    name: str = ""
    model: str = ""
    size: Size = 0
    size_vram: Size = 0
    context_length: Tokens = 0


class PsResponse(msgspec.Struct):
    models: list[PsModel] = []


def installed_model(installed: list[TagModel], name: str) -> TagModel | None:
    """`name` among the models `/api/tags` lists; `name` and `name:latest` are the same."""
    models = {m.name: m for m in installed}
    return models.get(name, models.get(f"{name}:latest"))


def loaded_model(running: list[PsModel], name: str) -> PsModel | None:
    """`name` among the models `/api/ps` lists as loaded, if it is."""
    return next((m for m in running if name in (m.name, m.model)), None)


DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, RecursionError)
"""What decoding a reply can raise: bad JSON, the wrong shape, or nesting past Python's
recursion limit (msgspec raises RecursionError there)."""

COUNT_LIMIT = 10
"""A prompt or reply count above this many times `num_ctx` cannot be real."""


def implausible_counts(chunk: ChatChunk, num_ctx: int) -> str:
    """The reply's counts in words when no model can have produced them; "" when plausible."""
    top = COUNT_LIMIT * (num_ctx or 1 << 20)
    for name, value in (
        ("prompt_eval_count", chunk.prompt_eval_count),
        ("eval_count", chunk.eval_count),
    ):
        if not 0 <= value <= top:
            shown = str(value) if len(str(value)) <= 24 else f"a {len(str(value))}-digit number"
            return f"{name} {shown} for a {num_ctx}-token context"
    return ""


class ProviderError(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


# --- payloads -------------------------------------------------------------------------------


def _wire_tool_call(call: ToolCall) -> dict[str, Any]:
    try:
        arguments = json.loads(call.arguments) if call.arguments else {}
    except ValueError:
        arguments = {}
    wire: dict[str, Any] = {"function": {"name": call.name, "arguments": arguments}}
    if call.id:
        wire["id"] = call.id
    return wire


def build_chat_payload(
    request: ChatRequested, *, keep_alive: KeepAlive, truncate: bool, stream: bool = True
) -> dict[str, Any]:
    """The exact JSON body of a chat (or summary) request.

    `options` carries the runner options from the request unchanged, the user's model
    options, and `num_predict`.
    """
    messages = []
    for message in request.messages:
        wire: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.tool_calls:
            wire["tool_calls"] = [_wire_tool_call(c) for c in message.tool_calls]
        if message.tool_name:
            wire["tool_name"] = message.tool_name
        messages.append(wire)
    options = msgspec.to_builtins(request.options)
    for option in request.sampling:
        value = option.value
        options[option.name] = list(value) if isinstance(value, tuple) else value
    options["num_predict"] = request.num_predict
    payload: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "stream": stream,
        "options": options,
        "keep_alive": keep_alive,
    }
    if truncate:
        payload["truncate"] = False
    if request.think is not None:
        payload["think"] = request.think
    if request.tools:
        payload["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": json.loads(t.parameters or "{}"),
                },
            }
            for t in request.tools
        ]
    return payload


def build_load_payload(
    model: str, options: RunnerOptions, *, keep_alive: KeepAlive
) -> dict[str, Any]:
    """A warm-up: no messages, the same runner options as every other request."""
    return {
        "model": model,
        "messages": [],
        "options": msgspec.to_builtins(options),
        "keep_alive": keep_alive,
    }


# --- client ---------------------------------------------------------------------------------


class OllamaClient:
    """Ollama's HTTP API, typed. Every failure is a `ProviderError` with one sentence."""

    def __init__(self, http: httpx.AsyncClient, host: str, timeout: float) -> None:
        self.http = http
        self.host = shown_host(host)
        """The host as every message shows it (never its password)."""
        self.timeout = timeout
        self._chunks = msgspec.json.Decoder(ChatChunk)

    async def _get(self, path: str, kind: type[Any], model: str = "") -> Any:
        return await self._call("GET", path, None, kind, model)

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None, kind: type[Any], model: str
    ) -> Any:
        try:
            response = await self.http.request(method, path, json=body)
        except httpx.TimeoutException as exc:
            raise ProviderError(failures.timed_out(self.host, self.timeout)) from exc
        except httpx.TransportError as exc:
            raise ProviderError(_transport_failure(exc, self.host)) from exc
        if response.status_code != 200:
            raise ProviderError(
                failures.classify_error(
                    response.status_code, response.text, host=self.host, model=model
                )
            )
        try:
            return msgspec.json.decode(response.content, type=kind)
        except DECODE_ERRORS as exc:
            raise ProviderError(failures.malformed(self.host, f"an answer to {path}")) from exc

    async def version(self) -> str:
        response: VersionResponse = await self._get("/api/version", VersionResponse)
        return response.version

    async def tags(self) -> list[TagModel]:
        response: TagsResponse = await self._get("/api/tags", TagsResponse)
        return response.models

    async def show(self, model: str, *, verbose: bool = False) -> ShowResponse:
        """`/api/show`; `verbose` asks for the whole vocabulary too (megabytes: without it,
        every array longer than 5 comes back empty)."""
        body: dict[str, Any] = {"model": model, "verbose": True} if verbose else {"model": model}
        response: ShowResponse = await self._call("POST", "/api/show", body, ShowResponse, model)
        return response

    async def ps(self) -> list[PsModel]:
        response: PsResponse = await self._get("/api/ps", PsResponse)
        return response.models

    async def render(self, payload: dict[str, Any]) -> str:
        """The prompt `payload` would send, as the model's template renders it; "" when the
        server does not say (an older Ollama, or any failure: counting falls back)."""
        body = {**payload, "stream": False, "_debug_render_only": True}
        try:
            reply = await self._call("POST", "/api/chat", body, RenderResponse, payload["model"])
        except ProviderError:
            return ""
        return reply.debug_info.rendered_template if reply.debug_info else ""

    async def load(self, payload: dict[str, Any]) -> None:
        await self._call("POST", "/api/chat", payload, ChatChunk, str(payload.get("model", "")))

    async def chat(self, payload: dict[str, Any]) -> AsyncIterator[ChatChunk]:
        """Stream `/api/chat`, one decoded chunk per line."""
        model = str(payload.get("model", ""))
        try:
            async with self.http.stream("POST", "/api/chat", json=payload) as response:
                if response.status_code != 200:
                    body = (await response.aread()).decode("utf-8", "replace")
                    raise ProviderError(
                        failures.classify_error(
                            response.status_code, body, host=self.host, model=model
                        )
                    )
                lines = response.aiter_lines()
                async for line in lines:
                    if not line.strip():
                        continue
                    try:
                        chunk = self._chunks.decode(line)
                    except DECODE_ERRORS as exc:
                        raise ProviderError(failures.malformed(self.host)) from exc
                    if chunk.done:
                        # Read the body to its end first: the caller stops at this chunk, and
                        # only a response read to the end lets the connection be reused.
                        async for _rest in lines:
                            pass
                    yield chunk
        except httpx.TimeoutException as exc:
            raise ProviderError(failures.timed_out(self.host, self.timeout)) from exc
        except httpx.TransportError as exc:
            raise ProviderError(_transport_failure(exc, self.host)) from exc


def _transport_failure(exc: httpx.TransportError, host: str) -> Failure:
    if isinstance(exc, httpx.ConnectError | httpx.UnsupportedProtocol):
        return failures.unreachable(host)
    return failures.reset(host)


def make_http_client(host: str, timeout: float) -> httpx.AsyncClient:
    # A plain-HTTP host never does TLS, so skip loading the certificate store (~20 ms at
    # every start); an https host keeps full verification.
    plain = host.startswith("http://")
    return httpx.AsyncClient(
        base_url=host,
        timeout=httpx.Timeout(connect=10.0, read=timeout, write=30.0, pool=10.0),
        trust_env=False,
        verify=not plain,
    )


# --- actor ----------------------------------------------------------------------------------


class OllamaProviderActor(Actor[ChatRequested | CancelRequested | ContextSizeChosen]):
    """Streams replies for `ChatRequested`; reloads the model deliberately on `ContextSizeChosen`.

    A boundary actor: what it publishes (chunks, replies, failures, loads) are inputs.
    """

    accepts = (ChatRequested, CancelRequested, ContextSizeChosen)

    def __init__(self, client: OllamaClient, *, keep_alive: KeepAlive) -> None:
        self.client = client
        self.keep_alive = keep_alive
        self.server_version = ""
        self.active: dict[str, anyio.CancelScope] = {}
        self.rendered: set[str] = set()
        """Models whose template has been asked to render a prompt (once each)."""

    async def on_start(self, ctx: Context) -> None:
        ctx.start_soon(self._learn_version, ctx)

    async def _learn_version(self, ctx: Context | None = None) -> None:
        try:
            self.server_version = await self.client.version()
        except ProviderError:
            self.server_version = ""
        if ctx is not None and self.server_version:
            await ctx.publish(ServerInfo(version=self.server_version))

    def payload(self, request: ChatRequested) -> dict[str, Any]:
        return build_chat_payload(
            request, keep_alive=self.keep_alive, truncate=supports_truncate(self.server_version)
        )

    async def handle(
        self, event: ChatRequested | CancelRequested | ContextSizeChosen, ctx: Context
    ) -> None:
        match event:
            case ChatRequested():
                ctx.start_soon(self._stream, event, ctx)
            case CancelRequested(request_id=request_id):
                for rid, scope in list(self.active.items()):
                    if not request_id or rid == request_id:
                        scope.cancel()
            case ContextSizeChosen():
                ctx.start_soon(self._load, event, ctx)

    async def _load(self, selected: ContextSizeChosen, ctx: Context) -> None:
        options = runner_options(selected.num_ctx)
        try:
            await self.client.load(
                build_load_payload(selected.model, options, keep_alive=self.keep_alive)
            )
            running = await self.client.ps()
        except ProviderError as exc:
            await ctx.publish(
                ModelLoadFailed(
                    model=selected.model, failure=exc.failure.kind, message=exc.failure.message
                )
            )
            return
        except Exception as exc:  # a bug must be reported, never kill the provider
            failure = failures.internal(self.client.host, exc)
            await ctx.publish(
                ModelLoadFailed(model=selected.model, failure=failure.kind, message=failure.message)
            )
            return
        mine = loaded_model(running, selected.model)
        await self._render_probes(selected.model, options, ctx)
        await ctx.publish(
            ModelLoaded(
                model=selected.model,
                context_length=mine.context_length if mine else 0,
                size_bytes=mine.size if mine else 0,
                size_vram_bytes=mine.size_vram if mine else 0,
            )
        )

    async def _render_probes(self, model: str, options: RunnerOptions, ctx: Context) -> None:
        """The template's probes rendered with the options just loaded (so nothing reloads),
        before the load is reported: the first message is counted with what they show."""
        if not self.server_version:
            await self._learn_version()
        if not supports_render(self.server_version):
            return
        for messages in probes():
            payload = build_load_payload(model, options, keep_alive=self.keep_alive)
            payload["messages"] = [msgspec.to_builtins(m) for m in messages]
            text = await self.client.render(payload)
            if text:
                await ctx.publish(TemplateRendered(model=model, messages=messages, text=text))

    async def _stream(self, request: ChatRequested, ctx: Context) -> None:
        if not self.server_version:
            await self._learn_version()
        content: list[str] = []
        thinking: list[str] = []
        calls: list[ToolCall] = []
        rid = request.request_id
        with anyio.CancelScope() as scope:
            self.active[rid] = scope
            try:
                payload = self.payload(request)
                if (
                    request.purpose == "chat"
                    and request.model not in self.rendered
                    and supports_render(self.server_version)
                ):
                    self.rendered.add(request.model)
                    text = await self.client.render(payload)
                    if text:
                        await ctx.publish(PromptRendered(request_id=rid, text=text))
                async for chunk in self.client.chat(payload):
                    if chunk.error is not None:
                        text = failures.shown(chunk.error)
                        failure = failures.classify_error(
                            0, text, host=self.client.host, model=request.model
                        )
                        await self._fail(ctx, rid, failure, content)
                        return
                    message = chunk.message
                    if message is not None:
                        calls.extend(
                            ToolCall(
                                name=c.function.name,
                                arguments=bytes(c.function.arguments).decode(),
                                id=c.id,
                            )
                            for c in message.tool_calls
                        )
                        if message.content or message.thinking:
                            content.append(message.content)
                            thinking.append(message.thinking)
                            await ctx.publish(
                                ReplyChunk(
                                    request_id=rid,
                                    content=message.content,
                                    thinking=message.thinking,
                                )
                            )
                    if chunk.done:
                        wrong = implausible_counts(chunk, request.options.num_ctx)
                        if wrong:
                            failure = failures.implausible(self.client.host, wrong)
                            await self._fail(ctx, rid, failure, content)
                            return
                        await ctx.publish(
                            ReplyCompleted(
                                request_id=rid,
                                content="".join(content),
                                thinking="".join(thinking),
                                tool_calls=tuple(calls),
                                prompt_eval_count=chunk.prompt_eval_count,
                                eval_count=chunk.eval_count,
                                done_reason=chunk.done_reason,
                            )
                        )
                        return
                await self._fail(ctx, rid, failures.reset(self.client.host), content)
            except ProviderError as exc:
                await self._fail(ctx, rid, exc.failure, content)
            except Exception as exc:  # a bug must end the turn, never orphan it
                await self._fail(ctx, rid, failures.internal(self.client.host, exc), content)
            finally:
                self.active.pop(rid, None)
        if scope.cancelled_caught:
            await ctx.publish(ReplyCancelled(request_id=rid, partial="".join(content)))

    async def _fail(self, ctx: Context, rid: str, failure: Failure, content: list[str]) -> None:
        await ctx.publish(
            ReplyFailed(
                request_id=rid,
                failure=failure.kind,
                message=failure.message,
                n_prompt_tokens=failure.n_prompt_tokens,
                n_ctx=failure.n_ctx,
                partial="".join(content),
            )
        )
