"""The REPL driven through prompt-toolkit's pipe input: what it prints and what it sends."""

from __future__ import annotations

import io
import json
import re

import msgspec
import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from ollm.cli.chat import run_repl
from ollm.config import Settings, load_settings
from ollm.live import Start
from ollm.memory import Architecture, format_bytes, ollama_kv_bytes
from tests.fakes.ollama_server import FakeModel, open_ollama_server, prompt_tokens

pytestmark = pytest.mark.anyio


async def repl(server, lines: list[str], settings: Settings | None = None) -> tuple[str, str]:
    settings = settings or load_settings(env={}, flags={("ollama", "host"): server.url})
    out, err = io.StringIO(), io.StringIO()
    with create_pipe_input() as pipe:
        pipe.send_text("".join(line + "\r" for line in lines) + "\x04")
        code = await run_repl(
            settings,
            Start(model="llama3.1:8b"),
            out,
            err,
            prompt_input=pipe,
            prompt_output=DummyOutput(),
        )
    assert code == 0, err.getvalue()
    return out.getvalue(), err.getvalue()


async def test_chat_and_the_status_box_tell_the_truth():
    async with open_ollama_server() as server:
        out, err = await repl(server, ["What is a B-tree?", "And a trie?", "/context"])
        last = server.chats()[-1]
    assert out.count("You said") == 2
    box = out[out.index("┌─ Context Status") :]
    assert "│ Model: llama3.1:8b" in box
    assert "KV Cache: f16 (" in box, (
        "the type the server runs (Ollama's default), not kvQuantization"
    )
    assert "Auto-compress: enabled at 75%" in box
    # The context figure is the token counter's, against the num_ctx the server really got.
    used = int(box.split("Context: ")[1].split(" /")[0].replace(",", ""))
    assert f"/ {last['options']['num_ctx']:,} tokens" in box
    # The server's count of the conversation as it stands: the last prompt plus its reply.
    reply = [line for line in out.splitlines() if line.startswith("You said")][-1]
    counted = prompt_tokens([*last["messages"], {"role": "assistant", "content": reply}])
    assert abs(used - counted) / counted < 0.03, (used, counted)
    assert "session saved" in err


async def test_test_prompt_shows_exactly_what_the_next_request_sends():
    async with open_ollama_server() as server:
        out, _ = await repl(server, ["first question", "/test prompt", "second question"])
    shown = json.loads(
        out[out.index("POST /api/chat\n") + len("POST /api/chat\n") : out.index("\n}\n") + 2]
    )
    sent = server.chats()[-1]
    assert shown["options"] == sent["options"]
    assert shown["messages"][:-1] == sent["messages"][:-1]
    assert shown["messages"][-1] == {"role": "user", "content": "<your next message>"}
    assert sent["messages"][-1] == {"role": "user", "content": "second question"}
    assert shown["truncate"] is False and shown["keep_alive"] == sent["keep_alive"]


async def test_snapshot_list_restore_with_the_picker_and_clear():
    async with open_ollama_server() as server:
        out, err = await repl(
            server,
            [
                "remember the word kiwi",
                "/context snapshot",
                "something else entirely",
                "/context list",
                "/context restore",
                "1",
                "what word?",
                "/context clear",
                "after the clear",
            ],
        )
        chats = [c for c in server.chats() if c["messages"]]
    restored = next(c for c in chats if c["messages"][-1]["content"] == "what word?")
    assert [m["content"] for m in restored["messages"] if m["role"] == "user"] == [
        "remember the word kiwi",
        "what word?",
    ], "exactly the snapshot's conversation, then the new message"
    assert [m["role"] for m in chats[-1]["messages"]] == ["user"], "clear: only the new message"
    assert chats[-1]["messages"][0]["content"] == "after the clear"
    assert "saved (manual" in err and "restored snapshot" in err
    assert re.search(r"the conversation was cleared; `/context restore \w+` brings it back", err)
    assert "restore which? (number or id; Enter cancels)" in out or "  1. " in out
    assert "manual" in out[out.index("  1. ") :]


