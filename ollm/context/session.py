"""The session: owns the conversation and turns user input into messages."""

from __future__ import annotations

from actors import Actor, Context

from ..events import MessageAdded, UserSubmitted


class SessionActor(Actor[UserSubmitted]):
    """Appends each submitted text to the conversation as a user message."""

    accepts = (UserSubmitted,)

    async def handle(self, event: UserSubmitted, ctx: Context) -> None:
        await ctx.publish(
            MessageAdded(message_id=ctx.ids.new_id(), role="user", content=event.text)
        )
