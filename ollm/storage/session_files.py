"""Session directories on disk: `$OLLM_HOME/sessions/<id>/` (snapshots, the writer's lock),
private to the user. The sessions' records live in the journal (`journal.py`)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path


def sessions_root(home: Path) -> Path:
    return home / "sessions"


def new_session_id(now: float) -> str:
    stamp = datetime.fromtimestamp(now, tz=UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(2)}"


LEGACY_LOG = "events.jsonl"
"""What ollm recorded a session as before the journal."""


def legacy_log(home: Path, wanted: str) -> Path | None:
    """The JSON-lines log an earlier ollm kept for the session `wanted` names, if any."""
    if not wanted or "/" in wanted or wanted in (".", ".."):
        return None
    found = sorted(sessions_root(home).glob(f"{wanted}*/{LEGACY_LOG}"))
    return found[0] if len(found) == 1 else None
