"""`ollm -p`, the REPL on a pipe, and `--resume`, run as real processes against the test server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from actors import LogContents
from ollm.compression import SUMMARY_INSTRUCTIONS
from ollm.events import (
    CalibrationChanged,
    CalibrationRestored,
    ChatRequested,
    MessageAdded,
    MessageUnanswered,
    UsageChanged,
)
from ollm.live import recorded_sessions, session_log
from tests.fakes.ollama_server import FakeModel, ollama_server_thread, prompt_tokens
from tests.ollm.processes import ROOT, ollm

pytestmark = pytest.mark.usefixtures("ollama_rules")


@pytest.fixture
def server():
    with ollama_server_thread() as running:
        yield running


def home() -> Path:
    return Path(os.environ["OLLM_HOME"])


def sessions() -> list[str]:
    """The recorded sessions' ids, oldest first (from the journal's index)."""
    return [row.session_id for row in recorded_sessions(home())]


def read_session(session_id: str) -> LogContents:
    return session_log(home(), session_id)


def user_messages(session_id: str) -> list[str]:
    log = read_session(session_id)
    return [
        e.event.message.content
        for e in log.envelopes
        if isinstance(e.event, MessageAdded) and e.event.message.role == "user"
    ]


def test_one_shot_prints_the_answer_on_stdout_and_nothing_else(server):
    result = ollm("-p", "What is two plus two?", "--host", server.url, "--model", "llama3.1:8b")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("You said 21 characters.")
    assert result.stdout.endswith("\n")
    # stderr: only the once-only advice (the stock server runs f16, the config prefers q8_0).
    (advice,) = result.stderr.splitlines()
    assert advice.startswith("ollm: the server runs an f16 KV cache (from Ollama's defaults")
    chat = server.chats()[-1]
    assert chat["options"]["num_ctx"] == 13926, "the same sizing as the chat: the 16k profile"
    assert chat["messages"][-1] == {"role": "user", "content": "What is two plus two?"}
    assert user_messages(sessions()[-1]) == ["What is two plus two?"]
    again = ollm("-p", "And three?", "--host", server.url, "--model", "llama3.1:8b")
    assert again.returncode == 0 and again.stdout.startswith("You said 10 characters.")
    assert again.stderr == "", "the advice is given once, not in every session"


def test_one_shot_reads_standard_input_with_dash(server):
    result = ollm("-p", "-", "--host", server.url, "-m", "llama3.1:8b", stdin="from a pipe\n")
    assert result.returncode == 0, result.stderr
    assert server.chats()[-1]["messages"][-1]["content"] == "from a pipe\n"


def test_one_shot_takes_the_model_and_size_from_config_and_environment(server, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("model: llama3.1:8b\ncontext:\n  targetSize: 8192\n")
    result = ollm("-p", "hello", "--config", str(config), env={"OLLAMA_HOST": server.url})
    assert result.returncode == 0, result.stderr
    assert server.chats()[-1]["options"]["num_ctx"] == 6963


@pytest.mark.parametrize(
    ("fault", "code", "words"),
    [
        ("oom", 0, "num_ctx 6963"),
        ("error_midstream", 7, "stopped the reply with an error"),
        ("malformed", 7, "a line of the reply that ollm cannot read"),
        ("reset", 7, "connection to Ollama"),
        ("not_found", 4, "ollama pull llama3.1:8b"),
    ],
)
def test_one_shot_faults_end_in_their_message_and_exit_status(server, fault, code, words):
    server.fault(fault)
    result = ollm("-p", "hello there", "--host", server.url, "-m", "llama3.1:8b")
    assert result.returncode == code, result.stderr
    assert words in result.stderr
    assert "Traceback" not in result.stderr
    assert user_messages(sessions()[-1]) == ["hello there"], "the message is in the session log"
    if code:
        log = read_session(sessions()[-1])
        assert any(isinstance(e.event, MessageUnanswered) for e in log.envelopes)


def test_one_shot_overflow_twice_exits_5(server):
    server.fault("overflow", "overflow")
    result = ollm("-p", "hello", "--host", server.url, "-m", "llama3.1:8b")
    assert result.returncode == 5
    assert "no longer fits" in result.stderr


def test_one_shot_start_failures(server):
    unreachable = ollm("-p", "hi", "--host", "http://127.0.0.1:9", "-m", "x")
    assert unreachable.returncode == 3
    assert "cannot reach Ollama at http://127.0.0.1:9" in unreachable.stderr
    missing = ollm("-p", "hi", "--host", server.url, "-m", "nope:1b")
    assert missing.returncode == 4
    assert "ollama pull nope:1b" in missing.stderr
    unchosen = ollm("-p", "hi", "--host", server.url)
    assert unchosen.returncode == 2
    assert "no model chosen" in unchosen.stderr and "llama3.1:8b" in unchosen.stderr
    empty = ollm("-p", "  ", "--host", server.url, "-m", "llama3.1:8b")
    assert empty.returncode == 2
    bad = ollm("-p", "hi", "--context-size", "tiny")
    assert bad.returncode == 2
    assert "is not a whole number" in bad.stderr
    for result in (unreachable, missing, unchosen, empty, bad):
        assert "Traceback" not in result.stderr
    assert not sessions(), "nothing to record when the session never started"


def test_a_bad_config_is_one_sentence_and_exit_2(tmp_path, server):
    config = tmp_path / "config.yaml"
    config.write_text("context:\n  kvQuantization: q3\n")
    result = ollm("-p", "hi", "--config", str(config), "--host", server.url)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"ollm: {config}: context.kvQuantization = 'q3' is not allowed; use one of f16, q8_0, q4_0"
    )


def test_the_repl_on_a_pipe_goes_on_after_a_fault_and_keeps_every_message(server):
    server.fault("not_found")  # the first chat request fails (the load is not a chat)
    script = "first question\nsecond question\n/quit\n"
    result = ollm("--host", server.url, "-m", "llama3.1:8b", stdin=script)
    assert result.returncode == 0, result.stderr
    assert "ollama pull llama3.1:8b" in result.stderr
    assert "your message is kept" in result.stderr
    assert result.stdout.count("You said") == 1
    assert user_messages(sessions()[-1]) == ["first question", "second question"]
    last = server.chats()[-1]["messages"]
    assert [m["content"] for m in last if m["role"] == "user"] == [
        "first question",
        "second question",
    ]


def test_resume_continues_the_newest_session_with_its_conversation(server):
    assert (
        ollm("-p", "remember the word kiwi", "--host", server.url, "-m", "llama3.1:8b").returncode
        == 0
    )
    first = sessions()[-1]
    result = ollm("-p", "which word?", "--host", server.url, "--resume")
    assert result.returncode == 0, result.stderr
    assert sessions()[-1] == first, "the same session, appended to"
    sent = [m["content"] for m in server.chats()[-1]["messages"] if m["role"] == "user"]
    assert sent == ["remember the word kiwi", "which word?"]
    assert user_messages(first) == ["remember the word kiwi", "which word?"]
    # The resumed log still replays to the same decisions.
    check = ollm("replay", "--check", str(first))
    assert check.returncode == 0, check.stderr
    unknown = ollm("-p", "x", "--host", server.url, "--resume", "nope")
    assert unknown.returncode == 2
    assert "no session id starts with 'nope'" in unknown.stderr


def test_a_recorded_live_session_replays_to_the_same_decisions(server):
    server.fault("oom")
    assert ollm("-p", "hello", "--host", server.url, "-m", "llama3.1:8b").returncode == 0
    check = ollm("replay", "--check", str(sessions()[-1]))
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("replay matches: ")
    timeline = ollm("replay", "--events", str(sessions()[-1])).stdout
    assert "reply.failed" in timeline
    assert "context.resize_requested" in timeline
    assert "context.size_chosen" in timeline
    readable = ollm("replay", str(sessions()[-1])).stdout.splitlines()
    assert any("turn 1  you: 'hello' (5 characters)" in line for line in readable)
    assert any("reply failed: " in line and "out of memory" in line for line in readable)
    assert any("· context for llama3.1:8b: num_ctx" in line for line in readable)
    assert readable[-1].startswith("1 turns · peak usage ")
    assert "1 failed and 0 cancelled replies" in readable[-1]


def test_a_repl_session_with_commands_replays_to_the_same_decisions(server):
    """The commands' requests (a size, a compression, a clear) are fed to the replay as the
    user's input, and what the actors did with them comes out the same."""
    lines = [
        "remember the number 42",
        "/context size 8192",
        "what number?",
        "/context compress",
        "/context snapshot",
        "and now?",
        "/context clear",
        "after the clear",
        "/context auto",
        "last one",
    ]
    result = ollm("--host", server.url, "-m", "llama3.1:8b", stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    assert "num_ctx is now 6963" in result.stdout
    assert "the conversation was cleared" in result.stderr
    timeline = ollm("replay", "--events", str(sessions()[-1])).stdout
    for kind in ("context.resize_requested", "compress.requested", "context.cleared"):
        assert kind in timeline
    check = ollm("replay", "--check", str(sessions()[-1]))
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("replay matches: ")


def test_sessions_lists_each_session_with_its_model_and_turns(server):
    empty = ollm("sessions")
    assert empty.returncode == 0
    assert empty.stdout.startswith("no sessions yet in ")
    assert ollm("-p", "one", "--host", server.url, "-m", "llama3.1:8b").returncode == 0
    assert ollm("-p", "two", "--host", server.url, "--resume").returncode == 0
    (first,) = sessions()
    server.models["other:1b"] = FakeModel("other:1b")
    third = ollm("-p", "three", "--host", server.url, "-m", "other:1b")
    assert third.returncode == 0, third.stderr
    (second,) = [s for s in sessions() if s != first]
    result = ollm("sessions")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "SESSION",
        "STARTED",
        "(UTC)",
        "MODEL",
        "TURNS",
        "LAST",
        "(UTC)",
        "FIRST",
        "WORDS",
    ]
    rows = {line.split()[0]: line.split() for line in lines[1:3]}
    assert rows[first][3:5] == ["llama3.1:8b", "2"]
    assert rows[first][-1] == "one", "the first words"
    assert rows[second][3:5] == ["other:1b", "1"]
    assert lines[-1] == f"2 sessions in {home()}; `ollm --resume ID` continues one"
    found = ollm("sessions", "--search", "three")
    assert [line.split()[0] for line in found.stdout.splitlines()[1:-1]] == [second]


