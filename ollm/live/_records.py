"""The recorded sessions on this machine (`ollm sessions`): each session's log, read."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from actors import LogContents, LogError, read_log

from ..events import AnyEvent
from ..storage.session_files import list_sessions, session_log, sessions_root


@dataclass(frozen=True)
class RecordedSession:
    session_id: str
    log: LogContents | None
    problem: str = ""
    """Why the log cannot be read (then `log` is None)."""


def recorded_sessions(home: Path) -> tuple[Path, Iterator[RecordedSession]]:
    """Where sessions live, and each one there, oldest first."""

    def each() -> Iterator[RecordedSession]:
        for session_id in list_sessions(home):
            try:
                yield RecordedSession(session_id, read_log(session_log(home, session_id), AnyEvent))
            except LogError as exc:
                # The error names the file; the row names the session already.
                yield RecordedSession(session_id, None, problem=str(exc).split(", ", 1)[-1])

    return sessions_root(home), each()
