"""The session: owns the conversation, sends requests, and decides what a failure means.

Chain: UserSubmitted → MessageAdded → (token counter) UsageChanged → ChatRequested →
(provider) ReplyChunk… → ReplyCompleted → MessageAdded(assistant). A request goes out on
the usage that follows its message, so its `num_predict` fits the room that is left; never
while the model is being reloaded with a new size (it waits, and goes out after), and never
above the hard limit (the oldest turns are dropped first, once, and the user is told).
A failed request never loses the user's message: it stays, marked unanswered. An overflow
is retried once after dropping the oldest turns; out of memory once with a smaller context.
A message that cannot fit even with everything older set aside is refused in one sentence.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from actors import Actor, Context

from ..config import Settings
from ..conversation import Conversation, oldest_turns_to_drop, turns
from ..events import (
    ChatRequested,
    ClearRequested,
    CompressionCompleted,
    ContextCleared,
    ContextReduced,
    ContextSizeChosen,
    Message,
    MessageAdded,
    MessageUnanswered,
    ModelLoaded,
    ModelLoadFailed,
    ModelSelected,
    NoticeLevel,
    ReplyCancelled,
    ReplyCompleted,
    ReplyFailed,
    ResizeDeclined,
    ResizeRequested,
    SessionOpened,
    SnapshotCreated,
    SnapshotFailed,
    SnapshotRequested,
    SnapshotRestored,
    UsageChanged,
    UserNotified,
    UserSubmitted,
)
from ..profiles import runner_options
from .memory_guard import GuardPolicy, Level, threshold_tokens

RETRY_TARGET = 0.75
"""After an overflow, aim for this share of num_ctx (the compression threshold)."""


@dataclass(frozen=True)
class SessionPolicy:
    max_reply_tokens: int = 2048
    min_reply_tokens: int = 64
    think: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionPolicy:
        return cls(max_reply_tokens=settings.ollama.max_reply_tokens, think=settings.ollama.think)


@dataclass
class InFlight:
    request_id: str
    user_message_id: str
    attempt: int


def reply_budget(policy: SessionPolicy, num_ctx: int, used: int) -> int:
    """`num_predict`: the configured maximum, bounded by the room left in the context."""
    return max(policy.min_reply_tokens, min(policy.max_reply_tokens, num_ctx - used))


def chat_request(
    conversation: Conversation,
    model: ModelSelected,
    num_ctx: int,
    used: int,
    policy: SessionPolicy,
    attempt: int = 1,
) -> ChatRequested:
    """The request the session sends for the conversation as it is (also `/test prompt`)."""
    return ChatRequested(
        request_id=conversation.new_request_id(),
        model=model.model,
        messages=conversation.chat_messages(),
        options=runner_options(num_ctx),
        num_predict=reply_budget(policy, num_ctx, used),
        think=policy.think if model.thinking else None,
        attempt=attempt,
    )


def overflow_share(n_prompt: int, n_ctx: int) -> float:
    """The share of the conversation to drop so that an `n_prompt` prompt fits `n_ctx`."""
    if n_prompt <= 0 or n_ctx <= 0:
        return 0.5
    return max(0.0, (n_prompt - RETRY_TARGET * n_ctx) / n_prompt)


Accepted = (
    SessionOpened
    | ModelSelected
    | ContextSizeChosen
    | ModelLoaded
    | ModelLoadFailed
    | ResizeDeclined
    | UserSubmitted
    | UsageChanged
    | ReplyCompleted
    | ReplyFailed
    | ReplyCancelled
    | SnapshotRestored
    | CompressionCompleted
    | ClearRequested
    | SnapshotCreated
    | SnapshotFailed
)


class SessionActor(Actor[Accepted]):
    accepts = (
        SessionOpened,
        ModelSelected,
        ContextSizeChosen,
        ModelLoaded,
        ModelLoadFailed,
        ResizeDeclined,
        UserSubmitted,
        UsageChanged,
        ReplyCompleted,
        ReplyFailed,
        ReplyCancelled,
        SnapshotRestored,
        CompressionCompleted,
        ClearRequested,
        SnapshotCreated,
        SnapshotFailed,
    )

    def __init__(
        self, policy: SessionPolicy | None = None, guard: GuardPolicy | None = None
    ) -> None:
        self.policy = policy or SessionPolicy()
        self.guard = guard or GuardPolicy()
        self._reset()

    def _reset(self) -> None:
        """The state of a fresh session; a (re)opened session starts here, as a new process
        would, which is what lets a resumed session's log replay through one runtime."""
        self.conversation = Conversation()
        self.model: ModelSelected | None = None
        self.num_ctx = 0
        self.used = 0
        self.in_flight: InFlight | None = None
        self.send_after: tuple[int, int] | None = None
        """(seq of our last change, attempt): send when the usage caused by that change comes."""
        self.resizing = False
        self.after_resize: int | None = None
        """The attempt to send once the reload with the new size is done."""
        self.reduced_for_send = False
        self.queued: deque[str] = deque()
        self.clearing = ""
        """The ref of the snapshot a `/context clear` waits for before it clears."""

    async def _emit(self, ctx: Context, event: object) -> int:
        envelope = await ctx.publish(event)
        self.conversation.apply(event)
        return envelope.seq

    async def _tell(self, ctx: Context, level: NoticeLevel, text: str) -> None:
        await ctx.publish(UserNotified(level=level, text=text))

    async def handle(self, event: Accepted, ctx: Context) -> None:
        match event:
            case SessionOpened():
                self._reset()
                self.conversation.apply(event)
            case ModelSelected():
                self.model = event
            case ContextSizeChosen(num_ctx=num_ctx):
                self.num_ctx, self.resizing = num_ctx, True
            case ModelLoaded() | ModelLoadFailed() if self.resizing:
                await self._loaded(ctx, event)
            case ResizeDeclined(reason=reason) if self.after_resize is not None:
                self.after_resize = None
                await self._unanswered(ctx, reason)
            case UserSubmitted(text=text):
                if self._busy():
                    self.queued.append(text)
                else:
                    await self._submit(ctx, text)
            case UsageChanged(used_tokens=used):
                self.used = used
                cause = ctx.current.causation if ctx.current is not None else None
                if self.send_after is not None and cause == self.send_after[0]:
                    attempt = self.send_after[1]
                    self.send_after = None
                    await self._try_send(ctx, attempt)
            case ReplyCompleted() if self._current(event.request_id):
                reply = Message(
                    id=self.conversation.new_message_id(),
                    role="assistant",
                    content=event.content,
                    tool_calls=event.tool_calls,
                )
                self.in_flight = None
                await self._emit(ctx, MessageAdded(message=reply))
                await self._next(ctx)
            case ReplyFailed() if self._current(event.request_id):
                await self._failed(ctx, event)
            case ReplyCancelled() if self._current(event.request_id):
                await self._unanswered(ctx, "cancelled by the user")
            case SnapshotRestored() | CompressionCompleted():
                self.conversation.apply(event)
            case ClearRequested():
                await self._clear(ctx)
            case SnapshotCreated(ref=ref, snapshot_id=snapshot_id) if ref and ref == self.clearing:
                await self._cleared(ctx, snapshot_id)
            case SnapshotFailed(ref=ref) if ref and ref == self.clearing:
                self.clearing = ""
                await self._tell(
                    ctx,
                    "warning",
                    f"nothing was cleared: the snapshot that would undo it was not saved "
                    f"({event.message})",
                )
                await self._next(ctx)
            case _:
                pass

    def _busy(self) -> bool:
        """A new message waits (queued, none lost) while a turn is under way, or while the
        model is being (re)loaded with its size."""
        return (
            self.in_flight is not None
            or bool(self.clearing)
            or self.send_after is not None
            or self.after_resize is not None
            or self.resizing
            or self.num_ctx == 0
        )

    def _current(self, request_id: str) -> bool:
        return self.in_flight is not None and self.in_flight.request_id == request_id

    async def _loaded(self, ctx: Context, event: ModelLoaded | ModelLoadFailed) -> None:
        if self.model is None or event.model != self.model.model:
            return
        self.resizing = False
        attempt, self.after_resize = self.after_resize, None
        if attempt is None:
            await self._next(ctx)
            return
        if isinstance(event, ModelLoadFailed):
            await self._unanswered(ctx, event.message)
        else:
            await self._try_send(ctx, attempt)

    async def _submit(self, ctx: Context, text: str) -> None:
        message = Message(id=self.conversation.new_message_id(), role="user", content=text)
        self.send_after = (await self._emit(ctx, MessageAdded(message=message)), 1)

    async def _next(self, ctx: Context) -> None:
        if self.queued and not self._busy():
            await self._submit(ctx, self.queued.popleft())

    async def _try_send(self, ctx: Context, attempt: int) -> None:
        if self.resizing:
            self.after_resize = attempt
            return
        safe = self.guard.safe_limit(self.num_ctx)
        newest, base = self._shares()
        if newest + base > safe:
            await self._refuse(ctx, newest)
            return
        level = self.guard.level(self.used, self.num_ctx)
        if level >= Level.HARD and not self.reduced_for_send:
            target = threshold_tokens(self.guard.compress_at, self.num_ctx)
            share = (self.used - target) / self.used if self.used else 0.0
            removed = oldest_turns_to_drop(self.conversation.messages, share)
            if removed:
                self.reduced_for_send = True
                text = (
                    f"the context reached the hard limit ({self.used} of {self.num_ctx} tokens): "
                    f"the {len(removed)} oldest messages were taken out before sending"
                )
                await self._reduce_then_send(ctx, removed, text, self.used, attempt)
                return
        await self._send(ctx, attempt)

    async def _reduce_then_send(
        self, ctx: Context, removed: tuple[str, ...], text: str, before: int, attempt: int
    ) -> None:
        """Take `removed` out of the context (a snapshot first, so it stays restorable), say
        so, and send `attempt` on the usage that follows."""
        await ctx.publish(SnapshotRequested(reason="auto"))
        reduced = ContextReduced(removed_ids=removed, reason=text, tokens_before=before)
        self.send_after = (await self._emit(ctx, reduced), attempt)
        await self._tell(ctx, "warning", text)

    def _shares(self) -> tuple[int, int]:
        """Estimated tokens of the newest turn, and of what is always sent (system prompt,
        pinned facts, summary): the used total split by characters."""
        groups = turns(self.conversation.messages)
        if not groups:
            return 0, self.used
        head = [
            m
            for m in (self.conversation.system_message(), self.conversation.context_message())
            if m
        ]
        newest_chars = sum(len(m.content) for m in groups[-1])
        base_chars = sum(len(m.content) for m in head)
        total = sum(len(m.content) for m in self.conversation.messages) + base_chars or 1
        return self.used * newest_chars // total, self.used * base_chars // total

    async def _refuse(self, ctx: Context, newest: int) -> None:
        """A message that can never fit is refused, kept in the log, and taken out of the
        context (it would otherwise go out with every later request)."""
        groups = turns(self.conversation.messages)
        ids = tuple(m.id for m in groups[-1]) if groups else ()
        user = self._last_user_id()
        text = (
            f"your message is about {newest} tokens, too large for the {self.num_ctx}-token "
            "context even with everything older set aside; shorten it, or pick a larger "
            "context with /context size"
        )
        self.in_flight = None
        await self._emit(ctx, ContextReduced(removed_ids=ids, reason=text, tokens_before=self.used))
        if user:
            await self._emit(ctx, MessageUnanswered(message_id=user, reason=text))
        await self._next(ctx)

    async def _send(self, ctx: Context, attempt: int) -> None:
        self.reduced_for_send = False
        model, user = self.model, self._last_user_id()
        if model is None or not user:
            return
        request = chat_request(
            self.conversation, model, self.num_ctx, self.used, self.policy, attempt
        )
        self.in_flight = InFlight(request.request_id, user, attempt)
        await self._emit(ctx, request)

    async def _failed(self, ctx: Context, failure: ReplyFailed) -> None:
        assert self.in_flight is not None
        first = self.in_flight.attempt == 1
        if failure.failure == "context_overflow" and first:
            share = overflow_share(failure.n_prompt_tokens, failure.n_ctx)
            removed = oldest_turns_to_drop(self.conversation.messages, share)
            if removed:
                self.in_flight = None
                text = (
                    f"{failure.message}; dropped the {len(removed)} oldest messages "
                    "and retried once"
                )
                await self._reduce_then_send(ctx, removed, text, failure.n_prompt_tokens, 2)
                return
        if failure.failure == "out_of_memory" and first:
            self.in_flight = None
            self.after_resize = 2
            await ctx.publish(ResizeRequested(reason="Ollama ran out of memory"))
            await self._tell(
                ctx, "warning", f"{failure.message}; retrying once with a smaller context"
            )
            return
        await self._unanswered(ctx, failure.message)

    async def _unanswered(self, ctx: Context, reason: str) -> None:
        user = self.in_flight.user_message_id if self.in_flight else self._last_user_id()
        self.in_flight = None
        if user:
            await self._emit(ctx, MessageUnanswered(message_id=user, reason=reason))
        await self._next(ctx)

    def _last_user_id(self) -> str:
        last = next((m for m in reversed(self.conversation.messages) if m.role == "user"), None)
        return last.id if last else ""

    async def _clear(self, ctx: Context) -> None:
        """`/context clear`: a snapshot first, so that it can be undone; once it is saved only
        the system prompt is left, and the next request holds it and the new message. If the
        snapshot fails nothing is cleared."""
        seq = ctx.current.seq if ctx.current is not None else 0
        self.clearing = f"clear-{seq}"
        await ctx.publish(SnapshotRequested(reason="manual", ref=self.clearing))

    async def _cleared(self, ctx: Context, snapshot_id: str) -> None:
        self.clearing = ""
        text = f"the conversation was cleared; `/context restore {snapshot_id}` brings it back"
        await self._emit(
            ctx, ContextCleared(reason=text, snapshot_id=snapshot_id, keep_summary=False)
        )
        await self._tell(ctx, "info", text)
        await self._next(ctx)
