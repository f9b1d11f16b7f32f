"""`LiveSession`: the one door through which the CLI talks to a running session.

Everything the REPL and `ollm -p` do goes through it and the events module: send a message
and wait for its turn to end, ask for anything with `request(event, until=…)`, the exact
next payload, the session's snapshots, the installed models, a model's selection. The CLI
never reaches the actors, the provider, the storage or the probes itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio

from actors import ActorCrashed, Envelope, Recorder, Runtime

from ..config import Settings
from ..events import (
    CancelRequested,
    FailureKind,
    MessageAdded,
    MessageUnanswered,
    ModelSelected,
    ReplyCancelled,
    ReplyFailed,
    UserSubmitted,
)
from ..profiles import Profiles
from ..providers.ollama import OllamaClient, ProviderError
from ..server_setup import ServerSetup
from ..storage.store import IdError, Listing, SnapshotView
from ._preview import NextRequest, next_request
from ._requests import Requests, Until
from ._selection import SelectionError, select_model
from ._status import Status


class LiveError(Exception):
    """What the user asked for cannot be done; `str()` is one sentence saying why."""


@dataclass(frozen=True)
class Outcome:
    """How a turn ended."""

    event: MessageAdded | MessageUnanswered
    """The reply joining the conversation, or the user's message marked unanswered."""
    seq: int
    """The `seq` of that event (what has been shown of the turn can be waited for)."""

    @property
    def answered(self) -> bool:
        return isinstance(self.event, MessageAdded)

    @property
    def cancelled(self) -> bool:
        return isinstance(self.event, MessageUnanswered) and self.event.cancelled

    @property
    def failure(self) -> FailureKind | None:
        return self.event.failure if isinstance(self.event, MessageUnanswered) else None


CANCEL_GRACE = 0.4
"""Seconds a turn may go on after a cancel or a crash before ollm ends its request itself."""


ORPHANING = ("provider", "session")
"""The actors whose crash can leave a turn's request open (the others' work is redone)."""


def _orphaning(event: object) -> bool:
    return isinstance(event, ActorCrashed) and event.actor in ORPHANING


