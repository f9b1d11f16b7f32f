"""The two ways to talk: one-shot (`ollm -p`) and the interactive REPL (`ollm`)."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

import anyio

from actors import ChildSpec

from ..config import Settings
from ..events import MessageUnanswered
from ..live import (
    LiveError,
    LiveSession,
    Outcome,
    RecordError,
    Start,
    StartError,
    keep_unsent,
    open_live_session,
)
from .console import ConsoleActor, Printed
from .exits import exit_status, turn_status
from .render import toolbar
from .terminal import Terminal, is_terminal, terminal

HELP = (
    "Type a message and press Enter (Esc then Enter for a new line). /help lists the "
    "commands; Ctrl-C stops a reply or clears the line; Ctrl-C on an empty line, Ctrl-D or "
    "/quit ends the session."
)

Turn = Callable[[str], Awaitable[Outcome]]


async def _in_session(
    settings: Settings,
    start: Start,
    out: TextIO,
    err: TextIO,
    body: Callable[[LiveSession, Turn], Awaitable[int]],
    not_started: Callable[[], str] = lambda: "",
) -> int:
    printed = Printed()
    # The console shows only what is recorded: nothing on screen is lost to a crash.
    console = ChildSpec(
        name="console", factory=lambda: ConsoleActor(out, err, printed), recorded_only=True
    )
    try:
        async with open_live_session(settings, start, extra=(console,)) as live:

            async def turn(text: str) -> Outcome:
                try:
                    outcome = await chat_turn(live, text)
                except LiveError as exc:
                    err.write(f"ollm: {exc}\n")
                    err.flush()
                    broken = MessageUnanswered(
                        message_id="", reason=str(exc), failure="malformed_reply"
                    )
                    return Outcome(broken, 0)
                await printed.reached(outcome.seq)
                return outcome

            return await body(live, turn)
    except StartError as exc:
        err.write(f"ollm: {exc}{not_started()}\n")
        return exit_status(exc.failure)
    except RecordError as exc:
        err.write(f"ollm: {exc}\n")
        return exit_status("record")


async def chat_turn(live: LiveSession, text: str) -> Outcome:
    """Send `text` and wait for its turn to end; Ctrl-C (SIGINT) meanwhile cancels the reply."""
    with anyio.open_signal_receiver(signal.SIGINT) as signals:
        async with anyio.create_task_group() as tg:

            async def cancel_on_signal() -> None:
                async for _ in signals:
                    await live.cancel()

            tg.start_soon(cancel_on_signal)
            outcome = await live.send(text)
            tg.cancel_scope.cancel()
    return outcome


async def run_oneshot(
    settings: Settings, prompt: str, start: Start, out: TextIO, err: TextIO
) -> int:
    """Send one message, stream the answer to `out`, and exit with a meaningful status."""

    async def once(live: LiveSession, turn: Turn) -> int:
        outcome = await turn(prompt)
        return turn_status(outcome.failure, outcome.cancelled)

    def unsent() -> str:
        kept = keep_unsent(prompt, time.time())  # noqa: TID251  (a file name, not a decision)
        where = f"kept in {kept} (`ollm -p - < {kept}` sends it)" if kept else "not saved"
        return f"; your message was not sent, and is {where}"

    return await _in_session(settings, start, out, err, once, unsent)


async def run_repl(
    settings: Settings,
    start: Start,
    out: TextIO,
    err: TextIO,
    *,
    prompt_input: Any = None,
    prompt_output: Any = None,
    term: Terminal | None = None,
) -> int:
    """Chat until Ctrl-D or /quit. A failed reply is reported and the REPL goes on.

    On a terminal (or with `prompt_input`), the prompt is drawn before the session opens
    (`term`, when the caller drew it already); on a pipe, plain lines are read."""
    from .repl import run_loop, wall_clock

    interactive = prompt_input is not None or (is_terminal(sys.stdin) and is_terminal(sys.stdout))
    if term is None and interactive:
        async with terminal(prompt_input, prompt_output) as drawn:
            drawn.toolbar.connecting(settings)
            return await run_repl(settings, start, out, err, term=drawn)

    async def chat(live: LiveSession, turn: Turn) -> int:
        if term is not None:
            term.toolbar.live = lambda: toolbar(live.status, wall_clock())
        err.write(f"ollm: {live.model}, num_ctx {live.num_ctx}, session {live.session_id}\n")
        recap = last_turns(live)
        if recap:
            out.write(recap + "\n")
        err.write(f"{HELP}\n")
        err.flush()
        await run_loop(live, turn, out, term)
        err.write(f"ollm: session saved; continue it with `ollm --resume {live.session_id}`\n")
        return 0

    return await _in_session(settings, start, out, err, chat)


RECAP_MESSAGES = 4
RECAP_WIDTH = 160


def last_turns(live: LiveSession) -> str:
    """The last few messages of a resumed conversation, a line each ("" when it is new)."""
    said = [
        m
        for m in live.status.ledger.conversation.prompt_messages()
        if m.role in ("user", "assistant")
    ]
    if not said:
        return ""
    lines = [f"the conversation so far ({len(said)} messages; the last {RECAP_MESSAGES}):"]
    for message in said[-RECAP_MESSAGES:]:
        text = " ".join(message.content.split())
        text = text if len(text) <= RECAP_WIDTH else text[: RECAP_WIDTH - 1] + "…"
        lines.append(f"  {'you' if message.role == 'user' else 'model'}: {text}")
    return "\n".join(lines)


__all__ = ("Start", "run_oneshot", "run_repl")
