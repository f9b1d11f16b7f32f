"""Snapshot save and load (with checksum verification) beside raw I/O of the same bytes.

Usage: python scripts/bench_snapshots.py [--repeats R] [--smoke]

Conversations of about 8k, 128k and 1M tokens (text from the Python standard library's own
sources, so it compresses like real code-and-prose chats). Baselines measured in the same
run on the same bytes, the conversation as uncompressed JSON: `write + fsync` of them, and
`read + blake3` of them. Targets: save <= 2x raw, load <= 2x raw, size on disk <= 40 % of
the uncompressed JSON.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import msgspec
from _bench import best, chat, corpus, parser, sizes
from blake3 import blake3

from ollm.events import ConversationState
from ollm.storage.snapshot_file import SnapshotMeta, SnapshotState
from ollm.storage.store import SnapshotStore


def conversation(text: str, tokens: int, offset: int) -> SnapshotState:
    messages = chat(text, tokens, offset=offset)
    state = ConversationState(
        system_prompt="You are a careful coding assistant.",
        messages=messages,
        next_message=len(messages) + 1,
    )
    return SnapshotState(
        conversation=state, message_tokens=tuple(len(m.content) // 4 for m in messages)
    )


def raw_write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def raw_read(path: Path) -> None:
    blake3(path.read_bytes()).digest()


def measure(root: Path, text: str, tokens: int, offset: int, repeats: int) -> str:
    state = conversation(text, tokens, offset)
    data = msgspec.json.encode(state)
    raw_path = root / f"raw-{tokens}.json"
    store = SnapshotStore(root / f"snaps-{tokens}")
    saved: list[str] = []

    def save() -> None:
        meta = SnapshotMeta(
            id=f"s{len(saved):05d}",
            session_id="bench",
            created_at=len(saved),
            model="m",
            num_ctx=tokens,
            tokens=tokens,
            messages=len(state.conversation.messages),
            compression_ratio=1.0,
            reason="manual",
        )
        saved.append(store.save(meta, state).id)

    save_s = best(save, repeats)
    write_s = best(lambda: raw_write(raw_path, data), repeats)
    load_s = best(lambda: store.load(saved[-1]), repeats)
    read_s = best(lambda: raw_read(raw_path), repeats)
    size = (store.directory / f"{saved[-1]}.snap").stat().st_size
    assert store.load(saved[-1])[1] == state
    return (
        f"{tokens:>9} {len(data) / 1e6:>7.2f}MB {size / 1e6:>7.2f}MB "
        f"{size / len(data):>6.1%}  "
        f"{save_s * 1e3:>6.2f}ms {write_s * 1e3:>9.2f}ms {save_s / write_s:>5.2f}x  "
        f"{load_s * 1e3:>6.2f}ms {read_s * 1e3:>7.2f}ms {load_s / read_s:>5.2f}x"
    )


def main() -> None:
    options = parser(__doc__)
    options.add_argument("--repeats", type=int, default=9)
    args = options.parse_args()
    if args.smoke:
        args.repeats = 1
    text = corpus()
    print(f"best of {args.repeats}; raw = the conversation as uncompressed JSON")
    print(
        f"{'tokens':>9} {'JSON':>9} {'file':>9} {'size':>6}  "
        f"{'save':>8} {'raw w+fsync':>11} {'ratio':>6}  {'load':>8} {'raw r+b3':>9} {'ratio':>6}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        cases = sizes(args.smoke, (8_000, 128_000, 1_000_000), (500, 1_000, 2_000))
        for n, tokens in enumerate(cases):
            print(measure(Path(tmp), text, tokens, n * 1_000_003, args.repeats))
    print("targets: save <= 2x, load <= 2x, size <= 40 %")


if __name__ == "__main__":
    main()
