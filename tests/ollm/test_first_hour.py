"""What a new user hits in the first hour, through the public surface: exit codes, the two
streams, and the test server's record."""

from __future__ import annotations

import pytest

from tests.fakes.ollama_server import FakeModel, ollama_server_thread
from tests.ollm.processes import ollm

pytestmark = pytest.mark.usefixtures("ollama_rules")


@pytest.fixture
def server():
    with ollama_server_thread() as running:
        yield running


def test_a_one_shot_that_cannot_fit_exits_5_and_names_the_flag(server):
    big = "word " * 10_000
    result = ollm(
        "-p", "-", "--host", server.url, "-m", "llama3.1:8b", "--context-size", "4096", stdin=big
    )
    assert result.returncode == 5, result.stderr
    assert result.stdout == ""
    assert "too large for the 3482-token context" in result.stderr
    assert "`--context-size N` on the command line" in result.stderr
    assert [c for c in server.chats() if c["messages"]] == [], "nothing was sent"


@pytest.mark.parametrize(
    ("written", "sent"),
    [("-1", -1), ("0", 0), ("300", 300), ("5m", "5m"), ('"1h30m"', "1h30m"), ("-1m", "-1m")],
)
def test_keep_alive_takes_ollamas_own_values_and_sends_them_unchanged(
    server, tmp_path, written, sent
):
    config = tmp_path / "config.yaml"
    config.write_text(f"ollama:\n  keepAlive: {written}\n")
    result = ollm("-p", "hi", "--config", str(config), "--host", server.url, "-m", "llama3.1:8b")
    assert result.returncode == 0, result.stderr
    assert server.chats()[-1]["keep_alive"] == sent


@pytest.mark.parametrize("written", ["forever", '"30"', '"-1"', "5 minutes", ".inf"])
def test_keep_alive_values_ollama_would_refuse_are_refused_at_once(server, tmp_path, written):
    config = tmp_path / "config.yaml"
    config.write_text(f"ollama:\n  keepAlive: {written}\n")
    result = ollm("-p", "hi", "--config", str(config), "--host", server.url, "-m", "llama3.1:8b")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "ollama.keepAlive = " in line and "is not allowed; it must be" in line
    assert server.chats() == [], "refused before anything was sent"


def test_ollama_host_is_read_as_ollama_reads_it_and_a_wrong_path_says_so(server):
    port = server.url.rsplit(":", 1)[1]
    for host in (f":{port}", f"'127.0.0.1:{port}'", f"http://localhost:{port}/"):
        result = ollm("-p", "hi", "-m", "llama3.1:8b", env={"OLLAMA_HOST": host})
        assert result.returncode == 0, (host, result.stderr)
    wrong = ollm("-p", "hi", "-m", "llama3.1:8b", env={"OLLAMA_HOST": f"{server.url}/api"})
    assert wrong.returncode != 0
    assert "has no such API path (HTTP 404" in wrong.stderr and "ollama pull" not in wrong.stderr
    assert "check OLLAMA_HOST or --host" in wrong.stderr


def test_an_unknown_option_is_named_and_llms_habits_work(server):
    unknown = ollm("-m", "llama3.1:8b", "--sytem", "be brief", "-p", "hi", "--host", server.url)
    assert unknown.returncode == 2
    assert unknown.stderr == ("ollm: --sytem is not an option of ollm; `ollm --help` lists them\n")
    first = ollm("-m", "llama3.1:8b", "-s", "Answer in French.", "-p", "hi", "--host", server.url)
    assert first.returncode == 0, first.stderr
    assert server.chats()[-1]["messages"][0] == {"role": "system", "content": "Answer in French."}
    again = ollm("-c", "-p", "and again", "--host", server.url)
    assert again.returncode == 0, again.stderr
    assert [m["content"] for m in server.chats()[-1]["messages"] if m["role"] == "user"] == [
        "hi",
        "and again",
    ], "-c continued the newest session"


