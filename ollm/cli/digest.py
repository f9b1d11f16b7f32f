"""A recorded session as a person reads it (`ollm replay LOG`, `ollm sessions`).

The digest walks a session's log once: the model and its context, each turn (what the user
said, the reply's size, the usage after it), every notice the user was shown (thresholds
crossed, compressions, snapshots, resizes, truncation, low memory), failures and
cancellations; then the totals. Pure: a log in, lines and figures out.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from actors import Envelope, LogContents

from ..events import (
    ChatRequested,
    CompressionCompleted,
    KvTypeLearned,
    MessageAdded,
    ModelSelected,
    ReplyCancelled,
    ReplyCompleted,
    ReplyFailed,
    SessionOpened,
    SnapshotCreated,
    UsageChanged,
    UserNotified,
)
from ..live import SessionRow
from .render import learned_text, pct

PREVIEW = 60


@dataclass
class Facts:
    """What a session amounts to, for the digest's totals and the sessions list."""

    model: str = ""
    turns: int = 0
    peak_used: int = 0
    peak_limit: int = 0
    compressions: int = 0
    tokens_saved: int = 0
    snapshots: int = 0
    failures: int = 0
    cancelled: int = 0
    started_at: float = 0.0
    last_at: float = 0.0


class _Walk:
    """Folds envelopes into `Facts`, saying in words what each notable one means."""

    def __init__(self, created_at: float) -> None:
        self.facts = Facts(started_at=created_at, last_at=created_at)
        self.purpose: dict[str, str] = {}
        self.reply = ""
        """A reply's line, said with the usage that follows it."""

    def step(self, envelope: Envelope[Any]) -> list[str]:
        """The lines `envelope` adds (a reply waits for its usage figure)."""
        line = self._say(envelope)
        if line is None:
            return []
        # A reply still waiting for its usage is said on its own before anything else.
        return [*self.flush(), line]

    def flush(self) -> list[str]:
        pending, self.reply = self.reply, ""
        return [f"        {pending}"] if pending else []

    def _say(self, envelope: Envelope[Any]) -> str | None:
        facts, event = self.facts, envelope.event
        facts.started_at = facts.started_at or envelope.at
        facts.last_at = envelope.at
        match event:
            case SessionOpened(session_id=session_id, resumed=resumed, state=state):
                if resumed:
                    return f"session {session_id} resumed with {len(state.messages)} messages"
                return f"session {session_id} opened"
            case ModelSelected(model=model, num_ctx=num_ctx, how=how, warning=warning):
                facts.model = model
                line = f"model {model}, num_ctx {num_ctx}" + (f" ({how})" if how else "")
                kv = event.kv_cache_type + (f" from {event.kv_source}" if event.kv_source else "")
                return line + f", KV cache {kv}" + (f"; warning: {warning}" if warning else "")
            case KvTypeLearned():
                return f"· {learned_text(event)}"
            case ChatRequested(request_id=rid, purpose=purpose):
                self.purpose[rid] = purpose
            case MessageAdded(message=message) if message.role == "user":
                facts.turns += 1
                return f"turn {facts.turns}  you: {_preview(message.content)}"
            case ReplyCompleted(request_id=rid) if self.purpose.get(rid, "chat") == "chat":
                prompt = f" (prompt {event.prompt_eval_count})" if event.prompt_eval_count else ""
                self.reply = f"reply: {event.eval_count} tokens{prompt}"
            case ReplyFailed(message=message):
                facts.failures += 1
                return f"reply failed: {message}"
            case ReplyCancelled(partial=partial):
                facts.cancelled += 1
                return f"reply cancelled by the user after {len(partial)} characters"
            case UsageChanged(used_tokens=used, limit_tokens=limit):
                if limit and (
                    not facts.peak_limit or used / limit >= facts.peak_used / facts.peak_limit
                ):
                    facts.peak_used, facts.peak_limit = used, limit
                if self.reply:
                    reply, self.reply = self.reply, ""
                    return f"        {reply} · usage {used}/{limit} ({pct(used, limit)}%)"
            case CompressionCompleted(original_tokens=before, compressed_tokens=after):
                facts.compressions += 1
                facts.tokens_saved += max(0, before - after)
            case SnapshotCreated():
                facts.snapshots += 1
            case UserNotified(level=level, text=text):
                return f"{'!' if level != 'info' else '·'} {text}"
            case _:
                pass
        return None


def _preview(text: str) -> str:
    line = " ".join(text.split())
    if len(line) > PREVIEW:
        line = line[: PREVIEW - 1] + "…"
    return f"{line!r} ({len(text)} characters)"


def _clock(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _when(stamp: float) -> str:
    if not stamp:
        return "?"
    return datetime.fromtimestamp(stamp, tz=UTC).strftime("%Y-%m-%d %H:%M")


def digest(log: LogContents) -> Iterator[str]:
    """The session as numbered moments (time since the start), then its totals."""
    walk = _Walk(log.header.created_at)
    yield (
        f"{log.path} (ollm {log.header.app_version}, started {_when(log.header.created_at)} "
        f"UTC, {len(log.envelopes)} events)"
    )
    start = log.envelopes[0].at if log.envelopes else 0.0
    for envelope in log.envelopes:
        for line in walk.step(envelope):
            yield f"{_clock(envelope.at - start):>8}  {line}"
    for line in walk.flush():
        yield f"{_clock(walk.facts.last_at - start):>8}  {line}"
    if log.torn_line:
        yield f"(line {log.torn_line} was torn by a crash and skipped)"
    yield totals(walk.facts)


def totals(found: Facts) -> str:
    used, limit = found.peak_used, found.peak_limit
    peak = f"peak usage {used}/{limit} ({pct(used, limit)}%)" if limit else "no usage recorded"
    return (
        f"{found.turns} turns · {peak} · {found.compressions} compressions "
        f"(-{found.tokens_saved} tokens) · {found.snapshots} snapshots · "
        f"{found.failures} failed and {found.cancelled} cancelled replies · "
        f"{_clock(found.last_at - found.started_at)} long"
    )


def _printable(text: str) -> str:
    """Text that came from outside, with control characters shown as `?` (never raw)."""
    return "".join(c if c.isprintable() else "?" for c in text)


def sessions_table(rows: Sequence[SessionRow]) -> list[str]:
    """One line per session, oldest first, from the journal's index."""
    lines = [
        f"{'SESSION':<22} {'STARTED (UTC)':<17} {'MODEL':<20} {'TURNS':>5}  "
        f"{'LAST (UTC)':<17} FIRST WORDS"
    ]
    for row in rows:
        lines.append(
            f"{row.session_id:<22} {_when(row.created_at):<17} {_printable(row.model) or '?':<20} "
            f"{row.turns:>5}  {_when(row.last_at) if row.last_at else '-':<17} "
            f"{_printable(row.first_words)}"
        )
    return lines
