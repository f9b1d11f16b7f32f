"""Cost of accepting one new message in conversations of 10, 1,000 and 10,000 messages.

Usage: python scripts/bench_accounting.py [--messages N] [--repeats R] [--smoke]

"Accepting" is what the token counter does for a `MessageAdded`: count the message (blake3-
keyed cache), update the running total, and build the `UsageChanged` it publishes. It runs
through the real actor's `handle` with a context that only collects what is published. The
baseline, measured in the same run, is blake3-hashing the same message text. Target: flat,
the 10,000 case within 1.5x of the 10 case.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
from _bench import parser, sizes
from blake3 import blake3

from ollm.context.token_counter import TokenCounterActor
from ollm.events import (
    ContextSizeChosen,
    ConversationState,
    Message,
    MessageAdded,
    ModelSelected,
    SessionOpened,
    UsageChanged,
)

TEXT = (
    "Could you look at the function in src/app/handlers.py that parses the request body "
    "and tell me why it fails on an empty JSON object? It raises KeyError: 'items' at line 42. "
)


class CollectingContext:
    """Stands in for `actors.Context`: keeps what the actor publishes."""

    def __init__(self) -> None:
        self.published: list[Any] = []

    async def publish(self, event: Any) -> Any:
        self.published.append(event)
        return event


def message(i: int) -> Message:
    return Message(id=f"m{i}", role="user" if i % 2 else "assistant", content=f"{i}: {TEXT}")


async def per_message_seconds(existing: int, measured: int) -> float:
    actor = TokenCounterActor()
    ctx: Any = CollectingContext()
    await actor.handle(SessionOpened(session_id="b", state=ConversationState()), ctx)
    await actor.handle(ModelSelected(model="m", size=131072, num_ctx=131072), ctx)
    # Usage is published against the num_ctx the context pool chose.
    await actor.handle(
        ContextSizeChosen(model="m", size=131072, num_ctx=131072, reason="bench"), ctx
    )
    for i in range(existing):
        await actor.handle(MessageAdded(message=message(i)), ctx)
    batch = [MessageAdded(message=message(existing + i)) for i in range(measured)]
    start = time.perf_counter()
    for event in batch:
        await actor.handle(event, ctx)
    elapsed = time.perf_counter() - start
    assert isinstance(ctx.published[-1], UsageChanged)
    return elapsed / measured


def hash_seconds(measured: int) -> float:
    texts = [message(i).content.encode() for i in range(measured)]
    start = time.perf_counter()
    for data in texts:
        blake3(data).digest(length=16)
    return (time.perf_counter() - start) / measured


def main() -> None:
    options = parser(__doc__)
    options.add_argument("--messages", type=int, default=2000, help="messages measured per case")
    options.add_argument("--repeats", type=int, default=7)
    args = options.parse_args()
    if args.smoke:
        args.messages, args.repeats = 20, 1
    cases = sizes(args.smoke, (10, 1_000, 10_000), (10, 20, 40))
    print(f"per message, best of {args.repeats} runs of {args.messages} messages each")
    print(f"{'conversation':<16}{'accept (us)':>12}{'blake3 (us)':>13}{'ratio':>8}")
    results = {}
    for existing in cases:
        accept = min(
            anyio.run(per_message_seconds, existing, args.messages, backend="asyncio")
            for _ in range(args.repeats)
        )
        hashing = min(hash_seconds(args.messages) for _ in range(args.repeats))
        results[existing] = accept
        print(
            f"{existing:>8} msgs  {accept * 1e6:>12.2f}{hashing * 1e6:>13.2f}"
            f"{accept / hashing:>8.1f}x"
        )
    flat = results[cases[-1]] / results[cases[0]]
    print(f"{cases[-1]:,} vs {cases[0]:,} messages: {flat:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
