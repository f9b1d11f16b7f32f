"""The interactive REPL: prompt-toolkit on a terminal, plain lines on a pipe.

Replies stream as they arrive and notices print above the prompt (`patch_stdout`); a bottom
toolbar shows live usage, memory and a spinner while compressing; history lives in the
user's state directory; slash commands, their arguments and snapshot ids complete; Ctrl-C
stops a reply and keeps the conversation, or clears the line (on an empty line it ends the
session, as Ctrl-D does); Esc then Enter adds a line; `NO_COLOR` is respected.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TextIO

import anyio
from prompt_toolkit.completion import Completer, Completion

from ..live import LiveSession, Outcome, history_file
from .commands import Commands, Quit
from .render import toolbar

Read = Callable[[str], Awaitable[str]]
Turn = Callable[[str], Awaitable[Outcome]]
PROMPT = "> "


def wall_clock() -> float:
    return time.time()  # noqa: TID251  (the REPL's display clock, never part of a decision)


class _Completer(Completer):
    """Slash commands, their arguments, snapshot ids and installed model names."""

    def __init__(self, commands: Commands, live: LiveSession, models: list[str]) -> None:
        self.commands = commands
        self.live = live
        self.models = models

    def get_completions(self, document: Any, complete_event: Any) -> Iterable[Completion]:
        text = document.text_before_cursor
        if not text.startswith("/"):
            return
        words = text.split()
        if text.endswith(" "):
            words.append("")
        options: list[str] = []
        table = self.commands.completions()
        if len(words) == 1:
            options = sorted(table)
        elif words[0] == "/context" and len(words) == 2:
            options = table["/context"]
        elif words[:2] == ["/context", "restore"] and len(words) == 3:
            # From the read model: completion runs on the event loop, which never touches
            # the snapshot files.
            options = list(reversed(self.live.status.snapshot_ids))
        elif words[0] == "/model" and len(words) == 2:
            options = self.models
        elif words[0] == "/test" and len(words) == 2:
            options = ["prompt"]
        current = words[-1]
        for option in options:
            if option.startswith(current):
                yield Completion(option, start_position=-len(current))


def is_terminal(stream: TextIO) -> bool:
    try:
        return os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False


async def run_loop(
    live: LiveSession,
    turn: Turn,
    out: TextIO,
    *,
    prompt_input: Any = None,
    prompt_output: Any = None,
) -> None:
    """Read and act until the user quits; a failed reply is reported and the loop goes on."""
    interactive = prompt_input is not None or (is_terminal(sys.stdin) and is_terminal(sys.stdout))
    if interactive:
        models = await live.installed_models()
        session = _prompt_session(live, prompt_input, prompt_output)
        read: Read = lambda text: _read_terminal(session, text)  # noqa: E731
        commands = Commands(live, read, wall_clock)
        session.completer = _Completer(commands, live, models)
    else:
        read = _read_line
        commands = Commands(live, read, wall_clock)
    while True:
        try:
            text = await read(PROMPT)
        except EOFError:
            return
        except KeyboardInterrupt:
            continue
        if text.lstrip().startswith(QUOTES):
            text = await _quoted(read, text)
        line = text.strip()
        if not line:
            continue
        if line.startswith("/"):
            try:
                output = await commands.run(line)
            except Quit:
                return
            if output:
                out.write(output + "\n")
                out.flush()
            continue
        await turn(text)


QUOTES = '"""'
"""A message between triple quotes may span lines, as in `ollama run`."""


async def _quoted(read: Read, first: str) -> str:
    """The message from a line opening with triple quotes to the line that closes them
    (end of input closes them too)."""
    body = first.lstrip()[len(QUOTES) :]
    lines: list[str] = []
    while True:
        if body.rstrip().endswith(QUOTES):
            lines.append(body.rstrip()[: -len(QUOTES)])
            break
        lines.append(body)
        try:
            body = await read("... ")
        except EOFError:
            break
    return "\n".join(lines).strip("\n")


def _prompt_session(live: LiveSession, prompt_input: Any, prompt_output: Any) -> Any:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory, InMemoryHistory
    from prompt_toolkit.key_binding import KeyBindings
    from prompt_toolkit.output import ColorDepth

    bindings = KeyBindings()

    @bindings.add("escape", "enter")
    def _(event: Any) -> None:
        """Esc then Enter: a new line in the message."""
        event.current_buffer.insert_text("\n")

    @bindings.add("c-c")
    def _interrupt(event: Any) -> None:
        """Ctrl-C clears what is typed; on an empty line it ends the session."""
        buffer = event.current_buffer
        if buffer.text:
            buffer.reset()
        else:
            event.app.exit(exception=EOFError())

    history: Any
    try:
        history = FileHistory(str(history_file()))
    except OSError:
        history = InMemoryHistory()
    no_color = bool(os.environ.get("NO_COLOR"))
    return PromptSession(
        history=history,
        key_bindings=bindings,
        bottom_toolbar=lambda: toolbar(live.status, wall_clock()),
        refresh_interval=0.5,
        complete_while_typing=True,
        color_depth=ColorDepth.MONOCHROME if no_color else None,
        input=prompt_input,
        output=prompt_output,
    )


async def _read_terminal(session: Any, text: str) -> str:
    from prompt_toolkit.patch_stdout import patch_stdout

    # raw: notices keep their colour; everything printed is made safe before (`cli.safe`).
    with patch_stdout(raw=True):
        result: str = await session.prompt_async(text)
    return result


async def _read_line(text: str) -> str:
    line: str = await anyio.to_thread.run_sync(sys.stdin.readline)
    if not line:
        raise EOFError
    return line.rstrip("\n")
