"""Anchors: what people cite is recognised, ranked, kept in a ledger across every compression,
and pinned by rank — checked on real text over 20 rolling compressions."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from ollm.anchors import INSTRUCTION, PASTED, REPLY, STATED, collect, merge, pins, recognise
from ollm.compression import compress, pin_budget
from ollm.conversation import render_context
from ollm.events import Anchor, ChatMessage, Message

POSITIVES = [
    ("path", "the data is in /srv/data/report-7.csv now", "/srv/data/report-7.csv"),
    ("path", "edit ~/projects/app/config.yaml first", "~/projects/app/config.yaml"),
    ("path", "see ./build/out/app.log", "./build/out/app.log"),
    ("path", "it is src/server/handlers.py that fails", "src/server/handlers.py"),
    ("windows path", r"open C:\Users\ana\AppData\app.ini", r"C:\Users\ana\AppData\app.ini"),
    ("file", "change setup.cfg and rerun", "setup.cfg"),
    ("ticket", "JOB-90211 failed again", "JOB-90211"),
    ("ticket", "tracked in PROJ-1234.", "PROJ-1234"),
    ("hash", "commit a3f9c2e1b7 broke it", "a3f9c2e1b7"),
    ("hash", "sha256 9f86d081884c7d65 matches", "9f86d081884c7d65"),
    ("version", "pin numpy 1.26.4 please", "1.26.4"),
    ("version", "the build v3.14.159-rc2 is out", "v3.14.159-rc2"),
    ("host", "connect to db-prod-03.internal:5432.", "db-prod-03.internal:5432"),
    ("host", "node ip-10-42-7-19 rebooted", "ip-10-42-7-19"),
    ("host", "it listens on localhost:3000", "localhost:3000"),
    ("ip", "the server is 10.0.0.12:8080", "10.0.0.12:8080"),
    ("port", "open port 8443 on the firewall", "port 8443"),
    ("email", "write to ana@example.com today", "ana@example.com"),
    ("url", "read https://example.org/a/b?x=1, then", "https://example.org/a/b?x=1"),
    ("error code", "it died with E_TIMEOUT_504", "E_TIMEOUT_504"),
    ("error code", "Chrome says ERR_CONNECTION_RESET", "ERR_CONNECTION_RESET"),
    ("error code", "returns HTTP-503 under load", "HTTP-503"),
    ("quantity", "the file is 42.5 GiB", "42.5 GiB"),
    ("quantity", "it takes 250ms", "250ms"),
    ("code", "set `max_retries` to 3", "max_retries"),
    ("identifier", "call load_settings before", "load_settings"),
]
NEGATIVES = [
    "e.g. this is fine, i.e. nothing to keep.",
    "Version 3.14 of the year 2026 was a good decade.",
    "They added a deadbeef facade to the cafe.",
    "Call me at 5 pm; the ratio is 0.5 and the answer is 42.",
    "It is well-known and up-to-date.",
    "Use Python and JavaScript for the web site.",
]


@pytest.mark.parametrize(("kind", "text", "anchor"), POSITIVES)
def test_what_people_cite_is_recognised(kind, text, anchor):
    assert (kind, anchor) in recognise(text), recognise(text)


@pytest.mark.parametrize("text", NEGATIVES)
def test_ordinary_words_and_numbers_are_not_anchors(text):
    assert recognise(text) == []


def test_a_match_inside_a_longer_one_is_listed_once():
    found = recognise("see https://db-prod-03.internal:5432/v1.2.3/report.csv now")
    assert found == [("url", "https://db-prod-03.internal:5432/v1.2.3/report.csv")]


def test_ranks_follow_who_said_it_and_how():
    rule = "Never use tabs in generated YAML; always use two spaces."
    short = Message(id="m1", role="user", content=f"JOB-90211 is mine. {rule}")
    pasted = Message(id="m2", role="user", content="```\n" + "PASTE-1 a3f9c2e1b7 " * 60 + "```")
    reply = Message(id="m3", role="assistant", content="Try OPS-4471 and JOB-90211.")
    ranks = {a.text: a.rank for a in collect([short, pasted, reply])}
    assert ranks[rule] == INSTRUCTION
    assert ranks["JOB-90211"] == STATED, "its best rank: the user stated it"
    assert ranks["PASTE-1"] == PASTED
    assert ranks["OPS-4471"] == REPLY


def test_a_full_pinned_block_gives_up_replies_and_pasted_text_first_and_never_the_earliest_rules():
    ledger = (
        Anchor(text="Always answer in English.", rank=INSTRUCTION),
        Anchor(text="JOB-90211", rank=STATED),
        *(Anchor(text=f"REPLY-{i}", rank=REPLY) for i in range(50)),
        *(Anchor(text=f"PASTE-{i}", rank=PASTED) for i in range(50)),
        Anchor(text="E_TIMEOUT_504", rank=STATED),
    )
    chosen = [a.text for a in pins(ledger, "", budget_tokens=60)]
    assert chosen[:2] == ["Always answer in English.", "JOB-90211"]
    assert "E_TIMEOUT_504" in chosen
    assert any(t.startswith("PASTE-") for t in chosen) and not any(
        t.startswith("REPLY-") for t in chosen
    ), "pasted text outranks the assistant's replies"
    assert sum(len(t.split()) for t in chosen) < 60


def test_the_ledger_keeps_each_anchor_once_at_its_best_rank():
    ledger = merge((Anchor(text="A-1", rank=REPLY),), [Anchor(text="A-1", rank=STATED)])
    assert ledger == (Anchor(text="A-1", rank=STATED),)
    assert merge(ledger, [Anchor(text="A-1", rank=PASTED)]) == ledger


# --- 20 rolling compressions of real text ---------------------------------------------------

PLANTED = [
    "/srv/data/report-7.csv",
    "42.5 GiB",
    "JOB-90211",
    "E_TIMEOUT_504",
    "Never use tabs in generated YAML; always use two spaces.",
    "~/deploy/config/pipeline.yaml",
    "a3f9c2e1b7",
    "v3.14.159-rc2",
    "db-prod-03.internal:5432",
    "ana@example.com",
]
FIRST_TURNS = [
    "The nightly export writes /srv/data/report-7.csv, about 42.5 GiB, and JOB-90211 died "
    "with E_TIMEOUT_504 last night.",
    "Never use tabs in generated YAML; always use two spaces. The pipeline reads "
    "~/deploy/config/pipeline.yaml and was built from commit a3f9c2e1b7 as v3.14.159-rc2.",
    "It writes to db-prod-03.internal:5432; questions go to ana@example.com.",
]


def real_text() -> Iterator[str]:
    """The standard library's own documentation: real text, full of its own paths, numbers
    and identifiers, written by nobody here (cycled when it runs out)."""
    import importlib
    import itertools
    import warnings

    names = [
        "json",
        "logging",
        "os",
        "pathlib",
        "subprocess",
        "shutil",
        "email",
        "urllib.parse",
        "collections",
        "argparse",
        "asyncio",
        "datetime",
        "re",
        "socket",
        "http.client",
        "unittest",
        "tarfile",
        "zipfile",
        "sqlite3",
        "threading",
        "decimal",
        "statistics",
        "inspect",
    ]
    texts = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module in map(importlib.import_module, names):
            for name in sorted(dir(module)):
                doc = getattr(getattr(module, name, None), "__doc__", None)
                if isinstance(doc, str) and len(doc) > 200:
                    texts.append(" ".join(doc.split())[:1500])
    return itertools.cycle(texts)


def keeps_all(request: tuple[ChatMessage, ...], budget: int) -> str:
    listed = request[-1].content.split("These must appear verbatim in the summary:\n")
    required = [line[2:] for line in listed[1].splitlines()] if len(listed) > 1 else []
    return "The user and the assistant discussed the documentation. " + "; ".join(required)


async def forgets_all(request: tuple[ChatMessage, ...], budget: int) -> str:
    return "The user and the assistant talked about Python modules and how to use them."


def forgets_at_random(seed: int):
    rng = random.Random(seed)

    async def summarize(request: tuple[ChatMessage, ...], budget: int) -> str:
        listed = request[-1].content.split("These must appear verbatim in the summary:\n")
        required = [line[2:] for line in listed[1].splitlines()] if len(listed) > 1 else []
        kept = [r for r in required if rng.random() < 0.5]
        return "They went through the module documentation together. " + "; ".join(kept)

    return summarize


async def _keeps(request: tuple[ChatMessage, ...], budget: int) -> str:
    return keeps_all(request, budget)


@pytest.mark.anyio
@pytest.mark.parametrize("num_ctx", [3482, 6963, 27853])
@pytest.mark.parametrize("summarizer", ["keeps", "forgets", "random"])
async def test_20_rolling_compressions_keep_every_planted_anchor(num_ctx, summarizer):
    summarize = {"keeps": _keeps, "forgets": forgets_all, "random": forgets_at_random(7)}[
        summarizer
    ]
    docs = real_text()
    messages: list[Message] = []
    summary = ""
    ledger: tuple[Anchor, ...] = ()
    compressions, n = 0, 0
    while compressions < 20:
        n += 1
        text = FIRST_TURNS[n - 1] if n <= len(FIRST_TURNS) else next(docs)
        messages.append(Message(id=f"m{2 * n}", role="user", content=text))
        messages.append(Message(id=f"m{2 * n + 1}", role="assistant", content=next(docs)[:600]))
        context = render_context(summary, ())
        size = sum(len(m.content) for m in messages) // 4 + len(context) // 4
        if size < 0.75 * num_ctx:
            continue
        done = await compress(
            messages,
            "hybrid",
            summarize=summarize,
            previous_summary=summary,
            ledger=ledger,
            num_ctx=num_ctx,
            preserve_tokens=int(0.3 * num_ctx),
            summary_tokens=int(0.1 * num_ctx),
        )
        assert done is not None
        kept, outcome = done
        messages, summary, ledger = list(kept), outcome.summary, outcome.ledger
        compressions += 1
        prompt = render_context(summary, outcome.pinned) + "".join(m.content for m in messages)
        lost = [a for a in PLANTED if a not in prompt]
        assert not lost, (compressions, lost)
    block = render_context(summary, outcome.pinned)
    assert len(block) // 4 <= pin_budget(num_ctx) + int(0.1 * num_ctx) + 200, "bounded"
