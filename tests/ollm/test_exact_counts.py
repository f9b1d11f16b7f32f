"""Exact counts: the token counter with the model's own tokenizer and its template's probes.

The template here is SmolLM2's ChatML in Python (`tests.fakes.vocabulary.render_chatml`, a
default system prompt when the conversation has none) and the tokenizer the one
`ollm.vocabulary` builds from a byte-level vocabulary; what ollm counts is held to that
tokenizer's count of the whole rendered prompt, over long runs that compress, reset the
system prompt and switch the template's shape. (The engine tier holds the same to llama.cpp.)
"""

from __future__ import annotations

import random
import shutil

import msgspec
import pytest

from actors import ChildSpec, Envelope
from actors.testing import open_harness
from ollm import vocabulary
from ollm.cli.render import stats, toolbar
from ollm.config import Settings
from ollm.context.memory_guard import GuardPolicy
from ollm.context.token_counter import Ledger
from ollm.core import core_specs
from ollm.events import (
    ChatRequested,
    CompressionCompleted,
    ContextReduced,
    ContextSizeChosen,
    ConversationState,
    Message,
    MessageAdded,
    MessageUnanswered,
    ModelSelected,
    ReplyCompleted,
    Role,
    RunnerOptions,
    SessionOpened,
    SystemPromptSet,
    TemplateRendered,
    UserSubmitted,
    VocabularyLoaded,
    VocabularyUnavailable,
)
from ollm.live import Status, check_session
from ollm.paths import cache_dir, data_home
from ollm.providers.scripted import ScriptedProviderActor
from ollm.storage.tokenizer_cache import TokenizerCache
from ollm.template_costs import measure, probes
from ollm.tokens import METHODS, estimate_text
from tests.fakes.ollama_server import FakeModel, OllamaTestServer, open_ollama_server
from tests.fakes.vocabulary import LLAMA3_SPECIALS, byte_vocabulary, render_chatml

from .live import open_live

pytestmark = pytest.mark.anyio

PIECES = (
    "the river bends twice",
    "  leading spaces",
    "\nstarts on a new line",
    "ends with a newline\n",
    "JOB-90211 at ip-10-42-7-19 (42.5 GiB)",
    "def f(x):\n    return x * 2\n",
    "Der Fluss macht zwei Biegungen, überall",
    "川は町に着く前に二度曲がる",
    "🦊🌙🌲",
    "1234567890",
    "",
    "   ",
)


def tokenizer(pre: str = "gpt-2", add_bos: bool = False):
    return vocabulary.build_tokenizer(byte_vocabulary(pre=pre, add_bos=add_bos))


def real_count(tok, messages: list[Message] | tuple[Message, ...]) -> int:
    """What the engine counts: the whole rendered prompt, BOS included where it adds one."""
    text = render_chatml([msgspec.to_builtins(m) for m in messages])
    return len(tok.encode(text, add_special_tokens=True).ids)


def rendered_probes(model: str = "m") -> list[TemplateRendered]:
    return [
        TemplateRendered(
            model=model,
            messages=p,
            text=render_chatml([msgspec.to_builtins(m) for m in p]),
        )
        for p in probes()
    ]


def test_the_probes_cut_the_template_into_each_roles_wrapper_and_its_fixed_part():
    tok = tokenizer()
    costs = measure(
        [(r.messages, r.text) for r in rendered_probes()],
        lambda text: vocabulary.count(tok, text),
        vocabulary.prompt_start(tok),
    )
    assert costs is not None
    assert costs.wrappers == {
        "assistant": "<|im_end|>\n<|im_start|>assistant\n",
        "user": "<|im_end|>\n<|im_start|>user\n",
        "system": "<|im_end|>\n<|im_start|>system\n",
    }
    # Without a system message the template writes its own: the fixed part holds it.
    assert costs.fixed[False] - costs.fixed[True] == vocabulary.count(
        tok,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
        "Hugging Face<|im_end|>\n",
    )


def test_a_template_that_rewrites_the_contents_is_not_measured():
    tok = tokenizer()
    stripped = [(r.messages, r.text.upper()) for r in rendered_probes()]
    assert measure(stripped, lambda text: vocabulary.count(tok, text), 0) is None


