"""How the sessions journal grows: bytes per turn at 200, 800 and 2,000 turns, at a 4k and
a 128k context, beside the conversation's own new text and the JSON-lines log of the same
session (the format before the journal, measured in the same run).

Usage: python scripts/bench_journal.py [--turns 200,800,2000] [--smoke]

A real live session (the same composition root as the REPL) against the Ollama test server,
on a fake clock. Bytes are what the journal stores for the session: event rows (key, body)
and the texts they refer to. Targets: flat (the last 10 turns within 1.2x of turns 10-20),
and at most 2x the turn's new text plus a fixed overhead.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import anyio
from _bench import parser

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ollm.live import export_session, recorded_sessions  # noqa: E402
from tests.fakes.ollama_server import open_ollama_server  # noqa: E402
from tests.ollm.live import open_live  # noqa: E402

WORDS = "alpha beta gamma delta "
ROW_KEY = 24
"""Bytes of an event row's key and header fields besides its body (an estimate)."""


def stored(home: Path) -> int:
    db = sqlite3.connect(home / "sessions.db")
    try:
        events = db.execute("SELECT coalesce(sum(length(body)), 0), count(*) FROM events")
        body, rows = events.fetchone()
        texts = db.execute("SELECT coalesce(sum(length(body)), 0), count(*) FROM texts")
        text, kept = texts.fetchone()
        return int(body + rows * ROW_KEY + text + kept * 24)
    finally:
        db.close()


async def measure(home: Path, size: int, turns: int) -> str:
    windows = {10: 0, 20: 0, turns - 10: 0, turns: 0}
    said = {10: 0, 20: 0, turns - 10: 0, turns: 0}
    total_said = 0
    start = time.perf_counter()
    async with open_ollama_server() as server, open_live(server, size=size) as live:
        for t in range(1, turns + 1):
            text = f"turn {t}: " + WORDS * 30
            ended = await live.say(text)
            total_said += len(text) + len(getattr(getattr(ended, "message", None), "content", ""))
            if t in windows:
                windows[t], said[t] = stored(home), total_said
    elapsed = time.perf_counter() - start
    early = (windows[20] - windows[10]) / 10
    late = (windows[turns] - windows[turns - 10]) / 10
    new_text = (said[turns] - said[turns - 10]) / 10
    session = recorded_sessions(home)[-1].session_id
    exported = home / f"{session}.jsonl"
    export_session(home, session, exported)
    jsonl = exported.stat().st_size / turns
    return (
        f"{size:>7} {turns:>6} {late:>10.0f} {late / early:>9.2f}x {new_text:>9.0f} "
        f"{late / new_text:>7.2f}x {windows[turns] / 1e6:>8.2f}MB {jsonl:>10.0f} "
        f"{jsonl / (windows[turns] / turns):>7.1f}x {elapsed:>7.1f}s"
    )


async def main() -> None:
    options = parser(__doc__)
    options.add_argument("--turns", default="200,800,2000", help="session lengths measured")
    args = options.parse_args()
    counts = [30] if args.smoke else [int(n) for n in args.turns.split(",")]
    print(
        f"{'num_ctx':>7} {'turns':>6} {'bytes/turn':>10} {'vs 10-20':>10} {'new text':>9} "
        f"{'ratio':>8} {'journal':>10} {'jsonl/turn':>10} {'jsonl÷':>7} {'time':>8}"
    )
    for size in (4096, 131072):
        for turns in counts:
            with tempfile.TemporaryDirectory() as tmp:
                home = Path(tmp)
                os.environ["OLLM_HOME"] = str(home / "data")
                os.environ["XDG_CONFIG_HOME"] = str(home / "config")
                os.environ["XDG_STATE_HOME"] = str(home / "state")
                print(await measure(home / "data", size, turns), flush=True)
    print("targets: flat (within 1.2x of turns 10-20), at most 2x the new text + a fixed overhead")


if __name__ == "__main__":
    anyio.run(main, backend="asyncio")
