"""The exit statuses of `ollm`: one table, from which `ollm --help` and the mapping of each
failure are made (the README lists the same)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # `ollm --help` stays light: nothing here imports the runtime
    from ..events import FailureKind

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_RECORD = 8
EXIT_CANCELLED = 130

MEANINGS: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "ok"),
    (EXIT_ERROR, "error"),
    (EXIT_USAGE, "bad usage or config"),
    (3, "Ollama unreachable"),
    (4, "model not installed"),
    (5, "context overflow"),
    (6, "out of memory"),
    (7, "timeout or broken reply"),
    (EXIT_RECORD, "the session's record (the journal) cannot be written"),
    (EXIT_CANCELLED, "cancelled"),
)

EXIT_CODES: dict[FailureKind | Literal["record"], int] = {
    "record": EXIT_RECORD,
    "server_error": EXIT_ERROR,
    "server_unreachable": 3,
    "model_not_found": 4,
    "context_overflow": 5,
    "out_of_memory": 6,
    "timeout": 7,
    "connection_reset": 7,
    "malformed_reply": 7,
    "stream_error": 7,
}


def exit_status(failure: FailureKind | Literal["record"] | None) -> int:
    """The status for a start or a request that failed with `failure` (None: the user's
    input or configuration was the problem)."""
    return EXIT_USAGE if failure is None else EXIT_CODES.get(failure, EXIT_ERROR)


def describe() -> str:
    """The exit statuses in one line, for `ollm --help`."""
    return "Exit status: " + ", ".join(f"{code} {meaning}" for code, meaning in MEANINGS) + "."


def turn_status(failure: FailureKind | None, cancelled: bool) -> int:
    """The status of `ollm -p` for how its turn ended."""
    if cancelled:
        return EXIT_CANCELLED
    return EXIT_CODES.get(failure, EXIT_ERROR) if failure else EXIT_OK
