"""`/test prompt`: the exact request the next message would send, made by the session's own
send path (`plan_send`, hard-limit drop included) on a copy of the conversation and its
token count, and encoded by the provider's own payload builder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import Settings
from ..context.memory_guard import DropFirst, GuardPolicy, Refuse
from ..context.session import SessionPolicy, plan_send, refusal
from ..events import ChatRequested, ContextReduced, Message, MessageAdded
from ..providers.ollama import build_chat_payload, supports_truncate
from ._status import Status

PLACEHOLDER = "<your next message>"


@dataclass(frozen=True)
class NextRequest:
    """The JSON body the next chat request sends, or why there would be none."""

    payload: dict[str, Any] | None
    dropped: tuple[str, ...] = ()
    """Messages the hard limit would take out before it goes."""
    refused: str = ""


def next_request(status: Status, settings: Settings, text: str = PLACEHOLDER) -> NextRequest:
    """What sending `text` now would put on the wire."""
    if status.selected is None or status.chosen is None:
        return NextRequest(None, refused="no model is ready yet")
    guard = GuardPolicy.from_settings(settings.context)
    policy = SessionPolicy.from_settings(settings)
    num_ctx = status.chosen.num_ctx
    ledger = status.ledger.fork()
    message = Message(id=ledger.conversation.new_message_id(), role="user", content=text)
    ledger.apply(MessageAdded(message=message))
    dropped: tuple[str, ...] = ()
    while True:
        planned = plan_send(
            ledger.conversation,
            status.selected,
            num_ctx,
            ledger.usage(),
            guard,
            policy,
            reduced=bool(dropped),
        )
        match planned:
            case ChatRequested():
                payload = build_chat_payload(
                    planned,
                    keep_alive=settings.ollama.keep_alive,
                    truncate=supports_truncate(status.server_version),
                )
                return NextRequest(payload, dropped=dropped)
            case DropFirst(removed_ids=removed):
                ledger.apply(ContextReduced(removed_ids=removed, reason="preview"))
                dropped = removed
            case Refuse(newest_tokens=newest):
                return NextRequest(None, refused=f"it would be refused: {refusal(newest, num_ctx)}")
