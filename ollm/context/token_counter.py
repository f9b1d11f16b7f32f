"""The token counter: per-message counts, calibration from the server, the running total."""

from __future__ import annotations

from actors import Actor, Context

from ..conversation import CONTEXT_ID, SYSTEM_ID, Conversation, render_context
from ..events import (
    ChatRequested,
    CompressionCompleted,
    ContextCleared,
    ContextReduced,
    ContextSizeChosen,
    Message,
    MessageAdded,
    ModelSelected,
    ReplyCompleted,
    SessionOpened,
    SnapshotRestored,
    TruncationDetected,
    UsageChanged,
    UserNotified,
)
from ..tokens import Accounting

Accepted = (
    SessionOpened
    | ModelSelected
    | ContextSizeChosen
    | MessageAdded
    | ContextReduced
    | ContextCleared
    | SnapshotRestored
    | CompressionCompleted
    | ChatRequested
    | ReplyCompleted
)


class TokenCounterActor(Actor[Accepted]):
    """Keeps `Accounting` up to date and publishes `UsageChanged` after every change."""

    accepts = (
        SessionOpened,
        ModelSelected,
        ContextSizeChosen,
        MessageAdded,
        ContextReduced,
        ContextCleared,
        SnapshotRestored,
        CompressionCompleted,
        ChatRequested,
        ReplyCompleted,
    )

    def __init__(self) -> None:
        self.accounting = Accounting()

    async def handle(self, event: Accepted, ctx: Context) -> None:
        acc = self.accounting
        match event:
            case SessionOpened(state=state):
                # A session (re)opening starts from scratch, as a fresh process would: that
                # is what lets a resumed session's log replay through one runtime.
                self.accounting = acc = Accounting()
                acc.reset(tuple(Conversation.from_state(state).prompt_messages()))
            case ModelSelected(model=model):
                acc.model = model
            case ContextSizeChosen(num_ctx=num_ctx):
                acc.num_ctx = num_ctx
            case MessageAdded(message=message):
                acc.add(message)
            case ContextReduced(removed_ids=removed):
                acc.remove(removed)
            case SnapshotRestored(state=state):
                acc.reset(tuple(Conversation.from_state(state).prompt_messages()))
            case CompressionCompleted(covered_ids=covered, summary=summary, pinned=pinned):
                acc.remove(covered)
                context = render_context(summary, pinned)
                acc.remove((CONTEXT_ID,))
                if context:
                    acc.add(Message(id=CONTEXT_ID, role="system", content=context))
            case ContextCleared():
                acc.remove(tuple(i for i in acc.messages if i != SYSTEM_ID))
            case ChatRequested():
                acc.on_request(event)
                return
            case ReplyCompleted():
                truncated = acc.on_reply(event)
                if truncated is not None:
                    sent, counted = truncated
                    await ctx.publish(
                        TruncationDetected(
                            request_id=event.request_id, sent_tokens=sent, counted_tokens=counted
                        )
                    )
                    await ctx.publish(
                        UserNotified(
                            level="warning",
                            text=f"Ollama truncated the conversation: it counted {counted} "
                            f"prompt tokens of about {sent} sent ({sent - counted} dropped)",
                        )
                    )
        await self._publish_usage(ctx)

    async def _publish_usage(self, ctx: Context) -> None:
        if not self.accounting.num_ctx:
            return
        # Published after every change, even an unchanged figure: the session sends a request
        # on the usage that follows its message, so it must always come.
        await ctx.publish(
            UsageChanged(used_tokens=self.accounting.used(), limit_tokens=self.accounting.num_ctx)
        )
