"""End to end in a real terminal: `ollm` against the Ollama test server, driven through
its keyboard and read from its rendered screen.

Two terminals: tmux (output watched through `pipe-pane` into a FIFO, the screen read with
`capture-pane`), where tmux is installed; and everywhere, a pseudo-terminal whose output
pyte renders into a screen (answering the cursor-position query as a terminal does). Both
block on the terminal's own output; nothing sleeps.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import httpx
import pyte
import pytest

from ollm.events import UsageChanged
from ollm.live import recorded_sessions, session_log
from tests.fakes.ollama_server import ollama_server_thread

ROOT = Path(__file__).parents[2]
COLUMNS, ROWS = 120, 50


class Terminal(Protocol):
    def send(self, *keys: str) -> None: ...
    def screen(self) -> str: ...
    def wait_for(self, pattern: str, timeout: float = 20.0) -> str: ...
    def close(self) -> None: ...


def _wait(term: Terminal, fd: int, pattern: str, timeout: float, drain: Callable[[], None]) -> str:
    """Block on `fd` (the terminal's output) until `pattern` shows on the screen."""
    deadline = time.monotonic() + timeout
    while True:
        screen = term.screen()
        if re.search(pattern, screen):
            return screen
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{pattern!r} never showed; the screen:\n{screen}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            drain()


class TmuxTerminal:
    def __init__(self, tmp: Path, command: str) -> None:
        self.socket = f"ollm-test-{os.getpid()}"
        self.fifo = tmp / "pane.fifo"
        os.mkfifo(self.fifo)
        self.tmux("new-session", "-d", "-s", "t", "-x", str(COLUMNS), "-y", str(ROWS), command)
        self.tmux("pipe-pane", "-t", "t", "-o", f"cat >> {self.fifo}")
        self.reader = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK)

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=False
        ).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-t", "t", "-p", "-S", "-200")

    def send(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "t", *keys)

    def wait_for(self, pattern: str, timeout: float = 20.0) -> str:
        return _wait(self, self.reader, pattern, timeout, self._drain)

    def _drain(self) -> None:
        try:
            os.read(self.reader, 65536)
        except BlockingIOError:
            pass

    def close(self) -> None:
        self.tmux("kill-server")
        os.close(self.reader)


class _Screen(pyte.HistoryScreen):
    """pyte's screen, answering the application's queries through the pseudo-terminal."""

    def __init__(self, fd: int) -> None:
        super().__init__(COLUMNS, ROWS, history=400)
        self.fd = fd

    def write_process_input(self, data: str) -> None:
        os.write(self.fd, data.encode())


KEYS = {"Enter": "\r", "C-c": "\x03", "C-d": "\x04", "Escape": "\x1b", "Tab": "\t"}


class PtyTerminal:
    def __init__(self, command: str) -> None:
        import fcntl
        import struct
        import termios

        self.fd, child = os.openpty()
        fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))

        def controlling_terminal() -> None:  # as a terminal does: Ctrl-C sends SIGINT
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.process = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=child,
            stdout=child,
            stderr=child,
            start_new_session=True,
            preexec_fn=controlling_terminal,
            env={**os.environ, "TERM": "xterm-256color"},
        )
        os.close(child)
        self.display = _Screen(self.fd)
        self.stream = pyte.ByteStream(self.display)
        self.scrolled: list[str] = []

    def screen(self) -> str:
        lines = ["".join(c.data for c in row.values()) for row in self.display.history.top]
        return "\n".join(line.rstrip() for line in [*lines, *self.display.display])

    def send(self, *keys: str) -> None:
        for key in keys:
            os.write(self.fd, KEYS.get(key, key).encode())

    def wait_for(self, pattern: str, timeout: float = 20.0) -> str:
        return _wait(self, self.fd, pattern, timeout, self._drain)

    def _drain(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # the program ended: the screen stays as it was
            data = b""
        if data:
            self.stream.feed(data)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        os.close(self.fd)


def chat_command(server: object) -> str:
    """`ollm` against the test server, as a user starts it."""
    return f"cd {ROOT} && {sys.executable} -m ollm --host {server.url} -m llama3.1:8b"  # type: ignore[attr-defined]


def gate(server: object, action: str, path: str) -> None:
    """Hold the server's answers on `path` until released (`/_test/hold`, `/_test/release`)."""
    httpx.post(f"{server.url}/_test/{action}", json={"path": path}, timeout=10)  # type: ignore[attr-defined]


@pytest.fixture(params=["pty", "tmux"])
def terminal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], Terminal]]:
    if request.param == "tmux" and shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (the pty terminal runs the same test)")
    made: list[Terminal] = []

    def start(command: str) -> Terminal:
        term: Terminal = (
            TmuxTerminal(tmp_path, command) if request.param == "tmux" else PtyTerminal(command)
        )
        made.append(term)
        return term

    yield start
    for term in made:
        term.close()


