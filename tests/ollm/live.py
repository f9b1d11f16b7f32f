"""Helpers: the real core actors and the Ollama provider against the test server, over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from actors import ChildSpec
from actors.testing import Harness, open_harness
from ollm.app import core_specs
from ollm.config import Settings
from ollm.events import (
    ChatRequested,
    ConversationState,
    MessageAdded,
    MessageUnanswered,
    ModelSelected,
    SessionOpened,
    UsageChanged,
    UserSubmitted,
)
from ollm.profiles import load_profiles
from ollm.providers.ollama import OllamaClient, OllamaProviderActor, make_http_client
from ollm.selection import select_model
from tests.fakes.ollama_server import OllamaTestServer


@dataclass
class Live:
    h: Harness
    client: OllamaClient
    server: OllamaTestServer
    selected: ModelSelected

    async def say(self, text: str) -> MessageAdded | MessageUnanswered:
        """Send a message and wait until its turn ends (settle covers the HTTP stream)."""
        before = len(self.h.published)
        await self.h.publish(UserSubmitted(text=text))
        await self.h.settle()
        for envelope in self.h.published[before:]:
            event = envelope.event
            if isinstance(event, MessageUnanswered) or (
                isinstance(event, MessageAdded) and event.message.role == "assistant"
            ):
                return event
        raise AssertionError("the turn did not end")

    def last_usage(self) -> UsageChanged:
        return self.h.events(UsageChanged)[-1]

    def requests(self) -> list[ChatRequested]:
        return self.h.events(ChatRequested)


@asynccontextmanager
async def open_live(
    server: OllamaTestServer,
    settings: Settings | None = None,
    *,
    model: str = "llama3.1:8b",
    size: int | None = None,
    timeout: float = 5.0,
    system: str = "You are a helpful assistant.",
    extra: tuple[ChildSpec, ...] = (),
) -> AsyncIterator[Live]:
    settings = settings or Settings()
    async with make_http_client(server.url, timeout) as http:
        client = OllamaClient(http, server.url, timeout)
        selected = await select_model(client, settings, load_profiles(), model=model, size=size)
        specs = [
            *core_specs(settings),
            ChildSpec(
                name="provider", factory=lambda: OllamaProviderActor(client, keep_alive="5m")
            ),
            *extra,
        ]
        async with open_harness(*specs) as h:
            await h.publish(
                SessionOpened(session_id="t", state=ConversationState(system_prompt=system))
            )
            await h.publish(selected)
            await h.settle()
            yield Live(h, client, server, selected)
