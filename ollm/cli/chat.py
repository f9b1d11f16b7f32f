"""The two ways to talk: one-shot (`ollm -p`) and the interactive REPL (`ollm`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TextIO

from ..config import Settings
from .live import (
    LiveSession,
    Start,
    StartError,
    exit_code,
    open_live_session,
    wait_turn,
)
from .repl import run_loop

HELP = (
    "Type a message and press Enter (Esc then Enter for a new line). /help lists the "
    "commands; Ctrl-C stops a reply; Ctrl-D or /quit ends the session."
)


async def _in_session(
    settings: Settings,
    start: Start,
    out: TextIO,
    err: TextIO,
    body: Callable[[LiveSession], Awaitable[int]],
) -> int:
    try:
        async with open_live_session(settings, start, out=out, err=err) as live:
            return await body(live)
    except StartError as exc:
        err.write(f"ollm: {exc}\n")
        return exc.code


async def run_oneshot(
    settings: Settings, prompt: str, start: Start, out: TextIO, err: TextIO
) -> int:
    """Send one message, stream the answer to `out`, and exit with a meaningful status."""

    async def once(live: LiveSession) -> int:
        await live.send(prompt)
        await wait_turn(live)
        return exit_code(live.turns)

    return await _in_session(settings, start, out, err, once)


async def run_repl(
    settings: Settings,
    start: Start,
    out: TextIO,
    err: TextIO,
    *,
    prompt_input: Any = None,
    prompt_output: Any = None,
) -> int:
    """Chat until Ctrl-D or /quit. A failed reply is reported and the REPL goes on."""

    async def chat(live: LiveSession) -> int:
        err.write(f"ollm: {live.model}, num_ctx {live.num_ctx}, session {live.session_id}\n")
        err.write(f"{HELP}\n")
        err.flush()
        await run_loop(live, out, prompt_input=prompt_input, prompt_output=prompt_output)
        err.write(f"ollm: session saved; continue it with `ollm --resume {live.session_id}`\n")
        return 0

    return await _in_session(settings, start, out, err, chat)


__all__ = ("Start", "run_oneshot", "run_repl")
