"""The interactive REPL: prompt-toolkit on a terminal, plain lines on a pipe.

Replies stream as they arrive and notices print above the prompt (`patch_stdout`); a bottom
toolbar shows live usage, memory and a spinner while compressing; history lives in the
user's state directory; slash commands, their arguments and snapshot ids complete; Ctrl-C
stops a reply and keeps the conversation, or clears the line (on an empty line it ends the
session, as Ctrl-D does); Esc then Enter adds a line; `NO_COLOR` is respected.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TextIO

import anyio
from prompt_toolkit.completion import Completer, Completion

from ..live import LiveSession, Outcome
from .commands import Commands, Quit
from .terminal import PROMPT, Terminal

Read = Callable[[str], Awaitable[str]]
Turn = Callable[[str], Awaitable[Outcome]]


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


async def run_loop(live: LiveSession, turn: Turn, out: TextIO, term: Terminal | None) -> None:
    """Read and act until the user quits; a failed reply is reported and the loop goes on.
    `term`: the terminal's prompt (None: plain lines from standard input)."""
    if term is not None:
        read: Read = term.read
        commands = Commands(live, read, wall_clock)
        term.session.completer = _Completer(commands, live, await live.installed_models())
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


async def _read_line(text: str) -> str:
    line: str = await anyio.to_thread.run_sync(sys.stdin.readline)
    if not line:
        raise EOFError
    return line.rstrip("\n")
