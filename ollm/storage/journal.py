"""The sessions journal: every session's recorded events in one SQLite database.

`$OLLM_HOME/sessions.db`, WAL journal mode, private to the user (0600 in 0700 directories).
It is the only record of a user's conversations, so it follows the rules of a database:

- **Atomic batches.** The recorder hands over what it buffered; each batch is one
  transaction, so a kill at any instant leaves a prefix of the session's envelopes, never a
  torn record.
- **Linear growth.** A text of `SHARED_TEXT` characters or more is stored once, by its
  blake3, and events refer to it; a list that repeats the same event kind's previous list
  (the prompt a `chat.requested` carries) stores only what is new after their common prefix.
  A reply's streamed chunks are kept only until the reply is complete (the completed reply
  holds the whole text), so a turn adds what is new, not the whole prompt.
- **An index.** One row per session (start, model, turns, last activity, first words) kept
  in the same transaction as its events, and a full-text index of what was said (FTS5):
  listing and searching never read histories.
- **One writer per session**: `SessionLock`, an exclusive lock file held while a session is
  open; a second process is refused in one sentence naming the first.
- **Contained**: nothing under `OLLM_HOME` that is a symbolic link is followed.

JSON lines stay the export format (`export_jsonl`), which `actors.read_log` reads.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from blake3 import blake3

from actors import Envelope, LogContents, LogHeader

from ..events import ConversationState
from .session_files import sessions_root

DATABASE = "sessions.db"
SHARED_TEXT = 48
"""Texts at least this long are stored once and referred to."""
SHARED_PREFIX = 2
"""A list shares its previous value's prefix when at least this many items are the same."""
TEXT_KEY, PREFIX_KEY, REST_KEY = "$t", "$p", "$r"
CHUNK = "reply.chunk"
REPLY_ENDS = ("reply.completed", "reply.failed", "reply.cancelled")
CALIBRATED = "usage.calibrated"
"""Its latest per model is also kept in `calibrations`, for the next session's estimates."""
NOTIFIED = "user.notified"
"""One with a `once` key is also kept in `told`, so that it is not given again."""
TEXT_CACHE = 4096
"""Texts kept decoded while a session is read."""
SAID = {"user", "assistant"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    number INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    header BLOB NOT NULL,
    created_at REAL NOT NULL,
    model TEXT NOT NULL DEFAULT '',
    turns INTEGER NOT NULL DEFAULT 0,
    last_at REAL NOT NULL DEFAULT 0,
    last_seq INTEGER NOT NULL DEFAULT 0,
    first_words TEXT NOT NULL DEFAULT '',
    closed INTEGER NOT NULL DEFAULT 0,
    crashes BLOB NOT NULL DEFAULT '[]',
    checkpoint BLOB
);
CREATE TABLE IF NOT EXISTS texts (
    id INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    session INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    at REAL NOT NULL,
    source TEXT NOT NULL,
    causation INTEGER,
    kind TEXT NOT NULL,
    ref TEXT NOT NULL DEFAULT '',
    body BLOB NOT NULL,
    PRIMARY KEY (session, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chunks ON events (session, ref) WHERE kind = 'reply.chunk';
CREATE VIRTUAL TABLE IF NOT EXISTS said USING fts5(session UNINDEXED, body);
CREATE TABLE IF NOT EXISTS calibrations (
    model TEXT PRIMARY KEY,
    factor REAL NOT NULL,
    extra INTEGER NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS told (
    key TEXT PRIMARY KEY,
    at REAL NOT NULL
);
"""
"""`events.body` is the event in MessagePack, its long texts referred to in `texts` and its
lists cut to what is new (see the module's docstring); `events.session` is the session's
`number`.
"""


class JournalError(Exception):
    """The journal cannot be used; `str()` is one sentence saying why and what to do."""


def explain(exc: BaseException, path: Path) -> JournalError:
    """One sentence for what SQLite or the operating system said."""
    text = str(exc).lower()
    if "full" in text or getattr(exc, "errno", None) == 28:
        why = "the disk is full; free some space and run ollm again"
    elif "readonly" in text or "read-only" in text or isinstance(exc, PermissionError):
        why = "it cannot be written (read-only, or not yours); check OLLM_HOME's permissions"
    elif "locked" in text or "busy" in text:
        why = "another program holds it locked; try again once it lets go"
    elif "not a database" in text or "malformed" in text or "corrupt" in text:
        why = (
            "it is damaged; move it aside (your sessions in it are lost to ollm, the snapshot "
            "files next to it are not) and run ollm again"
        )
    else:
        why = f"{exc}"
    return JournalError(f"the sessions journal {path} cannot be used: {why}")


def refuse_links(home: Path, *paths: Path) -> None:
    """Refuse any of `paths` (inside `home`) that is a symbolic link.

    Raises:
        JournalError: one of them is a link.
    """
    for path in paths:
        if path.is_symlink():
            raise JournalError(
                f"{path} is a symbolic link; ollm does not follow links out of its data "
                f"directory {home}; remove the link"
            )


def private_home(home: Path) -> None:
    """Create `home` (0700) if needed, refusing links inside it."""
    refuse_links(home, home / DATABASE, home / f"{DATABASE}-wal", home / f"{DATABASE}-shm")
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise explain(exc, home / DATABASE) from exc


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    """The conversation a session ended with, as its events fold it, and its model."""

    state: ConversationState
    model: str = ""


@dataclass(frozen=True)
class SessionRow:
    """A session as the index knows it (no history read)."""

    session_id: str
    created_at: float
    model: str
    turns: int
    last_at: float
    first_words: str
    closed: bool


# --- encoding -------------------------------------------------------------------------------


def _shared(value: Any, put: Any) -> Any:
    """`value` with every long text replaced by a reference to its stored copy."""
    if isinstance(value, str):
        return {TEXT_KEY: put(value)} if len(value) >= SHARED_TEXT else value
    if isinstance(value, list | tuple):  # msgspec gives tuples as tuples
        return [_shared(v, put) for v in value]
    if isinstance(value, dict):
        return {k: _shared(v, put) for k, v in value.items()}
    return value


def _delta(value: Any, previous: Any) -> Any:
    """`value` with each list that starts like the same path's previous list cut to what is
    new after their common prefix."""
    if isinstance(value, list) and isinstance(previous, list):
        same = 0
        for mine, theirs in zip(value, previous, strict=False):
            if mine != theirs:
                break
            same += 1
        if same >= SHARED_PREFIX:
            return {PREFIX_KEY: same, REST_KEY: value[same:]}
        return value
    if isinstance(value, dict) and isinstance(previous, dict):
        return {k: _delta(v, previous.get(k)) for k, v in value.items()}
    return value


def _undelta(value: Any, previous: Any) -> Any:
    if isinstance(value, dict) and PREFIX_KEY in value:
        return [*previous[: value[PREFIX_KEY]], *value[REST_KEY]]
    if isinstance(value, dict) and TEXT_KEY not in value:
        prior = previous if isinstance(previous, dict) else {}
        return {k: _undelta(v, prior.get(k)) for k, v in value.items()}
    return value


def _texts_in(value: Any, found: set[int]) -> None:
    if isinstance(value, dict):
        if TEXT_KEY in value:
            found.add(value[TEXT_KEY])
            return
        for v in value.values():
            _texts_in(v, found)
    elif isinstance(value, list):
        for v in value:
            _texts_in(v, found)


def _resolve(value: Any, texts: dict[int, str]) -> Any:
    if isinstance(value, dict):
        if TEXT_KEY in value:
            return texts[value[TEXT_KEY]]
        return {k: _resolve(v, texts) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, texts) for v in value]
    return value


def _kind(event: Any) -> str:
    tag = event.__struct_config__.tag if isinstance(event, msgspec.Struct) else None
    return tag if isinstance(tag, str) else type(event).__name__


# --- the database ---------------------------------------------------------------------------


def connect(home: Path, *, readonly: bool = False, timeout: float = 5.0) -> sqlite3.Connection:
    """A connection to the journal (created private to the user unless `readonly`).

    Raises:
        JournalError: it cannot be opened, created or read.
    """
    path = home / DATABASE
    private_home(home)
    try:
        if readonly:
            if not path.exists():
                raise JournalError(f"there are no sessions yet in {home}; `ollm` starts one")
            connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)
        else:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            os.close(fd)
            connection = sqlite3.connect(path, timeout=timeout, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.executescript(SCHEMA)
        connection.execute("SELECT count(*) FROM sessions").fetchone()
    except (sqlite3.Error, OSError) as exc:
        raise explain(exc, path) from exc
    return connection


class SessionWriter:
    """Appends one session's envelopes, a transaction per batch (the recorder's sink)."""

    def __init__(self, connection: sqlite3.Connection, home: Path, session_id: str) -> None:
        self.connection = connection
        self.path = home / DATABASE
        self.session_id = session_id
        self.number = _number(connection, session_id)
        self._text_ids: dict[bytes, int] = {}
        self._previous: dict[str, Any] = {}
        self.failed: JournalError | None = None

    def _put_text(self, text: str, fresh: dict[bytes, int]) -> int:
        key = blake3(text.encode()).digest(length=16)
        known = self._text_ids.get(key) or fresh.get(key)
        if known is not None:
            return known
        row = self.connection.execute(
            "INSERT INTO texts (hash, body) VALUES (?, ?) ON CONFLICT (hash) DO UPDATE "
            "SET hash = excluded.hash RETURNING id",
            (key, text),
        ).fetchone()
        fresh[key] = int(row[0])
        return fresh[key]

    def append(self, envelopes: Sequence[Envelope[Any]]) -> None:
        """Write a batch atomically.

        Raises:
            JournalError: the disk is full, read-only or the database damaged; nothing of
                the batch was written, and what was written before is intact. (Once it
                failed, later batches are dropped: the run is stopping.)
        """
        if not envelopes or self.failed is not None:
            return
        fresh: dict[bytes, int] = {}
        previous = dict(self._previous)
        db = self.connection
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                self._write(envelopes, fresh, previous)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            self.failed = explain(exc, self.path)
            raise self.failed from exc
        self._text_ids.update(fresh)
        self._previous = previous

    def _write(
        self, envelopes: Sequence[Envelope[Any]], fresh: dict[bytes, int], previous: dict[str, Any]
    ) -> None:
        db, session = self.connection, self.number
        turns, model, first = 0, None, None
        rows = []
        ended = {
            getattr(e.event, "request_id", "") for e in envelopes if _kind(e.event) in REPLY_ENDS
        }
        for envelope in envelopes:
            event = envelope.event
            kind = _kind(event)
            plain = _shared(msgspec.to_builtins(event), lambda t: self._put_text(t, fresh))
            body = plain if kind == CHUNK else _delta(plain, previous.get(kind))
            if kind != CHUNK:
                previous[kind] = plain
            ref = getattr(event, "request_id", "") if kind == CHUNK or kind in REPLY_ENDS else ""
            if kind == CHUNK and ref in ended:
                continue  # the completed reply in this batch holds its text
            rows.append(
                (
                    session,
                    envelope.seq,
                    envelope.at,
                    envelope.source,
                    envelope.causation,
                    kind,
                    ref,
                    msgspec.msgpack.encode(body),
                )
            )
            if kind in REPLY_ENDS:
                db.execute(
                    "DELETE FROM events WHERE session = ? AND kind = ? AND ref = ?",
                    (session, CHUNK, ref),
                )
            message = getattr(event, "message", None)
            if kind == "message.added" and message is not None and message.role in SAID:
                db.execute(
                    "INSERT INTO said (session, body) VALUES (?, ?)", (session, message.content)
                )
                if message.role == "user":
                    turns += 1
                    first = first if first is not None else message.content
            if kind == "model.selected":
                model = getattr(event, "model", "")
            if kind == CALIBRATED:
                db.execute(
                    "INSERT OR REPLACE INTO calibrations VALUES (?, ?, ?, ?)",
                    (event.model, event.factor, event.extra, envelope.at),
                )
            if kind == NOTIFIED and event.once:
                db.execute("INSERT OR IGNORE INTO told VALUES (?, ?)", (event.once, envelope.at))
        db.executemany("INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        last = envelopes[-1]
        db.execute(
            "UPDATE sessions SET turns = turns + ?, last_at = ?, last_seq = ?, "
            "model = coalesce(?, model), closed = 0, "
            "first_words = CASE WHEN first_words = '' THEN coalesce(?, '') ELSE first_words END "
            "WHERE number = ?",
            (turns, last.at, last.seq, model, _first_words(first), session),
        )

    def close(self, checkpoint: Checkpoint | None = None) -> None:
        """Mark the session closed cleanly (everything it did is written), keeping the
        conversation it ended with, so that resuming it reads no history."""
        if self.failed is not None:
            return
        saved = msgspec.msgpack.encode(checkpoint) if checkpoint is not None else None
        with contextlib.suppress(sqlite3.Error):
            self.connection.execute(
                "UPDATE sessions SET closed = 1, checkpoint = ? WHERE id = ?",
                (saved, self.session_id),
            )


def _number(connection: sqlite3.Connection, session_id: str) -> int:
    row = connection.execute("SELECT number FROM sessions WHERE id = ?", (session_id,)).fetchone()
    if row is None:
        raise JournalError(f"there is no session {session_id!r}; `ollm sessions` lists them")
    return int(row[0])


def _first_words(text: str | None) -> str | None:
    if text is None:
        return None
    words = " ".join(text.split())
    return words if len(words) <= 60 else words[:59] + "…"


def create_session(
    connection: sqlite3.Connection, home: Path, header: LogHeader, new_id: Callable[[], str]
) -> str:
    """Add a new session (with its `header`) under a fresh id from `new_id`; an id taken
    already (two sessions started in the same second) is drawn again.

    Raises:
        JournalError: the journal cannot be written.
    """
    for _ in range(20):
        session_id = new_id()
        try:
            connection.execute(
                "INSERT INTO sessions (id, header, created_at) VALUES (?, ?, ?)",
                (session_id, msgspec.json.encode(header), header.created_at),
            )
        except sqlite3.IntegrityError:
            continue
        except sqlite3.Error as exc:
            raise explain(exc, home / DATABASE) from exc
        return session_id
    raise JournalError("no free session id could be drawn; try again")


def open_session(
    connection: sqlite3.Connection, home: Path, session_id: str, header: LogHeader | None
) -> SessionWriter:
    """A writer for `session_id`: a new session (with its `header`), or one that goes on.

    Raises:
        JournalError: the journal cannot be written, or the id is taken.
    """
    try:
        if header is not None:
            connection.execute(
                "INSERT INTO sessions (id, header, created_at) VALUES (?, ?, ?)",
                (session_id, msgspec.json.encode(header), header.created_at),
            )
        return SessionWriter(connection, home, session_id)
    except sqlite3.Error as exc:
        raise explain(exc, home / DATABASE) from exc


def session_rows(connection: sqlite3.Connection, search: str = "") -> list[SessionRow]:
    """Every session, oldest first (or those where `search` was said), from the index."""
    query = "SELECT id, created_at, model, turns, last_at, first_words, closed FROM sessions"
    args: tuple[str, ...] = ()
    if search:
        query += " WHERE number IN (SELECT session FROM said WHERE said MATCH ?)"
        args = ('"' + search.replace('"', '""') + '"',)
    rows = connection.execute(query + " ORDER BY created_at, id", args).fetchall()
    return [
        SessionRow(r[0], float(r[1]), r[2], int(r[3]), float(r[4]), r[5], bool(r[6])) for r in rows
    ]


def find(connection: sqlite3.Connection, wanted: str | None) -> str:
    """The session `wanted` names (an id or a unique prefix), or the newest one.

    Raises:
        JournalError: none, no match, or more than one.
    """
    if wanted:
        like = wanted.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        ids = [
            r[0]
            for r in connection.execute(
                "SELECT id FROM sessions WHERE id LIKE ? ESCAPE '\\' ORDER BY id", (like,)
            )
        ]
        if wanted in ids:
            return wanted
        if not ids:
            raise JournalError(f"no session id starts with {wanted!r}; `ollm sessions` lists them")
        if len(ids) > 1:
            raise JournalError(
                f"{wanted!r} matches {len(ids)} sessions ({', '.join(ids[:3])}…); "
                "type more of the id"
            )
        return str(ids[0])
    row = connection.execute(
        "SELECT id FROM sessions ORDER BY last_at DESC, created_at DESC LIMIT 1"
    ).fetchone()
    if row is None:
        raise JournalError("there is no session to resume yet; `ollm` starts one")
    return str(row[0])


@dataclass(frozen=True)
class SessionState:
    header: LogHeader
    closed: bool
    """The last run of it ended cleanly: everything it did is written."""
    crashes: tuple[int, ...]
    last_seq: int
    checkpoint: Checkpoint | None = None
    """Kept at a clean close; None after a crash (or if the run kept none)."""


def session_state(connection: sqlite3.Connection, session_id: str) -> SessionState:
    """What the index holds about a session.

    Raises:
        JournalError: there is no such session.
    """
    row = connection.execute(
        "SELECT header, closed, crashes, last_seq, checkpoint FROM sessions WHERE id = ?",
        (session_id,),
    ).fetchone()
    if row is None:
        raise JournalError(f"there is no session {session_id!r}; `ollm sessions` lists them")
    return SessionState(
        header=msgspec.json.decode(row[0], type=LogHeader),
        closed=bool(row[1]),
        crashes=tuple(msgspec.json.decode(row[2], type=list[int])),
        last_seq=int(row[3]),
        checkpoint=msgspec.msgpack.decode(row[4], type=Checkpoint) if row[4] else None,
    )


def note_crash(connection: sqlite3.Connection, home: Path, session_id: str) -> None:
    """Record that the session's last run did not end cleanly, where it stopped: a replay
    then tells the consequences it never wrote apart from a divergence.

    Raises:
        JournalError: the journal cannot be written.
    """
    state = session_state(connection, session_id)
    crashes = msgspec.json.encode([*state.crashes, state.last_seq])
    try:
        connection.execute("UPDATE sessions SET crashes = ? WHERE id = ?", (crashes, session_id))
    except sqlite3.Error as exc:
        raise explain(exc, home / DATABASE) from exc


def told_keys(connection: sqlite3.Connection) -> tuple[str, ...]:
    """The `once` keys of the notices any session gave."""
    return tuple(row[0] for row in connection.execute("SELECT key FROM told ORDER BY key"))


def calibration(connection: sqlite3.Connection, model: str) -> tuple[float, int] | None:
    """The latest (factor, extra) any session learned for `model`, if one did."""
    row = connection.execute(
        "SELECT factor, extra FROM calibrations WHERE model = ?", (model,)
    ).fetchone()
    return (float(row[0]), int(row[1])) if row else None


def envelopes(
    connection: sqlite3.Connection, session_id: str, event_type: Any
) -> Iterator[Envelope[Any]]:
    """A session's envelopes in `seq` order, decoded as they are read (streamed)."""
    previous: dict[str, Any] = {}
    texts: dict[int, str] = {}
    cursor = connection.execute(
        "SELECT seq, at, source, causation, kind, body FROM events WHERE session = ? ORDER BY seq",
        (_number(connection, session_id),),
    )
    for seq, at, source, causation, kind, body in cursor:
        stored = msgspec.msgpack.decode(body)
        plain = stored if kind == CHUNK else _undelta(stored, previous.get(kind))
        if kind != CHUNK:
            previous[kind] = plain
        needed: set[int] = set()
        _texts_in(plain, needed)
        missing = sorted(needed - texts.keys())
        if missing and len(texts) > TEXT_CACHE:
            texts.clear()  # re-read on a miss: memory stays bounded over a long session
            missing = sorted(needed)
        if missing:
            marks = ",".join("?" * len(missing))
            texts.update(
                connection.execute(
                    f"SELECT id, body FROM texts WHERE id IN ({marks})", missing
                ).fetchall()
            )
        yield msgspec.convert(
            {
                "seq": seq,
                "at": at,
                "source": source,
                "causation": causation,
                "event": _resolve(plain, texts),
            },
            Envelope[event_type],
        )


def stream_session(
    connection: sqlite3.Connection, home: Path, session_id: str, event_type: Any
) -> tuple[LogContents, Iterator[Envelope[Any]]]:
    """A session's header and crash points (a log without envelopes), and its envelopes as
    they are read: nothing but the current row is held.

    Raises:
        JournalError: no such session, or the journal cannot be read (also while iterating).
    """
    try:
        state = session_state(connection, session_id)
    except sqlite3.Error as exc:
        raise explain(exc, home / DATABASE) from exc
    crashes = state.crashes if state.closed else (*state.crashes, state.last_seq)
    meta = LogContents(path=Path(session_id), header=state.header, crashes=crashes)

    def rows() -> Iterator[Envelope[Any]]:
        try:
            yield from envelopes(connection, session_id, event_type)
        except (sqlite3.Error, msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise explain(exc, home / DATABASE) from exc

    return meta, rows()


def read_session(
    connection: sqlite3.Connection, home: Path, session_id: str, event_type: Any
) -> LogContents:
    """A session as a log (header and every envelope).

    Raises:
        JournalError: no such session, or the journal cannot be read.
    """
    meta, rows = stream_session(connection, home, session_id, event_type)
    found = list(rows)
    crashes = meta.crashes
    return LogContents(path=meta.path, header=meta.header, envelopes=found, crashes=crashes)


def export_jsonl(contents: LogContents, path: Path) -> None:
    """Write a session as a JSON-lines event log (`ollm replay FILE` reads it)."""
    encoder = msgspec.json.Encoder()
    with path.open("wb") as out:
        out.write(encoder.encode(contents.header) + b"\n")
        out.write(encoder.encode_lines(contents.envelopes))


class SessionLock:
    """The one writer of a session: an exclusive lock file held while it is open.

    Raises:
        JournalError (from `acquire`): another process has the session open.
    """

    def __init__(self, home: Path, session_id: str) -> None:
        self.path = sessions_root(home) / session_id / "writer.lock"
        self._fd = -1

    def acquire(self) -> None:
        home = self.path.parents[2]
        refuse_links(home, self.path.parents[1], self.path.parent, self.path)
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise explain(exc, self.path) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise JournalError(
                f"session {self.path.parent.name} is open in another ollm (pid {holder}); "
                "close that one first, or start a new session"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
