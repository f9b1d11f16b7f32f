"""The conversation as the session holds it: system prompt, summary, pinned facts, messages.

`Conversation` is the session's working copy (appends are O(1)); `ConversationState` is its
immutable value, carried by events and snapshots. `apply` folds the session's own events
into a conversation: the session uses it for what it publishes, and resuming a session
replays its log through it, so both always agree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from msgspec.structs import replace

from actors import LogContents

from .events import (
    Anchor,
    ChatMessage,
    ChatRequested,
    CompressionCompleted,
    ContextCleared,
    ContextReduced,
    ConversationState,
    Message,
    MessageAdded,
    MessageUnanswered,
    ModelSelected,
    SessionOpened,
    SnapshotRestored,
    SystemPromptSet,
)
from .tokens import message_tokens

Folded = (
    SessionOpened
    | MessageAdded
    | MessageUnanswered
    | SnapshotRestored
    | ContextCleared
    | CompressionCompleted
    | ContextReduced
    | SystemPromptSet
    | ChatRequested
)
"""The events `Conversation.apply` folds in: an actor that keeps a conversation follows
these (`typing.get_args(Folded)` for its `accepts`)."""

SYSTEM_ID = "system"
CONTEXT_ID = "context"
PINNED_HEADER = "Pinned facts (kept verbatim from earlier in this conversation):"
SUMMARY_HEADER = "Summary of the earlier conversation:"


def summary_blocks(contents: Iterable[str]) -> int:
    """How many summary blocks a prompt holds: every summary header counts, wherever it
    stands (a summary echoed inside another is a second block)."""
    return sum(content.count(SUMMARY_HEADER) for content in contents)


def render_context(summary: str, pinned: tuple[str, ...]) -> str:
    """The one block that carries the pinned facts and the rolling summary."""
    parts = []
    if pinned:
        parts.append(PINNED_HEADER + "\n" + "\n".join(f"- {p}" for p in pinned))
    if summary:
        parts.append(f"{SUMMARY_HEADER}\n{summary}")
    return "\n\n".join(parts)


@dataclass
class Conversation:
    system_prompt: str = ""
    summary: str = ""
    pinned: tuple[str, ...] = ()
    ledger: tuple[Anchor, ...] = ()
    messages: list[Message] = field(default_factory=list)
    next_message: int = 1
    next_request: int = 1

    @classmethod
    def from_state(cls, state: ConversationState) -> Conversation:
        return cls(
            system_prompt=state.system_prompt,
            summary=state.summary,
            pinned=state.pinned,
            ledger=state.ledger,
            messages=list(state.messages),
            next_message=state.next_message,
            next_request=state.next_request,
        )

    def state(self) -> ConversationState:
        return ConversationState(
            system_prompt=self.system_prompt,
            summary=self.summary,
            pinned=self.pinned,
            ledger=self.ledger,
            messages=tuple(self.messages),
            next_message=self.next_message,
            next_request=self.next_request,
        )

    def new_message_id(self) -> str:
        return f"m{self.next_message}"

    def new_request_id(self) -> str:
        return f"r{self.next_request}"

    def system_message(self) -> Message | None:
        """The system prompt as the first message of every request (None when empty)."""
        if not self.system_prompt:
            return None
        return Message(id=SYSTEM_ID, role="system", content=self.system_prompt)

    def context_message(self) -> Message | None:
        """Pinned facts and the summary, after the system prompt (a stable prefix)."""
        if not self.summary and not self.pinned:
            return None
        return Message(
            id=CONTEXT_ID, role="system", content=render_context(self.summary, self.pinned)
        )

    def prompt_messages(self) -> list[Message]:
        """Everything a request carries, in order: system prompt, pinned facts and summary,
        then the messages."""
        head = [m for m in (self.system_message(), self.context_message()) if m is not None]
        return head + self.messages

    def chat_messages(self) -> tuple[ChatMessage, ...]:
        return tuple(
            ChatMessage(
                role=m.role, content=m.content, tool_calls=m.tool_calls, tool_name=m.tool_name
            )
            for m in self.prompt_messages()
        )

    def find(self, message_id: str) -> Message | None:
        for message in reversed(self.messages):
            if message.id == message_id:
                return message
        return None

    def apply(self, event: object) -> None:
        """Fold one of the session's events into the conversation."""
        match event:
            case SessionOpened(state=state):
                restored = Conversation.from_state(state)
                self.__dict__.update(restored.__dict__)
            case MessageAdded(message=message):
                self.messages.append(message)
                self.next_message = max(self.next_message, _number(message.id) + 1)
            case MessageUnanswered(message_id=message_id):
                for index in range(len(self.messages) - 1, -1, -1):
                    if self.messages[index].id == message_id:
                        self.messages[index] = replace(self.messages[index], unanswered=True)
                        break
            case SnapshotRestored(state=state):
                # Ids keep counting up: a restored conversation never reuses one.
                counters = self.next_message, self.next_request
                restored = Conversation.from_state(state)
                self.__dict__.update(restored.__dict__)
                self.next_message = max(counters[0], self.next_message)
                self.next_request = max(counters[1], self.next_request)
            case ContextCleared(keep_summary=keep):
                self.messages.clear()
                if not keep:
                    self.summary, self.pinned, self.ledger = "", (), ()
            case CompressionCompleted(covered_ids=covered, summary=summary, pinned=pinned):
                gone = set(covered)
                self.messages = [m for m in self.messages if m.id not in gone]
                self.summary, self.pinned = summary, pinned
                self.ledger = event.ledger or self.ledger
            case ContextReduced(removed_ids=removed):
                gone = set(removed)
                self.messages = [m for m in self.messages if m.id not in gone]
                if event.ledger is not None:
                    self.ledger = event.ledger
                if event.pinned is not None:
                    self.pinned = event.pinned
            case SystemPromptSet(text=text):
                self.system_prompt = text
            case ChatRequested(request_id=request_id):
                self.next_request = max(self.next_request, _number(request_id) + 1)
            case _:
                pass


