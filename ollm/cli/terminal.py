"""The REPL's terminal: the prompt is drawn before anything slow happens.

On a terminal, `ollm` draws its prompt first — prompt-toolkit is all that takes — and opens
the session behind it: the rest of ollm is imported in a worker thread, then the server is
asked what it runs, the model checked and warmed up, while the toolbar says what is under
way. A line typed meanwhile waits for the session, then goes as any other would.

This module imports nothing of ollm's session machinery (`scripts/bench_startup.py` times
the path; `tests/ollm/test_startup.py` checks what it imports).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import anyio

from ..paths import private_dir, state_dir
from .exits import EXIT_USAGE
from .safe import safe

if TYPE_CHECKING:
    from ..config import Settings

PROMPT = "> "
FIRST_FRAME_WAIT = 0.5
"""Seconds the slow work waits for the prompt's first frame (it is not held up longer
where a terminal never reports one)."""


def history_file() -> Path:
    """Where the REPL keeps its input history (private to the user).

    Raises:
        OSError: the state directory cannot be created.
    """
    return private_dir(state_dir()) / "history"


def is_terminal(stream: TextIO) -> bool:
    try:
        return os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False


class Toolbar:
    """The bottom toolbar: what the start is doing until the session is open, then the
    session's own figures."""

    def __init__(self) -> None:
        self.step = "starting…"
        self.live: Callable[[], str] | None = None

    def connecting(self, settings: Settings) -> None:
        from ..config import shown_host

        self.step = f"starting: connecting to Ollama at {shown_host(settings.ollama.host)}…"

    def text(self) -> str:
        return self.live() if self.live is not None else safe(self.step)


class Terminal:
    """The prompt session, and the first line, read while the session opens."""

    def __init__(self, session: Any, toolbar: Toolbar) -> None:
        self.session = session
        self.toolbar = toolbar
        self.drawn = anyio.Event()
        self._first: str | BaseException | None = None
        self._first_read = anyio.Event()
        self._first_taken = False

    async def read_first(self) -> None:
        try:
            self._first = await read_terminal(self.session, PROMPT)
        except (EOFError, KeyboardInterrupt) as exc:
            self._first = exc
        finally:
            self._first_read.set()

    async def read(self, text: str) -> str:
        """The next line typed (the first one may have been typed before the session was
        open: it is given now)."""
        if not self._first_taken:
            self._first_taken = True
            await self._first_read.wait()
            if isinstance(self._first, BaseException):
                raise self._first
            assert self._first is not None
            return self._first
        return await read_terminal(self.session, text)


@asynccontextmanager
async def terminal(prompt_input: Any = None, prompt_output: Any = None) -> AsyncIterator[Terminal]:
    """The prompt, drawn and reading its first line; yields once the first frame is out."""
    toolbar = Toolbar()
    term = Terminal(prompt_session(toolbar.text, prompt_input, prompt_output), toolbar)
    term.session.app.after_render += lambda _app: term.drawn.set()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(term.read_first)
        with anyio.move_on_after(FIRST_FRAME_WAIT):
            await term.drawn.wait()
        try:
            yield term
        finally:
            tasks.cancel_scope.cancel()


async def run_terminal(
    config: Path | None,
    flags: dict[tuple[str, ...], Any],
    asked: dict[str, Any],
    out: TextIO,
    err: TextIO,
) -> int:
    """`ollm` on a terminal: the prompt at once; the settings (`config`, `flags`) read and
    the session opened behind it. `asked`: the fields of the `Start` (model, size, resume),
    built once its module is imported."""
    async with terminal() as term:
        # The slow imports, off the loop that keeps the prompt answering keys.
        chat = await anyio.to_thread.run_sync(importlib.import_module, "ollm.cli.chat")
        from ..config import ConfigError, load_settings

        try:
            settings = load_settings(config, flags=flags)
        except ConfigError as exc:
            err.write(f"ollm: {exc}\n")
            return EXIT_USAGE
        term.toolbar.connecting(settings)
        code: int = await chat.run_repl(settings, chat.Start(**asked), out, err, term=term)
        return code


def prompt_session(toolbar: Callable[[], str], prompt_input: Any, prompt_output: Any) -> Any:
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
        bottom_toolbar=toolbar,
        refresh_interval=0.5,
        complete_while_typing=True,
        color_depth=ColorDepth.MONOCHROME if no_color else None,
        input=prompt_input,
        output=prompt_output,
    )


async def read_terminal(session: Any, text: str) -> str:
    from prompt_toolkit.patch_stdout import patch_stdout

    # raw: notices keep their colour; everything printed is made safe before (`cli.safe`).
    with patch_stdout(raw=True):
        result: str = await session.prompt_async(text)
    return result