@pytest.mark.parametrize(
    ("pre", "add_bos"), [("gpt-2", False), ("llama-bpe", True), ("qwen2", False)]
)
def test_two_thousand_turns_are_counted_exactly_through_compressions_and_system_prompts(
    pre, add_bos
):
    """Every figure the counter gives is the tokenizer's count of the prompt the template
    renders, over 2,000 turns with 20 compressions and the system prompt set, changed and
    removed (so the prompt opens with and without a system message)."""
    tok = tokenizer(pre, add_bos)
    rng = random.Random(18)
    ledger = Ledger(lambda digest: vocabulary.Vocabulary(tok) if digest == "d" else None)
    for event in (
        SessionOpened(session_id="s", state=ConversationState(system_prompt="Be brief.")),
        ModelSelected(model="m", size=1 << 20, num_ctx=1 << 20),
        ContextSizeChosen(model="m", size=1 << 20, num_ctx=1 << 20, reason="test"),
        VocabularyLoaded(model="m", digest="d", tokens=tok.get_vocab_size()),
        *rendered_probes(),
    ):
        ledger.apply(event)
    assert ledger.accounting.method() == "exact"
    compressions = mismatches = 0
    for turn in range(2000):
        role: Role = "user" if turn % 2 == 0 else "assistant"
        text = "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 4)))
        ledger.apply(MessageAdded(message=Message(id=f"m{turn}", role=role, content=text)))
        if turn % 100 == 99:
            covered = tuple(m.id for m in ledger.conversation.messages[:-4])
            summary = "Summary: " + rng.choice(PIECES)
            ledger.apply(
                CompressionCompleted(
                    ref=f"c{compressions}",
                    strategy="hybrid",
                    covered_ids=covered,
                    summary=summary,
                    pinned=(rng.choice(PIECES),),
                    original_tokens=1,
                    compressed_tokens=1,
                    ratio=1.0,
                )
            )
            compressions += 1
        if turn % 250 == 0:
            ledger.apply(SystemPromptSet(text=rng.choice(("", "Be brief.", "  Answer in German."))))
        expected = real_count(tok, ledger.conversation.prompt_messages())
        mismatches += ledger.accounting.used() != expected
    assert compressions == 20
    assert mismatches == 0


def test_without_the_vocabulary_the_count_says_it_is_estimated():
    ledger = Ledger()
    ledger.apply(ModelSelected(model="m", size=4096, num_ctx=4096))
    assert ledger.accounting.method() == "estimated"
    ledger.apply(VocabularyLoaded(model="m", digest="gone", tokens=1))  # not in the cache
    assert ledger.accounting.method() == "estimated"
    assert "not yet calibrated" in METHODS["estimated"]


@pytest.mark.parametrize("answer", ["loaded", "unavailable"])
async def test_nothing_is_sent_before_the_counting_is_settled(answer):
    tok = tokenizer()
    specs = [
        *core_specs(Settings(), lambda digest: vocabulary.Vocabulary(tok)),
        ChildSpec(name="provider", factory=ScriptedProviderActor),
    ]
    async with open_harness(*specs) as h:
        await h.publish(SessionOpened(session_id="s", state=ConversationState()))
        await h.inject(ModelSelected(model="m", size=4096, num_ctx=4096, vocabulary=True))
        await h.inject(UserSubmitted(text="hello there"))
        await h.settle()
        assert h.events(ChatRequested) == [], "the model's vocabulary is still coming"
        if answer == "loaded":
            for event in (*rendered_probes(), VocabularyLoaded(model="m", digest="d", tokens=1)):
                await h.publish(event)
        else:
            await h.publish(VocabularyUnavailable(model="m", reason="its 'x' vocabulary"))
        await h.settle()
        (request,) = h.events(ChatRequested)
        if answer == "loaded":
            assert request.prompt_tokens == real_count(
                tok, [Message(id="m1", role="user", content="hello there")]
            )
        else:
            assert request.prompt_tokens > 0


# --- live, against the test server ----------------------------------------------------------


def verbose_shows(server: OllamaTestServer) -> int:
    return sum(
        1 for r in server.requests if r.path == "/api/show" and (r.body or {}).get("verbose")
    )


