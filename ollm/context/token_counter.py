"""The token counter: per-message counts, calibration from the server, the running total."""

from __future__ import annotations

from collections.abc import Callable

from actors import Actor, Context

from .. import vocabulary
from ..conversation import Conversation
from ..events import (
    CalibrationChanged,
    CalibrationRestored,
    ChatMessage,
    ChatRequested,
    CompressionCompleted,
    ContextCleared,
    ContextReduced,
    ContextSizeChosen,
    MessageAdded,
    ModelLoaded,
    ModelSelected,
    PromptRendered,
    ReplyCompleted,
    SessionOpened,
    SnapshotRestored,
    SystemPromptSet,
    TemplateRendered,
    TruncationDetected,
    UsageChanged,
    UserNotified,
    VocabularyLoaded,
)
from ..template_costs import measure
from ..tokens import Accounting, Exact

Tokenizers = Callable[[str], vocabulary.Vocabulary | None]
"""A model's vocabulary by its digest, None when there is none (`TokenizerCache.get`)."""

STRUCTURAL = (
    SessionOpened,
    ContextReduced,
    ContextCleared,
    CompressionCompleted,
    SnapshotRestored,
    SystemPromptSet,
)


class Ledger:
    """The token count of a conversation, kept from its events: the token counter's policy,
    and the read model the REPL's status and `/context stats` use."""

    def __init__(self, tokenizers: Tokenizers | None = None) -> None:
        self.tokenizers = tokenizers or (lambda digest: None)
        self.accounting = Accounting()
        self.conversation = Conversation()
        self.renders: dict[str, dict[tuple[ChatMessage, ...], TemplateRendered]] = {}
        """Each model's rendered probes, by probe."""

    def fork(self) -> Ledger:
        """An independent copy that later events do not reach (for what-if questions)."""
        copy = Ledger(self.tokenizers)
        copy.accounting = self.accounting.fork()
        copy.conversation = Conversation.from_state(self.conversation.state())
        copy.renders = {model: dict(renders) for model, renders in self.renders.items()}
        return copy

    def _measure(self, model: str) -> None:
        """The template's costs for `model`, from its probes and tokenizer (when both are in)."""
        exact = self.accounting.exact.get(model)
        renders = self.renders.get(model)
        if exact is not None and renders:
            exact.costs = measure(
                [(r.messages, r.text) for r in renders.values()],
                exact.tokens,
                vocabulary.prompt_start(exact.vocabulary.tokenizer),
            )

    def usage(self) -> UsageChanged:
        """The count now, with the two shares of it the refusal rule weighs: the newest turn,
        and what every request carries."""
        acc, conversation = self.accounting, self.conversation
        head = (conversation.system_message(), conversation.context_message())
        base = sum(acc.tokens_of(m.id) for m in head if m is not None) + acc.outside_messages()
        newest = 0
        for message in reversed(conversation.messages):
            newest += acc.tokens_of(message.id)
            if message.role == "user":
                break
        return UsageChanged(
            used_tokens=acc.used(),
            limit_tokens=acc.num_ctx,
            newest_tokens=newest,
            base_tokens=base,
        )

    def _recount(self) -> None:
        self.accounting.reset(tuple(self.conversation.prompt_messages()))

    def apply(self, event: object) -> tuple[bool, tuple[int, int] | None]:
        """Fold one event in; returns (usage may have changed, (sent, counted) if the server
        truncated)."""
        acc = self.accounting
        match event:
            case SessionOpened():
                # A new conversation; what is known of the models' vocabularies stays.
                self.accounting = acc = Accounting(cache=acc.cache, exact=acc.exact)
                self.conversation = Conversation()
                self.conversation.apply(event)
                self._recount()
            case ModelSelected(model=model):
                if model != acc.model:
                    acc.model = model
                    self._recount()
            case VocabularyLoaded(model=model, digest=digest):
                found = self.tokenizers(digest)
                if found is None:  # a replay on a machine without the cached tokenizer
                    return False, None
                acc.exact[model] = Exact(found)
                self._measure(model)
                self._recount()
            case TemplateRendered(model=model):
                # Each load renders the probes again; the latest rendering of each counts.
                self.renders.setdefault(model, {})[event.messages] = event
                self._measure(model)
                self._recount()
            case ContextSizeChosen(num_ctx=num_ctx):
                acc.num_ctx = num_ctx
            case ModelLoaded(model=model, context_length=length):
                if length > 0:
                    acc.served[model] = length
                return False, None
            case MessageAdded(message=message):
                self.conversation.apply(event)
                acc.add(message)
            case (
                ContextReduced()
                | ContextCleared()
                | CompressionCompleted()
                | SnapshotRestored()
                | SystemPromptSet()
            ):
                # The conversation changed shape: recount it (O(messages), rare).
                self.conversation.apply(event)
                acc.reset(tuple(self.conversation.prompt_messages()))
            case ChatRequested():
                self.conversation.apply(event)
                acc.on_request(event)
                return False, None
            case ReplyCompleted():
                return True, acc.on_reply(event)
            case PromptRendered():
                acc.on_rendered(event)
                return False, None
            case CalibrationRestored(model=model, factor=factor, extra=extra):
                acc.prior[model] = (factor, extra)
            case _:
                self.conversation.apply(event)
                return False, None
        return True, None


