"""The token counter: per-message counts, calibration from the server, the running total."""

from __future__ import annotations

from actors import Actor, Context

from ..conversation import Conversation
from ..events import (
    CalibrationChanged,
    CalibrationRestored,
    ChatRequested,
    CompressionCompleted,
    ContextCleared,
    ContextReduced,
    ContextSizeChosen,
    MessageAdded,
    ModelLoaded,
    ModelSelected,
    PromptRendered,
    ReplyCompleted,
    SessionOpened,
    SnapshotRestored,
    SystemPromptSet,
    TruncationDetected,
    UsageChanged,
    UserNotified,
)
from ..tokens import Accounting

STRUCTURAL = (
    SessionOpened,
    ContextReduced,
    ContextCleared,
    CompressionCompleted,
    SnapshotRestored,
    SystemPromptSet,
)


class Ledger:
    """The token count of a conversation, kept from its events: the token counter's policy,
    and the read model the REPL's status and `/context stats` use."""

    def __init__(self) -> None:
        self.accounting = Accounting()
        self.conversation = Conversation()

    def fork(self) -> Ledger:
        """An independent copy that later events do not reach (for what-if questions)."""
        copy = Ledger()
        copy.accounting = self.accounting.fork()
        copy.conversation = Conversation.from_state(self.conversation.state())
        return copy

    def apply(self, event: object) -> tuple[bool, tuple[int, int] | None]:
        """Fold one event in; returns (usage may have changed, (sent, counted) if the server
        truncated)."""
        acc = self.accounting
        match event:
            case SessionOpened():
                self.accounting = acc = Accounting(cache=acc.cache)
                self.conversation = Conversation()
                self.conversation.apply(event)
                acc.reset(tuple(self.conversation.prompt_messages()))
            case ModelSelected(model=model):
                acc.model = model
            case ContextSizeChosen(num_ctx=num_ctx):
                acc.num_ctx = num_ctx
            case ModelLoaded(model=model, context_length=length):
                if length > 0:
                    acc.served[model] = length
                return False, None
            case MessageAdded(message=message):
                self.conversation.apply(event)
                acc.add(message)
            case (
                ContextReduced()
                | ContextCleared()
                | CompressionCompleted()
                | SnapshotRestored()
                | SystemPromptSet()
            ):
                # The conversation changed shape: recount it (O(messages), rare).
                self.conversation.apply(event)
                acc.reset(tuple(self.conversation.prompt_messages()))
            case ChatRequested():
                self.conversation.apply(event)
                acc.on_request(event)
                return False, None
            case ReplyCompleted():
                return True, acc.on_reply(event)
            case PromptRendered():
                acc.on_rendered(event)
                return False, None
            case CalibrationRestored(model=model, factor=factor, extra=extra):
                acc.prior[model] = (factor, extra)
            case _:
                self.conversation.apply(event)
                return False, None
        return True, None


Accepted = (
    SessionOpened
    | ModelSelected
    | ContextSizeChosen
    | ModelLoaded
    | MessageAdded
    | ContextReduced
    | ContextCleared
    | SnapshotRestored
    | SystemPromptSet
    | CompressionCompleted
    | ChatRequested
    | ReplyCompleted
    | PromptRendered
    | CalibrationRestored
)


class TokenCounterActor(Actor[Accepted]):
    """Keeps the `Ledger` up to date and publishes `UsageChanged` after every change."""

    accepts = (
        *STRUCTURAL,
        ModelSelected,
        ContextSizeChosen,
        ModelLoaded,
        MessageAdded,
        ChatRequested,
        ReplyCompleted,
        PromptRendered,
        CalibrationRestored,
    )

    def __init__(self) -> None:
        self.ledger = Ledger()

    @property
    def accounting(self) -> Accounting:
        return self.ledger.accounting

    async def handle(self, event: Accepted, ctx: Context) -> None:
        acc = self.accounting
        replied = isinstance(event, ReplyCompleted)  # only a reply recalibrates
        before = (dict(acc.factors), dict(acc.extra)) if replied else ({}, {})
        changed, truncated = self.ledger.apply(event)
        if replied:
            for model in sorted(set(acc.factors) | set(acc.extra)):
                now = (acc.factors.get(model), acc.extra.get(model))
                if now != (before[0].get(model), before[1].get(model)):
                    await ctx.publish(
                        CalibrationChanged(
                            model=model, factor=acc.factor_of(model), extra=acc.extra_of(model)
                        )
                    )
        if truncated is not None:
            sent, counted = truncated
            rid = event.request_id if isinstance(event, ReplyCompleted) else ""
            await ctx.publish(
                TruncationDetected(request_id=rid, sent_tokens=sent, counted_tokens=counted)
            )
            await ctx.publish(
                UserNotified(
                    level="warning",
                    text=f"Ollama truncated the conversation: it counted {counted} "
                    f"prompt tokens of about {sent} sent ({sent - counted} dropped)",
                )
            )
        if changed:
            await self._publish_usage(ctx)

    async def _publish_usage(self, ctx: Context) -> None:
        if not self.accounting.num_ctx:
            return
        # Published after every change, even an unchanged figure: the session sends a request
        # on the usage that follows its message, so it must always come.
        await ctx.publish(
            UsageChanged(used_tokens=self.accounting.used(), limit_tokens=self.accounting.num_ctx)
        )