async def _first(*events: anyio.Event) -> None:
    """Wait until any of `events` is set."""
    async with anyio.create_task_group() as tg:

        async def wait(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        for event in events:
            tg.start_soon(wait, event)


def turn_ended(event: object) -> bool:
    """The event that ends a turn: the reply, or the message left unanswered."""
    return isinstance(event, MessageUnanswered) or (
        isinstance(event, MessageAdded) and event.message.role == "assistant"
    )


class LiveSession:
    def __init__(
        self,
        *,
        runtime: Runtime,
        session_id: str,
        settings: Settings,
        selected: ModelSelected,
        status: Status,
        client: OllamaClient,
        profiles: Profiles,
        requests: Requests,
        snapshots_view: SnapshotView,
        recorder: Recorder | None = None,
        setup: ServerSetup | None = None,
    ) -> None:
        self.runtime = runtime
        self.session_id = session_id
        self.settings = settings
        self.selected = selected
        """The model and context chosen at the start."""
        self.status = status
        """The read model of the session (what the status box and toolbar show)."""
        self._client = client
        self._profiles = profiles
        self._setup = setup
        self._requests = requests
        self._snapshots = snapshots_view
        self._recorder = recorder
        self._cancelling = anyio.Event()

    @property
    def model(self) -> str:
        return self.status.selected.model if self.status.selected else self.selected.model

    @property
    def num_ctx(self) -> int:
        return self.status.chosen.num_ctx if self.status.chosen else self.selected.num_ctx

    # --- talking ----------------------------------------------------------------------------

    async def send(self, text: str) -> Outcome:
        """Send a chat message and wait until its turn ends (a failure ends it too).

        The turn always ends: when an actor crashes while it is under way, or the reply
        does not stop within `CANCEL_GRACE` of a cancel, the request it left open is ended
        with an input (`ReplyFailed`, `ReplyCancelled`), so the message is marked
        unanswered, kept, and sent with the next request.

        Raises:
            LiveError: even that did not end the turn (the session is broken).
        """
        submitted = UserSubmitted(text=text)
        turn = self._requests.expect(submitted, turn_ended)
        crash = self._requests.expect(submitted, _orphaning)
        self._cancelling = anyio.Event()
        try:
            await self.runtime.publish(submitted, source="cli")
            await _first(turn.arrived, crash.arrived, self._cancelling)
            if not turn.arrived.is_set():
                with anyio.move_on_after(CANCEL_GRACE):
                    await turn.arrived.wait()
            if turn.answer is None:
                ended = await self._end_open_request(crash.answer)
            else:
                ended = turn.answer
        finally:
            self._requests.forget(turn)
            self._requests.forget(crash)
        event = ended.event
        assert isinstance(event, MessageAdded | MessageUnanswered)
        return Outcome(event, ended.seq)

    async def _end_open_request(self, crash: Envelope[Any] | None) -> Envelope[Any]:
        """End the turn's chat request from outside: as cancelled, or as failed when an
        actor crashed (what it was doing may never finish)."""
        chat = self.status.last_chat
        rid = chat.request_id if chat is not None else ""
        ending: ReplyFailed | ReplyCancelled
        if crash is not None:
            crashed = crash.event
            assert isinstance(crashed, ActorCrashed)
            ending = ReplyFailed(
                request_id=rid,
                failure="malformed_reply",
                message=f"ollm's {crashed.actor} failed while handling this turn "
                f"({crashed.error[:120]}), a bug in ollm; try again",
            )
        else:
            ending = ReplyCancelled(request_id=rid)
        ended = await self._ask(ending, turn_ended, CANCEL_GRACE, True)
        if ended is None:
            raise LiveError(
                "the session did not end the turn (an internal failure); your message is in "
                "the journal, and `ollm --resume` continues the session"
            )
        return ended

    async def cancel(self) -> None:
        """Stop the reply being generated (Ctrl-C); the user's message is kept. The turn
        ends within `2 × CANCEL_GRACE` whatever the provider does."""
        self._cancelling.set()
        await self.runtime.publish(CancelRequested(), source="cli")

    async def request(
        self,
        event: object,
        *,
        until: Until,
        timeout: float | None = None,
        caused: bool = True,
    ) -> object | None:
        """Publish `event` and wait for its answer: the first event that `until` accepts
        (a tuple of types or a predicate) among those `event` caused, directly or not.

        `caused=False` takes the first such event whatever caused it (a request that joins
        work already under way is answered by that work). None after `timeout` seconds.
        """
        answer = await self._ask(event, until, timeout, caused)
        return answer.event if answer is not None else None

    async def _ask(
        self, event: object, until: Until, timeout: float | None, caused: bool
    ) -> Envelope[Any] | None:
        pending = self._requests.expect(event, until, caused=caused)
        try:
            await self.runtime.publish(event, source="cli")
            if timeout is None:
                await pending.arrived.wait()
            else:
                with anyio.move_on_after(timeout):
                    await pending.arrived.wait()
        finally:
            self._requests.forget(pending)
        return pending.answer

    def next_request(self) -> NextRequest:
        """Exactly what the next message would send (`/test prompt`)."""
        return next_request(self.status, self.settings)

    # --- what the session has ---------------------------------------------------------------

    async def snapshots(self) -> Listing:
        """The session's snapshots, newest first, and the damaged files that were skipped."""
        return await self._snapshots.listing()

    async def resolve_snapshot(self, wanted: str) -> str:
        """The snapshot id that `wanted` (an id or an unambiguous prefix) names.

        Raises:
            LiveError: empty, not an id, unknown or ambiguous.
        """
        try:
            return await self._snapshots.resolve(wanted)
        except IdError as exc:
            raise LiveError(str(exc)) from None

    async def installed_models(self) -> list[str]:
        """The models the server has; empty when it cannot say."""
        try:
            return [m.name for m in await self._client.tags()]
        except ProviderError:
            return []

    async def select_model(self, name: str) -> ModelSelected:
        """`name` and its context by the sizing rule, ready to publish (`/model`).

        Raises:
            LiveError: the server cannot be reached or the model is not installed.
        """
        try:
            return await select_model(
                self._client,
                self.settings,
                self._profiles,
                model=name,
                setup=self._setup,
                vocabulary=True,
            )
        except SelectionError as exc:
            raise LiveError(str(exc)) from None