def test_context_size_says_it_once_takes_8k_and_keeps_to_min_size(server, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("context:\n  minSize: 2048\n")
    lines = ["/context size 8k", "hello", "/context size 1024", "/context size 16K"]
    result = ollm(
        "--config",
        str(config),
        "--host",
        server.url,
        "-m",
        "llama3.1:8b",
        stdin="".join(line + "\n" for line in lines),
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert out.count("num_ctx is now 6963 (size 8192)") == 1
    assert out.count("num_ctx is now 13926 (size 16384)") == 1
    assert "context for llama3.1:8b: num_ctx" not in out, "said once, by the command"
    assert "1024 is not a usable size; use from 2048 to 131072" in out
    sent = [c["options"]["num_ctx"] for c in server.chats() if c["messages"]]
    assert sent == [6963]


def test_a_model_named_without_its_tag_points_to_the_installed_one(server):
    result = ollm("-p", "hi", "--host", server.url, "-m", "llama3.1")
    assert result.returncode == 4
    assert "the model llama3.1 is not installed" in result.stderr
    assert "but llama3.1:8b is; pass `-m llama3.1:8b`, or run `ollama pull llama3.1`" in (
        result.stderr
    )
    other = ollm("-p", "hi", "--host", server.url, "-m", "qwen3")
    assert "run `ollama pull qwen3` and try again" in other.stderr


def test_model_without_a_name_lists_the_installed_models(server):
    result = ollm("--host", server.url, "-m", "llama3.1:8b", stdin="/model\n")
    assert result.returncode == 0, result.stderr
    assert "installed models (`/model NAME` switches):\n  llama3.1:8b  (in use)" in result.stdout


def test_ollama_runs_bye_and_question_mark_work(server):
    result = ollm("--host", server.url, "-m", "llama3.1:8b", stdin="/?\n/bye\nnever sent\n")
    assert result.returncode == 0, result.stderr
    assert "/context size" in result.stdout, "/? printed the help"
    assert "session saved" in result.stderr
    assert [c for c in server.chats() if c["messages"]] == [], "/bye ended the session"


def test_ollm_config_prints_every_key_its_value_and_its_source(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("model: qwen3:8b\ncontext:\n  compression:\n    threshold: 0.6\n")
    result = ollm(
        "config",
        "--config",
        str(config),
        env={"OLLM_CONTEXT_SIZE": "8192", "OLLAMA_HOST": "http://me:pw@box:1"},
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith(f"config file: {config}\n")
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert rows["model"].split()[1:] == ["qwen3:8b", f"[{config}]"]
    assert rows["context.compression.threshold"].endswith(f"[{config}]")
    assert rows["context.targetSize"].split()[1] == "8192"
    assert rows["context.targetSize"].endswith("[environment variable OLLM_CONTEXT_SIZE]")
    assert rows["context.autoSize"].split()[1:] == ["true", "[default]"]
    assert "http://***@box:1" in rows["ollama.host"] and "pw" not in out
    assert len(rows) == 30, "every key"
    assert rows["ollama.options"].split()[1:] == ["{}", "[default]"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("context:\n  autosize: true\n")
    refused = ollm("-p", "hi", "--config", str(bad))
    assert "unknown key context.autosize; check its spelling; `ollm config` lists every key" in (
        refused.stderr
    )


@pytest.mark.parametrize("columns", [40, 60, 80, 120])
def test_the_status_box_fits_the_terminals_width(server, columns):
    result = ollm(
        "--host",
        server.url,
        "-m",
        "llama3.1:8b",
        stdin="hello\n/context\n",
        env={"COLUMNS": str(columns)},
    )
    assert result.returncode == 0, result.stderr
    box = [line for line in result.stdout.splitlines() if line[:1] in "┌│└"]
    assert box and all(len(line) <= columns for line in box), (columns, max(map(len, box)))
    assert any("KV Cache: f16" in line for line in box)


def test_resume_shows_the_last_turns_before_the_prompt(server):
    first = ollm("--host", server.url, "-m", "llama3.1:8b", stdin="one\ntwo\nthree\n")
    assert first.returncode == 0, first.stderr
    resumed = ollm("--resume", "--host", server.url, stdin="")
    assert resumed.returncode == 0, resumed.stderr
    recap = resumed.stdout.splitlines()
    assert recap[0] == "the conversation so far (6 messages; the last 4):"
    assert recap[1] == "  you: two" and recap[3] == "  you: three"
    assert recap[2].startswith("  model: You said 3 characters.")
    fresh = ollm("--host", server.url, "-m", "llama3.1:8b", stdin="")
    assert "the conversation so far" not in fresh.stdout


def test_triple_quotes_and_set_parameter_num_ctx_as_in_ollama_run(server):
    stdin = '"""first line\nsecond line\n"""\n/set parameter num_ctx 8192\nhi\n/set seed 4\n'
    result = ollm("--host", server.url, "-m", "llama3.1:8b", stdin=stdin)
    assert result.returncode == 0, result.stderr
    chats = [c for c in server.chats() if c["messages"]]
    assert chats[0]["messages"][-1]["content"] == "first line\nsecond line"
    assert chats[1]["messages"][-1]["content"] == "hi"
    assert chats[1]["options"]["num_ctx"] == 6963
    assert "only `parameter num_ctx N` and `system TEXT` can be set here" in result.stdout


def test_ollm_models_lists_each_installed_model_with_its_options(server):
    server.models["tiny:1b"] = FakeModel("tiny:1b", context_length=8192, weights_bytes=700 << 20)
    result = ollm("models", "--host", server.url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    llama = next(line for line in lines if line.startswith("llama3.1:8b  "))
    assert "options 4k, 8k, 16k, 32k, 64k, 128k" in llama
    assert "largest that fits now:" in llama or "fit unknown" in llama or "nothing fits" in llama
    assert any(line.startswith("tiny:1b  700 MiB  options 8k  ") for line in lines), lines
    down = ollm("models", "--host", "http://127.0.0.1:9")
    assert down.returncode != 0 and "cannot reach Ollama" in down.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_completion_code_is_generated_for_each_shell(shell):
    result = ollm("completion", shell)
    assert result.returncode == 0, result.stderr
    assert "ollm" in result.stdout and "_ARGCOMPLETE" in result.stdout


@pytest.mark.parametrize(
    ("line", "offered"),
    [
        ("ollm fi", {"fit"}),
        ("ollm --cont", {"--context-size", "--continue"}),
        ("ollm completion ", {"bash", "zsh", "fish", "-h", "--help"}),
    ],
)
def test_the_shell_completes_commands_options_and_choices(tmp_path, line, offered):
    answer = tmp_path / "completions"
    result = ollm(
        env={
            "_ARGCOMPLETE": "1",
            "COMP_LINE": line,
            "COMP_POINT": str(len(line)),
            "_ARGCOMPLETE_STDOUT_FILENAME": str(answer),
        }
    )
    assert result.returncode == 0, result.stderr
    assert {word.strip() for word in answer.read_text().split("\x0b")} == offered


def test_context_restore_takes_the_number_context_list_shows(server):
    lines = [
        "first",
        "/context snapshot",
        "second",
        "/context snapshot",
        "third",
        "/context restore 9",
        "/context restore 2",
        "after",
    ]
    result = ollm("--host", server.url, "-m", "llama3.1:8b", stdin="".join(f"{x}\n" for x in lines))
    assert result.returncode == 0, result.stderr
    assert "there is no snapshot number 9 (`/context list` shows 1–" in result.stdout
    last = [m["content"] for m in server.chats()[-1]["messages"] if m["role"] == "user"]
    assert last == ["first", "after"], "number 2 is the older snapshot, taken after 'first'"


def test_a_reply_that_failed_after_it_began_is_not_retried_or_printed_twice(server):
    server.fault("oom_midstream")
    result = ollm("-p", "tell me more", "--host", server.url, "-m", "llama3.1:8b")
    assert result.returncode == 6, result.stderr
    assert result.stdout.count("You said") == 1, result.stdout
    assert "ran out of memory" in result.stderr and "retrying" not in result.stderr
    assert len([c for c in server.chats() if c["messages"]]) == 1, "no second attempt"


def test_model_options_from_o_and_the_config_go_on_every_chat_request(server, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("ollama:\n  options:\n    top_k: 20\n    temperature: 0.9\n")
    words = ("-o", "temperature", "0.2", "-o", "seed", "7", "-o", "stop", "END", "-o", "stop", "##")
    first = ollm(
        "-p", "hi", *words, "--config", str(config), "--host", server.url, "-m", "llama3.1:8b"
    )
    assert first.returncode == 0, first.stderr
    options = server.chats()[-1]["options"]
    assert options == {
        "num_ctx": options["num_ctx"],
        "num_predict": options["num_predict"],
        "seed": 7,
        "stop": ["END", "##"],
        "temperature": 0.2,
        "top_k": 20,
    }, "the flag beats the file; the file's other option stays"
    shown = ollm("config", "--config", str(config), "-o", "seed", "3")
    assert shown.returncode == 2, "`ollm config` takes no -o: it is a chat option"
    again = ollm("-c", "-p", "and again", "--config", str(config), "--host", server.url)
    assert server.chats()[-1]["options"]["temperature"] == 0.9, "a new run reads its own flags"
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("num_gpu", "10", "num_gpu is a runner option: changing it makes Ollama reload the model"),
        ("num_ctx", "8192", "use --context-size N"),
        ("num_predict", "5", "set ollama.maxReplyTokens instead"),
        ("temprature", "1", "it is not one of Ollama's model options; use one of"),
        ("seed", "1.5", "it must be a whole number"),
        ("temperature", "hot", "it must be a number"),
        ("top_p", "nan", "it must be a number"),
    ],
)
def test_a_model_option_ollm_cannot_send_is_refused_in_one_sentence(server, key, value, says):
    result = ollm("-p", "hi", "-o", key, value, "--host", server.url, "-m", "llama3.1:8b")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"ollm: command-line flag -o {key}: ollama.options.{key} = ")
    assert says in line
    assert server.chats() == [], "refused before anything was sent"


def _systems(chat):
    return [m["content"] for m in chat["messages"] if m["role"] == "system"]


def test_set_system_changes_the_system_prompt_from_the_next_request_and_it_lasts(server):
    lines = [
        "one",
        "/set system Answer in French.",
        "two",
        "/context snapshot",
        '/set system ""',
        "three",
        "/context restore 1",
        "four",
        "/set system",
    ]
    stdin = "".join(f"{line}\n" for line in lines)
    result = ollm("--host", server.url, "-m", "llama3.1:8b", "-s", "Be brief.", stdin=stdin)
    assert result.returncode == 0, result.stderr
    chats = [c for c in server.chats() if c["messages"]]
    assert [_systems(c) for c in chats] == [
        ["Be brief."],
        ["Answer in French."],
        [],
        ["Answer in French."],
    ], "set, removed, then restored with the snapshot that held it"
    assert "the system prompt is set (" in result.stdout
    assert "the system prompt is removed" in result.stdout
    assert "give the text, e.g. /set system Answer briefly." in result.stdout
    resumed = ollm("-c", "-p", "five", "--host", server.url)
    assert resumed.returncode == 0, resumed.stderr
    assert _systems(server.chats()[-1]) == ["Answer in French."], "the log keeps it"
    session = result.stderr.split("continue it with `ollm --resume ")[1].split("`")[0]
    checked = ollm("replay", session, "--check")
    assert checked.returncode == 0 and "replay matches" in checked.stdout, checked.stderr


def test_save_and_load_name_snapshots_that_the_rolling_cleanup_keeps(server, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("context:\n  snapshots:\n    maxCount: 1\n")
    lines = [
        "first",
        "/save keep",
        "second",
        "/save draft",
        "third",
        "/context snapshot",
        "fourth",
        "/context snapshot",
        "/save draft",
        "/context list",
        "/load nope",
        "/load keep",
        "after",
        "/load draft",
        "last",
    ]
    stdin = "".join(f"{line}\n" for line in lines)
    result = ollm("--config", str(config), "--host", server.url, "-m", "llama3.1:8b", stdin=stdin)
    assert result.returncode == 0, result.stderr
    listed = [line for line in result.stdout.splitlines() if line[:4].strip(" .").isdigit()]
    assert len(listed) == 3, listed  # keep, the new draft, and one unnamed (maxCount 1)
    assert sum("'keep'" in line for line in listed) == 1
    assert sum("'draft'" in line for line in listed) == 1
    assert "no snapshot is named 'nope' (this session has draft, keep)" in result.stdout
    users = [
        [m["content"] for m in c["messages"] if m["role"] == "user"]
        for c in server.chats()
        if c["messages"]
    ]
    assert users[-2] == ["first", "after"], "keep survived four later snapshots"
    assert users[-1] == ["first", "second", "third", "fourth", "last"], (
        "draft is the second one saved with that name"
    )


def _last_user(server):
    return [m["content"] for m in server.chats()[-1]["messages"] if m["role"] == "user"][-1]


def test_a_prompt_given_as_words_is_a_one_shot_with_options_anywhere(server):
    result = ollm("why is", "the sky blue", "-m", "llama3.1:8b", "--host", server.url)
    assert result.returncode == 0, result.stderr
    assert _last_user(server) == "why is the sky blue"
    assert result.stdout.startswith("You said"), "the answer, on stdout, as -p prints it"
    word = ollm("--host", server.url, "-m", "llama3.1:8b", "--", "models")
    assert word.returncode == 0, word.stderr
    assert _last_user(server) == "models", "after --, a command's name is a prompt"
    resumed = ollm("--resume", "-m", "llama3.1:8b", "--host", server.url, "more")
    assert resumed.returncode == 0, resumed.stderr
    assert [m["content"] for m in server.chats()[-1]["messages"] if m["role"] == "user"] == [
        "models",
        "more",
    ]
    twice = ollm("-p", "one", "two", "--host", server.url)
    assert twice.returncode == 2
    assert twice.stderr == "ollm: give the prompt once: as words, or with -p, not both\n"


def test_a_warm_up_that_failed_says_it_tries_again_and_the_message_goes_out(server):
    server.fault("load_crash")
    result = ollm("-p", "hello", "--host", server.url, "-m", "llama3.1:8b")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("You said 5 characters.")
    assert "llama runner process has terminated" in result.stderr
    assert "Ollama loads the model for it" in result.stderr, "it says what it does next"
    assert _last_user(server) == "hello"
    server.fault("load_crash")
    repl = ollm("--host", server.url, "-m", "llama3.1:8b", stdin="hi\n")
    assert repl.returncode == 0, repl.stderr
    assert "Ollama loads the model for it" in repl.stderr
    assert repl.stdout.startswith("You said 2 characters.")


def test_a_busy_server_leaves_the_message_unanswered_and_says_so_once(server):
    server.fault("busy")
    result = ollm("-p", "hello", "--host", server.url, "-m", "llama3.1:8b")
    assert result.returncode != 0
    assert result.stderr.count("your message is kept, marked unanswered") == 1
    assert "retrying" not in result.stderr, "a busy chat request is not retried"


def test_a_refused_message_prints_one_sentence_and_no_stale_usage_notice(server):
    big = "word " * 10_000  # 50 KB: about 9,600 tokens for a 3482-token context
    lines = []
    for n in range(20):
        lines += [f"small {n}", big]
    lines.append("after")
    result = ollm(
        "--host",
        server.url,
        "-m",
        "llama3.1:8b",
        "--context-size",
        "4096",
        stdin="".join(f"{line}\n" for line in lines),
    )
    assert result.returncode == 0, result.stderr
    notices = [line for line in result.stderr.splitlines() if line.startswith("ollm: ")]
    refusals = [n for n in notices if "too large for the 3482-token context" in n]
    assert len(refusals) == 20
    assert all(n.endswith("(it was not sent; the session's log keeps it)") for n in refusals)
    for stale in ("% full", "emergency", "snapshot", "oldest messages were taken out"):
        assert not [n for n in notices if stale in n], stale
    sent = [c for c in server.chats() if c["messages"]]
    assert all(len(m["content"]) < 1000 for c in sent for m in c["messages"])
    assert _last_user(server) == "after"
