"""Bus throughput against raw anyio memory object streams, with and without recording.

Usage: python scripts/bench_bus.py [--events N] [--repeats R] [--smoke]

Every figure is the best of R runs, measured in this process next to its baseline, because
shared machines are noisy. Targets: the bus at >= 50 % of the raw stream's throughput for
1->1; recording to disk costs <= 30 % more time than not recording.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
from _bench import parser
from anyio.streams.memory import MemoryObjectReceiveStream

from actors import (
    Actor,
    ChildSpec,
    Context,
    Event,
    FakeClock,
    LogHeader,
    LogWriter,
    Recorder,
    SequentialIds,
    open_runtime,
)


class Tick(Event, frozen=True, kw_only=True, tag="bench.tick"):
    n: int


class Sink(Actor[Tick]):
    """The trivial handler: counts."""

    accepts = (Tick,)

    def __init__(self) -> None:
        self.count = 0

    async def handle(self, event: Tick, ctx: Context) -> None:
        self.count += 1


async def raw_stream(events: int, fan_out: int, fast: bool) -> None:
    """The baseline: one producer, `fan_out` consumers, one bounded stream each.

    Plain: `await send()` / `async for`, as one would write it (a checkpoint per item).
    Fast: `send_nowait` / `receive_nowait` first, waiting only when full or empty: the same
    fast paths the bus takes, so the bus's own overhead shows.
    """
    received = [0] * fan_out
    async with anyio.create_task_group() as tg:
        senders = []
        for index in range(fan_out):
            send, receive = anyio.create_memory_object_stream[Tick](1024)
            senders.append(send)
            tg.start_soon(_consume_fast if fast else _consume, receive, received, index)
        for n in range(events):
            tick = Tick(n=n)
            for send in senders:
                if fast:
                    try:
                        send.send_nowait(tick)
                        continue
                    except anyio.WouldBlock:
                        pass
                await send.send(tick)
        for send in senders:
            await send.aclose()
    assert received == [events] * fan_out


async def _consume(receive: MemoryObjectReceiveStream[Tick], received: list[int], i: int) -> None:
    async with receive:
        async for _ in receive:
            received[i] += 1


async def _consume_fast(
    receive: MemoryObjectReceiveStream[Tick], received: list[int], i: int
) -> None:
    async with receive:
        while True:
            try:
                receive.receive_nowait()
            except anyio.WouldBlock:
                try:
                    await receive.receive()
                except anyio.EndOfStream:
                    return
            except anyio.EndOfStream:
                return
            received[i] += 1


async def bus(events: int, fan_out: int, log_dir: Path | None) -> None:
    specs = [ChildSpec(name=f"sink{i}", factory=Sink) for i in range(fan_out)]
    writer = None
    recorder = None
    if log_dir is not None:
        header = LogHeader(format=1, app="bench", app_version="0", config_digest="-")
        writer = LogWriter(log_dir / f"bench-{time.perf_counter_ns()}.jsonl", header)
        recorder = Recorder(writer)
    async with open_runtime(
        specs, clock=FakeClock(), ids=SequentialIds(), recorder=recorder
    ) as runtime:
        for n in range(events):
            await runtime.publish(Tick(n=n), source="bench")
        await runtime.settle(timeout=120)
    if writer is not None:
        writer.close()


def best_of(repeats: int, fn: Callable[[], Awaitable[None]]) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        anyio.run(fn, backend="asyncio")
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    options = parser(__doc__)
    options.add_argument("--events", type=int, default=50_000)
    options.add_argument("--repeats", type=int, default=5)
    args = options.parse_args()
    if args.smoke:
        args.events, args.repeats = 200, 1
    n, r = args.events, args.repeats
    print(f"events per run: {n}, best of {r} runs each")
    print(f"{'case':<28}{'events/s':>14}{'seconds':>10}   ratio")
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp)
        for fan_out in (1, 8):
            raw = best_of(r, lambda f=fan_out: raw_stream(n, f, False))  # type: ignore[misc]
            fast = best_of(r, lambda f=fan_out: raw_stream(n, f, True))  # type: ignore[misc]
            plain = best_of(r, lambda f=fan_out: bus(n, f, None))  # type: ignore[misc]
            recorded = best_of(r, lambda f=fan_out: bus(n, f, log_dir))  # type: ignore[misc]
            label = f"1->{fan_out}"
            print(f"{'raw stream ' + label:<28}{n / raw:>14,.0f}{raw:>10.3f}")
            print(f"{'raw stream nowait ' + label:<28}{n / fast:>14,.0f}{fast:>10.3f}")
            target = "  (target >= 0.50)" if fan_out == 1 else ""
            print(
                f"{'bus ' + label:<28}{n / plain:>14,.0f}{plain:>10.3f}"
                f"   {raw / plain:.2f}x raw, {fast / plain:.2f}x raw nowait{target}"
            )
            print(
                f"{'bus ' + label + ' recording':<28}{n / recorded:>14,.0f}{recorded:>10.3f}"
                f"   +{(recorded / plain - 1) * 100:.0f}% time for recording (target <= 30%)"
            )


if __name__ == "__main__":
    main()