Accepted = (
    SessionOpened
    | ModelSelected
    | ContextSizeChosen
    | ModelLoaded
    | MessageAdded
    | ContextReduced
    | ContextCleared
    | SnapshotRestored
    | SystemPromptSet
    | CompressionCompleted
    | ChatRequested
    | ReplyCompleted
    | PromptRendered
    | CalibrationRestored
    | VocabularyLoaded
    | TemplateRendered
)


class TokenCounterActor(Actor[Accepted]):
    """Keeps the `Ledger` up to date and publishes `UsageChanged` after every change."""

    accepts = (
        *STRUCTURAL,
        ModelSelected,
        ContextSizeChosen,
        ModelLoaded,
        MessageAdded,
        ChatRequested,
        ReplyCompleted,
        PromptRendered,
        CalibrationRestored,
        VocabularyLoaded,
        TemplateRendered,
    )

    def __init__(self, tokenizers: Tokenizers | None = None) -> None:
        self.ledger = Ledger(tokenizers)

    @property
    def accounting(self) -> Accounting:
        return self.ledger.accounting

    async def handle(self, event: Accepted, ctx: Context) -> None:
        acc = self.accounting
        replied = isinstance(event, ReplyCompleted)  # only a reply recalibrates
        before = (dict(acc.factors), dict(acc.extra)) if replied else ({}, {})
        changed, truncated = self.ledger.apply(event)
        if replied:
            for model in sorted(set(acc.factors) | set(acc.extra)):
                now = (acc.factors.get(model), acc.extra.get(model))
                if now != (before[0].get(model), before[1].get(model)):
                    await ctx.publish(
                        CalibrationChanged(
                            model=model, factor=acc.factor_of(model), extra=acc.extra_of(model)
                        )
                    )
        if truncated is not None:
            sent, counted = truncated
            rid = event.request_id if isinstance(event, ReplyCompleted) else ""
            await ctx.publish(
                TruncationDetected(request_id=rid, sent_tokens=sent, counted_tokens=counted)
            )
            await ctx.publish(
                UserNotified(
                    level="warning",
                    text=f"Ollama truncated the conversation: it counted {counted} "
                    f"prompt tokens of about {sent} sent ({sent - counted} dropped)",
                )
            )
        if changed:
            await self._publish_usage(ctx)

    async def _publish_usage(self, ctx: Context) -> None:
        if not self.accounting.num_ctx:
            return
        # Published after every change, even an unchanged figure: the session sends a request
        # on the usage that follows its message, so it must always come.
        await ctx.publish(self.ledger.usage())