def _number(identifier: str) -> int:
    digits = identifier[1:]
    return int(digits) if digits.isdigit() else 0


def turns(messages: Sequence[Message]) -> list[list[Message]]:
    """Messages grouped into turns: a user message and everything up to the next one.

    A turn keeps a tool call together with its result.
    """
    out: list[list[Message]] = []
    for message in messages:
        if message.role == "user" or not out:
            out.append([message])
        else:
            out[-1].append(message)
    return out


def turn_tokens(groups: Sequence[Sequence[Message]]) -> list[int]:
    """Each turn's estimated tokens (the one per-message count, `tokens.message_tokens`)."""
    return [sum(message_tokens(m) for m in group) for group in groups]


def first_kept(sizes: Sequence[int], keep_tokens: int) -> int:
    """The one truncation rule, on turn sizes: the index of the oldest turn kept when the
    newest turns stay while together they fit `keep_tokens`. The newest turn always stays;
    with two turns or more, the oldest always goes."""
    kept = len(sizes) - 1
    tail = sizes[-1] if sizes else 0
    while kept > 1 and tail + sizes[kept - 1] <= keep_tokens:
        kept -= 1
        tail += sizes[kept]
    return max(kept, 0)


def oldest_turns_to_drop(messages: Sequence[Message], share: float) -> tuple[str, ...]:
    """Ids of the oldest whole turns holding at least `share` of the messages' tokens, by
    the truncation rule (`first_kept`).

    The newest turn (the message being answered) is never dropped; an empty tuple means
    nothing can be dropped.
    """
    groups = turns(messages)
    if share <= 0 or len(groups) < 2:
        return ()
    sizes = turn_tokens(groups)
    total = sum(sizes)
    keep = first_kept(sizes, total - math.ceil(share * total))
    return tuple(m.id for group in groups[:keep] for m in group)


@dataclass(frozen=True)
class Resumed:
    state: ConversationState
    model: ModelSelected | None
    last_seq: int


def resumed(log: LogContents) -> Resumed:
    """The conversation a session's log ends with, folded through the session's own rules,
    the model it last used, and the last `seq` (a resumed log continues after it)."""
    conversation = Conversation()
    model: ModelSelected | None = None
    for envelope in log.envelopes:
        conversation.apply(envelope.event)
        if isinstance(envelope.event, ModelSelected):
            model = envelope.event
    last_seq = log.envelopes[-1].seq if log.envelopes else 0
    return Resumed(state=conversation.state(), model=model, last_seq=last_seq)