def test_ctrl_c_during_a_reply_cancels_it_promptly_and_keeps_the_message(server):
    server.fault("stall")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ollm",
            "-p",
            "tell me a long story",
            "--host",
            server.url,
            "-m",
            "llama3.1:8b",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(8) == "You said", "the reply started streaming"
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=10)
    err = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    assert code == 130
    assert "reply cancelled; your message is kept" in err
    assert "Traceback" not in err
    assert user_messages(sessions()[-1]) == ["tell me a long story"]


def test_fit_shows_the_architecture_kv_costs_and_the_largest_context_with_sources(server):
    result = ollm("fit", "llama3.1:8b", "--host", server.url, "--kv-type", "q8_0")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "llama, 32 layers, 8 KV heads × 128+128, trained context 131072" in out
    assert "[/api/show model_info]" in out and "[/api/tags size]" in out
    assert "f16 128.00 KiB, q8_0 68.00 KiB, q4_0 36.00 KiB" in out
    assert "memory from host" in out
    assert "largest context that fits now:" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("4096 ")]
    assert rows[0][1:4] == ["512", "MiB", "272"]
    assert (
        "server: q8_0 KV cache, flash attention auto (llama-server decides per model)   "
        "[--kv-type]" in out
    )
    assert "server: 1 parallel slot   [Ollama's defaults, as nothing says" in out
    plain = ollm("fit", "llama3.1:8b", "--host", server.url).stdout
    assert (
        "server: f16 KV cache, flash attention auto (llama-server decides per model), "
        "1 parallel slot   [Ollama's defaults, as nothing says the server runs otherwise]" in plain
    )
    missing = ollm("fit", "nope", "--host", server.url)
    assert missing.returncode == 4
    assert "ollama pull nope" in missing.stderr


