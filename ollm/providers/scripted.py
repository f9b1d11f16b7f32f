"""A deterministic provider for tests, golden logs and demos: no server, same events.

It answers each `ChatRequested` with a reply made from the request, counts tokens with a
simple deterministic tokenizer (words and punctuation), refuses a prompt larger than
`num_ctx` the way Ollama does with `truncate: false`, and fails requests on demand.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable

from actors import Actor, Context

from ..events import (
    CancelRequested,
    ChatMessage,
    ChatRequested,
    ContextSizeChosen,
    FailureKind,
    ModelLoaded,
    ReplyChunk,
    ReplyCompleted,
    ReplyFailed,
)

_TOKEN = re.compile(r"\w+|[^\w\s]")
MESSAGE_TOKENS = 5
PRIMING_TOKENS = 5


def scripted_count(text: str) -> int:
    return len(_TOKEN.findall(text))


def scripted_prompt_tokens(messages: Iterable[ChatMessage]) -> int:
    return PRIMING_TOKENS + sum(MESSAGE_TOKENS + scripted_count(m.content) for m in messages)


def scripted_summary(request: ChatRequested) -> str:
    """A short summary: the start of each user line, and every second required anchor."""
    text = request.messages[-1].content if request.messages else ""
    transcript = text.split("Conversation to summarize:\n", 1)[-1].split("\n\nThese must", 1)[0]
    firsts = [
        " ".join(line.split()[1:9]) for line in transcript.split("\n\n") if line.startswith("USER:")
    ]
    required = text.split("These must appear verbatim in the summary:\n", 1)
    anchors = [a[2:] for a in required[1].splitlines()][::2] if len(required) > 1 else []
    return (
        "Goal: " + "; ".join(firsts)[:300] + (". Facts: " + "; ".join(anchors) if anchors else "")
    )


def echo_reply(request: ChatRequested) -> str:
    last = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
    words = last.split()
    return f"Noted {len(words)} words: " + " ".join(words[:24]) + "."


class ScriptedProviderActor(Actor[ChatRequested | CancelRequested | ContextSizeChosen]):
    accepts = (ChatRequested, CancelRequested, ContextSizeChosen)

    def __init__(
        self,
        reply: Callable[[ChatRequested], str] = echo_reply,
        failures: Iterable[tuple[FailureKind, str]] = (),
    ) -> None:
        self.reply = reply
        self.failures: deque[tuple[FailureKind, str]] = deque(failures)

    async def handle(
        self, event: ChatRequested | CancelRequested | ContextSizeChosen, ctx: Context
    ) -> None:
        if isinstance(event, ContextSizeChosen):
            await ctx.publish(ModelLoaded(model=event.model, context_length=event.num_ctx))
            return
        if not isinstance(event, ChatRequested):
            return
        rid = event.request_id
        prompt = scripted_prompt_tokens(event.messages)
        if self.failures:
            kind, message = self.failures.popleft()
            await ctx.publish(ReplyFailed(request_id=rid, failure=kind, message=message))
            return
        if prompt > event.options.num_ctx and event.purpose == "chat":
            await ctx.publish(
                ReplyFailed(
                    request_id=rid,
                    failure="context_overflow",
                    message=f"the conversation no longer fits the context ({prompt} tokens "
                    f"for a {event.options.num_ctx}-token context)",
                    n_prompt_tokens=prompt,
                    n_ctx=event.options.num_ctx,
                )
            )
            return
        text = scripted_summary(event) if event.purpose == "summary" else self.reply(event)
        for piece in re.findall(r"\S+\s*", text):
            await ctx.publish(ReplyChunk(request_id=rid, content=piece))
        await ctx.publish(
            ReplyCompleted(
                request_id=rid,
                content=text,
                prompt_eval_count=prompt,
                eval_count=scripted_count(text),
                done_reason="stop",
            )
        )