def test_chat_context_snapshots_clear_and_ctrl_c_in_a_real_terminal(terminal):
    with ollama_server_thread() as server:
        term = terminal(chat_command(server))
        term.wait_for(r"tokens \(\d+%\)")  # the toolbar
        term.send("hello there, how are you?", "Enter")
        term.wait_for(r"You said 25 characters")

        term.send("/context", "Enter")
        screen = term.wait_for(r"└─+┘")
        used, limit = re.search(r"Context: ([\d,]+) / ([\d,]+) tokens", screen).groups()  # type: ignore[union-attr]
        home = Path(os.environ["OLLM_HOME"])
        session = recorded_sessions(home)[-1].session_id  # open: read beside its writer
        usage = [
            e.event
            for e in session_log(home, session).envelopes
            if isinstance(e.event, UsageChanged)
        ]
        assert int(used.replace(",", "")) == usage[-1].used_tokens, "the token counter's figure"
        assert int(limit.replace(",", "")) == server.loaded["llama3.1:8b"].num_ctx, (
            "the server's context"
        )

        term.send("/context snapshot", "Enter")
        screen = term.wait_for(r"snapshot (\w+) saved \(manual")
        snapshot_id = re.search(r"snapshot (\w+) saved \(manual", screen).group(1)  # type: ignore[union-attr]
        term.send("something else", "Enter")
        term.wait_for(r"You said 14 characters")
        term.send("/context list", "Enter")
        term.wait_for(rf"1\. {snapshot_id}\s+manual")
        term.send(f"/context restore {snapshot_id}", "Enter")
        term.wait_for(rf"restored snapshot {snapshot_id}")
        term.send("/context clear", "Enter")
        screen = term.wait_for(r"the conversation was cleared; `/context restore (\w+)`")
        before_clear = re.findall(r"the conversation was cleared; `/context restore (\w+)`", screen)
        term.send("/context list", "Enter")
        term.wait_for(rf"1\. {before_clear[-1]}\s+manual")
        term.send("after clearing", "Enter")
        term.wait_for(r"You said 14 characters.*\n(?:.*\n)*.*You said 14 characters")
        last = [c for c in server.chats() if c["messages"]][-1]
        assert [m["content"] for m in last["messages"]] == ["after clearing"]

        server.fault("stall")
        term.send("tell me a very long story", "Enter")
        term.wait_for(r"tell me a very long story\s*\nYou said")
        term.send("C-c")
        # Ctrl-D only once the prompt is back: typed while the terminal is still in cooked
        # mode, the line discipline takes it as end-of-file and the REPL never sees it.
        term.wait_for(r"(?m)reply cancelled; your message is kept.*\n(?:.*\n)*?^>")
        term.send("C-d")
        term.wait_for(r"session saved; continue it with")


def test_ctrl_c_clears_a_typed_line_and_on_an_empty_line_ends_the_session(terminal):
    with ollama_server_thread() as server:
        term = terminal(chat_command(server))
        term.wait_for(r"tokens \(\d+%\)")
        term.send("half a thought")
        term.wait_for(r"> half a thought")
        term.send("C-c")  # clears what was typed; the session goes on
        term.send("hello", "Enter")
        term.wait_for(r"You said 5 characters")
        assert [m["content"] for m in server.chats()[-1]["messages"]][-1] == "hello"
        term.wait_for(r"(?m)^> *$")
        term.send("C-c")  # on an empty line: the session ends, saved
        term.wait_for(r"session saved; continue it with")


def test_the_prompt_comes_first_and_a_line_typed_before_the_session_opens_waits(terminal):
    with ollama_server_thread() as server:
        gate(server, "hold", "/api/show")
        term = terminal(chat_command(server))
        term.wait_for(r"(?m)^>")
        term.wait_for(r"starting: connecting to Ollama at http://127\.0\.0\.1:\d+")
        term.send("early bird", "Enter")
        term.wait_for(r"> early bird")
        assert server.chats() == [], "the server has not even described the model yet"
        gate(server, "release", "/api/show")
        term.wait_for(r"You said 10 characters")
        term.wait_for(r"tokens \(\d+%\)")  # the session's own toolbar
        assert [m["content"] for m in server.chats()[-1]["messages"]] == ["early bird"]
        term.send("C-d")
        term.wait_for(r"session saved; continue it with")


def test_the_toolbar_says_the_model_is_warming_up_until_it_is_loaded(terminal):
    with ollama_server_thread() as server:
        gate(server, "hold", "/api/chat")
        term = terminal(chat_command(server))
        term.wait_for(r"tokens \(\d+%\) │.*warming up the model…")
        gate(server, "release", "/api/chat")
        term.wait_for(r"(?m)tokens \(\d+%\)( │ V?RAM [^│]*)?$")  # redrawn without it
        term.send("C-d")
        term.wait_for(r"session saved; continue it with")


def test_a_config_error_read_behind_the_prompt_says_so_and_exits_2(terminal, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("context:\n  autosize: true\n")
    # `cat` keeps the pane open (a tmux pane closes with its command).
    command = f"cd {ROOT} && {sys.executable} -m ollm --config {bad}; echo exit=$?; cat"
    term = terminal(command)
    screen = term.wait_for(r"exit=\d+")
    assert "unknown key context.autosize; check its spelling" in screen.replace("\n", "")
    assert "exit=2" in screen
