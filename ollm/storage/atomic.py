"""Atomic, durable file writes: temporary file, fsync, rename, fsync of the directory."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

TEMP_SUFFIX = ".tmp"


class StorageError(Exception):
    """A write or read failed; `str()` is one sentence for the user."""


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, chunks: Iterable[bytes], *, durable: bool = True) -> int:
    """Write `chunks` to `path` so that readers see the old file or the whole new one, never
    a part, even if the process dies; returns the bytes written.

    `durable=False` skips the two fsyncs: still atomic against a crashed process, but a power
    cut may lose the file (for caches that are rebuilt when missing or damaged).

    Raises:
        StorageError: the write failed (disk full, permissions…); no temporary file is left.
    """
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    written = 0
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                    written += n
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
        if durable:
            fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise StorageError(_explain(path, exc)) from exc
    return written


def _explain(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return f"the disk is full, so {path.name} could not be saved; free some space and try again"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"{path.parent} is not writable, so {path.name} could not be saved"
    return f"{path.name} could not be saved ({exc.strerror or exc})"


def remove_stale_temporaries(directory: Path) -> int:
    """Delete temporary files a crashed writer left behind; returns how many."""
    removed = 0
    for temp in directory.glob(f".*{TEMP_SUFFIX}"):
        try:
            temp.unlink()
            removed += 1
        except OSError:
            pass
    return removed
