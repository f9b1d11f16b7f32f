"""Errors the runtime raises.

RuntimeFailure
├── SupervisorGaveUpError   an actor crashed past its restart intensity; the runtime stopped
├── NotQuietError           settle() timed out: something kept working
└── LogError                an event log cannot be read (names the file and line)
"""

from __future__ import annotations


class RuntimeFailure(Exception):
    """Base of the runtime's errors; `str()` is one sentence for the user."""


class SupervisorGaveUpError(RuntimeFailure):
    def __init__(self, actor: str, crashes: int, window_s: float, error: str) -> None:
        self.actor = actor
        self.crashes = crashes
        self.window_s = window_s
        self.error = error
        super().__init__(
            f"actor '{actor}' crashed {crashes} times within {window_s:g} s "
            f"(last error: {error}), so the runtime stopped"
        )


class NotQuietError(RuntimeFailure):
    def __init__(self, timeout: float, busy: str) -> None:
        super().__init__(f"the runtime was still busy after {timeout:g} s ({busy})")


class LogError(RuntimeFailure):
    def __init__(self, path: str, line: int, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        where = f"{path}, line {line}" if line else path
        super().__init__(f"{where}: {reason}")
