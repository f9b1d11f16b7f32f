"""Hostile and broken replies: ollm never hangs, the turn always ends with one sentence, and
the message stays in the live context (the next request on the server carries it)."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors import ActorCrashed
from ollm.cli.console import ConsoleActor, Printed
from ollm.cli.safe import SafeStream, safe
from ollm.events import (
    CancelRequested,
    CompressionCompleted,
    ContextReduced,
    MessageAdded,
    MessageUnanswered,
    ReplyChunk,
    RestoreRequested,
    SnapshotCreated,
    SnapshotRequested,
    SnapshotRestored,
    UserNotified,
)
from ollm.live import recorded_sessions
from ollm.providers.ollama import OllamaProviderActor, ProviderError
from tests.fakes.ollama_server import ollama_server_thread, open_ollama_server
from tests.ollm.processes import ollm

from .live import open_live
from .test_context_pool import FakeChain, reading

pytestmark = pytest.mark.usefixtures("ollama_rules")

QUESTIONS = ["What is a B-tree?", "And a trie?", "And a skip list?"]


def home() -> Path:
    return Path(os.environ["OLLM_HOME"])


def users(chat: dict[str, Any]) -> list[str]:
    return [m["content"] for m in chat["messages"] if m["role"] == "user"]


@pytest.mark.anyio
async def test_a_provider_that_dies_mid_request_fails_the_turn_and_keeps_the_message(
    monkeypatch,
):
    """The provider crashes on the chat request itself (outside its own error handling): the
    supervisor restarts it, and the turn, which nothing would otherwise end, is failed."""
    original = OllamaProviderActor.handle
    crashed: list[object] = []

    async def crash_once(self, event, ctx):
        if not crashed and type(event).__name__ == "ChatRequested":
            crashed.append(event)
            raise RuntimeError("the provider broke")
        await original(self, event, ctx)

    monkeypatch.setattr(OllamaProviderActor, "handle", crash_once)
    async with open_ollama_server() as server, open_live(server) as live:
        with anyio.fail_after(5):
            ended = await live.session.send(QUESTIONS[0])
        assert isinstance(ended.event, MessageUnanswered)
        assert "ollm's provider failed while handling this turn" in ended.event.reason
        assert "RuntimeError: the provider broke" in ended.event.reason
        assert live.h.events(ActorCrashed)[0].actor == "provider"
        assert isinstance(await live.say(QUESTIONS[1]), MessageAdded)
        assert users(server.chats()[-1]) == QUESTIONS[:2], "the failed message went out again"


@pytest.mark.anyio
async def test_a_bug_while_reading_the_reply_ends_the_turn_with_one_sentence(monkeypatch):
    def broken(chunk, num_ctx):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("ollm.providers.ollama.implausible_counts", broken)
    async with open_ollama_server() as server, open_live(server) as live:
        ended = await live.say(QUESTIONS[0])
        assert isinstance(ended, MessageUnanswered)
        assert ended.reason.startswith("ollm could not handle the reply from Ollama at ")
        assert "(ZeroDivisionError), a bug in ollm; try again" in ended.reason
        assert live.h.events(ActorCrashed) == [], "the provider itself did not die"
        monkeypatch.undo()
        assert isinstance(await live.say(QUESTIONS[1]), MessageAdded)
        assert users(server.chats()[-1]) == QUESTIONS[:2]


@pytest.mark.anyio
async def test_a_reply_that_will_not_stop_is_cancelled_within_a_second(monkeypatch):
    """The provider ignores the cancel (as a dead or stuck one would): the turn still ends
    as cancelled within a second, and the message goes out with the next request."""
    original = OllamaProviderActor.handle

    async def deaf(self, event, ctx):
        if not isinstance(event, CancelRequested):
            await original(self, event, ctx)

    monkeypatch.setattr(OllamaProviderActor, "handle", deaf)
    # A 1 s read timeout: the stalled stream the deaf provider keeps open ends soon after.
    async with open_ollama_server() as server, open_live(server, timeout=1.0) as live:
        server.fault("stall")
        outcomes = []
        ended = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def turn() -> None:
                outcomes.append(await live.session.send(QUESTIONS[0]))
                ended.set()

            tg.start_soon(turn)
            await live.h.wait_for(ReplyChunk)
            with anyio.fail_after(1.0):
                await live.session.cancel()
                await ended.wait()
        (outcome,) = outcomes
        assert outcome.cancelled and isinstance(outcome.event, MessageUnanswered)
        assert isinstance(await live.say(QUESTIONS[1]), MessageAdded)
        assert users(server.chats()[-1]) == QUESTIONS[:2]


UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
HOSTILE_REPLY = (
    "fine\x1b[2J\x1b]0;pwned\x07\x1b]52;c;cm0gLXJmIH4=\x07\x1b]8;;http://evil\x1b\\link"
    "\x1b]8;;\x1b\\\x9b31m\r\u202eevil\x08\x7f done\r\n"
)


def test_safe_text_keeps_newlines_and_tabs_and_shows_every_control_visibly():
    shown = safe(HOSTILE_REPLY + "\ttab\n")
    assert not UNSAFE.search(shown)
    assert shown.startswith("fine␛[2J␛]0;pwned␇␛]52;c;")
    assert "\\x9b31m␍\\u202eevil␈␡ done\n\ttab\n" in shown
    assert safe("plain text, ünïcode, 🦊 and box │ lines\n") == (
        "plain text, ünïcode, 🦊 and box │ lines\n"
    )


@given(st.text())
def test_safe_text_never_holds_a_control_and_is_stable(text):
    shown = safe(text)
    assert not UNSAFE.search(shown)
    assert safe(shown) == shown
    assert safe("".join(text.splitlines(keepends=True))) == shown


def test_model_output_and_server_errors_reach_the_terminal_made_safe():
    with ollama_server_thread() as server:
        server.reply(HOSTILE_REPLY)
        answered = ollm("-p", "hi", "--host", server.url, "-m", "llama3.1:8b")
        server.fault("escape_error")
        failed = ollm("-p", "again", "--host", server.url, "-m", "llama3.1:8b")
        server.reply(HOSTILE_REPLY)
        repl = ollm(
            "--host",
            server.url,
            "-m",
            "llama3.1:8b",
            stdin=f"hello {HOSTILE_REPLY.strip()}\n/context stats\n/test prompt\n",
        )
    assert answered.returncode == 0 and "fine␛[2J" in answered.stdout
    assert failed.returncode != 0 and "answered HTTP 500: boom ␛[2J␛]0;TITLE␇" in failed.stderr
    assert repl.returncode == 0 and "fine␛[2J" in repl.stdout
    for result in (answered, failed, repl):
        for stream in (result.stdout, result.stderr):
            assert not UNSAFE.search(stream), repr(UNSAFE.search(stream))
    replayed = ollm("replay", [r.session_id for r in recorded_sessions(home())][-1])
    assert replayed.returncode == 0 and "you: 'hello fine\\x1b[2J" in replayed.stdout
    assert not UNSAFE.search(replayed.stdout + replayed.stderr)


def test_a_password_in_the_host_is_never_printed_or_recorded(tmp_path):
    with ollama_server_thread() as server:
        port = server.url.rsplit(":", 1)[1]
        secret = f"http://ollm:hunter2-s3cret@127.0.0.1:{port}"
        works = ollm("-p", "hi", "--host", secret, "-m", "llama3.1:8b")
        missing = ollm("-p", "hi", "--host", secret, "-m", "nope:1b")
        fit = ollm("fit", "llama3.1:8b", "--host", secret)
        recorded = [r.session_id for r in recorded_sessions(home())]
        replay = ollm("replay", recorded[0])
    down = ollm("-p", "hi", "--host", "http://ollm:hunter2-s3cret@127.0.0.1:9", "-m", "x")
    bad = ollm("-p", "hi", "--host", "ftp://ollm:hunter2-s3cret@127.0.0.1", "-m", "x")
    assert works.returncode == 0 and works.stdout.startswith("You said 2 characters.")
    assert "http://***@127.0.0.1" in missing.stderr and "ollama pull nope:1b" in missing.stderr
    assert "cannot reach Ollama at http://***@127.0.0.1:9" in down.stderr
    assert bad.returncode == 2 and "ollama.host = 'ftp://***@127.0.0.1'" in bad.stderr
    for result in (works, missing, fit, replay, down, bad):
        assert "hunter2" not in result.stdout + result.stderr
    stored = b"".join(p.read_bytes() for p in home().rglob("*") if p.is_file())
    assert b"hunter2" not in stored, "not in the journal, its header or any file"


@pytest.mark.anyio
async def test_a_session_talks_over_one_connection():
    """Every reply is read to its end, so httpx reuses its connections: 20 turns open no
    connection beyond those of the start."""
    async with open_ollama_server() as server, open_live(server) as live:
        assert isinstance(await live.say("question 0"), MessageAdded)
        # The start's requests run side by side (version, warm-up load, /api/ps), each on
        # its own connection; after that the pool's connections are reused.
        opened = server.connections
        for turn in range(1, 20):
            assert isinstance(await live.say(f"question {turn}"), MessageAdded)
        assert len([c for c in server.chats() if c["messages"]]) == 20
        assert server.connections == opened <= 3, (opened, server.connections)


def in_context(live) -> list[str]:
    """Every user message said, in order, except those ollm took out on purpose (dropped
    to a snapshot to make room, or summarised): what the next request must carry."""
    gone: set[str] = set()
    for event in live.h.events(ContextReduced):
        gone.update(event.removed_ids)
    for event in live.h.events(CompressionCompleted):
        gone.update(event.covered_ids)
    return [
        e.message.content
        for e in live.h.events(MessageAdded)
        if e.message.role == "user" and e.message.id not in gone
    ]


FAULTS = (
    ("overflow", "overflow"),  # retried once, then given up
    ("overflow_runner", "overflow_runner"),
    ("oom", "oom"),
    ("error_midstream",),
    ("malformed",),
    ("reset",),
    ("busy",),
    ("nested_error",),
    ("nested_stream",),
    ("escape_error",),
    ("huge_counts",),
    ("negative_counts",),
    ("stall",),  # the read times out
)


@pytest.mark.anyio
async def test_every_failed_or_cancelled_message_goes_out_with_the_next_request():
    """40 turns: every odd one failed by a provider fault (each class at least once), every
    eighth cancelled mid-reply. After each, the next request on the server carries every
    message the user sent that ollm did not take out on purpose, in order — the
    consequence, not the notice."""
    async with open_ollama_server() as server, open_live(server, timeout=0.5) as live:
        said: list[str] = []
        unanswered = 0
        for turn in range(40):
            text = f"message {turn}: " + "words " * (turn % 5)
            said.append(text)
            kind = FAULTS[(turn // 2) % len(FAULTS)] if turn % 2 else ()
            if turn % 8 == 6:
                kind = ("cancel",)
            if kind == ("cancel",):
                server.fault("stall")
                outcomes: list[Any] = []
                async with anyio.create_task_group() as tg:

                    async def send(text: str = text, outcomes: list[Any] = outcomes) -> None:
                        outcomes.append(await live.session.send(text))

                    seen = {id(e) for e in live.h.events(ReplyChunk)}
                    tg.start_soon(send)

                    def fresh(chunk: ReplyChunk, old: set[int] = seen) -> bool:
                        return id(chunk) not in old

                    await live.h.wait_for(ReplyChunk, where=fresh)
                    await live.session.cancel()
                assert outcomes[0].cancelled, turn
                unanswered += 1
                continue
            server.fault(*kind)
            ended = await live.say(text)
            if kind:
                assert isinstance(ended, MessageUnanswered), (turn, kind)
                unanswered += 1
                continue
            assert isinstance(ended, MessageAdded), turn
            assert users(server.chats()[-1]) == in_context(live), turn
        assert unanswered == 25
        assert {c["messages"][-1]["content"] for c in server.chats() if c["messages"]} >= set(
            said[1::2]
        ), "each message that failed once went out again"


def test_a_one_shot_message_is_kept_when_the_session_cannot_start(tmp_path):
    text = "a long question I typed once\nwith two lines"
    down = ollm("-p", "-", "--host", "http://127.0.0.1:9", "-m", "llama3.1:8b", stdin=text)
    assert down.returncode != 0 and down.stdout == ""
    (line,) = down.stderr.splitlines()
    assert line.startswith("ollm: cannot reach Ollama at http://127.0.0.1:9")
    assert "; your message was not sent, and is kept in " in line
    kept = Path(line.split("kept in ")[1].split(" (")[0])
    assert kept.read_text() == text and kept.is_relative_to(home())
    with ollama_server_thread() as server:
        again = ollm("-p", "-", "--host", server.url, "-m", "llama3.1:8b", stdin=kept.read_text())
        assert again.returncode == 0
        assert server.chats()[-1]["messages"][-1]["content"] == text


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("field", "value"), [("size", -1), ("size_vram", 10**20), ("context_length", -4096)]
)
async def test_impossible_figures_in_api_ps_are_refused_in_one_sentence(field, value):
    async with open_ollama_server() as server, open_live(server) as live:
        assert await live.client.ps(), "the model is loaded"
        honest = server._ps
        server._ps = lambda loaded: {**honest(loaded), field: value}  # type: ignore[method-assign]
        with pytest.raises(ProviderError) as caught:
            await live.client.ps()
    assert "sent an answer to /api/ps that ollm cannot read" in str(caught.value)


@pytest.mark.anyio
async def test_restoring_a_snapshot_saves_the_conversation_it_replaces_first():
    async with open_ollama_server() as server, open_live(server) as live:
        await live.say("first")
        made = await live.session.request(
            SnapshotRequested(reason="manual"), until=(SnapshotCreated,)
        )
        assert isinstance(made, SnapshotCreated)
        await live.say("second")
        restored = await live.session.request(
            RestoreRequested(snapshot_id=made.snapshot_id), until=(SnapshotRestored,)
        )
        assert isinstance(restored, SnapshotRestored)
        before = live.h.events(SnapshotCreated)[-1]
        assert before.reason == "auto" and before.messages == 4, "first and second, answered"
        listing = await live.session.snapshots()
        assert before.snapshot_id in [m.id for m in listing.snapshots]
        await live.say("third")
        assert users(server.chats()[-1]) == ["first", "third"]


@pytest.mark.anyio
async def test_the_out_of_memory_step_down_does_not_contradict_itself():
    memory = FakeChain([reading(12)])  # auto-size picks the 16k option: 12 GiB free
    async with open_ollama_server() as server, open_live(server, size=16384, memory=memory) as live:
        server.fault("oom")
        assert isinstance(await live.say(QUESTIONS[0]), MessageAdded)
        (step,) = [n.text for n in live.h.events(UserNotified) if "one size smaller" in n.text]
        assert (
            "Ollama ran out of memory: one size smaller, which by ollm's estimate fits in" in step
        )
        assert "memory: fits in" not in step


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("tty", "no_color", "coloured"), [(True, "", True), (True, "1", False), (False, "", False)]
)
def test_notices_are_coloured_on_a_terminal_only_and_never_with_no_color(
    monkeypatch, tty, no_color, coloured
):
    monkeypatch.setenv("NO_COLOR", no_color)
    err = Tty() if tty else io.StringIO()
    stream: Any = SafeStream(err)
    console = ConsoleActor(io.StringIO(), stream, Printed())
    console.show(UserNotified(level="warning", text="low memory \x1b]0;x\x07"))
    console.show(UserNotified(level="info", text="snapshot saved"))
    lines = err.getvalue().splitlines()
    if coloured:
        assert lines[0] == "\x1b[33mollm: warning: low memory ␛]0;x␇\x1b[0m"
    else:
        assert lines[0] == "ollm: warning: low memory ␛]0;x␇"
    assert lines[1] == "ollm: snapshot saved", "info stays as the terminal has it"
