"""Pure token accounting: estimates, per-model calibration, and the running total.

Until a reply reports Ollama's own counts, a message costs `estimate_text` of its content
plus the template's role tokens. Each reply's `prompt_eval_count` then does two things:
it calibrates the content estimate per model (tokens per estimated token; the first time on
the prompt as the model's template rendered it, when the server shows it, so the template's
own tokens are kept apart), and it anchors the total: the prompt just sent is known exactly,
so the next prompt is that exact figure plus estimates for what was added since (the reply
itself is known exactly from `eval_count`).

Once the model's own tokenizer is known (`Exact`), none of that guesswork is needed: every
message is counted by it (with the wrapper its template writes around it, when the template's
probes were measured: `template_costs`), the factor is 1, and the server's counts only anchor
the total and, where the template could not be measured, give its fixed part exactly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from blake3 import blake3

from . import vocabulary
from .events import (
    ChatMessage,
    ChatRequested,
    Message,
    PromptRendered,
    ReplyCompleted,
    ToolCall,
    ToolSchema,
)
from .template_costs import TemplateCosts, message_cost

ROLE_OVERHEAD = 4
"""Template and role tokens around each message (`<|start|>user\\n … <|end|>`)."""
PRIMING = 4
"""BOS and the assistant header that opens the reply."""
TOOL_CALL_OVERHEAD = 8
"""Per tool call: the wrapper the template puts around its name and arguments."""
TOOL_SCHEMA_OVERHEAD = 10
"""Per tool offered: the wrapper around its JSON schema in the prompt."""
TRUNCATION_RATIO = 0.85
"""A server count below this share of what was sent means the server cut the prompt…"""
UNCALIBRATED_TRUNCATION_RATIO = 0.5
"""…or below this share before the model's first calibration, while estimates are rough."""
MIN_FACTOR, MAX_FACTOR = 0.25, 4.0
REPLY_FIT_MIN = 24
"""A reply of at least this many estimated tokens calibrates a model's first factor."""
TEMPLATE_TAG = re.compile(
    r"<\|[^|<>\s]{1,40}\|>|</?s>|<(?:start|end)_of_turn>|\[/?(?:INST|SYSTEM_PROMPT)\]"
)
"""Markers chat templates put around messages, each one token of the model's vocabulary
(ChatML's `<|im_start|>`, llama 3's `<|eot_id|>`, Gemma's `<start_of_turn>`, Mistral's
`[INST]`, SentencePiece's `<s>`)."""


def estimate_rendered(text: str) -> tuple[int, int]:
    """A rendered prompt as (template markers, raw units of everything else)."""
    markers = len(TEMPLATE_TAG.findall(text))
    return markers, estimate_text(TEMPLATE_TAG.sub("", text))


_PIECE = re.compile(r"[^\W\d_]+|\d|\s+|[^\s]", re.UNICODE)
_ASCII_PIECE = re.compile(r"[A-Za-z]{1,6}|\d|\s{2,}|[^\S ]|[^\sA-Za-z\d]")
"""The same rule for ASCII text as one match per token (six-letter chunks, so a word of n
letters is ceil(n / 6)), counted in one pass."""


def estimate_text(text: str) -> int:
    """The fallback estimate, before any calibration: a token per word (and one more per six
    letters after the first), per digit, per punctuation mark or symbol, and per run of
    whitespace other than one space. BPE vocabularies split text about so: on prose, code
    and identifier-heavy text it stays within 0.85–1.05 of SmolLM2's real count, where
    characters / 4 ranged from 0.8 (prose) to 2.5 (digits and ids) — so one calibration
    factor fits every kind of text."""
    if text.isascii():
        return len(_ASCII_PIECE.findall(text))
    count = 0
    for piece in _PIECE.findall(text):
        if piece == " ":
            continue
        count += _letters(piece) if piece[0].isalpha() else 1
    return count


