"""Sessions on disk: `$OLLM_HOME/sessions/<id>/events.jsonl`, private to the user.

(The conversation a log ends with is folded by `conversation.resumed`.)"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path

LOG_NAME = "events.jsonl"


class SessionError(ValueError):
    """A session cannot be found or read; `str()` is one sentence for the user."""


def sessions_root(home: Path) -> Path:
    return home / "sessions"


def new_session_id(now: float) -> str:
    stamp = datetime.fromtimestamp(now, tz=UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(2)}"


def session_log(home: Path, session_id: str) -> Path:
    return sessions_root(home) / session_id / LOG_NAME


def list_sessions(home: Path) -> list[str]:
    """Session ids with a log, oldest first."""
    root = sessions_root(home)
    if not root.is_dir():
        return []
    found = [p.parent.name for p in root.glob(f"*/{LOG_NAME}")]
    return sorted(found)


def find_session(home: Path, wanted: str | None) -> str:
    """The session `wanted` names (an id or an unambiguous prefix), or the newest one.

    Raises:
        SessionError: none, or no match, or more than one match.
    """
    ids = list_sessions(home)
    if not ids:
        raise SessionError(f"there is no session to resume in {sessions_root(home)}")
    if not wanted:
        return ids[-1]
    if "/" in wanted or "\\" in wanted or wanted in (".", ".."):
        raise SessionError(f"{wanted!r} is not a session id; `ollm sessions` lists them")
    matches = [i for i in ids if i.startswith(wanted)]
    if not matches:
        raise SessionError(f"no session id starts with {wanted!r}; `ollm sessions` lists them")
    if len(matches) > 1 and wanted not in matches:
        raise SessionError(
            f"{wanted!r} matches {len(matches)} sessions ({', '.join(matches[:3])}…); "
            "type more of the id"
        )
    return wanted if wanted in matches else matches[0]


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) readable by the user only (0700)."""
    for parent in reversed([path, *path.parents]):
        if not parent.exists():
            parent.mkdir(mode=0o700)
    path.chmod(0o700)
    return path
