"""Text made safe for a terminal (pure): whatever ollm prints that it did not write itself —
model output, server errors, file names, config values, text from a journal — could carry
escape sequences that clear the screen, retitle the window, write the clipboard (OSC 52) or
hide text (a lone CR, bidirectional overrides). Every control character except newline and
tab is shown visibly instead: C0 controls and DEL as their Unicode control pictures (ESC as
"␛", so `ESC[2J` prints as the harmless text "␛[2J"), C1 controls and the bidirectional and
line-separator format characters, and lone surrogates (which no terminal encoding can
write), as `\\x9b`/`\\u202e`/`\\ud800`. A CRLF line end is a newline. The
result holds no byte a terminal acts on, on a pipe and a tty alike, and it never needs the
next chunk: a sequence split across two chunks is made safe piece by piece."""

from __future__ import annotations

import os
import re
import sys
from typing import TextIO

_UNSAFE = re.compile(
    "\r\n|[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def _visible(found: re.Match[str]) -> str:
    char = found.group()
    if char == "\r\n":
        return "\n"
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)
    if code == 0x7F:
        return "\u2421"
    if code <= 0x9F:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def safe(text: str) -> str:
    """`text` with every control character a terminal would act on shown visibly."""
    return _UNSAFE.sub(_visible, text)


class SafeStream:
    """A text stream that writes everything through `safe`."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(safe(text))

    def write_notice(self, text: str, level: str) -> int:
        """One notice, coloured by `level` where the stream is a terminal."""
        return self.stream.write(coloured(self.stream, text, level))

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()


SGR = {"warning": "33", "error": "1;31"}
"""Restrained colour: warnings yellow, errors bold red, everything else as the terminal has
it."""


def coloured(stream: TextIO, text: str, level: str) -> str:
    """`text` (made safe) in the colour of `level` when `stream` is a terminal and
    `NO_COLOR` is not set; plain otherwise (a pipe, a file, `NO_COLOR`)."""
    plain = safe(text)
    code = SGR.get(level)
    if code is None or os.environ.get("NO_COLOR"):
        return plain
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError, OSError):
        tty = False
    return f"\x1b[{code}m{plain}\x1b[0m" if tty else plain


class CurrentStream:
    """Writes to whatever `sys.stdout`/`sys.stderr` is at the moment of writing, so output
    goes through prompt-toolkit's `patch_stdout` proxy (above the prompt) while one is active;
    always made safe for the terminal (`safe`)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def write(self, text: str) -> int:
        stream: TextIO = getattr(sys, self.name)
        return stream.write(safe(text))

    def write_notice(self, text: str, level: str) -> int:
        """One notice, coloured by `level` where the stream is a terminal."""
        stream: TextIO = getattr(sys, self.name)
        return stream.write(coloured(stream, text, level))

    def flush(self) -> None:
        stream: TextIO = getattr(sys, self.name)
        stream.flush()
