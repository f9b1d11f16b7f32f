"""The recorded sessions on this machine: `ollm sessions`, `ollm replay`, `ollm export`.

Listing and searching read the journal's index, never a history; a session is read (in
`seq` order, decoded as it is read) only to replay or export it. A JSON-lines log (an
export, a golden log, a session of an earlier version) is read as a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors import Envelope, LogContents, LogError, ReplayResult, read_log

from ..core import replay_log, tokenizer_cache
from ..events import AnyEvent, VocabularyLoaded
from ..storage.journal import (
    DATABASE,
    JournalError,
    SessionRow,
    connect,
    export_jsonl,
    find,
    read_session,
    session_rows,
    stream_session,
)

__all__ = ("SessionRow", "check_session", "export_session", "recorded_sessions", "session_log")


class RecordsError(Exception):
    """A session cannot be listed, found or read; `str()` is one sentence."""


def recorded_sessions(home: Path, search: str = "") -> list[SessionRow]:
    """Every session, oldest first, or those in which `search` was said.

    Raises:
        RecordsError: the journal cannot be read.
    """
    if not (home / DATABASE).exists():
        return []
    try:
        connection = connect(home, readonly=True)
    except JournalError as exc:
        raise RecordsError(str(exc)) from exc
    try:
        return session_rows(connection, search)
    finally:
        connection.close()


def session_log(home: Path, wanted: str) -> LogContents:
    """The session `wanted` names: a JSON-lines file if it is one, else a session id or a
    unique prefix of one in the journal.

    Raises:
        RecordsError: no such file or session, or it cannot be read.
    """
    path = Path(wanted)
    if _is_file(wanted):
        try:
            return read_log(path, AnyEvent)
        except LogError as exc:
            raise RecordsError(str(exc)) from exc
    if not (home / DATABASE).exists():
        raise RecordsError(
            f"{wanted!r} is neither a log file nor a session id (there are no sessions yet)"
        )
    try:
        connection = connect(home, readonly=True)
    except JournalError as exc:
        raise RecordsError(str(exc)) from exc
    try:
        return read_session(connection, home, find(connection, wanted), AnyEvent)
    except JournalError as exc:
        raise RecordsError(str(exc)) from exc
    finally:
        connection.close()


@dataclass(frozen=True)
class Checked:
    log: LogContents
    """The log's header and crash points."""
    result: ReplayResult
    missing: tuple[str, ...]
    """Models whose tokenizer the session counted with and this machine's cache lacks: the
    replay counted them by the estimate, so its figures may differ from the recording's."""


async def check_session(home: Path, wanted: str) -> Checked:
    """Replay the session `wanted` names (a file, or a session streamed from the journal)
    and compare its decisions.

    Raises:
        RecordsError: no such file or session, or it cannot be read.
        ValueError: its header holds settings this version cannot use.
    """
    cache = tokenizer_cache()
    missing: list[str] = []

    def observe(envelope: Envelope[Any]) -> None:
        event = envelope.event
        if isinstance(event, VocabularyLoaded) and not cache.has(event.digest):
            missing.append(f"{event.model} ({event.digest[:19]})")

    if _is_file(wanted) or not (home / DATABASE).exists():
        log = session_log(home, wanted)
        result = await replay_log(log, keep=False, observe=observe)
        return Checked(log, result, tuple(dict.fromkeys(missing)))
    try:
        connection = connect(home, readonly=True)
    except JournalError as exc:
        raise RecordsError(str(exc)) from exc
    try:
        meta, rows = stream_session(connection, home, find(connection, wanted), AnyEvent)
        result = await replay_log(meta, envelopes=rows, keep=False, observe=observe)
        return Checked(meta, result, tuple(dict.fromkeys(missing)))
    except JournalError as exc:
        raise RecordsError(str(exc)) from exc
    finally:
        connection.close()


def _is_file(wanted: str) -> bool:
    return Path(wanted).is_file() or "/" in wanted or wanted.endswith(".jsonl")


def export_session(home: Path, wanted: str, path: Path) -> LogContents:
    """Write the session `wanted` names as a JSON-lines log at `path`.

    Raises:
        RecordsError: no such session, or the file cannot be written.
    """
    contents = session_log(home, wanted)
    try:
        export_jsonl(contents, path)
    except OSError as exc:
        raise RecordsError(f"{path} cannot be written ({exc.strerror or exc})") from exc
    return contents
