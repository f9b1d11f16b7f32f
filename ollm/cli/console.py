"""Printing the conversation as it happens: replies on stdout, notices on stderr."""

from __future__ import annotations

from typing import TextIO

import anyio

from actors import Actor, Context

from ..events import (
    ChatRequested,
    KvTypeLearned,
    MemorySourceChanged,
    MessageAdded,
    MessageUnanswered,
    ModelLoadFailed,
    ModelSelected,
    ReplyChunk,
    UserNotified,
)
from .render import learned_text


class Printed:
    """How far the console has got (the `seq` of the last envelope it handled): the REPL
    draws its next prompt, and `ollm -p` exits, only once a turn's last words are out."""

    def __init__(self) -> None:
        self.seq = 0
        self._moved = anyio.Event()

    def advance(self, seq: int) -> None:
        self.seq = max(self.seq, seq)
        self._moved.set()
        self._moved = anyio.Event()

    async def reached(self, seq: int) -> None:
        while self.seq < seq:
            await self._moved.wait()


Shown = (
    ChatRequested
    | ReplyChunk
    | MessageAdded
    | MessageUnanswered
    | UserNotified
    | ModelSelected
    | ModelLoadFailed
    | MemorySourceChanged
    | KvTypeLearned
)


class ConsoleActor(Actor[Shown]):
    """Writes reply text as it streams and one line per notice. A core subscriber, so no
    chunk is ever dropped."""

    accepts = (
        ChatRequested,
        ReplyChunk,
        MessageAdded,
        MessageUnanswered,
        UserNotified,
        ModelSelected,
        ModelLoadFailed,
        MemorySourceChanged,
        KvTypeLearned,
    )

    def __init__(self, out: TextIO, err: TextIO, printed: Printed) -> None:
        self.out, self.err, self.printed = out, err, printed
        self.open_line = False
        self.sources_seen = 0
        self.chats: set[str] = set()
        """Ids of chat requests: only their replies are printed (not summaries)."""

    def notice(self, text: str, level: str = "info") -> None:
        if self.open_line:
            self.out.write("\n")
            self.out.flush()
            self.open_line = False
        line = f"ollm: {text}"
        write_notice = getattr(self.err, "write_notice", None)  # colour where it can
        if write_notice is not None:
            write_notice(line, level)
            self.err.write("\n")
        else:
            self.err.write(line + "\n")
        self.err.flush()

    async def handle(self, event: Shown, ctx: Context) -> None:
        self.show(event)
        if ctx.current is not None:
            self.printed.advance(ctx.current.seq)

    def show(self, event: Shown) -> None:
        match event:
            case ChatRequested(request_id=rid, purpose="chat"):
                self.chats.add(rid)
            case ReplyChunk(content=content, request_id=rid) if content and rid in self.chats:
                self.out.write(content)
                self.out.flush()
                self.open_line = not content.endswith("\n")
            case MessageAdded(message=message) if message.role == "assistant":
                if self.open_line or not message.content:
                    self.out.write("\n")
                    self.out.flush()
                self.open_line = False
            case MessageUnanswered(reason=reason, cancelled=cancelled):
                if cancelled:
                    self.notice("reply cancelled; your message is kept", "info")
                elif event.withdrawn:
                    self.notice(f"{reason} (it was not sent; the session's log keeps it)", "error")
                else:
                    self.notice(f"{reason} (your message is kept, marked unanswered)", "error")
            case UserNotified(level=level, text=text):
                self.notice(f"warning: {text}" if level == "warning" else text, level)
            case ModelSelected(warning=warning) if warning:
                self.notice(f"warning: {warning}", "warning")
            case KvTypeLearned():
                self.notice(learned_text(event))
            case ModelLoadFailed(message=message):
                self.notice(message, "error")
            case MemorySourceChanged(source=source, detail=detail):
                # The first source is not news, unless it means the local GPU is not used.
                self.sources_seen += 1
                if self.sources_seen > 1 or source == "ollama":
                    self.notice(detail)
            case _:
                pass
