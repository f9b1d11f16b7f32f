"""What a compression must never lose: the anchors people cite, how they are found, how much
each matters, and which of them the pinned block holds (pure).

An anchor is a piece of text to keep verbatim: a path, an id, a hash, a version, a host or
address, an e-mail, a URL, an error code, a number with its unit, or one of the user's
standing instructions. Each has a rank, and rank — not age — decides what the pinned block
gives up first when it is full:

0. the user's instructions ("always …", "never …", "don't …");
1. facts the user stated (found in the user's own, short messages);
2. identifiers seen only in pasted material (a long user message, or one with code);
3. identifiers seen only in the assistant's replies.

The ledger is every anchor any compression had to keep. It only grows (a later compression
never forgets what an earlier one had to keep), and the pinned block is the part of it the
current summary does not carry verbatim, best rank first, bounded in tokens.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from .events import Anchor, Message
from .tokens import estimate_text

INSTRUCTION, STATED, PASTED, REPLY = 0, 1, 2, 3
RANKS = ("instruction", "stated", "pasted", "reply")
PASTED_CHARS = 800
"""A user message longer than this, or one holding a code block, is pasted material."""
LEDGER_MAX = 400
"""The ledger keeps at most this many anchors (the worst ranked and newest go)."""
PIN_OVERHEAD = 2
"""Tokens per pinned line beyond its text (the "- " and the line break)."""

_UNITS = (
    "ms|s|sec|min|h|hours|days|KB|KiB|MB|MiB|GB|GiB|TB|TiB|tokens|%|px|°C|Hz|MHz|GHz|rpm|"
    "req/s|ops/s|kB|B"
)
_RECOGNISERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("url", re.compile(r"\bhttps?://[^\s)<>\]\"'`]+")),
    ("email", re.compile(r"\b[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+\b")),
    ("windows path", re.compile(r"\b[A-Za-z]:\\(?:[^\\\s\"'<>|]+\\)*[^\\\s\"'<>|,;]+")),
    (
        "path",
        re.compile(
            r"(?<![\w/.~-])(?:~|\.{1,2})?/(?:[\w.@+-]+/)*[\w.@+-]*[\w@+-]"
            r"|(?<![\w/~-])(?:[\w.@+-]+/)+[\w@+-]+\.[A-Za-z0-9]{1,8}\b"
        ),
    ),
    (
        "file",
        re.compile(
            r"(?<![\w/.-])[\w-]+\.(?:py|rs|go|ts|js|tsx|jsx|md|json|yaml|yml|toml|"
            r"txt|csv|parquet|c|h|cpp|java|sh|sql|cfg|ini|log|xml|html|lock)\b"
        ),
    ),
    ("ip", re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?![\w.])")),
    (
        "host",
        re.compile(
            r"(?<![\w.@/-])(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+"
            r"(?:com|org|net|io|dev|internal|local|lan|corp|cloud|ai|app|example|test)"
            r"(?::\d{1,5})?(?![\w-]|\.\w)"
            r"|\blocalhost:\d{1,5}\b"
            r"|\bip-\d{1,3}(?:-\d{1,3}){3}\b"
        ),
    ),
    ("port", re.compile(r"\bport \d{2,5}\b")),
    (
        "error code",
        re.compile(r"\b(?:[A-Z][A-Z0-9]*_)+[A-Z0-9]+\b|\b(?:E|ERR|HTTP|CVE)-?\d{2,}(?:-\d+)?\b"),
    ),
    ("ticket", re.compile(r"\b[A-Z][A-Z0-9]{1,9}-\d{1,7}\b")),
    ("version", re.compile(r"(?<![\w.])v?\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?(?![\w.])")),
    ("hash", re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b")),
    ("quantity", re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s?(?:" + _UNITS + r")(?![\w/])")),
    ("code", re.compile(r"`([^`\n]{2,60})`")),
    ("identifier", re.compile(r"\b[a-z]+(?:_[a-z0-9]+)+\b|\b[a-z]+(?:[A-Z][a-z0-9]+)+\b")),
)
_DIRECTIVES = ("always", "never", "don't", "do not", "must", "avoid")
_SENTENCE_END = ".!?\n"


def recognise(text: str) -> list[tuple[str, str]]:
    """(kind, anchor) for everything in `text` people cite, in order of appearance; a match
    inside a longer one (the host of a URL, the IP of a path) is not listed again."""
    found: list[tuple[int, int, str, str]] = []
    for kind, pattern in _RECOGNISERS:
        for match in pattern.finditer(text):
            group = 1 if pattern.groups else 0
            value = match.group(group).rstrip(".,;:")
            if len(value) >= 2:
                found.append((match.start(group), match.start(group) + len(value), kind, value))
    found.sort(key=lambda f: (f[0], -(f[1] - f[0])))
    kept: list[tuple[str, str]] = []
    covered_to = -1
    for _start, end, kind, value in found:
        if end <= covered_to:
            continue
        kept.append((kind, value))
        covered_to = max(covered_to, end)
    return kept


def instructions(text: str) -> list[str]:
    """The user's standing instructions: sentences with always/never/don't/must/avoid.

    Found by plain substring search, then widened to the sentence: linear in the text.
    """
    lowered = text.lower()
    spans: set[tuple[int, int]] = set()
    for word in _DIRECTIVES:
        at = lowered.find(word)
        while at != -1:
            before = lowered[at - 1] if at else " "
            after = lowered[at + len(word)] if at + len(word) < len(lowered) else " "
            if not before.isalnum() and not after.isalnum():
                start = max(text.rfind(c, 0, at) for c in _SENTENCE_END) + 1
                ends = [e for e in (text.find(c, at) for c in _SENTENCE_END) if e != -1]
                end = min(ends) + 1 if ends else len(text)
                spans.add((start, end))
            at = lowered.find(word, at + 1)
    return [text[a:b].strip() for a, b in sorted(spans)]


def message_rank(message: Message) -> int:
    """How much the identifiers of one message matter."""
    if message.role != "user":
        return REPLY
    pasted = len(message.content) > PASTED_CHARS or "```" in message.content
    return PASTED if pasted else STATED


def collect(messages: Sequence[Message]) -> list[Anchor]:
    """The anchors of `messages`, each at its best rank, in order of appearance."""
    best: dict[str, int] = {}
    for message in messages:
        rank = message_rank(message)
        found = [value for _kind, value in recognise(message.content)]
        for call in message.tool_calls:
            found += [value for _kind, value in recognise(call.arguments)]
        for value in found:
            best[value] = min(best.get(value, rank), rank)
        if message.role == "user":
            # A rule in pasted material is the material's, not the user's standing rule.
            rule_rank = INSTRUCTION if rank == STATED else PASTED
            for rule in instructions(message.content):
                best[rule] = min(best.get(rule, rule_rank), rule_rank)
    return [Anchor(text=text, rank=rank) for text, rank in best.items()]


def merge(ledger: Sequence[Anchor], new: Iterable[Anchor]) -> tuple[Anchor, ...]:
    """The ledger with `new` anchors added: each anchor once, at the best rank it has had,
    in the order first seen; beyond `LEDGER_MAX`, the worst ranked and newest go."""
    ranks: dict[str, int] = {a.text: a.rank for a in ledger}
    for anchor in new:
        ranks[anchor.text] = min(ranks.get(anchor.text, anchor.rank), anchor.rank)
    merged = [Anchor(text=t, rank=r) for t, r in ranks.items()]
    if len(merged) > LEDGER_MAX:
        order = {a.text: i for i, a in enumerate(merged)}
        keep = {a.text for a in sorted(merged, key=lambda a: (a.rank, order[a.text]))[:LEDGER_MAX]}
        merged = [a for a in merged if a.text in keep]
    return tuple(merged)


def by_priority(ledger: Sequence[Anchor]) -> list[tuple[int, Anchor]]:
    """(position, anchor), most important first: what the user said (rules and stated facts
    alike, the earliest first), then pasted material, then the replies'."""
    order = sorted(range(len(ledger)), key=lambda i: (max(ledger[i].rank, STATED), i))
    return [(i, ledger[i]) for i in order]


def pins(ledger: Sequence[Anchor], summary: str, budget_tokens: int) -> tuple[Anchor, ...]:
    """The pinned block: the ledger anchors the summary does not carry verbatim, by
    priority, as many as `budget_tokens` holds, in the ledger's order."""
    chosen: list[tuple[int, Anchor]] = []
    used = 0
    for index, anchor in by_priority(ledger):
        if anchor.text in summary:
            continue
        cost = estimate_text(anchor.text) + PIN_OVERHEAD
        if used + cost > budget_tokens:
            continue
        used += cost
        chosen.append((index, anchor))
    return tuple(anchor for _index, anchor in sorted(chosen, key=lambda c: c[0]))
