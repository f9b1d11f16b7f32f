"""What the benchmarks share: a best-of timer and a corpus of real text cut into messages."""

from __future__ import annotations

import argparse
import glob
import os
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ollm.events import Message, Role


def parser(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's argument parser, with `--smoke`: tiny sizes and one repeat, so that the
    test suite runs every benchmark in seconds and none can rot unnoticed."""
    out = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    out.add_argument(
        "--smoke", action="store_true", help="tiny sizes, one repeat: checks that it runs"
    )
    return out


def sizes(smoke: bool, full: tuple[int, ...], tiny: tuple[int, ...]) -> tuple[int, ...]:
    """The sizes a benchmark measures at: three growing ones, or tiny ones in smoke mode."""
    return tiny if smoke else full


def best(fn: Callable[[], Any], repeats: int) -> float:
    """The fastest of `repeats` calls of `fn`, in seconds."""
    result = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        result = min(result, time.perf_counter() - start)
    return result


def corpus() -> str:
    """The Python standard library's own sources: code and prose, as chats hold."""
    paths = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))
    return "".join(Path(p).read_text(encoding="utf-8", errors="replace") for p in paths)


def chat(
    text: str, tokens: int, *, offset: int = 0, smallest: int = 400, spread: int = 3600
) -> tuple[Message, ...]:
    """About `tokens` tokens (4 characters each) of `text` from `offset`, as alternating user
    and assistant messages of `smallest` to `smallest + spread` characters."""
    out: list[Message] = []
    pos, chars, i = offset, tokens * 4, 0
    while chars > 0:
        size = min(chars, smallest + (i * 7919) % spread)
        if pos + size > len(text):
            pos = 0
        role: Role = "user" if i % 2 == 0 else "assistant"
        out.append(Message(id=f"m{i + 1}", role=role, content=text[pos : pos + size]))
        pos, chars, i = pos + size, chars - size, i + 1
    return tuple(out)
