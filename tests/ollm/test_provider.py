"""The provider path end to end: real actors, real HTTP to the Ollama test server."""

from __future__ import annotations

import anyio
import msgspec
import pytest

from ollm.events import (
    CancelRequested,
    CompressRequested,
    ContextReduced,
    ContextSizeChosen,
    HardLimitHit,
    MessageAdded,
    MessageUnanswered,
    ModelLoaded,
    ModelSelected,
    PromptRendered,
    ReplyCancelled,
    ReplyChunk,
    ReplyCompleted,
    ReplyFailed,
    TruncationDetected,
    UsageChanged,
    UserNotified,
    UserSubmitted,
)
from ollm.profiles import choose_context, load_profiles
from ollm.providers.ollama import OllamaClient, ProviderError, make_http_client
from ollm.template_costs import probes
from tests.fakes.ollama_server import (
    FakeModel,
    OllamaTestServer,
    open_ollama_server,
    prompt_tokens,
)

from .live import open_live

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("ollama_rules")]

QUESTIONS = [
    "What is the capital of France, and why did it become the capital?",
    "Explain, in two sentences, how a hash map handles collisions.",
    "Write a haiku about the sea at night; keep it calm.",
    "List three prime numbers above 100 and say how you checked them.",
    "What does `git rebase -i HEAD~3` do? Answer briefly, please.",
]


async def test_every_request_carries_the_profiles_num_ctx_and_a_resize_is_one_reload():
    async with open_ollama_server() as server, open_live(server, size=16384) as live:
        assert live.selected.num_ctx == 13926
        for question in QUESTIONS[:3]:
            assert isinstance(await live.say(question), MessageAdded)
        chats = server.chats()
        assert [c["options"]["num_ctx"] for c in chats] == [13926] * 4  # warm-up + 3 turns
        assert chats[0]["messages"] == [], "the first request is the deliberate load"
        assert server.reloads == [("llama3.1:8b", {"num_ctx": 13926})]
        assert live.h.expect(ModelLoaded).context_length == 13926

        eight = choose_context(load_profiles().find("llama3.1:8b"), 8192)
        await live.h.publish(
            ModelSelected(model="llama3.1:8b", size=eight.size, num_ctx=eight.num_ctx)
        )
        await live.h.settle()
        assert isinstance(await live.say(QUESTIONS[3]), MessageAdded)
        after = server.chats()[4:]
        assert [c["options"]["num_ctx"] for c in after] == [6963, 6963]
        assert after[0]["messages"] == []
        assert server.reloads == [
            ("llama3.1:8b", {"num_ctx": 13926}),
            ("llama3.1:8b", {"num_ctx": 6963}),
        ], "exactly one reload, the deliberate one"
        assert live.h.events(ModelLoaded)[-1].context_length == 6963
        assert all(c["truncate"] is False for c in server.chats() if c["messages"])
        assert all(c["keep_alive"] == "5m" for c in server.chats())


async def test_after_one_reply_the_next_prompt_is_counted_within_3_percent():
    async with open_ollama_server() as server, open_live(server) as live:
        errors = []
        for question in QUESTIONS:
            await live.say(question)
        requests = [c for c in server.chats() if c["messages"]]
        usages = live.h.envelopes(UsageChanged)
        # The usage the session sent each request on is the one just before it.
        sent = [e for e in live.h.published if type(e.event).__name__ == "ChatRequested"]
        for index, request in enumerate(sent[1:], start=1):
            before = [u for u in usages if u.seq < request.seq][-1].event.used_tokens
            counted = _counted(server, index)
            errors.append(abs(before - counted) / counted)
        print("relative errors:", [round(e, 4) for e in errors])
        assert max(errors) <= 0.03, errors
        assert len(requests) == len(QUESTIONS)


def _counted(server: OllamaTestServer, index: int) -> int:
    request = [c for c in server.chats() if c["messages"]][index]
    return prompt_tokens(request["messages"], request.get("tools"))