def _letters(word: str) -> int:
    """Latin words as above; ideographs and kana a token each; other scripts (Cyrillic,
    Greek, Arabic, …), which English-centred vocabularies split finely, one per three."""
    if word.isascii() or max(map(ord, word)) < 0x250:
        return 1 + (len(word) - 1) // 6
    if max(map(ord, word)) >= 0x2E80:
        return len(word)
    return 1 + (len(word) - 1) // 3


@dataclass
class TokenCache:
    """Counts keyed by the blake3 digest of what was counted: the estimate's raw units, or
    (with `count` the model's tokenizer, `entries` its vocabulary's shared counts) tokens."""

    entries: dict[bytes, int] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0
    count: Callable[[str], int] = estimate_text

    def raw(self, text: str) -> int:
        key = _digest(text)
        value = self.entries.get(key)
        if value is None:
            self.misses += 1
            value = self.count(text)
            self.entries[key] = value
        else:
            self.hits += 1
        return value

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


def _tool_call_text(call: ToolCall) -> str:
    return f"{call.name}({call.arguments})"


@dataclass
class Counted:
    """One message's count: raw content units and fixed overhead, so calibration can rescale."""

    raw: int
    overhead: int
    role: str = ""

    def tokens(self, factor: float) -> int:
        return math.ceil(self.raw * factor) + self.overhead


def count_message(
    message: Message | ChatMessage, raw: Callable[[str], int] = estimate_text
) -> Counted:
    """The one per-message count: its content and each tool call in raw units (`raw`, the
    `estimate_text` unless a cache is given), plus the template's overhead around them."""
    units = raw(message.content)
    overhead = ROLE_OVERHEAD
    for call in message.tool_calls:
        units += raw(_tool_call_text(call))
        overhead += TOOL_CALL_OVERHEAD
    return Counted(raw=units, overhead=overhead, role=message.role)


Method = Literal["exact", "exact content", "calibrated", "estimated"]
METHODS: dict[Method, str] = {
    "exact": "exact: the model's own tokenizer, the template's tokens measured",
    "exact content": "exact content: the model's own tokenizer; the template's tokens "
    "learned from Ollama's counts",
    "calibrated": "calibrated estimate: the model's vocabulary is not available",
    "estimated": "estimate, not yet calibrated (the first reply calibrates it)",
}
"""How a model's tokens are counted, in words (`/context stats`)."""


@dataclass
class Exact:
    """A model counted by its own tokenizer (`vocabulary.build_tokenizer`), and the costs of
    its template once they are measured."""

    vocabulary: vocabulary.Vocabulary
    costs: TemplateCosts | None = None
    cache: TokenCache = field(init=False)

    def __post_init__(self) -> None:
        tokenizer = self.vocabulary.tokenizer
        self.cache = TokenCache(
            self.vocabulary.counts, count=lambda text: vocabulary.count(tokenizer, text)
        )

    def tokens(self, text: str) -> int:
        return self.cache.raw(text)

    def count(self, message: Message | ChatMessage) -> Counted:
        wrapped = (
            message_cost(self.costs.wrappers, message.role, message.content) if self.costs else None
        )
        if wrapped is None:
            units, overhead = self.tokens(message.content), ROLE_OVERHEAD
        else:
            units, overhead = self.tokens(wrapped), 0
        for call in message.tool_calls:
            units += self.tokens(_tool_call_text(call))
            overhead += TOOL_CALL_OVERHEAD
        return Counted(raw=units, overhead=overhead, role=message.role)

    def fixed(self, opens_with_system: bool) -> int | None:
        """The template's tokens outside the messages, when measured for this shape."""
        return self.costs.fixed.get(opens_with_system) if self.costs else None


def message_tokens(message: Message | ChatMessage) -> int:
    """A message's estimated tokens before any calibration (compression plans, truncation
    and snapshot metadata use it; the token counter calibrates the same count)."""
    return count_message(message).tokens(1.0)


