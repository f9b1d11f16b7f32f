"""The live harness: a real live session (the same composition root as the REPL and `-p`)
against the Ollama test server over HTTP, on a fake clock, every envelope kept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import msgspec

from actors import ChildSpec, Envelope, FakeClock
from actors.testing import Harness
from ollm.config import Settings
from ollm.events import ChatRequested, MessageAdded, MessageUnanswered, UsageChanged
from ollm.gpu.records import MemorySource, Reading
from ollm.live import LiveSession, Start, open_live_session
from ollm.providers.ollama import OllamaClient, make_http_client
from tests.fakes.ollama_server import OllamaTestServer

TURN_TIMEOUT = 30.0
"""A guard, not a wait: a turn against the local test server ends in well under a second."""


class NoDevices:
    """A memory source that sees no device: sizing does not depend on this machine."""

    def read(self) -> Reading:
        return Reading(devices=(), source="none")


@dataclass
class Live:
    h: Harness
    session: LiveSession
    client: OllamaClient
    server: OllamaTestServer

    @property
    def selected(self) -> Any:
        return self.session.selected

    async def say(self, text: str) -> MessageAdded | MessageUnanswered:
        """Send a message through the session's own door, wait for its turn to end, then
        for quiet."""
        with anyio.fail_after(TURN_TIMEOUT):
            outcome = await self.session.send(text)
        await self.h.settle()
        return outcome.event

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
    memory: MemorySource | None = None,
) -> AsyncIterator[Live]:
    base = settings or Settings()
    settings = msgspec.structs.replace(
        base,
        system_prompt=system,
        ollama=msgspec.structs.replace(base.ollama, host=server.url, timeout=timeout),
    )
    clock = FakeClock()
    published: list[Envelope[Any]] = []
    arrived = [anyio.Event()]

    def tap(envelope: Envelope[Any]) -> None:
        published.append(envelope)
        arrived[0].set()

    async with (
        make_http_client(server.url, timeout) as http,
        open_live_session(
            settings,
            Start(model=model, size=size),
            extra=extra,
            clock=clock,
            memory=memory or NoDevices(),
            taps=(tap,),
        ) as session,
    ):
        h = Harness(session.runtime, clock, published, arrived)
        await h.settle()
        yield Live(h, session, OllamaClient(http, server.url, timeout), server)