async def test_the_vocabulary_is_fetched_once_then_read_from_the_cache_and_counts_exactly():
    """The first session fetches the vocabulary (`/api/show` verbose) and caches it under the
    model's digest; the next one reads it from the cache. Both predict the first prompt — the
    test server's own template, rendered over HTTP for the probes — token for token."""
    server = OllamaTestServer()
    info = byte_vocabulary(specials=LLAMA3_SPECIALS)
    server.models["llama3.1:8b"] = FakeModel("llama3.1:8b", vocabulary=info)
    tok = vocabulary.build_tokenizer(info)
    async with open_ollama_server(server):
        for session in range(2):
            async with open_live(server) as live:
                await live.say("Der Fluss: JOB-90211 at ip-10-42-7-19, 🦊, def f(x): return x")
                (loaded,) = live.h.events(VocabularyLoaded)
                assert loaded.cached is (session == 1)
                (request,) = live.h.events(ChatRequested)
                wire = [msgspec.to_builtins(m) for m in request.messages]
                text = server.runner.render_text(None, wire, None)
                assert request.prompt_tokens == len(tok.encode(text).ids)
                assert "counting: exact: the model's own tokenizer" in stats(live.session.status)
    assert verbose_shows(server) == 1
    assert list((cache_dir() / "tokenizers").glob("*.json")), "kept in the user cache"


async def test_a_model_without_a_usable_vocabulary_is_counted_by_the_calibrated_estimate():
    server = OllamaTestServer()
    rwkv = {**byte_vocabulary(), "tokenizer.ggml.model": "rwkv"}
    server.models["llama3.1:8b"] = FakeModel("llama3.1:8b", vocabulary=rwkv)
    async with open_ollama_server(server):
        for session in range(2):
            async with open_live(server) as live:
                (unavailable,) = live.h.events(VocabularyUnavailable)
                assert unavailable.reason == "its 'rwkv' vocabulary is not one ollm reproduces"
                before = "calibrated estimate" if session else "estimate, not yet calibrated"
                assert f"counting: {before}" in stats(live.session.status), "the last session's"
                assert isinstance(await live.say("hello there"), MessageAdded)
                shown = stats(live.session.status)
                assert "counting: calibrated estimate" in shown, shown
                assert "the vocabulary: its 'rwkv' vocabulary" in shown
    assert verbose_shows(server) == 1, "the refusal is remembered for the digest"


async def test_a_session_counted_exactly_replays_and_a_replay_without_its_tokenizer_says_so():
    server = OllamaTestServer()
    info = byte_vocabulary(specials=LLAMA3_SPECIALS)
    server.models["llama3.1:8b"] = FakeModel("llama3.1:8b", vocabulary=info)
    async with open_ollama_server(server), open_live(server) as live:
        for text in ("first: JOB-90211 🦊", "second, in Deutsch: Größe"):
            await live.say(text)
        session_id = live.session.session_id
    checked = await check_session(data_home(), session_id)
    assert checked.result.divergence is None and checked.missing == ()
    shutil.rmtree(cache_dir() / "tokenizers")
    checked = await check_session(data_home(), session_id)
    assert [m.split(" ")[0] for m in checked.missing] == ["llama3.1:8b"]
    assert checked.result.divergence is not None, "its counts were the tokenizer's"


async def test_a_message_the_context_cannot_hold_is_refused_on_its_exact_count():
    """Emoji cost a byte-level vocabulary four tokens each, and the estimate about one: the
    refusal weighs the newest turn as the tokenizer counts it, so the message is refused
    before anything is sent, with its real size, and the turns before it go on."""
    tok = tokenizer()
    specs = [
        *core_specs(Settings(), lambda digest: vocabulary.Vocabulary(tok)),
        ChildSpec(name="provider", factory=ScriptedProviderActor),
    ]
    text = "🦊" * 120
    async with open_harness(*specs) as h:
        await h.publish(SessionOpened(session_id="s", state=ConversationState(system_prompt="Hi")))
        await h.inject(ModelSelected(model="m", size=512, num_ctx=512, vocabulary=True))
        for event in (*rendered_probes(), VocabularyLoaded(model="m", digest="d", tokens=1)):
            await h.publish(event)
        for i in range(4):
            await h.inject(UserSubmitted(text=f"short question {i}"))
        await h.inject(UserSubmitted(text=text))
        await h.inject(UserSubmitted(text="and a short one after it"))
        await h.settle()
        sent = [m.content for r in h.events(ChatRequested) for m in r.messages]
        assert text not in sent, "nothing went out with the message that cannot fit"
        assert "and a short one after it" in sent
        exact = vocabulary.count(tok, "<|im_end|>\n<|im_start|>user\n" + text)
        assert exact > GuardPolicy().safe_limit(512) > 3 * estimate_text(text)
        (reduced,) = h.events(ContextReduced)
        assert reduced.reason.startswith(f"your message is about {exact} tokens, too large")
        (unanswered,) = h.events(MessageUnanswered)
        assert unanswered.withdrawn


