"""The first turn's estimate with and without the calibration an earlier session learned.

Usage: python scripts/bench_calibration.py [--smoke]

A live session against the Ollama test server sends one message of prose, code or
identifier-heavy text (200, 800 and 3,200 characters); a second session, in the same
`OLLM_HOME`, then sends another message of the same kind, and a third does so in a fresh
home. Reported: the second and third sessions' first estimate (the usage their first
request went out on) against the server's own count of that request.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import anyio
from _bench import corpus, parser

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ollm.events import ChatRequested, UsageChanged  # noqa: E402
from tests.fakes.ollama_server import open_ollama_server, prompt_tokens  # noqa: E402
from tests.ollm.live import open_live  # noqa: E402

IDS = (
    "JOB-{n} failed on ip-10-42-7-{m} with E_TIMEOUT_504 at 2026-11-30T04:17:{m:02d}Z; "
    "retry JOB-{k} read /srv/data/report-{m}.csv (42.{m} GiB, sha256 9f86d08188{n}) and "
    "build v3.14.{m}-rc2 on port 84{m:02d}; see OPS-{k}, commit a3f9c2e{n}. "
)


def texts(kind: str, chars: int, offset: int) -> str:
    if kind == "ids":
        out = "".join(IDS.format(n=90211 + i, m=(i + offset) % 60, k=4471 + i) for i in range(99))
        return out[offset * 7 : offset * 7 + chars]
    source = corpus()
    start = source.index('"""', 100_000 + offset * 50_000) if kind == "prose" else 200_000
    return source[start + offset * chars : start + (offset + 1) * chars]


async def first_estimate(home: Path, text: str) -> tuple[int, int]:
    """(estimate, the server's count) of a session's first request, in `home`."""
    os.environ["OLLM_HOME"] = str(home)
    async with open_ollama_server() as server, open_live(server, size=16384) as live:
        await live.say(text)
        used, estimate = 0, 0
        for envelope in live.h.published:
            if isinstance(envelope.event, UsageChanged):
                used = envelope.event.used_tokens
            if isinstance(envelope.event, ChatRequested) and envelope.event.messages:
                estimate = used
                break
        return estimate, prompt_tokens(server.chats()[-1]["messages"])


async def main() -> None:
    options = parser(__doc__).parse_args()
    sizes = (200,) if options.smoke else (200, 800, 3200)
    print("first-turn estimate against the server's count (error, %)")
    print(f"{'text':>6} {'chars':>6} {'with the last calibration':>26} {'without':>8}")
    for kind in ("prose", "code", "ids"):
        for chars in sizes:
            with tempfile.TemporaryDirectory() as kept, tempfile.TemporaryDirectory() as fresh:
                await first_estimate(Path(kept), texts(kind, chars, 0))
                with_prior, real = await first_estimate(Path(kept), texts(kind, chars, 1))
                without, real_fresh = await first_estimate(Path(fresh), texts(kind, chars, 1))
            assert real == real_fresh
            print(
                f"{kind:>6} {chars:>6} {100 * (with_prior - real) / real:>25.1f}% "
                f"{100 * (without - real) / real:>7.1f}%"
            )


if __name__ == "__main__":
    anyio.run(main, backend="asyncio")