@dataclass
class Sent:
    """What a request carried, as estimated when it was sent."""

    model: str
    raw: int
    overhead: int
    message_count: int
    chat: bool = True
    window: int = 0
    """The context the server had for it: `num_ctx`, or less if the server said so."""
    fixed: int = PRIMING
    """Tokens outside the messages: `PRIMING`, or the template's measured part."""
    opens_with_system: bool = False


@dataclass
class Accounting:
    """The running count of one conversation against `num_ctx`.

    Every operation on a message is O(1); recalibration rescales in O(messages) once per reply.
    """

    num_ctx: int = 0
    model: str = ""
    cache: TokenCache = field(default_factory=TokenCache)
    factors: dict[str, float] = field(default_factory=dict)
    messages: dict[str, Counted] = field(default_factory=dict)
    raw_total: int = 0
    overhead_total: int = 0
    correction: int = 0
    """Exact minus estimated tokens of the last prompt the server counted (the anchor)."""
    tools_raw: int = 0
    tools_overhead: int = 0
    sent: dict[str, Sent] = field(default_factory=dict)
    reply_tokens: dict[bytes, int] = field(default_factory=dict)
    served: dict[str, int] = field(default_factory=dict)
    """The context each loaded model really has (`/api/ps` `context_length`), when known."""
    rendered: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Requests whose prompt the template rendered: (markers, raw units), until the reply."""
    extra: dict[str, int] = field(default_factory=dict)
    """Tokens a model's template adds on its own beyond the messages' estimate (a default
    system prompt, its markers), learned from the first rendered prompt's count."""
    prior: dict[str, tuple[float, int]] = field(default_factory=dict)
    """(factor, extra) an earlier session learned, used until this one calibrates."""
    exact: dict[str, Exact] = field(default_factory=dict)
    """Models whose own tokenizer is known: counted exactly, never calibrated."""

    @property
    def factor(self) -> float:
        return self.factor_of(self.model)

    def factor_of(self, model: str) -> float:
        if model in self.exact:
            return 1.0
        return self.factors.get(model, self.prior.get(model, (1.0, 0))[0])

    def method(self, model: str | None = None) -> Method:
        model = self.model if model is None else model
        exact = self.exact.get(model)
        if exact is not None:
            return "exact" if exact.costs is not None else "exact content"
        return "calibrated" if model in self.factors or model in self.prior else "estimated"

    def _fixed(self, model: str, opens_with_system: bool) -> int:
        """The prompt's tokens outside its messages."""
        exact = self.exact.get(model)
        measured = exact.fixed(opens_with_system) if exact is not None else None
        return measured if measured is not None else PRIMING + self.extra_of(model)

    def extra_of(self, model: str) -> int:
        return self.extra.get(model, self.prior.get(model, (1.0, 0))[1])

    def fork(self) -> Accounting:
        """An independent copy: what-if counting (`/test prompt`) without touching this one."""
        cache = replace(self.cache, entries=dict(self.cache.entries))
        return replace(
            self,
            cache=cache,
            factors=dict(self.factors),
            messages=dict(self.messages),
            sent=dict(self.sent),
            reply_tokens=dict(self.reply_tokens),
            served=dict(self.served),
            rendered=dict(self.rendered),
            extra=dict(self.extra),
            prior=dict(self.prior),
            exact=dict(self.exact),
        )

    def count(self, message: Message | ChatMessage, model: str | None = None) -> Counted:
        exact = self.exact.get(self.model if model is None else model)
        return exact.count(message) if exact is not None else count_message(message, self.cache.raw)

    def text_units(self, text: str, model: str | None = None) -> int:
        exact = self.exact.get(self.model if model is None else model)
        return exact.tokens(text) if exact is not None else self.cache.raw(text)

    def used(self) -> int:
        """Tokens the next prompt will take, as far as is known now."""
        content = math.ceil(self.raw_total * self.factor)
        return content + self.overhead_total + self.outside_messages() + self.correction

    def outside_messages(self) -> int:
        """The prompt's tokens that are no message's: the template's own, the tools offered."""
        first = next(iter(self.messages.values()), None)
        opens_with_system = first is not None and first.role == "system"
        tools = math.ceil(self.tools_raw * self.factor) + self.tools_overhead
        return tools + self._fixed(self.model, opens_with_system)

    @property
    def counting_cache(self) -> TokenCache:
        """The cache the current model is counted through."""
        exact = self.exact.get(self.model)
        return exact.cache if exact is not None else self.cache

    def tokens_of(self, message_id: str) -> int:
        """One message's tokens as counted now (0 for one not counted)."""
        counted = self.messages.get(message_id)
        return counted.tokens(self.factor) if counted is not None else 0

    def add(self, message: Message) -> None:
        counted = self.count(message)
        if message.role == "assistant" and not message.tool_calls and self.model not in self.exact:
            exact = self.reply_tokens.pop(_digest(message.content), None)
            if exact is not None:
                # The reply's length is known exactly: fold the difference into the anchor.
                self.correction += exact - math.ceil(counted.raw * self.factor)
        previous = self.messages.get(message.id)
        if previous is not None:
            self.raw_total -= previous.raw
            self.overhead_total -= previous.overhead
        self.messages[message.id] = counted
        self.raw_total += counted.raw
        self.overhead_total += counted.overhead

    def remove(self, ids: tuple[str, ...]) -> None:
        for message_id in ids:
            counted = self.messages.pop(message_id, None)
            if counted is not None:
                self.raw_total -= counted.raw
                self.overhead_total -= counted.overhead
        self.correction = 0  # the anchored prompt no longer exists

    def reset(self, messages: tuple[Message, ...]) -> None:
        """Recount from scratch (keeps the model, num_ctx, calibration and cache)."""
        self.messages.clear()
        self.raw_total = self.overhead_total = self.correction = 0
        for message in messages:
            self.add(message)

    def set_tools(self, tools: tuple[ToolSchema, ...], model: str | None = None) -> None:
        self.tools_raw = sum(
            self.text_units(f"{t.name} {t.description} {t.parameters}", model) for t in tools
        )
        self.tools_overhead = TOOL_SCHEMA_OVERHEAD * len(tools)

    def on_request(self, request: ChatRequested) -> None:
        raw = overhead = 0
        for message in request.messages:
            counted = self.count(message, request.model)
            raw += counted.raw
            overhead += counted.overhead
        if request.purpose == "chat":
            self.set_tools(request.tools, request.model)
        raw += self.tools_raw if request.tools else 0
        overhead += self.tools_overhead if request.tools else 0
        opens_with_system = bool(request.messages) and request.messages[0].role == "system"
        exact = self.exact.get(request.model)
        measured = exact.fixed(opens_with_system) if exact is not None else None
        window = request.options.num_ctx
        if self.served.get(request.model):
            window = min(window, self.served[request.model])
        self.sent[request.request_id] = Sent(
            model=request.model,
            raw=raw,
            overhead=overhead,
            message_count=len(request.messages),
            chat=request.purpose == "chat",
            window=window,
            fixed=PRIMING if measured is None else measured,
            opens_with_system=opens_with_system,
        )

    def on_rendered(self, event: PromptRendered) -> None:
        self.rendered[event.request_id] = estimate_rendered(event.text)

    def on_reply(self, reply: ReplyCompleted) -> tuple[int, int] | None:
        """Calibrate from the server's counts.

        Returns:
            (sent, counted) when the server counted far fewer prompt tokens than were sent
            and the prompt may have been longer than the server's context (it truncated),
            else None. Ollama cuts only a prompt that does not fit; a low count on a prompt
            far below the context is the estimate's error, and calibrates it.
        """
        sent = self.sent.pop(reply.request_id, None)
        chat = sent is None or sent.chat
        if chat and reply.eval_count > 0 and reply.content and not reply.tool_calls:
            self.reply_tokens[_digest(reply.content)] = reply.eval_count
        if sent is None or reply.prompt_eval_count <= 0:
            return None
        rendered = self.rendered.pop(reply.request_id, None)
        exact = self.exact.get(sent.model)
        if exact is not None:
            return self._exact_reply(sent, reply.prompt_eval_count, exact)
        sent = replace(sent, overhead=sent.overhead + sent.fixed, fixed=0)
        factor = self.factor_of(sent.model)
        extra = self.extra_of(sent.model)
        estimate = math.ceil(sent.raw * factor) + sent.overhead + extra
        counted = reply.prompt_eval_count
        calibrated = sent.model in self.factors
        ratio = TRUNCATION_RATIO if calibrated else UNCALIBRATED_TRUNCATION_RATIO
        if counted < ratio * estimate and estimate > ratio * sent.window:
            return estimate, counted
        first = None if rendered or calibrated else self._reply_fit(sent, reply)
        if rendered is not None and rendered[1] > 0:
            # The whole prompt as the template wrote it: its markers are a token each, the
            # rest is text like the messages'; what the messages' estimate leaves out of
            # that is the template's own part.
            markers, raw = rendered
            fitted = min(MAX_FACTOR, max(MIN_FACTOR, (counted - markers) / raw))
            self.factors[sent.model] = fitted
            self.extra[sent.model] = counted - (math.ceil(sent.raw * fitted) + sent.overhead)
        elif first is not None:
            self.factors[sent.model] = first
        elif sent.raw > 0:
            fitted = (counted - sent.overhead - extra) / sent.raw
            previous = self.factors.get(sent.model)
            fitted = min(MAX_FACTOR, max(MIN_FACTOR, fitted))
            self.factors[sent.model] = fitted if previous is None else (previous + fitted) / 2
        if sent.model == self.model and sent.chat:
            # Anchor: the prompt just counted is exact; re-estimate it with the new factor.
            estimate = math.ceil(sent.raw * self.factor) + sent.overhead
            self.correction = counted - (estimate + self.extra_of(sent.model))
        return None

    def _exact_reply(self, sent: Sent, counted: int, exact: Exact) -> tuple[int, int] | None:
        """The server's count of a prompt counted exactly: a truncation if far below it; else
        the template's fixed part where it was not measured (exactly: the rest is counted),
        and the anchor."""
        measured = exact.fixed(sent.opens_with_system) is not None
        predicted = (
            sent.raw
            + sent.overhead
            + (sent.fixed if measured else self._fixed(sent.model, sent.opens_with_system))
        )
        if counted < TRUNCATION_RATIO * predicted and predicted > TRUNCATION_RATIO * sent.window:
            return predicted, counted
        if not measured and sent.model not in self.extra:
            self.extra[sent.model] = counted - (sent.raw + sent.overhead + PRIMING)
        if sent.model == self.model and sent.chat:
            fixed = self._fixed(sent.model, sent.opens_with_system)
            self.correction = counted - (sent.raw + sent.overhead + fixed)
        return None

    def _reply_fit(self, sent: Sent, reply: ReplyCompleted) -> float | None:
        """A model's first factor, from its reply when the reply is long enough: the prompt's
        count also holds what the template adds on its own (SmolLM2's default system prompt
        is 21 tokens), which a fit from the prompt alone spreads over the content; the
        reply's count has no template in it. (The anchor keeps that template part exact.)"""
        if not sent.chat or reply.tool_calls or reply.eval_count <= 0:
            return None
        raw = self.cache.raw(reply.content)
        if raw < REPLY_FIT_MIN:
            return None
        generated = reply.eval_count - (1 if reply.done_reason == "stop" else 0)
        return min(MAX_FACTOR, max(MIN_FACTOR, generated / raw))


def _digest(text: str) -> bytes:
    return blake3(text.encode()).digest(length=16)
