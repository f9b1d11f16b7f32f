"""Time ollm itself spends to plan and apply a compression of 10k, 100k and 1M tokens.

Usage: python scripts/bench_compression.py [--repeats R] [--smoke]

The real actors on a runtime (session, token counter, pool, guard, compressor, snapshot
manager writing the pre-compression snapshot to a temporary directory), with the scripted
provider answering the summary request at once: from `CompressRequested` to quiet after
`CompressionCompleted`. The provider's own time is measured separately and subtracted.
Baseline in the same run: blake3 over the same conversation text. Target: under 50 ms at
100k tokens, growing linearly.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import anyio
from _bench import chat, corpus, parser, sizes
from blake3 import blake3

from actors import ChildSpec, FakeClock, SequentialIds, open_runtime
from ollm.config import Settings
from ollm.context.snapshot_manager import RetentionPolicy, SnapshotManagerActor
from ollm.core import core_specs
from ollm.events import (
    CompressionCompleted,
    CompressRequested,
    ConversationState,
    Message,
    ModelSelected,
    SessionOpened,
)
from ollm.providers.scripted import ScriptedProviderActor
from ollm.storage.store import SnapshotStore


class TimedProvider(ScriptedProviderActor):
    spent = 0.0

    async def handle(self, event, ctx):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        await super().handle(event, ctx)
        TimedProvider.spent += time.perf_counter() - start


async def once(conversation: tuple[Message, ...], scratch: Path) -> float:
    TimedProvider.spent = 0.0
    specs = [
        *core_specs(Settings()),
        ChildSpec(name="provider", factory=TimedProvider),
        ChildSpec(
            name="snapshot_manager",
            factory=lambda: SnapshotManagerActor(SnapshotStore(scratch), RetentionPolicy(keep=2)),
        ),
    ]
    done: list[float] = []

    def tap(envelope):  # type: ignore[no-untyped-def]
        if isinstance(envelope.event, CompressionCompleted):
            done.append(time.perf_counter())

    async with open_runtime(specs, clock=FakeClock(), ids=SequentialIds(), taps=(tap,)) as runtime:
        state = ConversationState(messages=conversation, next_message=len(conversation) + 1)
        await runtime.publish(SessionOpened(session_id="b", state=state), source="bench")
        await runtime.publish(
            ModelSelected(model="m", size=1 << 22, num_ctx=1 << 22), source="bench"
        )
        await runtime.settle(timeout=120)
        TimedProvider.spent = 0.0
        start = time.perf_counter()
        await runtime.publish(CompressRequested(reason="user"), source="bench")
        await runtime.settle(timeout=120)
        end = time.perf_counter()
    assert done, "the compression completed"
    return end - start - TimedProvider.spent


def main() -> None:
    options = parser(__doc__)
    options.add_argument("--repeats", type=int, default=5)
    args = options.parse_args()
    if args.smoke:
        args.repeats = 1
    text = corpus()
    print(f"best of {args.repeats}; the provider's own time excluded")
    print(f"{'tokens':>9} {'ollm':>10} {'per 1k tokens':>14} {'blake3 of the text':>19}")
    with tempfile.TemporaryDirectory() as tmp:
        for tokens in sizes(args.smoke, (10_000, 100_000, 1_000_000), (2_000, 4_000, 8_000)):
            conversation = chat(text, tokens, smallest=600, spread=2400)
            data = "".join(m.content for m in conversation).encode()
            spent = min(
                anyio.run(once, conversation, Path(tmp) / f"{tokens}-{r}", backend="asyncio")
                for r in range(args.repeats)
            )
            start = time.perf_counter()
            blake3(data).digest()
            hashed = time.perf_counter() - start
            print(
                f"{tokens:>9} {spent * 1e3:>8.1f}ms {spent * 1e6 / tokens:>11.1f} us "
                f"{hashed * 1e3:>16.2f}ms"
            )
    print("target: under 50 ms at 100k tokens, growing linearly")


if __name__ == "__main__":
    main()
