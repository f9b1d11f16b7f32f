"""Hostile and broken replies: ollm never hangs, the turn always ends with one sentence, and
the message stays in the live context (the next request on the server carries it)."""

from __future__ import annotations

import anyio
import pytest

from actors import ActorCrashed
from ollm.events import CancelRequested, MessageAdded, MessageUnanswered, ReplyChunk
from ollm.providers.ollama import OllamaProviderActor
from tests.fakes.ollama_server import open_ollama_server

from .live import open_live

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("ollama_rules")]

QUESTIONS = ["What is a B-tree?", "And a trie?", "And a skip list?"]


def users(chat: dict) -> list[str]:
    return [m["content"] for m in chat["messages"] if m["role"] == "user"]


async def test_a_provider_that_dies_mid_request_fails_the_turn_and_keeps_the_message(
    monkeypatch,
):
    """The provider crashes on the chat request itself (outside its own error handling): the
    supervisor restarts it, and the turn, which nothing would otherwise end, is failed."""
    original = OllamaProviderActor.handle
    crashed = []

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
