"""From the command to an interactive prompt: `ollm` in a pseudo-terminal against the
Ollama test server, timed from fork to the first frame that holds the prompt, to a key typed
then being echoed (the prompt accepts typing), and to the session's own toolbar (the server
asked, the model checked: ready); beside it, `python -c pass` and `ollm --version` in the
same run; then the slowest imports on the path (`python -X importtime`).

Usage: python scripts/bench_startup.py [--runs N] [--smoke]

Target: under 0.25 s to a prompt that accepts typing.
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
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _bench import parser  # noqa: E402

from tests.fakes.ollama_server import ollama_server_thread  # noqa: E402

READY = re.compile(rb"tokens[^(]*\(\d+%\)")  # the session's toolbar: the session is open
STARTING = b"starting\xe2\x80\xa6"  # "starting…": the toolbar drawn with the first prompt
CURSOR_QUERY = b"\x1b[6n"


class Times(NamedTuple):
    prompt: float
    """Fork to the first frame holding the prompt."""
    typed: float
    """Fork to the echo of a key typed as soon as the prompt showed."""
    ready: float
    """Fork to the session's toolbar."""


def to_prompt(url: str, env: dict[str, str]) -> Times:
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
    marks: dict[str, float] = {}
    try:
        while "ready" not in marks or "typed" not in marks:
            ready, _, _ = select.select([fd], [], [], 10)
            if not ready:
                raise RuntimeError(f"no prompt within 10 s: {seen[-300:]!r}")
            chunk = os.read(fd, 65536)
            if CURSOR_QUERY in chunk:  # answer as a terminal would
                os.write(fd, b"\x1b[1;1R")
            seen += chunk
            now = time.perf_counter() - start
            if "prompt" not in marks and (STARTING in seen or READY.search(seen)):
                marks["prompt"] = now
                os.write(fd, b"q")
                typed_from = len(seen)
            if "prompt" in marks and "typed" not in marks and b"q" in seen[typed_from:]:
                marks["typed"] = now
            if "ready" not in marks and READY.search(seen):
                marks["ready"] = now
        os.write(fd, b"\x03")  # Ctrl-C clears the typed key
        os.write(fd, b"\x04")  # Ctrl-D ends the session
        _drain(fd)
    finally:
        _reap(pid)
        os.close(fd)
    return Times(marks["prompt"], marks["typed"], marks["ready"])


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
        runs = [to_prompt(server.url, env) for _ in range(args.runs)]
        bare = sorted(_timed([sys.executable, "-c", "pass"], env) for _ in range(args.runs))
        version = [sys.executable, "-m", "ollm", "--version"]
        plain = sorted(_timed(version, env) for _ in range(args.runs))
        rows = [
            ("the prompt drawn", sorted(r.prompt for r in runs)),
            ("a key typed then, echoed", sorted(r.typed for r in runs)),
            ("the session ready (its toolbar)", sorted(r.ready for r in runs)),
            ("`ollm --version`", plain),
            ("`python -c pass`", bare),
        ]
        print(f"{'from the command to':<34}{'best':>8}{'median':>9}   ({args.runs} runs)")
        for name, times in rows:
            best, median = times[0] * 1e3, times[len(times) // 2] * 1e3
            print(f"{name:<34}{best:>6.0f} ms{median:>6.0f} ms")
        print("target: a key echoed (the prompt accepts typing) < 250 ms")
        report = subprocess.run(
            [
                sys.executable,
                "-X",
                "importtime",
                "-c",
                "import ollm.cli.main, ollm.cli.terminal, prompt_toolkit.shortcuts",
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        ).stderr.splitlines()
        imports = []
        for line in report:
            parts = line.split("|")
            if len(parts) == 3 and parts[1].strip().isdigit():
                imports.append((int(parts[1]), parts[2].rstrip()))
        print("slowest cumulative imports before the prompt (us):")
        for cumulative, name in sorted(imports, reverse=True)[:12]:
            print(f"  {cumulative:>8}  {name}")


def _timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=False, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
