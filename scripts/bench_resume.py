"""Opening recorded sessions: `ollm --resume` of a session of 200, 800 and 2,000 turns beside
a fresh start, `ollm sessions` over 10, 50 and 100 sessions beside `ollm --version`, and
`ollm replay --check` of those sessions beside reading their rows raw, all in the same run.

Usage: python scripts/bench_resume.py [--turns 200,800,2000] [--runs 3] [--smoke]

Each figure is wall time and peak memory (max RSS) of the `ollm` process, best of `--runs`,
against the Ollama test server. Targets: a resume within 1.5x of a fresh start in time and
2x (plus the conversation) in memory; `ollm sessions` over 100 sessions under 0.3 s.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
from _bench import parser

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ollm.live import recorded_sessions  # noqa: E402
from tests.fakes.ollama_server import ollama_server_thread, open_ollama_server  # noqa: E402
from tests.ollm.live import open_live  # noqa: E402

WORDS = "alpha beta gamma delta "


# A small process starts `ollm` and reports its time and peak memory: a child forked from
# this (large) benchmark process would count this one's pages in its peak.
MEASURE = """
import os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen([sys.executable, "-m", "ollm", *sys.argv[1:]],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
_, status, usage = os.wait4(child.pid, 0)
elapsed = time.perf_counter() - start
if status:
    sys.exit(child.stderr.read().decode())
print(elapsed, usage.ru_maxrss // 1024)
"""


def run(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    """(seconds, max RSS in MiB) of one `ollm` run."""
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode:
        raise RuntimeError(f"ollm {' '.join(args)} failed: {result.stderr!r}")
    seconds, mib = result.stdout.split()
    return float(seconds), int(mib)


def best(args: list[str], env: dict[str, str], runs: int) -> tuple[float, int]:
    results = [run(args, env) for _ in range(runs)]
    return min(r[0] for r in results), min(r[1] for r in results)


async def record(turns: int) -> str:
    async with open_ollama_server() as server, open_live(server, size=4096) as live:
        for t in range(turns):
            await live.say(f"turn {t}: " + WORDS * 30)
        return live.session.session_id


def raw_read(home: Path, session: str) -> float:
    start = time.perf_counter()
    db = sqlite3.connect(home / "sessions.db")
    number = db.execute("SELECT number FROM sessions WHERE id = ?", (session,)).fetchone()[0]
    rows = db.execute("SELECT body FROM events WHERE session = ?", (number,)).fetchall()
    db.execute("SELECT body FROM texts").fetchall()
    db.close()
    assert rows
    return time.perf_counter() - start


def main() -> None:
    options = parser(__doc__)
    options.add_argument("--turns", default="200,800,2000")
    options.add_argument("--runs", type=int, default=3)
    args = options.parse_args()
    counts = [20] if args.smoke else [int(n) for n in args.turns.split(",")]
    listings = [3] if args.smoke else [10, 50, 100]
    runs = 1 if args.smoke else args.runs
    with tempfile.TemporaryDirectory() as tmp, ollama_server_thread() as server:
        home = Path(tmp) / "data"
        env = {
            **os.environ,
            "OLLM_HOME": str(home),
            "XDG_CONFIG_HOME": f"{tmp}/config",
            "XDG_STATE_HOME": f"{tmp}/state",
            "PYTHONPATH": str(ROOT),
        }
        os.environ.update({k: env[k] for k in ("OLLM_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME")})
        host = ["--host", server.url]
        fresh = best(["-p", "hi", *host, "-m", "llama3.1:8b"], env, runs)
        print(f"fresh start (ollm -p): {fresh[0] * 1e3:.0f} ms, {fresh[1]} MiB")
        print(
            f"{'turns':>6} {'resume':>10} {'vs fresh':>9} {'memory':>8} {'vs fresh':>9}"
            f" {'replay --check':>15} {'MiB':>6} {'raw read':>9}"
        )
        for turns in counts:
            session = anyio.run(record, turns, backend="asyncio")
            resumed = best(["-p", "hi", *host, "--resume", session], env, runs)
            check = best(["replay", "--check", session], env, runs)
            raw = min(raw_read(home, session) for _ in range(runs))
            print(
                f"{turns:>6} {resumed[0] * 1e3:>8.0f}ms {resumed[0] / fresh[0]:>8.2f}x "
                f"{resumed[1]:>6}Mi {resumed[1] / fresh[1]:>8.2f}x {check[0] * 1e3:>13.0f}ms "
                f"{check[1]:>6} {raw * 1e3:>7.1f}ms"
            )
        version = best(["--version"], env, runs)
        print(f"ollm --version: {version[0] * 1e3:.0f} ms")
        made = len(recorded_sessions(home))
        for wanted in listings:
            while made < wanted:
                anyio.run(record, 1, backend="asyncio")
                made += 1
            listed = best(["sessions"], env, runs)
            print(
                f"ollm sessions over {made} sessions: {listed[0] * 1e3:.0f} ms "
                f"({listed[0] / version[0]:.2f}x ollm --version), {listed[1]} MiB"
            )
    print("targets: resume <= 1.5x a fresh start, memory <= 2x; sessions over 100 < 300 ms")


if __name__ == "__main__":
    main()
