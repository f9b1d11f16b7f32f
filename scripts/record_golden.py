"""Re-record the golden session logs in tests/golden/ (review their diffs like code).

Usage: python scripts/record_golden.py [--out DIR]

Each is a scripted session (core actors plus the scripted provider, fake clock, fixed seed);
the test suite replays every one and requires identical decisions.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import anyio

from ollm.config import Settings
from ollm.core import record_scripted
from ollm.events import (
    ConversationState,
    MemorySampled,
    ModelSelected,
    SessionOpened,
    UserSubmitted,
)

GiB = 1024**3


def opening(model: str, size: int, num_ctx: int, system: str = "") -> list[tuple[float, Any]]:
    return [
        (0.0, SessionOpened(session_id="golden", state=ConversationState(system_prompt=system))),
        (0.0, ModelSelected(model=model, size=size, num_ctx=num_ctx, how="golden")),
    ]


def scenarios() -> dict[str, list[tuple[float, Any]]]:
    """Named sessions: timed inputs."""
    words = "the quick brown fox jumps over the lazy dog " * 12
    chat: list[tuple[float, Any]] = [
        (1.0 + 2.0 * i, UserSubmitted(text=f"turn {i}: {words[: 70 * (i % 7 + 2)]}"))
        for i in range(40)
    ]
    memory: list[tuple[float, Any]] = [
        (
            1.0 + 5.0 * i,
            MemorySampled(device="nvidia:0", total_bytes=8 * GiB, free_bytes=free, source="nvml"),
        )
        for i, free in enumerate(
            int(g * GiB) for g in (4, 2, 0.6, 0.4, 0.45, 0.7, 0.9, 1.2, 1.5, 0.3, 2.0)
        )
    ]
    system = "You are a careful assistant. Answer briefly."
    mixed = sorted(chat[:24] + memory, key=lambda pair: pair[0])
    return {
        "chat-3482": opening("llama3.1:8b", 4096, 3482, system) + chat,
        "memory-8g": opening("llama3.1:8b", 8192, 6963) + memory,
        "mixed-2048": opening("qwen2.5:7b", 2048, 2048) + mixed,
    }


async def record_all(out: Path) -> None:
    for name, inputs in scenarios().items():
        path = out / f"{name}.jsonl"
        path.unlink(missing_ok=True)
        await record_scripted(path, Settings(), inputs, seed=f"golden-{name}")
        print(f"recorded {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent.parent / "tests" / "golden"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    anyio.run(record_all, args.out, backend="asyncio")


if __name__ == "__main__":
    main()
