"""The exit statuses of `ollm` (listed in `ollm --help` and the README)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `ollm --help` stays light: nothing here imports the runtime
    from ..events import FailureKind

EXIT_USAGE = 2
EXIT_CANCELLED = 130
EXIT_CODES: dict[FailureKind | None, int] = {
    None: 0,
    "server_error": 1,
    "server_unreachable": 3,
    "model_not_found": 4,
    "context_overflow": 5,
    "out_of_memory": 6,
    "timeout": 7,
    "connection_reset": 7,
    "malformed_reply": 7,
    "stream_error": 7,
}
