from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ollm import __version__
from ollm.cli.main import main

GOLDEN = Path(__file__).parents[1] / "golden"
CHAT = GOLDEN / "chat-3482.jsonl"


def run_ollm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ollm", *args], capture_output=True, text=True, check=False
    )


def test_version_and_help():
    result = run_ollm("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"ollm {__version__}")
    result = run_ollm("--help")
    assert result.returncode == 0
    assert "replay" in result.stdout
    assert "chat" in result.stdout


def test_replay_prints_every_event_with_events(capsys):
    assert main(["replay", "--events", str(CHAT)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"session log {CHAT}")
    assert any("limit.soft_hit" in line and "used_tokens=" in line for line in out)
    assert any("compress.requested" in line and "reason='auto'" in line for line in out)


def test_replay_prints_a_readable_digest(capsys):
    assert main(["replay", str(CHAT)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{CHAT} (ollm ")
    assert out[1].endswith("session golden opened")
    assert out[2].endswith("model llama3.1:8b, num_ctx 3482 (golden), KV cache f16")
    assert out[3].endswith(
        "turn 1  you: 'turn 0: the quick brown fox jumps over the lazy dog the qui…' (148 characters)"
    )
    assert out[4].endswith("reply: 30 tokens (prompt 56) · usage 56/3482 (2%)")
    threshold = next(i for i, line in enumerate(out) if "the context is 76% full" in line)
    assert "snapshot 9598d2 saved (pre-compression" in out[threshold + 2]
    assert "compressed 2631 → about 1446 tokens (hybrid, 24 messages)" in out[threshold + 3]
    assert out[-1] == (
        "40 turns · peak usage 2667/3482 (77%) · 2 compressions (-2343 tokens) · 2 snapshots"
        " · 0 failed and 0 cancelled replies · 1:19 long"
    )


def test_replay_takes_check_or_events_not_both():
    result = run_ollm("replay", "--check", "--events", str(CHAT))
    assert result.returncode == 2
    assert result.stderr.splitlines()[0].startswith("usage: ollm replay")
    assert "not allowed with argument" in result.stderr
    assert result.stdout == ""


def test_replay_check_on_a_golden_log(capsys):
    assert main(["replay", "--check", str(CHAT)]) == 0
    assert capsys.readouterr().out.startswith("replay matches: ")


def test_replay_check_reports_a_tampered_decision(tmp_path, capsys):
    tampered = tmp_path / "events.jsonl"
    tampered.write_text(CHAT.read_text().replace('"reason":"auto"', '"reason":"user"', 1))
    assert main(["replay", "--check", str(tampered)]) == 1
    err = capsys.readouterr().err.strip()
    first = next(
        i + 1
        for i, line in enumerate(CHAT.read_text().splitlines()[1:])
        if '"reason":"auto"' in line
    )
    assert err.startswith(f"ollm: replay diverged at seq {first}: expected memory_guard: ")
    assert '"reason":"user"' in err
    assert '"reason":"auto"' in err
    assert len(err.splitlines()) == 1


def test_replay_of_a_torn_log_recovers_the_complete_events(tmp_path, capsys):
    torn = tmp_path / "events.jsonl"
    data = CHAT.read_bytes()
    torn.write_bytes(data[: len(data) - 25])
    assert main(["replay", "--check", str(torn)]) == 0
    out = capsys.readouterr().out
    last_line = data.count(b"\n")
    assert f"line {last_line} of {torn} was torn by a crash" in out
    assert "replay matches" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("just some notes\n", "line 1: is not an event log (the first line is not a log header)"),
        (
            '{"record":"header","format":7,"app":"ollm","app_version":"9","config_digest":"x"}\n',
            "line 1: has log format version 7, but this program reads version 1",
        ),
        (None, "line 3: holds an event of unknown kind 'user.shouted'"),
        ("garbage", "line 5: is not a JSON record (the file is damaged)"),
    ],
    ids=["not-a-log", "unknown-version", "unknown-tag", "garbage-line"],
)
def test_bad_logs_get_one_sentence_naming_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    lines = CHAT.read_text().splitlines(keepends=True)
    if content is None:
        lines[2] = lines[2].replace("model.selected", "user.shouted")
        path.write_text("".join(lines))
    elif content == "garbage":
        lines[4] = "}}} not json at all\n"
        path.write_text("".join(lines))
    else:
        path.write_text(content)
    for args in (["replay", str(path)], ["replay", "--check", str(path)]):
        result = run_ollm(*args)
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr.startswith(f"ollm: {path}, {message}")
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_a_missing_log_is_one_sentence(tmp_path):
    result = run_ollm("replay", str(tmp_path / "nope.jsonl"))
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"ollm: {tmp_path / 'nope.jsonl'}: cannot be read (No such file or directory)"
    )


def test_the_console_script_is_installed():
    exe = shutil.which("ollm", path=str(Path(sys.executable).parent))
    assert exe is not None
    result = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    assert result.stdout.strip() == f"ollm {__version__}"
