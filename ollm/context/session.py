"""The session: owns the conversation, sends requests, and decides what a failure means.

Chain: UserSubmitted → MessageAdded → (token counter) UsageChanged → ChatRequested →
(provider) ReplyChunk… → ReplyCompleted → MessageAdded(assistant). A request goes out on
the usage that follows its message, so its `num_predict` fits the room that is left.
A failed request never loses the user's message: it stays, marked unanswered. An overflow
is retried once after dropping the oldest turns; out of memory once with a smaller context.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from actors import Actor, Context

from ..conversation import Conversation, oldest_turns_to_drop
from ..events import (
    ChatRequested,
    ContextReduced,
    ContextSizeChanged,
    Message,
    MessageAdded,
    MessageUnanswered,
    ModelSelected,
    ReplyCancelled,
    ReplyCompleted,
    ReplyFailed,
    SessionOpened,
    UsageChanged,
    UserSubmitted,
)
from ..profiles import runner_options

RETRY_TARGET = 0.75
"""After an overflow, aim for this share of num_ctx (the compression threshold)."""


@dataclass(frozen=True)
class SessionPolicy:
    max_reply_tokens: int = 2048
    min_reply_tokens: int = 64
    think: bool = True


@dataclass
class InFlight:
    request_id: str
    user_message_id: str
    attempt: int


def reply_budget(policy: SessionPolicy, num_ctx: int, used: int) -> int:
    """`num_predict`: the configured maximum, bounded by the room left in the context."""
    return max(policy.min_reply_tokens, min(policy.max_reply_tokens, num_ctx - used))


def overflow_share(n_prompt: int, n_ctx: int) -> float:
    """The share of the conversation to drop so that an `n_prompt` prompt fits `n_ctx`."""
    if n_prompt <= 0 or n_ctx <= 0:
        return 0.5
    return max(0.0, (n_prompt - RETRY_TARGET * n_ctx) / n_prompt)


Accepted = (
    SessionOpened
    | ModelSelected
    | UserSubmitted
    | UsageChanged
    | ReplyCompleted
    | ReplyFailed
    | ReplyCancelled
)


class SessionActor(Actor[Accepted]):
    accepts = (
        SessionOpened,
        ModelSelected,
        UserSubmitted,
        UsageChanged,
        ReplyCompleted,
        ReplyFailed,
        ReplyCancelled,
    )

    def __init__(self, policy: SessionPolicy | None = None) -> None:
        self.policy = policy or SessionPolicy()
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
        self.queued: deque[str] = deque()

    async def _emit(self, ctx: Context, event: object) -> int:
        envelope = await ctx.publish(event)
        self.conversation.apply(event)
        return envelope.seq

    async def handle(self, event: Accepted, ctx: Context) -> None:
        match event:
            case SessionOpened():
                self._reset()
                self.conversation.apply(event)
            case ModelSelected(num_ctx=num_ctx):
                self.model, self.num_ctx = event, num_ctx
            case UserSubmitted(text=text):
                if self.in_flight is not None or self.send_after is not None:
                    self.queued.append(text)
                else:
                    await self._submit(ctx, text)
            case UsageChanged(used_tokens=used):
                self.used = used
                cause = ctx.current.causation if ctx.current is not None else None
                if self.send_after is not None and cause == self.send_after[0]:
                    await self._send(ctx, self.send_after[1])
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
            case _:
                pass

    def _current(self, request_id: str) -> bool:
        return self.in_flight is not None and self.in_flight.request_id == request_id

    async def _submit(self, ctx: Context, text: str) -> None:
        message = Message(id=self.conversation.new_message_id(), role="user", content=text)
        self.send_after = (await self._emit(ctx, MessageAdded(message=message)), 1)

    async def _next(self, ctx: Context) -> None:
        if self.queued and self.in_flight is None and self.send_after is None:
            await self._submit(ctx, self.queued.popleft())

    async def _send(self, ctx: Context, attempt: int) -> None:
        self.send_after = None
        model = self.model
        user = next((m for m in reversed(self.conversation.messages) if m.role == "user"), None)
        if model is None or user is None:
            return
        request = ChatRequested(
            request_id=self.conversation.new_request_id(),
            model=model.model,
            messages=self.conversation.chat_messages(),
            options=runner_options(self.num_ctx),
            num_predict=reply_budget(self.policy, self.num_ctx, self.used),
            think=self.policy.think if model.thinking else None,
            attempt=attempt,
        )
        self.in_flight = InFlight(request.request_id, user.id, attempt)
        await self._emit(ctx, request)

    async def _failed(self, ctx: Context, failure: ReplyFailed) -> None:
        assert self.in_flight is not None
        first = self.in_flight.attempt == 1
        if failure.failure == "context_overflow" and first:
            share = overflow_share(failure.n_prompt_tokens, failure.n_ctx)
            removed = oldest_turns_to_drop(self.conversation.messages, share)
            if removed:
                self.in_flight = None
                reduced = ContextReduced(
                    removed_ids=removed,
                    reason=f"{failure.message}; dropped the oldest turns and retried once",
                    tokens_before=failure.n_prompt_tokens,
                )
                self.send_after = (await self._emit(ctx, reduced), 2)
                return
        if failure.failure == "out_of_memory" and first and self.model is not None:
            smaller = [n for n in self.model.smaller if n < self.num_ctx]
            if smaller:
                self.in_flight = None
                self.num_ctx = smaller[0]
                resized = ContextSizeChanged(
                    model=self.model.model,
                    num_ctx=smaller[0],
                    reason=f"{failure.message}; retrying once with num_ctx {smaller[0]}",
                )
                self.send_after = (await self._emit(ctx, resized), 2)
                return
        await self._unanswered(ctx, failure.message)

    async def _unanswered(self, ctx: Context, reason: str) -> None:
        assert self.in_flight is not None
        message_id = self.in_flight.user_message_id
        self.in_flight = None
        await self._emit(ctx, MessageUnanswered(message_id=message_id, reason=reason))
        await self._next(ctx)