def test_replay_shows_what_each_compression_pinned_and_each_refused_summary(server, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("context:\n  compression:\n    strategy: summarize\n")
    lines = [
        "Never use tabs in generated YAML. JOB-90211 writes /srv/data/report-7.csv.",
        "a second question: " + "lorem ipsum " * 200,
        "a third question: " + "dolor sit amet " * 200,
        "/context compress",
        "short",
        "/context compress",
    ]
    echo = SUMMARY_INSTRUCTIONS.format(budget=1024)
    server.reply("one.", "two.", "three.", "Goal: questions about lorem ipsum.", "five.", echo)
    result = ollm(
        "--host",
        server.url,
        "-m",
        "llama3.1:8b",
        "--config",
        str(config),
        stdin="".join(line + "\n" for line in lines),
    )
    assert result.returncode == 0, result.stderr
    replayed = ollm("replay", sessions()[-1])
    assert replayed.returncode == 0, replayed.stderr
    assert "3 facts pinned" in replayed.stdout, "what the first compression pinned"
    assert "the summary was discarded: the summary mostly repeats the instructions" in (
        replayed.stdout
    ), "the second, refused, summary"


IDS_TEXT = (
    "JOB-90211 failed on ip-10-42-7-19 with E_TIMEOUT_504 at 2026-11-30T04:17:09Z; JOB-90212 "
    "read /srv/data/report-7.csv (42.5 GiB, sha256 9f86d081884c7d65), build v3.14.159-rc2"
)


def first_estimate(session_id: str) -> int:
    """The usage the session's first chat request went out on."""
    used = 0
    for envelope in read_session(session_id).envelopes:
        if isinstance(envelope.event, UsageChanged):
            used = envelope.event.used_tokens
        if isinstance(envelope.event, ChatRequested) and envelope.event.messages:
            return used
    raise AssertionError("no chat request")


def test_a_new_session_starts_from_the_calibration_the_last_one_learned(server, monkeypatch):
    assert ollm("-p", IDS_TEXT, "--host", server.url, "-m", "llama3.1:8b").returncode == 0
    learned = [e.event for e in read_session(sessions()[-1]).envelopes]
    factor = [e for e in learned if isinstance(e, CalibrationChanged)][-1].factor
    second = ollm("-p", IDS_TEXT + " again", "--host", server.url, "-m", "llama3.1:8b")
    assert second.returncode == 0, second.stderr
    events = [e.event for e in read_session(sessions()[-1]).envelopes]
    (restored,) = [e for e in events if isinstance(e, CalibrationRestored)]
    assert (restored.model, restored.factor) == ("llama3.1:8b", factor)
    counted = server.chats()[-1]
    real = prompt_tokens(counted["messages"])
    with_prior = abs(first_estimate(sessions()[-1]) - real)
    monkeypatch.setenv("OLLM_HOME", str(home().parent / "fresh"))
    assert (
        ollm("-p", IDS_TEXT + " again", "--host", server.url, "-m", "llama3.1:8b").returncode == 0
    )
    without = abs(first_estimate(sessions()[-1]) - real)
    assert with_prior < without, (with_prior, without)
    check = ollm("replay", "--check", sessions()[-1])
    assert check.returncode == 0, check.stdout + check.stderr


def test_fit_lists_the_chats_own_options_and_how_to_choose_the_largest_that_fits(server):
    # The KV type and slots given, so that this machine's own Ollama setup plays no part.
    result = ollm("fit", "llama3.1:8b", "--host", server.url, "--kv-type", "f16", "--parallel", "1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("the chat's context"))
    assert "f16 KV cache the server runs" in lines[start]
    rows = [line.split() for line in lines[start + 2 : start + 8]]
    assert [(int(r[0]), int(r[1])) for r in rows] == [
        (4096, 3482),
        (8192, 6963),
        (16384, 13926),
        (32768, 27853),
        (65536, 55706),
        (131072, 111411),
    ], "size → num_ctx exactly as the chat sends them"
    shown = [r for r in server.requests if r.path == "/api/show"]
    assert len(shown) == 1, "fit asks /api/show once (the chat's own selection)"
    fitting = [int(r[0]) for r in rows if r[-1] == "yes"]
    largest = next(line for line in lines if line.startswith("the largest that fits now:"))
    if fitting:
        assert f"`ollm --context-size {max(fitting)}`" in largest
