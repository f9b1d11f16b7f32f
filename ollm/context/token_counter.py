"""The token counter: a running total of the conversation against `num_ctx`."""

from __future__ import annotations

from actors import Actor, Context

from ..events import MessageAdded, UsageChanged
from ..tokens import estimate_message


class TokenCounterActor(Actor[MessageAdded]):
    """Counts every message added and publishes the new usage."""

    accepts = (MessageAdded,)

    def __init__(self, num_ctx: int) -> None:
        self.num_ctx = num_ctx
        self.total = 0

    async def handle(self, event: MessageAdded, ctx: Context) -> None:
        self.total += estimate_message(event.content)
        await ctx.publish(UsageChanged(used_tokens=self.total, limit_tokens=self.num_ctx))
