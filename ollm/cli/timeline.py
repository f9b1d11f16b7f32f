"""A readable timeline of a recorded session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from actors import Envelope, LogContents


def _fields(event: object) -> str:
    data = msgspec.to_builtins(event)
    assert isinstance(data, dict)
    data.pop("kind", None)
    parts = []
    for key, value in data.items():
        text = repr(value) if isinstance(value, str) else str(value)
        if len(text) > 60:
            text = text[:57] + "..."
        parts.append(f"{key}={text}")
    return " ".join(parts)


def _kind(envelope: Envelope[Any]) -> str:
    tag = type(envelope.event).__struct_config__.tag
    return tag if isinstance(tag, str) else type(envelope.event).__name__


def timeline(log: LogContents) -> Iterator[str]:
    """One line per envelope: seq, seconds since the start, source, kind, fields."""
    header = log.header
    yield (
        f"session log {log.path} (ollm {header.app_version}, "
        f"config {header.config_digest}, {len(log.envelopes)} events)"
    )
    start = log.envelopes[0].at if log.envelopes else header.created_at
    for envelope in log.envelopes:
        yield (
            f"{envelope.seq:>6}  +{envelope.at - start:8.2f}s  {envelope.source:<14} "
            f"{_kind(envelope):<20} {_fields(envelope.event)}"
        )
    if log.torn_line:
        yield (
            f"(line {log.torn_line} was torn by a crash and skipped; every complete event is above)"
        )