async def test_a_vocabulary_of_the_wrong_shape_is_one_sentence_and_the_chat_goes_on():
    server = OllamaTestServer()
    broken = {**byte_vocabulary(), "tokenizer.ggml.tokens": list(range(300))}
    server.models["llama3.1:8b"] = FakeModel("llama3.1:8b", vocabulary=broken)
    async with open_ollama_server(server), open_live(server) as live:
        (unavailable,) = live.h.events(VocabularyUnavailable)
        assert unavailable.reason == "the vocabulary Ollama sent for it cannot be read"
        assert isinstance(await live.say("hello there"), MessageAdded)
        assert "counting: calibrated estimate" in stats(live.session.status)


def test_a_tokenizer_without_a_digest_is_kept_under_its_own_contents(tmp_path):
    cache = TokenizerCache(tmp_path)
    key, kept = cache.put("", tokenizer())
    assert key.startswith("content-") and cache.path(key).is_file()
    found = TokenizerCache(tmp_path).get(key)
    assert found is not None and found.tokenizer.to_str() == kept.tokenizer.to_str()
    assert cache.put("", tokenizer())[0] == key, "the same vocabulary, the same key"


def test_an_unmeasured_template_is_learned_exactly_from_the_first_count_and_kept():
    """Without the template's probes (an Ollama before v0.11.5), the contents are counted
    exactly and what the template adds is taken from the first reply's `prompt_eval_count`:
    it stays in the count after the conversation is recounted (the anchor does not)."""
    tok = tokenizer()
    ledger = Ledger(lambda digest: vocabulary.Vocabulary(tok))
    for event in (
        SessionOpened(session_id="s", state=ConversationState(system_prompt="Be brief.")),
        ModelSelected(model="m", size=4096, num_ctx=4096),
        ContextSizeChosen(model="m", size=4096, num_ctx=4096, reason="test"),
        VocabularyLoaded(model="m", digest="d", tokens=1),
        MessageAdded(message=Message(id="m1", role="user", content="JOB-90211 🦊 failed")),
    ):
        ledger.apply(event)
    assert ledger.accounting.method() == "exact content"
    before = ledger.accounting.used()
    request = ChatRequested(
        request_id="r1",
        model="m",
        messages=ledger.conversation.chat_messages(),
        options=RunnerOptions(num_ctx=4096),
    )
    ledger.apply(request)
    ledger.apply(ReplyCompleted(request_id="r1", content="", prompt_eval_count=before + 25))
    ledger.apply(SystemPromptSet(text="Be brief."))  # the same prompt, recounted from scratch
    assert ledger.accounting.correction == 0
    assert ledger.accounting.used() == before + 25


def test_the_toolbar_says_while_the_vocabulary_is_read():
    status = Status()

    def see(event: object) -> str:
        status.apply(Envelope(seq=1, at=0.0, source="test", causation=None, event=event))
        return toolbar(status, 0.0)

    assert "reading the model's vocabulary…" in see(
        ModelSelected(model="m", size=4096, num_ctx=4096, vocabulary=True)
    )
    assert "vocabulary" not in see(VocabularyLoaded(model="m", digest="d", tokens=1))
    see(ModelSelected(model="m", size=4096, num_ctx=4096, vocabulary=True))
    assert "vocabulary" not in see(VocabularyUnavailable(model="m", reason="its 'x' vocabulary"))
