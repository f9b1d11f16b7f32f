"""The snapshot file format (pure: bytes in, bytes out).

    magic "OLLMSNAP" | version u16 | header length u32 | header (JSON) | payload | blake3 (32)

The header is the metadata (id, session, created at, model, context size, token and message
counts, compression ratio, reason) plus the payload's codec and lengths. The payload is the
full state needed to restore exactly (system prompt, summary, pinned facts, messages with
their token counts), msgpack-encoded and zstd-compressed. The trailing blake3 covers every
byte before it, so any flipped byte, truncation or garbage is detected before anything is
decoded.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Literal

import msgspec
import zstandard
from blake3 import blake3

from ..events import ConversationState, SnapshotReason

MAGIC = b"OLLMSNAP"
VERSION = 1
_PREFIX = struct.Struct(">8sHI")
CHECKSUM_BYTES = 32
ZSTD_LEVEL = 1


class SnapshotMeta(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    session_id: str
    created_at: float
    model: str
    num_ctx: int
    tokens: int
    messages: int
    compression_ratio: float
    """Compressed payload size / uncompressed size."""
    reason: SnapshotReason
    codec: Literal["zstd"] = "zstd"
    name: str = ""
    """The user's name for it (`/save NAME`); empty for most."""
    payload_bytes: int = 0
    raw_bytes: int = 0


class SnapshotState(msgspec.Struct, frozen=True, kw_only=True):
    conversation: ConversationState
    message_tokens: tuple[int, ...] = ()
    """Token count of each message, in order."""


class SnapshotError(Exception):
    """A snapshot file is damaged or unreadable; `str()` names the file in one sentence."""


_state_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(SnapshotState)
_meta_decoder = msgspec.json.Decoder(SnapshotMeta)


def encode(meta: SnapshotMeta, state: SnapshotState) -> tuple[SnapshotMeta, list[bytes]]:
    """The file's bytes (as chunks) and the final metadata (sizes and ratio filled in)."""
    raw = _state_encoder.encode(state)
    payload = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(raw)
    meta = msgspec.structs.replace(
        meta,
        payload_bytes=len(payload),
        raw_bytes=len(raw),
        compression_ratio=round(len(payload) / max(1, len(raw)), 4),
    )
    header = msgspec.json.encode(meta)
    prefix = _PREFIX.pack(MAGIC, VERSION, len(header))
    digest = blake3(prefix)
    digest.update(header)
    digest.update(payload)
    return meta, [prefix, header, payload, digest.digest()]


def decode(path: Path, data: bytes) -> tuple[SnapshotMeta, SnapshotState]:
    """Verify and decode a whole file.

    Raises:
        SnapshotError: the file is not a snapshot, is of an unknown version, or is damaged.
    """
    meta, header_end = _header(path, data)
    body_end = _verified(path, data)
    try:
        raw = zstandard.ZstdDecompressor().decompress(
            memoryview(data)[header_end:body_end], max_output_size=meta.raw_bytes
        )
        return meta, _state_decoder.decode(raw)
    except (zstandard.ZstdError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SnapshotError(
            f"{path} holds a payload this ollm cannot read, so it was skipped"
        ) from exc


def read_meta(path: Path, data: bytes, *, verify: bool = True) -> SnapshotMeta:
    """The metadata of a file; with `verify`, only if the whole file's checksum holds."""
    meta, _ = _header(path, data)
    if verify:
        _verified(path, data)
    return meta


def _verified(path: Path, data: bytes) -> int:
    """Where the checksummed body ends, once the trailing blake3 is found to cover it."""
    body_end = len(data) - CHECKSUM_BYTES
    if blake3(memoryview(data)[:body_end]).digest() != data[body_end:]:
        raise SnapshotError(f"{path} is damaged (its checksum does not match), so it was skipped")
    return body_end


def _header(path: Path, data: bytes) -> tuple[SnapshotMeta, int]:
    if len(data) < _PREFIX.size + CHECKSUM_BYTES:
        raise SnapshotError(f"{path} is truncated or empty, so it was skipped")
    magic, version, length = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise SnapshotError(f"{path} is not an ollm snapshot, so it was skipped")
    if version != VERSION:
        raise SnapshotError(
            f"{path} has snapshot format version {version}; this ollm reads version {VERSION}"
        )
    end = _PREFIX.size + length
    if end > len(data) - CHECKSUM_BYTES:
        raise SnapshotError(f"{path} is truncated, so it was skipped")
    try:
        return _meta_decoder.decode(data[_PREFIX.size : end]), end
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        raise SnapshotError(
            f"{path} is damaged (its header cannot be read), so it was skipped"
        ) from exc
