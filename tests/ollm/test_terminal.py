"""End to end in a real terminal: `ollm` under tmux against the Ollama test server.

Output is watched through `tmux pipe-pane` into a FIFO: the test blocks on the terminal's
own output (no sleeping), and reads the rendered screen with `capture-pane` as it changes.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actors import read_log
from ollm.events import AnyEvent, UsageChanged
from tests.fakes.ollama_server import ollama_server_thread

ROOT = Path(__file__).parents[2]
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Terminal:
    def __init__(self, tmp: Path, command: str) -> None:
        self.socket = f"ollm-test-{os.getpid()}"
        self.fifo = tmp / "pane.fifo"
        os.mkfifo(self.fifo)
        self.tmux("new-session", "-d", "-s", "t", "-x", "120", "-y", "50", command)
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
        """Block on the terminal's output until `pattern` shows on the screen."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if re.search(pattern, screen):
                return screen
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{pattern!r} never showed; the screen:\n{screen}")
            ready, _, _ = select.select([self.reader], [], [], left)
            if ready:
                try:
                    os.read(self.reader, 65536)
                except BlockingIOError:
                    pass

    def close(self) -> None:
        self.tmux("kill-server")
        os.close(self.reader)


@pytest.fixture
def terminal(tmp_path):
    made: list[Terminal] = []

    def start(command: str) -> Terminal:
        made.append(Terminal(tmp_path, command))
        return made[-1]

    yield start
    for t in made:
        t.close()


def test_chat_context_snapshots_clear_and_ctrl_c_in_a_real_terminal(terminal):
    with ollama_server_thread() as server:
        command = f"cd {ROOT} && {sys.executable} -m ollm --host {server.url} -m llama3.1:8b"
        term = terminal(command)
        term.wait_for(r"tokens \(\d+%\)")  # the toolbar
        term.send("hello there, how are you?", "Enter")
        term.wait_for(r"You said 25 characters")

        term.send("/context", "Enter")
        screen = term.wait_for(r"└─+┘")
        used, limit = re.search(r"Context: ([\d,]+) / ([\d,]+) tokens", screen).groups()  # type: ignore[union-attr]
        logs = sorted((Path(os.environ["OLLM_HOME"]) / "sessions").glob("*/events.jsonl"))
        usage = [
            e.event
            for e in read_log(logs[-1], AnyEvent).envelopes
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
        term.wait_for(r"the conversation was cleared")
        term.send("after clearing", "Enter")
        term.wait_for(r"You said 14 characters.*\n(?:.*\n)*.*You said 14 characters")
        last = [c for c in server.chats() if c["messages"]][-1]
        assert [m["content"] for m in last["messages"]] == ["after clearing"]

        server.fault("stall")
        term.send("tell me a very long story", "Enter")
        term.wait_for(r"tell me a very long story\s*\nYou said")
        term.send("C-c")
        term.wait_for(r"reply cancelled; your message is kept")
        term.send("C-d")
        term.wait_for(r"session saved; continue it with")
