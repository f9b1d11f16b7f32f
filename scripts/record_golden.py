"""Re-record the golden session logs in tests/golden/ (review their diffs like code).

Usage: python scripts/record_golden.py [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import anyio

from ollm.app import RunConfig, record_scripted
from ollm.events import MemorySampled, UserSubmitted

GiB = 1024**3


def scenarios() -> dict[str, tuple[RunConfig, list[tuple[float, object]]]]:
    """Named sessions: a run configuration and its timed inputs."""
    words = "the quick brown fox jumps over the lazy dog " * 12
    chat: list[tuple[float, object]] = [
        (2.0 * i, UserSubmitted(text=f"turn {i}: {words[: 70 * (i % 7 + 2)]}")) for i in range(40)
    ]
    memory: list[tuple[float, object]] = [
        (
            5.0 * i,
            MemorySampled(device="nvidia:0", total_bytes=8 * GiB, free_bytes=free, source="nvml"),
        )
        for i, free in enumerate(
            int(g * GiB) for g in (4, 2, 0.6, 0.4, 0.45, 0.7, 0.9, 1.2, 1.5, 0.3, 2.0)
        )
    ]
    mixed = sorted(chat[:24] + memory, key=lambda pair: pair[0])
    return {
        "chat-3482": (RunConfig(num_ctx=3482, model="llama3.1:8b"), chat),
        "memory-8g": (RunConfig(num_ctx=8192, model="llama3.1:8b"), memory),
        "mixed-2048": (RunConfig(num_ctx=2048, model="qwen2.5:7b"), mixed),
    }


async def record_all(out: Path) -> None:
    for name, (run, inputs) in scenarios().items():
        path = out / f"{name}.jsonl"
        path.unlink(missing_ok=True)
        await record_scripted(path, run, inputs, seed=f"golden-{name}")
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
