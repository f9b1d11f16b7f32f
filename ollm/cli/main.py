"""`ollm`: the command-line entry point."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio

from actors import LogError, read_log

from .. import __version__
from ..app import replay_log
from ..events import AnyEvent
from .timeline import timeline


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ollm",
        description="A context manager and chat REPL for local LLMs served by Ollama.",
    )
    parser.add_argument("--version", action="version", version=f"ollm {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("chat", help="start the chat REPL (the default)")
    replay = commands.add_parser(
        "replay",
        help="show a recorded session's timeline, or re-run its decisions with --check",
        description="Print a readable timeline of a session's event log.",
    )
    replay.add_argument("log", type=Path, metavar="LOG", help="a session's events.jsonl")
    replay.add_argument(
        "--check",
        action="store_true",
        help="re-run the recorded inputs and report the first decision that differs",
    )
    return parser


def _fail(message: str, code: int = 1) -> int:
    print(f"ollm: {message}", file=sys.stderr)
    return code


def _replay(path: Path, check: bool) -> int:
    try:
        log = read_log(path, AnyEvent)
    except LogError as exc:
        return _fail(str(exc))
    if not check:
        for line in timeline(log):
            print(line)
        return 0
    if log.torn_line:
        print(
            f"note: line {log.torn_line} of {path} was torn by a crash; "
            "replaying the events before it"
        )
    try:
        result = anyio.run(replay_log, log, backend="asyncio")
    except ValueError as exc:
        return _fail(f"{path}: {exc}")
    if result.divergence is not None:
        return _fail(result.divergence.describe())
    print(
        f"replay matches: {result.inputs} inputs re-run, "
        f"{result.derived} derived events identical ({path})"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except BrokenPipeError:
        # The reader went away (`ollm replay LOG | head`): not an error worth a traceback.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 0


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "replay":
        return _replay(args.log, args.check)
    return _fail(
        "the chat REPL is not built yet; for now `ollm replay LOG` is available "
        "(see `ollm --help`)",
        2,
    )


if __name__ == "__main__":
    sys.exit(main())
