"""Text the REPL prints: the status box, the toolbar, stats, snapshot lists (pure)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from ..anchors import RANKS
from ..events import CompressionCompleted, KvTypeLearned
from ..live import SnapshotMeta, Status
from ..memory import format_bytes, format_bytes_of
from ..server_setup import a_cache
from ..tokens import METHODS

SPARKS = "▁▂▃▄▅▆▇█"
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
BOX_WIDTH = 56
BOX_TEXT_MAX = 72
"""A longer status line is wrapped, so the box fits an 80-column terminal."""


def pct(part: float, whole: float) -> int:
    return round(100 * part / whole) if whole else 0


def _memory(status: Status) -> tuple[bool, int, int] | None:
    """(a GPU, not the host; bytes used; bytes in all) of the device that fills first."""
    device = status.gpu()
    if device is None:
        return None
    return device.device != "host", device.total_bytes - device.free_bytes, device.total_bytes


def status_lines(status: Status) -> list[str]:
    lines = [
        f"Model: {status.model}",
        f"Context: {status.used:,} / {status.limit:,} tokens ({pct(status.used, status.limit)}%)",
    ]
    memory = _memory(status)
    if memory is None:
        source = (
            "reported by Ollama only" if status.memory_source == "ollama" else "not sampled yet"
        )
        lines.append(f"VRAM: {source}")
    else:
        gpu, used, total = memory
        label = "VRAM" if gpu else "Memory (host)"
        lines.append(f"{label}: {format_bytes_of(used, total)} ({pct(used, total)}%)")
    kv = status.kv_bytes()
    shown = f" ({format_bytes(kv)})" if kv is not None else ""
    slots = status.selected.parallel if status.selected else 1
    shown += f" per slot, {slots} slots" if slots > 1 else ""
    source = f", from {status.kv_source}" if status.kv_source else ""
    lines.append(f"KV Cache: {status.kv_type}{shown}{source}")
    lines.append(f"Snapshots: {status.snapshots} available")
    if status.compression_enabled:
        lines.append(f"Auto-compress: enabled at {round(status.compress_at * 100)}%")
    else:
        lines.append("Auto-compress: disabled")
    return lines


def status_box(status: Status, columns: int = 80) -> str:
    """The status box, no wider than `columns` (the terminal's width): long lines wrap."""
    text_max = max(16, min(BOX_TEXT_MAX, columns - 4))
    lines = [
        part
        for line in status_lines(status)
        for part in textwrap.wrap(line, text_max, subsequent_indent="  ") or [""]
    ]
    width = max(min(BOX_WIDTH, columns), max(len(line) for line in lines) + 4)
    title = "─ Context Status "
    top = "┌" + title + "─" * (width - 2 - len(title)) + "┐"
    body = [f"│ {line:<{width - 4}} │" for line in lines]
    return "\n".join([top, *body, "└" + "─" * (width - 2) + "┘"])


def toolbar(status: Status, now: float) -> str:
    parts = [
        status.model,
        f"{status.used:,} / {status.limit:,} tokens ({pct(status.used, status.limit)}%)",
    ]
    memory = _memory(status)
    if memory is not None:
        gpu, used, total = memory
        parts.append(f"{'VRAM' if gpu else 'RAM'} {format_bytes_of(used, total)}")
    if status.warming:
        parts.append("warming up the model…")
    elif status.reading_vocabulary:
        parts.append("reading the model's vocabulary…")
    if status.compressing_since is not None:
        elapsed = max(0.0, now - status.compressing_since)
        parts.append(f"{SPINNER[int(elapsed * 8) % len(SPINNER)]} compressing {elapsed:.0f}s")
    return " │ ".join(parts)


def sparkline(values: Sequence[int], top: int) -> str:
    if not values:
        return "(no turns yet)"
    top = top or max(values) or 1
    return "".join(SPARKS[min(len(SPARKS) - 1, v * len(SPARKS) // (top + 1))] for v in values)


def stats(status: Status) -> str:
    acc = status.ledger.accounting
    conversation = status.ledger.conversation
    lines = ["Context statistics", ""]
    lines.append(f"{'message':<10}{'role':<11}{'tokens':>8}  text")
    for message in conversation.prompt_messages():
        counted = acc.messages.get(message.id)
        tokens = counted.tokens(acc.factor) if counted else 0
        text = " ".join(message.content.split())[:44]
        lines.append(f"{message.id:<10}{message.role:<11}{tokens:>8}  {text}")
    cache = acc.counting_cache
    method = acc.method()
    counting = METHODS[method]
    if method in ("calibrated", "estimated"):
        counting += f"; calibration factor {acc.factor:.3f} (tokens per estimated token)"
        if status.vocabulary_unavailable:
            counting += f"; the vocabulary: {status.vocabulary_unavailable}"
    lines += [
        "",
        f"total: {status.used:,} of {status.limit:,} tokens ({pct(status.used, status.limit)}%) "
        f"for {status.model}",
        f"counting: {counting}",
        f"exact correction from Ollama's last count: {acc.correction:+d} tokens",
        f"count cache: {cache.hits} hits, {cache.misses} misses ({cache.hit_rate:.0%} hit rate)",
        f"usage per turn: {sparkline(list(status.usage_per_turn), status.limit)}",
        "compressions:",
    ]
    if not status.compressions:
        lines.append("  none yet")
    for c in status.compressions:
        if isinstance(c, CompressionCompleted):
            lines.append(
                f"  {c.ref}: {c.strategy}, {c.original_tokens:,} → {c.compressed_tokens:,} "
                f"tokens ({len(c.covered_ids)} messages), snapshot {c.snapshot_id or '-'}"
            )
        else:
            lines.append(f"  {c.ref}: failed: {c.message}")
    ranks = {a.text: a.rank for a in conversation.ledger}
    lines.append(
        f"pinned facts: {len(conversation.pinned)} of {len(conversation.ledger)} in the ledger "
        "(the user's rules and facts first, then pasted text, then replies; none that the "
        "summary already carries)"
    )
    for fact in conversation.pinned:
        rank = ranks.get(fact)
        why = RANKS[rank] if rank is not None else "kept"
        lines.append(f"  [{why}] {' '.join(fact.split())[:70]}")
    return "\n".join(lines)


def ago(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m ago"
    if seconds < 86400:
        return f"{seconds / 3600:.0f}h ago"
    return f"{seconds / 86400:.0f}d ago"


def snapshot_list(snapshots: Sequence[SnapshotMeta], problems: Sequence[str], now: float) -> str:
    if not snapshots and not problems:
        return "no snapshots yet; `/context snapshot` saves one"
    lines = [
        f"{i:>3}. {m.id:<8} {m.reason:<15} {ago(now - m.created_at):>9}  "
        f"{m.tokens:,} tokens, {m.messages} messages" + (f"  {m.name!r}" if m.name else "")
        for i, m in enumerate(snapshots, start=1)
    ]
    lines += [f"  ! {p}" for p in problems]
    return "\n".join(lines)


def learned_text(event: KvTypeLearned) -> str:
    return (
        f"{event.source} rules out the {event.assumed} KV cache sizing assumed for "
        f"{event.model}: the server runs {a_cache(event.kv_cache_type)} cache, and sizing "
        "follows it"
    )
