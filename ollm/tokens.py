"""Pure token estimation. Calibration from the server's counts arrives with the provider."""

from __future__ import annotations

import math

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4
"""Template and role tokens around each message (e.g. `<|start|>user\\n … <|end|>`)."""


def estimate_text(text: str) -> int:
    """The fallback estimate: `ceil(len(text) / 4)`."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def estimate_message(content: str) -> int:
    """A message's estimated share of the prompt, overhead included."""
    return estimate_text(content) + MESSAGE_OVERHEAD
