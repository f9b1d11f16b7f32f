"""The event log: a header record, then one JSON line per envelope, appended as events happen."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio
import msgspec

from ._envelope import Envelope
from ._exceptions import LogError

FORMAT_VERSION = 1
"""The log format this runtime writes and reads."""


class LogHeader(msgspec.Struct, frozen=True, kw_only=True, tag_field="record", tag="header"):
    """The first record of every log."""

    format: int
    app: str
    app_version: str
    config_digest: str
    config: dict[str, Any] = {}
    """The settings the run used, so that a replay can rebuild the same decisions."""
    id_seed: str = ""
    """Seed of the run's ids, so that a replay makes the same ones."""
    created_at: float = 0.0


class _FormatProbe(msgspec.Struct):
    record: str = ""
    format: int = 0


_header_encoder = msgspec.json.Encoder()


class LogWriter:
    """Appends envelopes to a log file created private to the user (0600 in a 0700 directory)."""

    def __init__(self, path: Path, header: LogHeader) -> None:
        self.path = path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._encoder = msgspec.json.Encoder()
        if os.fstat(self._fd).st_size == 0:
            os.write(self._fd, _header_encoder.encode(header) + b"\n")

    def append(self, envelopes: Sequence[Envelope[Any]]) -> None:
        """Write envelopes as complete lines in one system call."""
        if envelopes:
            data = self._encoder.encode_lines(envelopes)
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class LogSink(Protocol):
    """Where a recorder writes: a JSON-lines `LogWriter`, or an application's database."""

    def append(self, envelopes: Sequence[Envelope[Any]]) -> None:
        """Write a batch of envelopes, in `seq` order."""
        ...


class Recorder:
    """Records every envelope, in `seq` order, through a bus tap and a writer task.

    The tap only buffers; the writer drains the buffer in one write per wake-up, so the
    cost per event stays small under load and an idle log is at most one wake-up behind.
    `written` is the `seq` of the last envelope the sink has taken, and `durable(seq)` waits
    for it: what a program shows can wait until it is recorded.
    """

    def __init__(self, writer: LogSink) -> None:
        self.writer = writer
        self._buffer: list[Envelope[Any]] = []
        self._wake = anyio.Event()
        self.written = 0
        self._moved = anyio.Event()

    def tap(self, envelope: Envelope[Any]) -> None:
        self._buffer.append(envelope)
        self._wake.set()

    def flush(self) -> None:
        batch, self._buffer = self._buffer, []
        if not batch:
            return
        self.writer.append(batch)
        self.written = batch[-1].seq
        self._moved.set()
        self._moved = anyio.Event()

    async def durable(self, seq: int) -> None:
        """Wait until every envelope up to `seq` has been written."""
        while self.written < seq:
            await self._moved.wait()

    async def run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                self.flush()
        finally:
            self.flush()


@dataclass
class LogContents:
    """What a log holds: the header, every complete envelope, and whether the tail was torn."""

    path: Path
    header: LogHeader
    envelopes: list[Envelope[Any]] = field(default_factory=list)
    torn_line: int = 0
    """The number of a torn last line that was skipped (a writer killed mid-line), else 0."""
    crashes: tuple[int, ...] = ()
    """The last `seq` written before each crash the run went on from (a resumed session):
    what the inputs before it would have caused afterwards may be missing."""


def read_log(path: Path, event_type: Any) -> LogContents:
    """Read a log, recovering every complete record when the last line was torn by a crash.

    Args:
        path: the log file.
        event_type: the union of event types the log may hold.

    Raises:
        LogError: the file is missing, is not a log, has an unknown format version, or a
            line other than a torn last line cannot be decoded. The message names the line.
    """
    name = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LogError(name, 0, f"cannot be read ({exc.strerror or exc})") from exc
    lines = data.split(b"\n")
    complete_tail = data.endswith(b"\n")
    if complete_tail:
        lines.pop()
    if not lines or not lines[0].strip():
        raise LogError(name, 1, "is empty, so it is not an event log")
    header = _read_header(name, lines[0])
    contents = LogContents(path=path, header=header)
    decoder = msgspec.json.Decoder(Envelope[event_type])
    last = len(lines)
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            contents.envelopes.append(decoder.decode(line))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            if number == last and not complete_tail:
                contents.torn_line = number
                break
            raise LogError(name, number, _explain(exc)) from exc
    contents.envelopes.sort(key=lambda e: e.seq)
    return contents


def _read_header(name: str, line: bytes) -> LogHeader:
    try:
        probe = msgspec.json.decode(line, type=_FormatProbe)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise LogError(name, 1, "is not an event log (the first line is not a log header)") from exc
    if probe.record != "header":
        raise LogError(name, 1, "is not an event log (the first line is not a log header)")
    if probe.format != FORMAT_VERSION:
        raise LogError(
            name,
            1,
            f"has log format version {probe.format}, but this program reads version "
            f"{FORMAT_VERSION}; open it with the version that wrote it",
        )
    try:
        return msgspec.json.decode(line, type=LogHeader)
    except msgspec.ValidationError as exc:
        raise LogError(name, 1, f"has a damaged log header ({exc})") from exc


def _explain(exc: msgspec.DecodeError | msgspec.ValidationError) -> str:
    text = str(exc)
    if isinstance(exc, msgspec.ValidationError) and text.endswith("`$.event.kind`"):
        tag = text.split("'")[1] if "'" in text else "?"
        return f"holds an event of unknown kind '{tag}' (written by a newer version, or damaged)"
    if isinstance(exc, msgspec.ValidationError):
        return f"holds a record that does not match the log format ({text})"
    return "is not a JSON record (the file is damaged)"
