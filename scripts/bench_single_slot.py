"""A turn sent while a summary generates, on a server that runs one request at a time.

Usage: python scripts/bench_single_slot.py [--turns 30] [--smoke]

A live session against the Ollama test server in its one-request-at-a-time mode (Ollama's
default `OLLAMA_NUM_PARALLEL=1`), its model generating a piece every 10, 20 or 40 ms; each
message is sent the moment the previous reply ends, so every automatic compression's summary
is still generating when the next turn goes out. Reported: each turn's wall time (send to
reply) with compression on, beside the same session with compression off in the same run;
the added latency is each turn's time with compression on minus the same turn's (the same
text, so the same reply) with it off, and its worst is the figure: ollm cancels the summary
for the turn, so a turn waits at most for the server to drop it, not for the summary.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import anyio
import msgspec
from _bench import parser

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ollm.config import Settings  # noqa: E402
from ollm.events import CompressionCompleted, CompressionFailed  # noqa: E402
from tests.fakes.ollama_server import (  # noqa: E402
    FakeEngine,
    FakeModel,
    OllamaTestServer,
    open_ollama_server,
)
from tests.ollm.live import open_live  # noqa: E402

WORDS = "alpha beta gamma delta "


def settings(compress: bool) -> Settings:
    base = Settings()
    compression = msgspec.structs.replace(base.context.compression, enabled=compress)
    return msgspec.structs.replace(
        base, context=msgspec.structs.replace(base.context, compression=compression)
    )


async def session(delay: float, turns: int, compress: bool) -> tuple[list[float], int, int]:
    """(each turn's seconds, summaries put off for a turn, compressions completed)."""
    models = {"llama3.1:8b": FakeModel("llama3.1:8b")}
    server = OllamaTestServer(engine=FakeEngine(models, piece_delay=delay))
    times = []
    async with open_ollama_server(server), open_live(server, settings(compress), size=4096) as live:
        for t in range(turns):
            start = time.perf_counter()
            await live.session.send(f"turn {t}: " + WORDS * 40)
            times.append(time.perf_counter() - start)
        await live.h.settle()
        put_off = [f for f in live.h.events(CompressionFailed) if "goes first" in f.message]
        return times, len(put_off), len(live.h.events(CompressionCompleted))


async def main() -> None:
    args = parser(__doc__)
    args.add_argument("--turns", type=int, default=30)
    options = args.parse_args()
    turns = 16 if options.smoke else options.turns
    delays = (0.002,) if options.smoke else (0.010, 0.020, 0.040)
    print(f"{turns} turns a session, one request at a time; seconds per turn")
    print(
        f"{'piece':>8} {'turn, off':>10} {'turn, on':>9} {'added: median':>14} "
        f"{'added: worst':>13} {'put off':>8} {'compressed':>11}"
    )
    for delay in delays:
        off, _, _ = await session(delay, turns, compress=False)
        on, put_off, done = await session(delay, turns, compress=True)
        # The same turn (the same text, so the same reply) with compression on and off.
        added = [a - b for a, b in zip(on, off, strict=True)]
        print(
            f"{delay * 1000:>6.0f}ms {statistics.median(off):>10.3f} "
            f"{statistics.median(on):>9.3f} {statistics.median(added):>14.3f} "
            f"{max(added):>13.3f} {put_off:>8} {done:>11}"
        )


if __name__ == "__main__":
    anyio.run(main, backend="asyncio")