@pytest.mark.parametrize(
    ("fault", "failure", "words"),
    [
        ("error_midstream", "stream_error", "stopped the reply with an error"),
        ("malformed", "malformed_reply", "sent a line of the reply that ollm cannot read"),
        ("nested_error", "server_error", 'answered HTTP 500: {"error": "{\\"a\\":'),
        ("nested_stream", "malformed_reply", "sent a line of the reply that ollm cannot read"),
        ("huge_counts", "malformed_reply", "eval_count a 31-digit number for a 13926-token"),
        ("negative_counts", "malformed_reply", "prompt_eval_count -7 for a 13926-token context"),
        ("reset", "connection_reset", "connection to Ollama"),
        ("busy", "server_error", "busy"),
        ("not_found", "model_not_found", "ollama pull llama3.1:8b"),
    ],
)
async def test_each_fault_ends_in_its_message_and_the_conversation_goes_on(fault, failure, words):
    async with open_ollama_server() as server, open_live(server) as live:
        assert isinstance(await live.say(QUESTIONS[0]), MessageAdded)
        before = live.last_usage()
        server.fault(fault)
        ended = await live.say(QUESTIONS[1])
        assert isinstance(ended, MessageUnanswered)
        # A broken reply changes nothing: no count taken from it, no compression.
        assert live.h.events(CompressRequested) == [] and live.h.events(HardLimitHit) == []
        assert live.last_usage().limit_tokens == before.limit_tokens
        assert live.last_usage().used_tokens < 2 * before.used_tokens + 200
        failed = live.h.events(ReplyFailed)[-1]
        assert failed.failure == failure
        assert words in failed.message
        assert ended.reason == failed.message
        # The next turn works and still carries the unanswered message.
        assert isinstance(await live.say(QUESTIONS[2]), MessageAdded)
        last = server.chats()[-1]["messages"]
        assert [m["content"] for m in last if m["role"] == "user"] == QUESTIONS[:3]


async def test_an_overflow_drops_the_oldest_turns_and_retries_once():
    async with open_ollama_server() as server, open_live(server) as live:
        for question in QUESTIONS[:3]:
            await live.say(question)
        server.fault("overflow")
        assert isinstance(await live.say(QUESTIONS[3]), MessageAdded)
        reduced = live.h.expect(ContextReduced)
        assert reduced.removed_ids[:2] == ("m1", "m2")
        retry = server.chats()[-1]
        assert retry["messages"][0]["role"] == "system"
        assert retry["messages"][-1]["content"] == QUESTIONS[3]
        assert QUESTIONS[0] not in [m["content"] for m in retry["messages"]]


async def test_a_second_overflow_is_not_retried_again():
    async with open_ollama_server() as server, open_live(server) as live:
        for question in QUESTIONS[:2]:
            await live.say(question)
        server.fault("overflow", "overflow")
        ended = await live.say(QUESTIONS[2])
        assert isinstance(ended, MessageUnanswered)
        assert "no longer fits" in ended.reason


async def test_out_of_memory_retries_once_with_a_smaller_context():
    async with open_ollama_server() as server, open_live(server, size=16384) as live:
        server.fault("oom")
        assert isinstance(await live.say(QUESTIONS[0]), MessageAdded)
        changed = live.h.events(ContextSizeChosen)[-1]
        assert changed.num_ctx == 6963
        assert server.chats()[-1]["options"]["num_ctx"] == 6963
        assert live.last_usage().limit_tokens == 6963


SHOWS_CONFIGURED = (
    "before v0.15.5 /api/ps showed the configured context, so a server that gives less than "
    "asked cannot be told from an estimate's error (ollm never asks beyond the trained length)"
)


async def test_an_old_server_that_truncates_silently_is_detected(ollama_rules):
    # An old server (no `truncate` field) that also gives less context than asked: it drops
    # the oldest messages without a word; only its prompt_eval_count tells.
    if ollama_rules == "v0.13":
        pytest.skip(SHOWS_CONFIGURED)
    server = OllamaTestServer(version="0.12.0", cap_num_ctx=2048)
    async with open_ollama_server(server), open_live(server, size=4096) as live:
        long = "tell me more about the history of this old city and its rivers " * 45
        for _ in range(4):
            await live.say(long)
        assert all("truncate" not in c for c in server.chats()), "an old server gets no truncate"
        detected = live.h.events(TruncationDetected)
        assert detected, "the silent truncation was noticed"
        assert detected[0].counted_tokens < detected[0].sent_tokens
        notices = [n.text for n in live.h.events(UserNotified)]
        assert any("Ollama truncated the conversation" in n for n in notices)
        assert any("context of 2048 tokens, not the 3482 asked for" in n for n in notices)


