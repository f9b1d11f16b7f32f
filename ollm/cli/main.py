"""`ollm`: the command-line entry point."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import anyio

from .. import __version__
from ..model_options import OPTIONS_KEY, TEXTS
from .exits import EXIT_CANCELLED, EXIT_USAGE, describe
from .safe import SafeStream, safe

# Each command imports what it needs when it runs: the chat's start is timed
# (`scripts/bench_startup.py`), and replay and the sessions list need none of it.


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of tokens") from None
    if value < 256:
        raise argparse.ArgumentTypeError(f"{value} is too small; use at least 256 tokens")
    return value


def _chat_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--model", help="the Ollama model to chat with")
    parser.add_argument(
        "--context-size", type=_positive_int, metavar="TOKENS", help="the context size to use"
    )
    parser.add_argument("--host", help="the Ollama server (default: OLLAMA_HOST)")
    parser.add_argument("--config", type=Path, metavar="PATH", help="a config.yaml to use")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="",
        metavar="ID",
        help="continue a session (the newest one without ID)",
    )
    parser.add_argument(
        "-c",
        "--continue",
        dest="resume",
        action="store_const",
        const="",
        help="continue the newest session (as `llm -c`; the same as --resume)",
    )
    parser.add_argument(
        "-s", "--system", metavar="TEXT", help="the system prompt for this session (as `llm -s`)"
    )
    parser.add_argument(
        "-o",
        "--option",
        nargs=2,
        action="append",
        dest="options",
        metavar=("KEY", "VALUE"),
        help="a model option for every reply, e.g. -o temperature 0.2 (as `llm -o`); "
        "repeat it for more, or for several stop texts",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ollm",
        description="A context manager and chat REPL for local LLMs served by Ollama.",
        epilog=describe(),
    )
    parser.add_argument("--version", action="version", version=f"ollm {__version__}")
    parser.add_argument(
        "-p",
        "--prompt",
        metavar="TEXT",
        help="send one message, print the answer and exit (`-p -` reads standard input)",
    )
    _chat_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    chat = commands.add_parser("chat", help="start the chat REPL (the default)")
    _chat_options(chat)
    fit = commands.add_parser(
        "fit",
        help="how much context a model can have on this machine now",
        description="Show a model's architecture, KV cache cost per token and per context "
        "size, and the largest context that fits in free memory, with every figure's source.",
    )
    fit.add_argument("model", metavar="MODEL", help="an installed Ollama model")
    fit.add_argument("--host", help="the Ollama server (default: OLLAMA_HOST)")
    fit.add_argument("--config", type=Path, metavar="PATH", help="a config.yaml to use")
    fit.add_argument(
        "--kv-type",
        choices=("f16", "q8_0", "q4_0"),
        help="the KV cache type Ollama uses (default: read from the server's environment)",
    )
    fit.add_argument(
        "--parallel",
        type=int,
        metavar="N",
        help="Ollama's parallel slots (default: read from the server's environment, else 1)",
    )
    replay = commands.add_parser(
        "replay",
        help="show a recorded session's timeline, or re-run its decisions with --check",
        description="Print a recorded session as a readable timeline: turns, usage, "
        "thresholds crossed, compressions, snapshots, failures, then totals.",
    )
    replay.add_argument(
        "log", metavar="SESSION", help="a session id (or a unique prefix), or an exported .jsonl"
    )
    how = replay.add_mutually_exclusive_group()
    how.add_argument(
        "--check",
        action="store_true",
        help="re-run the recorded inputs and report the first decision that differs",
    )
    how.add_argument(
        "--events", action="store_true", help="every event, one line each, instead of the digest"
    )
    listing = commands.add_parser(
        "sessions",
        help="list the recorded sessions",
        description="List the sessions on this machine, oldest first: when, which model, how "
        "many turns, the first words. `ollm --resume ID` continues one; `ollm replay ID` "
        "shows one.",
    )
    listing.add_argument(
        "--search", metavar="TEXT", default="", help="only the sessions where TEXT was said"
    )
    models = commands.add_parser(
        "models",
        help="the installed models, their context options and what fits now",
        description="List the models the Ollama server has, each with its size, the chat's "
        "context options and the largest that fits in free memory now.",
    )
    models.add_argument("--host", help="the Ollama server (default: OLLAMA_HOST)")
    models.add_argument("--config", type=Path, metavar="PATH", help="a config.yaml to use")
    completion = commands.add_parser(
        "completion",
        help="the shell code that completes ollm's commands and options",
        description="Print the code that makes your shell complete ollm's commands, options "
        "and choices, generated from this parser by argcomplete. Add it to your shell's "
        'startup: `eval "$(ollm completion bash)"` (bash, in ~/.bashrc), the same with '
        "zsh (~/.zshrc), or `ollm completion fish | source` (fish, in config.fish).",
    )
    completion.add_argument("shell", choices=("bash", "zsh", "fish"))
    config = commands.add_parser(
        "config",
        help="every setting, its value and where it came from",
        description="Print every setting ollm uses, its value, and where the value came "
        "from (the config file, an environment variable, a flag, or the default), with the "
        "path of the config file.",
    )
    config.add_argument("--config", type=Path, metavar="PATH", help="a config.yaml to use")
    export = commands.add_parser(
        "export",
        help="write a session as a JSON-lines event log",
        description="Write a recorded session as JSON lines (a header, then one event per "
        "line), the format `ollm replay FILE` reads.",
    )
    export.add_argument("session", metavar="SESSION", help="a session id or a unique prefix")
    export.add_argument(
        "-o", "--output", type=Path, metavar="FILE", help="where to write (default: ID.jsonl)"
    )
    return parser


def _data_home() -> Path:
    from ..paths import data_home

    return data_home()


def _fail(message: str, code: int = 1) -> int:
    sys.stderr.write(safe(f"ollm: {message}") + "\n")
    return code


def _say(line: str) -> None:
    """One line on stdout, made safe for the terminal (it may quote a log or a file)."""
    sys.stdout.write(safe(line) + "\n")


def _replay(wanted: str, check: bool, events: bool) -> int:
    from ..live import RecordsError, check_session, session_log
    from .digest import digest
    from .timeline import timeline

    home = _data_home()
    if not check:
        try:
            log = session_log(home, wanted)
        except RecordsError as exc:
            return _fail(str(exc))
        for line in timeline(log) if events else digest(log):
            _say(line)
        return 0
    try:
        checked = anyio.run(check_session, home, wanted, backend="asyncio")
    except RecordsError as exc:
        return _fail(str(exc))
    except ValueError as exc:
        return _fail(f"{wanted}: {exc}")
    log, result = checked.log, checked.result
    if checked.missing:
        _say(
            f"note: the tokenizer of {', '.join(checked.missing)} is not in this machine's "
            "cache, so the replay counts by the estimate and its figures may differ; a chat "
            "with the model fetches it again"
        )
    if log.torn_line:
        _say(
            f"note: line {log.torn_line} of {wanted} was torn by a crash; "
            "replaying the events before it"
        )
    if log.crashes:
        _say(
            f"note: {wanted} was cut short by {len(log.crashes)} crash(es) and went on; "
            "what they cut short is not counted as a divergence"
        )
    if result.divergence is not None:
        return _fail(result.divergence.describe())
    _say(
        f"replay matches: {result.inputs} inputs re-run, "
        f"{result.derived} derived events identical ({wanted})"
    )
    return 0


def _sessions(search: str) -> int:
    from ..live import RecordsError, recorded_sessions
    from .digest import sessions_table

    home = _data_home()
    try:
        rows = recorded_sessions(home, search)
    except RecordsError as exc:
        return _fail(str(exc))
    if not rows:
        found = f" where {search!r} was said" if search else ""
        _say(f"no sessions{found} yet in {home}; `ollm` starts one")
        return 0
    for line in sessions_table(rows):
        _say(line)
    _say(f"{len(rows)} sessions in {home}; `ollm --resume ID` continues one")
    return 0


def _models(args: argparse.Namespace) -> int:
    from ..config import ConfigError, load_settings
    from .fit_view import run_models

    flags: dict[tuple[str, ...], Any] = {("ollama", "host"): args.host} if args.host else {}
    try:
        settings = load_settings(args.config, flags=flags)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    out: Any = SafeStream(sys.stdout)
    err: Any = SafeStream(sys.stderr)
    return anyio.run(run_models, settings, out, err, backend="asyncio")


def _config(path: Path | None) -> int:
    from ..config import ConfigError, explain_settings, shown_host

    try:
        explained = explain_settings(path)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    state = "" if explained.exists else " (not there: no file sets anything)"
    _say(f"config file: {explained.path}{state}")
    rows = explained.rows()
    width = max(len(key) for key, _value, _source in rows)
    for key, value, source in rows:
        if key == "ollama.host":
            value = shown_host(value)
        if isinstance(value, bool):
            shown = "true" if value else "false"
        elif isinstance(value, str):
            shown = value if value and len(value) <= 40 and value.isprintable() else repr(value)
            shown = shown if len(shown) <= 42 else shown[:41] + "…"
        else:
            shown = str(value)
        _say(f"  {key:<{width}}  {shown:<22}  [{source}]")
    _say("the file's keys are camelCase, nested as shown (context.targetSize is `targetSize:`")
    _say("under `context:`); environment variables and flags override the file")
    return 0


def _export(wanted: str, output: Path | None) -> int:
    from ..live import RecordsError, export_session

    path = output or Path(f"{wanted}.jsonl")
    try:
        contents = export_session(_data_home(), wanted, path)
    except RecordsError as exc:
        return _fail(str(exc))
    _say(f"wrote {len(contents.envelopes)} events to {path}; `ollm replay {path}` shows them")
    return 0


def _flags(args: argparse.Namespace) -> dict[tuple[str, ...], Any]:
    flags: dict[tuple[str, ...], Any] = {}
    if args.model:
        flags[("model",)] = args.model
    if args.context_size:
        flags[("context", "targetSize")] = args.context_size
    if args.host:
        flags[("ollama", "host")] = args.host
    if getattr(args, "system", None) is not None:
        flags[("systemPrompt",)] = args.system
    for name, value in getattr(args, "options", None) or ():
        key = (*OPTIONS_KEY, name)
        if name in TEXTS:  # `-o stop A -o stop B`: both end the reply
            value = [*flags.get(key, []), value]
        flags[key] = value
    return flags


def _chat(args: argparse.Namespace) -> int:
    from .safe import CurrentStream
    from .terminal import is_terminal, run_terminal

    asked = {"model": args.model, "size": args.context_size, "resume": args.resume}
    try:
        if is_terminal(sys.stdin) and is_terminal(sys.stdout) and args.prompt is None:
            # The prompt first; the settings, the session (and most of ollm's imports)
            # behind it.
            live_out: Any = CurrentStream("stdout")
            live_err: Any = CurrentStream("stderr")
            return anyio.run(
                run_terminal,
                args.config,
                _flags(args),
                asked,
                live_out,
                live_err,
                backend="asyncio",
            )
    except KeyboardInterrupt:
        return EXIT_CANCELLED
    from ..config import ConfigError, load_settings

    try:
        settings = load_settings(args.config, flags=_flags(args))
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    out: Any = SafeStream(sys.stdout)
    err: Any = SafeStream(sys.stderr)
    try:
        from .chat import Start, run_oneshot, run_repl

        start = Start(**asked)
        if args.prompt is not None:
            prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
            if not prompt.strip():
                return _fail("the prompt is empty; give text to -p, or pipe it to `-p -`", 2)
            return anyio.run(run_oneshot, settings, prompt, start, out, err, backend="asyncio")
        # Through the current sys.stdout/stderr, as on a terminal.
        plain_out: Any = CurrentStream("stdout")
        plain_err: Any = CurrentStream("stderr")
        return anyio.run(run_repl, settings, start, plain_out, plain_err, backend="asyncio")
    except KeyboardInterrupt:
        return EXIT_CANCELLED


def _fit(args: argparse.Namespace) -> int:
    from ..config import ConfigError, load_settings
    from .fit_view import run_fit

    flags: dict[tuple[str, ...], Any] = {}
    if args.host:
        flags[("ollama", "host")] = args.host
    try:
        settings = load_settings(args.config, flags=flags)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    if args.parallel is not None and args.parallel < 1:
        return _fail("--parallel must be at least 1", EXIT_USAGE)
    out: Any = SafeStream(sys.stdout)
    err: Any = SafeStream(sys.stderr)
    return anyio.run(
        run_fit,
        settings,
        args.model,
        args.parallel,
        out,
        err,
        args.kv_type,
        backend="asyncio",
    )


class Words(NamedTuple):
    """A command line as the chat reads it, before argparse."""

    unknown: str
    """The first word that looks like an option the chat does not have ("" when none)."""
    options: list[str]
    """The words argparse reads: options with their values, a command and its words."""
    prompt: list[str]
    """A prompt given as words (`ollm "why is the sky blue" -m llama3.1:8b`)."""


def read_words(parser: argparse.ArgumentParser, argv: Sequence[str]) -> Words:
    """Options (anywhere) apart from the words of a prompt, unless the first plain word is a
    command. Read before argparse, which would take an unknown option's value, or a prompt's
    first word, for a command ("invalid choice: 'sys'") and never name the option."""
    actions = {o: a for a in parser._actions for o in a.option_strings}
    commands = next(
        (a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {}
    )
    options: list[str] = []
    prompt: list[str] = []
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "--":
            return Words("", options, prompt + list(argv[index + 1 :]))
        if not word.startswith("-") or word == "-" or re.fullmatch(r"-\d+", word):
            if not prompt and word in (commands or {}):
                return Words("", list(argv), [])
            prompt.append(word)
            index += 1
            continue
        name = word.split("=", 1)[0]
        action = actions.get(name)
        if action is None:
            return Words(name, [], [])
        taken = 0
        if "=" in word:
            pass
        elif action.nargs == "?":  # as argparse reads it: the next word, unless an option
            following = argv[index + 1] if index + 1 < len(argv) else "-"
            taken = 0 if following.startswith("-") else 1
        elif action.const is None:
            taken = action.nargs if isinstance(action.nargs, int) else 1
        options += argv[index : index + 1 + taken]
        index += 1 + taken
    return Words("", options, prompt)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:  # the shell asks for completions (`ollm completion`)
        import argcomplete

        argcomplete.autocomplete(parser)
    words = sys.argv[1:] if argv is None else list(argv)
    found = read_words(parser, words)
    if found.unknown:
        return _fail(
            f"{found.unknown} is not an option of ollm; `ollm --help` lists them", EXIT_USAGE
        )
    args = parser.parse_args(found.options)
    if found.prompt:
        if args.prompt is not None:
            return _fail("give the prompt once: as words, or with -p, not both", EXIT_USAGE)
        args.prompt = " ".join(found.prompt)
    try:
        if args.command == "replay":
            return _replay(args.log, args.check, args.events)
        if args.command == "sessions":
            return _sessions(args.search)
        if args.command == "completion":
            from argcomplete.shell_integration import shellcode

            sys.stdout.write(shellcode(["ollm"], shell=args.shell))
            return 0
        if args.command == "models":
            return _models(args)
        if args.command == "config":
            return _config(args.config)
        if args.command == "export":
            return _export(args.session, args.output)
        if args.command == "fit":
            return _fit(args)
        return _chat(args)
    except BrokenPipeError:
        # The reader went away (`ollm replay LOG | head`): not an error worth a traceback.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 0


if __name__ == "__main__":
    sys.exit(main())