@pytest.mark.parametrize(
    ("line", "usage", "sentence"),
    [
        ("/context size", "usage: /context size <tokens>", "give the size in tokens"),
        ("/context size lots", "usage: /context size <tokens>", "'lots' is not a number of tokens"),
        ("/context size 12", "usage: /context size <tokens>", "12 is not a usable size"),
        (
            "/context size 99999999",
            "usage: /context size <tokens>",
            "99999999 is not a usable size",
        ),
        ("/context auto now", "usage: /context auto", "auto takes no arguments"),
        ("/context snapshot x", "usage: /context snapshot", "snapshot takes no arguments"),
        (
            "/context restore ../../etc/passwd",
            "usage: /context restore [id|number]",
            "is not a snapshot id",
        ),
        ("/context restore a b", "usage: /context restore [id|number]", "give one snapshot id"),
        ("/context list all", "usage: /context list", "list takes no arguments"),
        ("/context clear now", "usage: /context clear", "clear takes no arguments"),
        ("/context compress hard", "usage: /context compress", "compress takes no arguments"),
        ("/context stats x", "usage: /context stats", "stats takes no arguments"),
        ("/context bogus", "usage: /context [size|auto|", "'bogus' is not a /context subcommand"),
        ("/test nothing", "usage: /test prompt", "the only test is `/test prompt`"),
        ("/model a b", "usage: /model [name]", "give one model name"),
        ("/model nope:1b", "usage: /model [name]", "ollama pull nope:1b"),
        ("/frobnicate", "usage: /help", "/frobnicate is not a command"),
    ],
)
async def test_bad_arguments_print_the_usage_and_one_sentence_and_change_nothing(
    line, usage, sentence
):
    async with open_ollama_server() as server:
        out, _ = await repl(server, ["hello", line, "/context", "again"])
        requests = server.chats()
    assert usage in out
    assert sentence in out
    assert "Traceback" not in out
    assert requests[-1]["options"]["num_ctx"] == 13926, "the size did not change"
    assert [m["content"] for m in requests[-1]["messages"] if m["role"] == "user"] == [
        "hello",
        "again",
    ]


async def test_size_auto_compress_stats_help_and_model():
    async with open_ollama_server() as server:
        out, err = await repl(
            server,
            [
                "a question about sizes",
                "/context size 8192",
                "another question",
                "/context compress",
                "/context stats",
                "/help",
                "/model llama3.1:8b",
            ],
        )
        chats = server.chats()
    assert "num_ctx is now 6963 (size 8192)" in out
    asked = next(
        c for c in chats if c["messages"] and c["messages"][-1]["content"] == "another question"
    )
    assert asked["options"]["num_ctx"] == 6963
    assert chats[-1]["options"]["num_ctx"] == 13926, "/model applies the new model's own sizing"
    assert "calibration factor" in out and "count cache:" in out and "usage per turn:" in out
    assert "/context restore [id|number]" in out
    assert "now chatting with llama3.1:8b" in out
    assert "compressed" in err or "nothing old enough to compress" in err


async def test_nothing_on_the_event_loop_touches_the_snapshot_files(monkeypatch):
    """Saving, listing, the picker, resolving an id, clearing: every look at the files runs
    in a worker thread (the snapshot manager's, or the read-only view's)."""
    import threading

    from ollm.storage import atomic, store

    loop_thread = threading.current_thread()
    on_loop: list[str] = []

    def watch(name, original):
        def watched(*args, **kwargs):
            if threading.current_thread() is loop_thread:
                on_loop.append(name)
            return original(*args, **kwargs)

        return watched

    monkeypatch.setattr(store.SnapshotStore, "_load", watch("_load", store.SnapshotStore._load))
    monkeypatch.setattr(store, "write_atomic", watch("write_atomic", atomic.write_atomic))
    async with open_ollama_server() as server:
        out, err = await repl(
            server,
            [
                "remember the word kiwi",
                "/context snapshot",
                "/context list",
                "/context restore",
                "1",
                "/context list",
                "/context clear",
                "/context list",
            ],
        )
    assert out.count("manual") == 4 and "restored snapshot" in err  # 1 + 1 + 2 rows
    assert "the conversation was cleared" in err
    assert on_loop == []