async def test_a_prompt_cut_to_half_the_window_is_reported_as_a_truncation(ollama_rules):
    """Current Ollama cuts an over-long prompt on its Go-template path to about half the
    window, with HTTP 200; a server that takes no `truncate` field does it to ollm too."""
    if ollama_rules == "v0.13":
        pytest.skip(SHOWS_CONFIGURED)
    server = OllamaTestServer(version="0.12.0", path="go", cap_num_ctx=2048)
    async with open_ollama_server(server), open_live(server, size=4096) as live:
        await live.say("one long message about the history of this old city " * 200)
        (detected,) = live.h.events(TruncationDetected)
        assert detected.counted_tokens == 2048 - (2048 - 5) // 2, "what the server kept"
        assert detected.sent_tokens > 2048


async def test_cancel_closes_the_stream_promptly_and_keeps_the_message():
    async with open_ollama_server() as server, open_live(server) as live:
        server.fault("stall")
        await live.h.publish(UserSubmitted(text=QUESTIONS[0]))
        await live.h.wait_for(ReplyChunk)
        with anyio.fail_after(2):
            await live.h.publish(CancelRequested())
            await live.h.settle()
        cancelled = live.h.expect(ReplyCancelled)
        assert cancelled.partial
        unanswered = live.h.expect(MessageUnanswered)
        assert unanswered.reason == "cancelled by the user"
        assert isinstance(await live.say(QUESTIONS[1]), MessageAdded)


async def test_a_silent_server_times_out_with_its_message():
    async with open_ollama_server() as server, open_live(server, timeout=0.3) as live:
        server.fault("stall")
        ended = await live.say(QUESTIONS[0])
        assert isinstance(ended, MessageUnanswered)
        assert live.h.events(ReplyFailed)[-1].failure == "timeout"
        assert "sent nothing for 0.3 s" in ended.reason


async def test_a_thinking_model_is_sent_think_and_others_are_not():
    server = OllamaTestServer()
    server.models["qwen3:8b"] = FakeModel(
        "qwen3:8b",
        architecture="qwen3",
        layers=36,
        context_length=40960,
        capabilities=("completion", "tools", "thinking"),
    )
    async with open_ollama_server(server), open_live(server, model="qwen3:8b") as live:
        assert live.selected.thinking
        await live.say(QUESTIONS[0])
        assert server.chats()[-1]["think"] is True
        assert live.h.events(ReplyChunk)[0].thinking == "Let me think."
    async with open_ollama_server() as plain, open_live(plain) as live:
        await live.say(QUESTIONS[0])
        assert "think" not in plain.chats()[-1]


async def test_an_unreachable_server_is_a_clear_failure():
    async with make_http_client("http://127.0.0.1:9", 1.0) as http:
        client = OllamaClient(http, "http://127.0.0.1:9", 1.0)
        with pytest.raises(ProviderError) as info:
            await client.version()
    assert info.value.failure.kind == "server_unreachable"
    assert "ollama serve" in info.value.failure.message


async def test_the_first_prompt_of_each_model_is_rendered_once_with_the_chats_own_options():
    async with open_ollama_server() as server, open_live(server) as live:
        for question in QUESTIONS[:3]:
            await live.say(question)
        *probed, render = server.renders()
        first = server.chats()[1]  # after the load request
        assert [r["messages"] for r in probed] == [
            [msgspec.to_builtins(m) for m in p] for p in probes()
        ]
        assert all(r["options"] == server.chats()[0]["options"] for r in probed), "no reload"
        assert render["_debug_render_only"] is True and render["stream"] is False
        assert render["messages"] == first["messages"]
        assert render["options"] == first["options"], "the same runner options: no reload"
        assert len(server.reloads) == 1
        (rendered,) = live.h.events(PromptRendered)
        engine = server.runner
        assert rendered.text == engine.render_text(None, first["messages"], None)
        assert rendered.request_id == live.h.events(ReplyCompleted)[0].request_id


@pytest.mark.parametrize(("version", "status"), [("0.11.4", 200), ("0.33.0", 500)])
async def test_without_a_rendered_prompt_the_chat_and_its_counts_go_on(version, status):
    """A server older than v0.11.5 would ignore `_debug_render_only` and generate a whole
    reply: it is never asked. A server that fails the render costs nothing but the render."""
    server = OllamaTestServer(version=version, render_status=status)
    async with open_ollama_server(server), open_live(server) as live:
        for question in QUESTIONS[:2]:
            assert isinstance(await live.say(question), MessageAdded)
        assert len(server.renders()) == (0 if version == "0.11.4" else 1 + len(probes()))
        assert not live.h.events(PromptRendered)
        assert len(live.h.events(ReplyCompleted)) == 2
        assert live.last_usage().used_tokens > 0
