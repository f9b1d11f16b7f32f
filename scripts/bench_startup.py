"""From the command to an interactive prompt: `ollm` in a pseudo-terminal against the
Ollama test server, timed until the prompt shows; beside it, `python -c pass` in the same
run; then the slowest imports on that path (`python -X importtime`).

Usage: python scripts/bench_startup.py [--runs N] [--smoke]

Target: under 0.5 s to the prompt.
"""

from __future__ import annotations

import compileall
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _bench import parser  # noqa: E402

from tests.fakes.ollama_server import ollama_server_thread  # noqa: E402

TOOLBAR = re.compile(rb"tokens[^(]*\(\d+%\)")  # the bottom toolbar: drawn with the prompt
CURSOR_QUERY = b"\x1b[6n"


def to_prompt(url: str, env: dict[str, str]) -> float:
    """Seconds from fork to the first frame holding the prompt's toolbar."""
    start = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(
            sys.executable,
            [sys.executable, "-m", "ollm", "--host", url, "-m", "llama3.1:8b"],
            env,
        )
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    seen = b""
    try:
        while not TOOLBAR.search(seen):
            ready, _, _ = select.select([fd], [], [], 10)
            if not ready:
                raise RuntimeError(f"no prompt within 10 s: {seen[-300:]!r}")
            chunk = os.read(fd, 65536)
            if CURSOR_QUERY in chunk:  # answer as a terminal would
                os.write(fd, b"\x1b[1;1R")
            seen += chunk
        elapsed = time.perf_counter() - start
        os.write(fd, b"\x04")  # Ctrl-D ends the session
        _drain(fd)
    finally:
        _reap(pid)
        os.close(fd)
    return elapsed


def _reap(pid: int) -> None:
    """Wait for the child; a child that has not ended 5 s after Ctrl-D is killed, loudly."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        time.sleep(0.05)
    print("warning: ollm did not end on Ctrl-D; killed it", file=sys.stderr)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _drain(fd: int) -> None:
    while True:
        ready, _, _ = select.select([fd], [], [], 2)
        if not ready:
            return
        try:
            if not os.read(fd, 65536):
                return
        except OSError:
            return


def main() -> None:
    options = parser(__doc__)
    options.add_argument("--runs", type=int, default=7)
    args = options.parse_args()
    if args.smoke:
        args.runs = 1
    # An installed ollm runs from bytecode; compile it once so the figure does not include
    # compiling every module (this sandbox sets PYTHONDONTWRITEBYTECODE).
    compileall.compile_dir(ROOT / "ollm", quiet=1)
    compileall.compile_dir(ROOT / "actors", quiet=1)
    with tempfile.TemporaryDirectory() as tmp, ollama_server_thread() as server:
        env = {
            **os.environ,
            "OLLM_HOME": f"{tmp}/home",
            "XDG_CONFIG_HOME": f"{tmp}/config",
            "XDG_STATE_HOME": f"{tmp}/state",
            "TERM": "xterm-256color",
            "PYTHONPATH": str(ROOT),
        }
        times = sorted(to_prompt(server.url, env) for _ in range(args.runs))
        bare = min(_timed([sys.executable, "-c", "pass"], env) for _ in range(args.runs))
        best, median = times[0] * 1e3, times[len(times) // 2] * 1e3
        print(
            f"to the prompt: best {best:.0f} ms, median {median:.0f} ms "
            f"(python -c pass: {bare * 1e3:.0f} ms); target < 500 ms"
        )
        report = subprocess.run(
            [
                sys.executable,
                "-X",
                "importtime",
                "-c",
                "import ollm.cli.main, ollm.cli.chat, ollm.cli.repl",
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        ).stderr.splitlines()
        rows = []
        for line in report:
            parts = line.split("|")
            if len(parts) == 3 and parts[1].strip().isdigit():
                rows.append((int(parts[1]), parts[2].rstrip()))
        print("slowest cumulative imports on that path (us):")
        for cumulative, name in sorted(rows, reverse=True)[:12]:
            print(f"  {cumulative:>8}  {name}")


def _timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=False)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