def test_snapshot_ids_complete_from_the_read_model_newest_first():
    """Tab completion runs on the event loop: it reads the ids the bus told the read model
    (the listing at start, then each snapshot made or deleted), never the files."""
    from types import SimpleNamespace

    from prompt_toolkit.document import Document

    from ollm.cli.commands import Commands
    from ollm.cli.repl import _Completer

    async def ask(text: str) -> str:
        return ""

    live = SimpleNamespace(
        status=SimpleNamespace(snapshot_ids=["abc123", "abd999", "ff0000"]), settings=Settings()
    )
    completer = _Completer(Commands(live, ask, lambda: 0.0), live, models=["qwen3:8b"])  # type: ignore[arg-type]

    def complete(text: str) -> list[str]:
        return [c.text for c in completer.get_completions(Document(text), None)]

    assert complete("/context restore ab") == ["abd999", "abc123"]
    assert complete("/context restore ") == ["ff0000", "abd999", "abc123"]
    assert complete("/model q") == ["qwen3:8b"]


async def test_test_prompt_near_the_hard_limit_is_the_request_that_goes_out():
    """`/test prompt` runs the session's own send path: once a message would cross the hard
    limit it shows the request after the oldest turns are taken out, exactly as sent."""
    settings = load_settings(
        env={},
        flags={("ollama", "host"): "http://127.0.0.1:1", ("context", "targetSize"): 4096},
    )
    settings = msgspec.structs.replace(
        settings,
        system_prompt="Keep every answer short and plain. " * 330,
        context=msgspec.structs.replace(
            settings.context,
            compression=msgspec.structs.replace(settings.context.compression, enabled=False),
        ),
    )
    turns = 24
    async with open_ollama_server() as server:
        settings = msgspec.structs.replace(
            settings, ollama=msgspec.structs.replace(settings.ollama, host=server.url)
        )
        lines = ["/test prompt", "<your next message>"] * turns
        out, err = await repl(server, lines, settings)
        sent = [c for c in server.chats() if c["messages"]]
    shown = [
        json.loads(block.split("\n}\n", 1)[0] + "\n}")
        for block in out.split("POST /api/chat\n")[1:]
    ]
    assert len(shown) == len(sent) == turns
    for preview, request in zip(shown, sent, strict=True):
        assert preview == request, "the preview is the request, byte for byte"
    dropped = out.count("(the hard limit takes the")
    assert dropped >= 1, "the hard limit was reached, and the preview said so"
    assert err.count("reached the hard limit") == dropped


async def test_context_stats_lists_the_pinned_facts_with_why_each_is_kept():
    async with open_ollama_server() as server:
        flags = {
            ("ollama", "host"): server.url,
            ("context", "compression", "strategy"): "summarize",
        }
        out, err = await repl(
            server,
            [
                "Never use tabs in generated YAML. JOB-90211 writes /srv/data/report-7.csv.",
                "a second question, with nothing to keep in it: " + "lorem ipsum " * 200,
                "a third question: " + "dolor sit amet " * 200,
                "/context compress",
                "/context stats",
            ],
            load_settings(env={}, flags=flags),
        )
    stats = out[out.index("Context statistics") :]
    assert "pinned facts: " in stats
    assert "[instruction] Never use tabs in generated YAML." in stats
    assert "[stated] JOB-90211" in stats and "[stated] /srv/data/report-7.csv" in stats
    assert "facts pinned" in err, "the compression's notice says what it pinned"


def status_box(out: str) -> str:
    """The last status box printed, its lines joined (a long line is wrapped in the box)."""
    box = out[out.rindex("┌─ Context Status") :]
    box = box[: box.index("┘")]
    return " ".join(line.strip("│ ").strip() for line in box.splitlines()[1:-1])


