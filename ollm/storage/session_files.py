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


def private_dir(path: Path, inside: Path | None = None) -> Path:
    """Create `path` (and missing parents) readable by the user only (0700).

    Raises:
        OSError: it cannot be created, or it (or a directory between `inside` and it) is
            a symbolic link: nothing follows a link out of ollm's directories.
    """
    for parent in reversed([path, *path.parents]):
        mine = parent == path or (inside is not None and inside in parent.parents)
        if mine and parent.is_symlink():
            raise OSError(f"{parent} is a symbolic link; ollm does not follow links; remove it")
        if not parent.exists():
            parent.mkdir(mode=0o700)
    path.chmod(0o700)
    return path


LEGACY_LOG = "events.jsonl"
"""What ollm recorded a session as before the journal."""


def legacy_log(home: Path, wanted: str) -> Path | None:
    """The JSON-lines log an earlier ollm kept for the session `wanted` names, if any."""
    if not wanted or "/" in wanted or wanted in (".", ".."):
        return None
    found = sorted(sessions_root(home).glob(f"{wanted}*/{LEGACY_LOG}"))
    return found[0] if len(found) == 1 else None
