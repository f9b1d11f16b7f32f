"""What a model's chat template adds to a prompt, measured exactly with the model's tokenizer.

After each load the provider asks Ollama to render `probes()` (`_debug_render_only`): small
conversations whose contents are placeholders. Found again in the rendered text, the
placeholders cut it into the text the template writes before each message (its role markers:
`<|im_end|>\\n<|im_start|>user\\n` in ChatML) and around the conversation (BOS, a default
system prompt, the header that opens the reply). A message then costs the tokens of its
wrapper and content counted together (`message_cost`), and a prompt the sum of its messages'
costs plus the template's fixed part for its shape (with or without a system message first).

The sum is exact where the template's markers are special tokens (each is matched whole, so
nothing merges across them): ChatML, llama 3, Gemma, Mistral. A role the probes do not show
(`tool`) is counted by its content plus `ROLE_OVERHEAD`, and tool calls and tool schemas by the
estimate's per-call overheads: those few tokens stay estimated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .events import ChatMessage, Role

PLACEHOLDER = "ollm-probe-{}"


def probes() -> tuple[tuple[ChatMessage, ...], ...]:
    """The conversations rendered once per load: without a system message, and with two (the
    system prompt and the context message with the summary and pinned facts)."""

    def messages(*roles: Role) -> tuple[ChatMessage, ...]:
        return tuple(
            ChatMessage(role=role, content=PLACEHOLDER.format(i)) for i, role in enumerate(roles)
        )

    return (
        messages("user", "assistant", "user"),
        messages("system", "system", "user", "assistant", "user"),
    )


@dataclass(frozen=True)
class TemplateCosts:
    wrappers: Mapping[str, str]
    """By role: the text the template writes between the previous message's content and the
    content of a message of this role."""
    fixed: Mapping[bool, int]
    """By "the prompt opens with a system message": the prompt's tokens outside its messages'
    costs (BOS, a default system prompt, the reply's header)."""


def message_cost(wrappers: Mapping[str, str], role: str, content: str) -> str | None:
    """The text a message of `role` costs (its wrapper and content), None for a role the
    probes did not show."""
    wrapper = wrappers.get(role)
    return None if wrapper is None else wrapper + content


def _split(messages: Sequence[ChatMessage], text: str) -> list[str] | None:
    """`text` cut at each message's content: [before the first, between each two, after the
    last]; None when a content is not found in order (the template rewrote it)."""
    parts: list[str] = []
    at = 0
    for message in messages:
        found = text.find(message.content, at)
        if found < 0:
            return None
        parts.append(text[at:found])
        at = found + len(message.content)
    parts.append(text[at:])
    return parts


def measure(
    rendered: Sequence[tuple[Sequence[ChatMessage], str]],
    count: Callable[[str], int],
    start: int,
) -> TemplateCosts | None:
    """The template's costs from its rendered probes (`count`: the model's tokenizer on text,
    `start`: the tokens the engine puts before every prompt); None when no probe can be read.

    A wrapper comes from a message that is not the first (the first one's is part of the fixed
    head); the first probe showing a role decides it.
    """
    wrappers: dict[str, str] = {}
    cut: list[tuple[Sequence[ChatMessage], str, list[str]]] = []
    for messages, text in rendered:
        parts = _split(messages, text)
        if parts is None or not messages:
            continue
        cut.append((messages, text, parts))
        for message, before in zip(messages[1:], parts[1:-1], strict=True):
            wrappers.setdefault(message.role, before)
    fixed: dict[bool, int] = {}
    for messages, text, _parts in cut:
        costs = [message_cost(wrappers, m.role, m.content) for m in messages]
        if any(c is None for c in costs):
            continue
        opens_with_system = messages[0].role == "system"
        total = count(text) + start
        fixed.setdefault(opens_with_system, total - sum(count(c) for c in costs if c is not None))
    if not fixed:
        return None
    return TemplateCosts(wrappers=wrappers, fixed=fixed)
