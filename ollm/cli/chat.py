"""The two ways to talk: one-shot (`ollm -p`) and the interactive REPL (`ollm`)."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import TextIO

import anyio

from ..config import Settings, state_dir
from ..sessions import private_dir
from .live import (
    EXIT_CANCELLED,
    LiveSession,
    Start,
    StartError,
    exit_code,
    is_terminal,
    open_live_session,
    wait_turn,
)

Reader = Callable[[], Awaitable[str]]
HELP = "Type a message and press Enter. Ctrl-C stops a reply; Ctrl-D or /quit ends the session."


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


async def run_repl(settings: Settings, start: Start, out: TextIO, err: TextIO) -> int:
    """Chat until Ctrl-D or /quit. A failed reply is reported and the REPL goes on."""

    async def chat(live: LiveSession) -> int:
        err.write(f"ollm: {live.model}, num_ctx {live.num_ctx}, session {live.session_id}\n")
        err.write(f"{HELP}\n")
        err.flush()
        await _loop(live, out, err)
        err.write(f"ollm: session saved; continue it with `ollm --resume {live.session_id}`\n")
        return 0

    return await _in_session(settings, start, out, err, chat)


async def _loop(live: LiveSession, out: TextIO, err: TextIO) -> None:
    read = _terminal_reader() if is_terminal(sys.stdin) and is_terminal(out) else _line_reader()
    while True:
        try:
            text = await read()
        except EOFError:
            return
        except KeyboardInterrupt:
            continue
        stripped = text.strip()
        if not stripped:
            continue
        if stripped in ("/quit", "/exit"):
            return
        if stripped.startswith("/"):
            err.write(
                f"ollm: {stripped.split()[0]} is not a command this version knows; "
                "/quit ends the session (the /context commands are not built yet)\n"
            )
            continue
        await live.send(text)
        await wait_turn(live)


def _line_reader() -> Reader:
    async def read() -> str:
        line: str = await anyio.to_thread.run_sync(sys.stdin.readline)
        if not line:
            raise EOFError
        return line.rstrip("\n")

    return read


def _terminal_reader() -> Reader:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory, InMemoryHistory
    from prompt_toolkit.patch_stdout import patch_stdout

    try:
        history: FileHistory | InMemoryHistory = FileHistory(
            str(private_dir(state_dir()) / "history")
        )
    except OSError:
        history = InMemoryHistory()
    session: PromptSession[str] = PromptSession(history=history)

    async def read() -> str:
        with patch_stdout():
            return await session.prompt_async("> ")

    return read


__all__ = ("EXIT_CANCELLED", "Start", "run_oneshot", "run_repl")
