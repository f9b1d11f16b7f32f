"""A session's snapshots: one file each, an index for fast listing, metadata cached in memory.

The index (`index.json`) is a cache: any file it does not describe exactly (name, size,
mtime) is read and verified, and the index rewritten; a missing or damaged index is rebuilt
from the files. A damaged snapshot is reported (one sentence naming the file), skipped in
listings and never loaded; its neighbours are unaffected. Ids are only ever looked up among
the files found on disk, never turned into paths.

The snapshot manager calls the store from worker threads; every public method holds the
store's lock, and the REPL reads through a `SnapshotView` (read-only, its calls in worker
threads too), so nothing on the event loop touches the files and no two calls interleave.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import msgspec

from ..paths import private_dir
from .atomic import StorageError, remove_stale_temporaries, write_atomic
from .snapshot_file import SnapshotError, SnapshotMeta, SnapshotState, decode, encode, read_meta

SUFFIX = ".snap"
INDEX = "index.json"
ID = re.compile(r"[0-9a-z]{1,32}")


class IndexEntry(msgspec.Struct, frozen=True, kw_only=True):
    file: str
    size: int
    mtime_ns: int
    meta: SnapshotMeta


class IndexFile(msgspec.Struct, kw_only=True):
    version: int = 1
    entries: list[IndexEntry] = []


def _entry(path: Path, stat: os.stat_result, meta: SnapshotMeta) -> IndexEntry:
    """What the index records of a file, so that a changed file is noticed."""
    return IndexEntry(file=path.name, size=stat.st_size, mtime_ns=stat.st_mtime_ns, meta=meta)


class IdError(ValueError):
    """An id the user typed cannot name a snapshot; `str()` says why and what to do."""


@dataclass
class Listing:
    snapshots: list[SnapshotMeta]
    """Newest first."""
    problems: list[str] = field(default_factory=list)
    """One sentence per damaged file that was skipped."""


class SnapshotStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._entries: dict[str, IndexEntry] | None = None
        self._problems: list[str] = []
        self._damaged: dict[str, str] = {}
        """A damaged file's name (without its suffix) → why it was skipped."""
        self._lock = threading.RLock()

    # --- reading ---------------------------------------------------------------------------

    def listing(self) -> Listing:
        with self._lock:
            return self._listing()

    def _listing(self) -> Listing:
        entries = self._load()
        ordered = sorted(
            entries.values(), key=lambda e: (e.meta.created_at, e.meta.id), reverse=True
        )
        return Listing([e.meta for e in ordered], list(self._problems))

    def resolve(self, wanted: str) -> str:
        """The id that `wanted` (an id or an unambiguous prefix) names.

        Raises:
            IdError: empty, not an id, unknown or ambiguous.
        """
        with self._lock:
            return self._resolve(wanted)

    def _resolve(self, wanted: str) -> str:
        text = wanted.strip().lower()
        if not text:
            raise IdError("give a snapshot id; `/context list` shows them")
        if not ID.fullmatch(text):
            raise IdError(
                f"{wanted!r} is not a snapshot id (ids are short letters and digits); "
                "`/context list` shows them"
            )
        ids = sorted(self._load())
        if text in ids:
            return text
        matches = [i for i in ids if i.startswith(text)]
        damaged = [why for name, why in self._damaged.items() if name.startswith(text)]
        if not matches and len(damaged) == 1:
            raise IdError(f"snapshot {text} cannot be restored: {damaged[0]}")
        if not matches:
            raise IdError(f"no snapshot id starts with {text!r}; `/context list` shows them")
        if len(matches) > 1:
            raise IdError(f"{text!r} could be {', '.join(matches[:4])}; type more of the id")
        return matches[0]

    def load(self, wanted: str) -> tuple[SnapshotMeta, SnapshotState]:
        """Read, verify and decode a snapshot.

        Raises:
            IdError: the id does not name one snapshot.
            SnapshotError: the file is damaged (it is then also reported in listings).
        """
        with self._lock:
            return self._read(wanted)

    def _read(self, wanted: str) -> tuple[SnapshotMeta, SnapshotState]:
        entry = self._load()[self._resolve(wanted)]
        path = self.directory / entry.file
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SnapshotError(f"{path} cannot be read ({exc.strerror or exc})") from exc
        try:
            return decode(path, data)
        except SnapshotError as exc:
            self._entries = None
            self._problems = [str(exc)]
            raise

    def short_id(self, candidate: str, length: int = 6) -> str:
        """The shortest prefix of `candidate` (at least `length`) no other snapshot starts with."""
        with self._lock:
            taken = self._load()
            for size in range(length, len(candidate) + 1):
                short = candidate[:size]
                if not any(i.startswith(short) or short.startswith(i) for i in taken):
                    return short
            return candidate

    # --- writing ---------------------------------------------------------------------------

    def save(self, meta: SnapshotMeta, state: SnapshotState) -> SnapshotMeta:
        """Write a snapshot atomically, then the index.

        Raises:
            StorageError: the write failed; earlier snapshots are intact, nothing half-written.
        """
        with self._lock:
            return self._save(meta, state)

    def _save(self, meta: SnapshotMeta, state: SnapshotState) -> SnapshotMeta:
        if not ID.fullmatch(meta.id):
            raise StorageError(f"{meta.id!r} cannot be a snapshot id")
        try:
            private_dir(self.directory)
        except OSError as exc:
            raise StorageError(
                f"{self.directory} cannot be created ({exc.strerror or exc})"
            ) from exc
        entries = self._load()
        meta, chunks = encode(meta, state)
        path = self.directory / f"{meta.id}{SUFFIX}"
        write_atomic(path, chunks)
        entries[meta.id] = _entry(path, path.stat(), meta)
        self._write_index(entries)
        return meta

    def delete(self, ids: list[str]) -> list[str]:
        """Delete snapshots by exact id; returns those deleted."""
        with self._lock:
            return self._delete(ids)

    def _delete(self, ids: list[str]) -> list[str]:
        entries = self._load()
        gone = []
        for snapshot_id in ids:
            entry = entries.pop(snapshot_id, None)
            if entry is None:
                continue
            with contextlib.suppress(FileNotFoundError):
                (self.directory / entry.file).unlink()
            gone.append(snapshot_id)
        if gone:
            self._write_index(entries)
        return gone

    # --- the index ---------------------------------------------------------------------------

    def _load(self) -> dict[str, IndexEntry]:
        if self._entries is not None:
            return self._entries
        self._problems = []
        self._damaged = {}
        if not self.directory.is_dir():
            self._entries = {}
            return self._entries
        remove_stale_temporaries(self.directory)
        indexed = self._read_index()
        by_file = {e.file: e for e in indexed}
        entries: dict[str, IndexEntry] = {}
        changed = len(indexed) == 0
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            try:
                stat = path.stat()
            except OSError:
                continue
            cached = by_file.get(path.name)
            if cached and cached.size == stat.st_size and cached.mtime_ns == stat.st_mtime_ns:
                entries[cached.meta.id] = cached
                continue
            changed = True
            try:
                meta = read_meta(path, path.read_bytes())
            except (SnapshotError, OSError) as exc:
                self._problems.append(str(exc))
                self._damaged[path.name.removesuffix(SUFFIX).lower()] = str(exc)
                continue
            if f"{meta.id}{SUFFIX}" != path.name:
                self._problems.append(
                    f"{path} does not hold the snapshot its name says, so it was skipped"
                )
                continue
            entries[meta.id] = _entry(path, stat, meta)
        if changed or set(by_file) != {e.file for e in entries.values()}:
            # The files are the truth; the index is only a cache.
            with contextlib.suppress(StorageError):
                self._write_index(entries)
        self._entries = entries
        return entries

    def _read_index(self) -> list[IndexEntry]:
        try:
            data = (self.directory / INDEX).read_bytes()
            return msgspec.json.decode(data, type=IndexFile).entries
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            return []

    def _write_index(self, entries: dict[str, IndexEntry]) -> None:
        self._entries = entries
        data = msgspec.json.encode(
            IndexFile(entries=sorted(entries.values(), key=lambda e: e.file))
        )
        # The index is a cache: atomic, but not worth two fsyncs per snapshot.
        write_atomic(self.directory / INDEX, [data], durable=False)


class SnapshotView:
    """Read-only access to a session's snapshots for the REPL: each call runs in a worker
    thread under the store's lock, beside the snapshot manager's own calls."""

    def __init__(self, store: SnapshotStore) -> None:
        self._store = store

    async def listing(self) -> Listing:
        return await anyio.to_thread.run_sync(self._store.listing)

    async def resolve(self, wanted: str) -> str:
        """The id `wanted` names.

        Raises:
            IdError: empty, not an id, unknown or ambiguous.
        """
        return await anyio.to_thread.run_sync(self._store.resolve, wanted)