def kv_figure(server, model: str, num_ctx: int, kind: str) -> str:
    arch = Architecture.from_model_info(server.models[model].model_info())
    return format_bytes(ollama_kv_bytes(arch, num_ctx, kind))


async def test_the_kv_type_on_a_stock_server_is_ollamas_default_and_the_advice_comes_once():
    """Nothing says how the server runs: f16, and where that came from, in the box; the
    config prefers q8_0, so the first session says once what q8_0 would gain."""
    async with open_ollama_server() as server:
        sessions = [await repl(server, ["hello", "/context"]) for _ in range(3)]
        num_ctx = server.chats()[-1]["options"]["num_ctx"]
    for out, _err in sessions:
        figure = kv_figure(server, "llama3.1:8b", num_ctx, "f16")
        assert (
            f"KV Cache: f16 ({figure}), from Ollama's defaults, as nothing says the server runs "
            "otherwise" in status_box(out)
        )
    advice = [
        [line for line in err.splitlines() if "kvQuantization" in line] for _, err in sessions
    ]
    assert advice[1:] == [[], []], "once, not in every session"
    (line,) = advice[0]
    assert "the server runs an f16 KV cache" in line and "not the q8_0 of kvQuantization" in line
    assert "OLLAMA_KV_CACHE_TYPE=q8_0 and OLLAMA_FLASH_ATTENTION=1" in line
    assert "1.9× the context would fit" in line


async def test_the_kv_type_and_slots_come_from_the_environment_of_ollama_serve(
    tmp_path, monkeypatch
):
    proc = tmp_path / "proc"
    (proc / "41").mkdir(parents=True)
    (proc / "41" / "cmdline").write_bytes(b"/usr/local/bin/ollama\0serve\0")
    (proc / "41" / "environ").write_bytes(
        b"OLLAMA_KV_CACHE_TYPE=q8_0\0OLLAMA_FLASH_ATTENTION=1\0OLLAMA_NUM_PARALLEL=2\0"
    )
    monkeypatch.setattr("ollm.live._server_env.PROC", proc)
    async with open_ollama_server() as server:
        server.models["llama3.1:8b"] = FakeModel("llama3.1:8b", kv_type="q8_0", parallel=2)
        out, err = await repl(server, ["hello", "/context"])
        num_ctx = server.chats()[-1]["options"]["num_ctx"]
    figure = kv_figure(server, "llama3.1:8b", num_ctx, "q8_0")
    assert (
        f"KV Cache: q8_0 ({figure}) per slot, 2 slots, from the environment of `ollama serve` "
        "(pid 41)" in status_box(out)
    )
    assert "kvQuantization" not in err, "the server runs the preferred type: nothing to advise"


async def test_an_allocation_smaller_than_the_assumed_cache_shows_the_type_the_server_runs():
    """Nothing readable says so, but the server runs q8_0: `/api/ps` after the first load is
    too small for an f16 cache, so the box, the sizing and the advice follow q8_0."""
    async with open_ollama_server() as server:
        server.models["llama3.1:8b"] = FakeModel("llama3.1:8b", kv_type="q8_0")
        out, err = await repl(server, ["hello", "/context"])
        num_ctx = server.chats()[-1]["options"]["num_ctx"]
    figure = kv_figure(server, "llama3.1:8b", num_ctx, "q8_0")
    size = format_bytes(
        4_900_000_000
        + ollama_kv_bytes(
            Architecture.from_model_info(FakeModel("m").model_info()), num_ctx, "q8_0"
        )
    )
    assert (
        f"KV Cache: q8_0 ({figure}), from the /api/ps allocation ({size} at {num_ctx} tokens)"
        in status_box(out)
    )
    (learned,) = [line for line in err.splitlines() if "rules out" in line]
    assert "rules out the f16 KV cache sizing assumed for llama3.1:8b" in learned
    assert "the server runs a q8_0 cache" in learned
    assert "kvQuantization" not in err, "q8_0 is what the config prefers: nothing to advise"
