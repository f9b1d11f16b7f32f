"""What a failed reply leads to (pure): retry once, smaller or shorter, or leave it unanswered.

- An overflow (the server says the prompt does not fit) on the first attempt: take out the
  oldest whole turns, enough to bring the prompt to `RETRY_TARGET` of the context the
  server reported, and send once more.
- Out of memory on the first attempt: ask the context pool for the next smaller context and
  send once more after the reload.
- Anything else, or a second failure: the user's message stays, marked unanswered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..conversation import oldest_turns_to_drop
from ..events import Message, ReplyFailed

RETRY_TARGET = 0.75
"""After an overflow, aim for this share of num_ctx (the compression threshold)."""


@dataclass(frozen=True)
class RetryShorter:
    """Take `removed_ids` out of the context, say `text`, and send the request again."""

    removed_ids: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class RetrySmaller:
    """Ask for a smaller context, say `text`, and send again once the model is reloaded."""

    text: str


@dataclass(frozen=True)
class GiveUp:
    """Leave the user's message unanswered (it stays in the conversation, marked)."""


Recovery = RetryShorter | RetrySmaller | GiveUp


def overflow_share(n_prompt: int, n_ctx: int) -> float:
    """The share of the conversation to drop so that an `n_prompt` prompt fits `n_ctx`."""
    if n_prompt <= 0 or n_ctx <= 0:
        return 0.5
    return max(0.0, (n_prompt - RETRY_TARGET * n_ctx) / n_prompt)


def after_failure(failure: ReplyFailed, attempt: int, messages: Sequence[Message]) -> Recovery:
    """The recovery for `failure` of the request's `attempt` (1 = the first try)."""
    if attempt != 1 or failure.partial:
        # A reply that had begun is not retried: its start is on the screen (or in a
        # one-shot's stdout) already, and a second reply would follow it.
        return GiveUp()
    if failure.failure == "context_overflow":
        share = overflow_share(failure.n_prompt_tokens, failure.n_ctx)
        removed = oldest_turns_to_drop(messages, share)
        if removed:
            return RetryShorter(
                removed_ids=removed,
                text=f"{failure.message}; dropped the {len(removed)} oldest messages "
                "and retried once",
            )
    if failure.failure == "out_of_memory":
        return RetrySmaller(text=f"{failure.message}; retrying once with a smaller context")
    return GiveUp()
