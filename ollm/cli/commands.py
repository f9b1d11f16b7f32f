"""Slash commands: `/context` and its subcommands, `/test prompt`, `/model`, `/help`.

The table is built per REPL (no module-level registry). Every command given bad arguments
prints its usage line and one sentence, and changes nothing.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..events import (
    ClearFailed,
    ClearRequested,
    CompressionCompleted,
    CompressionFailed,
    CompressRequested,
    ContextCleared,
    ModelLoaded,
    ModelLoadFailed,
    ResizeDeclined,
    ResizeRequested,
    RestoreFailed,
    RestoreRequested,
    SnapshotCreated,
    SnapshotFailed,
    SnapshotRequested,
    SnapshotRestored,
    SystemPromptSet,
    UsageChanged,
)
from ..live import LiveError, LiveSession
from . import render

Ask = Callable[[str], Awaitable[str]]


def tokens(text: str) -> int | None:
    """A size as people write it: 8192, 8,192, 8_192, 8k or 16K (times 1024, as the
    profiles name their sizes); None when it is not one."""
    found = re.fullmatch(r"(\d+)([kK]?)", text.replace(",", "").replace("_", ""))
    if found is None:
        return None
    return int(found.group(1)) * (1024 if found.group(2) else 1)


def unquoted(text: str) -> str:
    """Text without one pair of quotes around it, as `ollama run` reads `/set system "…"`."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


NAME_MAX = 64
"""The longest name `/save` takes."""


class CommandError(Exception):
    def __init__(self, usage: str, sentence: str) -> None:
        super().__init__(sentence)
        self.usage = usage
        self.sentence = sentence


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    summary: str
    run: Callable[[list[str]], Awaitable[str | None]]


class Quit(Exception):
    """The user asked to end the session."""


class Commands:
    def __init__(self, live: LiveSession, ask: Ask, now: Callable[[], float]) -> None:
        self.live = live
        self.ask = ask
        self.now = now
        self.timeout = live.settings.ollama.timeout
        c = Command
        self.context: dict[str, Command] = {
            "": c("", "/context", "the status box", self._status),
            "size": c(
                "size", "/context size <tokens>", "pick a context size (auto-size off)", self._size
            ),
            "auto": c(
                "auto", "/context auto", "size the context from free memory again", self._auto
            ),
            "snapshot": c("snapshot", "/context snapshot", "save a snapshot now", self._snapshot),
            "restore": c(
                "restore",
                "/context restore [id|number]",
                "restore a snapshot (no id: pick one)",
                self._restore,
            ),
            "list": c("list", "/context list", "the session's snapshots, newest first", self._list),
            "clear": c(
                "clear", "/context clear", "clear the conversation (a snapshot first)", self._clear
            ),
            "compress": c(
                "compress", "/context compress", "compress the conversation now", self._compress
            ),
            "stats": c(
                "stats", "/context stats", "per-message tokens, calibration, history", self._stats
            ),
        }
        self.top: dict[str, Command] = {
            "/help": c("/help", "/help", "this list", self._help),
            "/test": c(
                "/test", "/test prompt", "the exact JSON the next request sends", self._test
            ),
            "/model": c(
                "/model",
                "/model [name]",
                "list the installed models, or switch to one (its sizing applies)",
                self._model,
            ),
            "/quit": c("/quit", "/quit", "end the session (Ctrl-D too)", self._quit),
            "/exit": c("/exit", "/exit", "end the session", self._quit),
            "/set": c(
                "/set",
                "/set parameter num_ctx <tokens> | /set system <text>",
                "as in `ollama run`: the context size, or the system prompt from now on",
                self._set,
            ),
            "/bye": c("/bye", "/bye", "end the session (as in `ollama run`)", self._quit),
            "/save": c(
                "/save",
                "/save <name>",
                "a named snapshot of this session (as in `ollama run`)",
                self._save,
            ),
            "/load": c(
                "/load",
                "/load <name>",
                "restore the snapshot saved with that name",
                self._load,
            ),
            "/?": c("/?", "/?", "this list (as in `ollama run`)", self._help),
        }

    # --- dispatch --------------------------------------------------------------------------

    def completions(self) -> dict[str, list[str]]:
        return {"/context": [k for k in self.context if k], **{k: [] for k in self.top}}

    async def run(self, line: str) -> str | None:
        """The output of a command line (None: nothing to print).

        Raises:
            Quit: the user asked to end the session.
        """
        words = line.split()
        name, args = words[0], words[1:]
        try:
            if name == "/context":
                sub = args[0] if args else ""
                command = self.context.get(sub)
                if command is None:
                    subcommands = "|".join(k for k in self.context if k)
                    raise CommandError(
                        f"/context [{subcommands}]", f"{sub!r} is not a /context subcommand"
                    )
                return await command.run(args[1:])
            command = self.top.get(name)
            if command is None:
                raise CommandError("/help", f"{name} is not a command; /help lists them")
            return await command.run(args)
        except CommandError as exc:
            return f"usage: {exc.usage}\n{exc.sentence}"

    def _no_args(self, command: Command, args: list[str]) -> None:
        if args:
            raise CommandError(command.usage, f"{command.usage.split()[-1]} takes no arguments")

    # --- the commands ----------------------------------------------------------------------

    async def _help(self, args: list[str]) -> str:
        lines = ["commands:"]
        for command in [*self.top.values(), *self.context.values()]:
            lines.append(f"  {command.usage:<28} {command.summary}")
        lines.append(
            "Ctrl-C stops a reply or clears the line; Esc then Enter adds a line; Ctrl-D, or "
            "Ctrl-C on an empty line, ends the session."
        )
        return "\n".join(lines)

    async def _status(self, args: list[str]) -> str:
        return render.status_box(self.live.status, shutil.get_terminal_size().columns)

    async def _size(self, args: list[str]) -> str:
        usage = self.context["size"].usage
        if len(args) != 1:
            raise CommandError(usage, "give the size in tokens, e.g. /context size 8192")
        size = tokens(args[0])
        if size is None:
            raise CommandError(usage, f"{args[0]!r} is not a number of tokens (like 8192 or 8k)")
        selected = self.live.status.selected
        top = selected.model_max if selected and selected.model_max else 0
        low = self.live.settings.context.min_size
        if size < low or (top and size > top):
            allowed = f"from {low} to {top}" if top else f"at least {low}"
            raise CommandError(usage, f"{size} is not a usable size; use {allowed}")
        request = ResizeRequested(reason=f"/context size {size}", size=size, by_user=True)
        return await self._resize(request)

    async def _auto(self, args: list[str]) -> str:
        self._no_args(self.context["auto"], args)
        return await self._resize(ResizeRequested(reason="/context auto", auto=True, by_user=True))

    async def _resize(self, request: ResizeRequested) -> str:
        # The pool answers with a size (then the provider reloads the model) or declines.
        answer = await self.live.request(
            request, until=(ResizeDeclined, ModelLoaded, ModelLoadFailed), timeout=self.timeout
        )
        chosen = self.live.status.chosen
        if isinstance(answer, ResizeDeclined):
            return f"the size did not change: {answer.reason}"
        if answer is None or chosen is None:
            return "the size did not change: no answer"
        if isinstance(answer, ModelLoadFailed):
            return f"num_ctx {chosen.num_ctx} chosen, but reloading failed: {answer.message}"
        return (
            f"num_ctx is now {chosen.num_ctx} (size {chosen.size}); "
            f"{chosen.model} was reloaded with it"
        )

    async def _snapshot(self, args: list[str]) -> str | None:
        self._no_args(self.context["snapshot"], args)
        await self.live.request(
            SnapshotRequested(reason="manual"),
            until=(SnapshotCreated, SnapshotFailed),
            timeout=self.timeout,
        )
        return None  # the snapshot manager's notice says what happened

    async def _restore(self, args: list[str]) -> str | None:
        usage = self.context["restore"].usage
        if len(args) > 1:
            raise CommandError(usage, "give one snapshot id")
        wanted = args[0] if args else await self._pick()
        if not wanted:
            return "nothing restored"
        if wanted.isdigit() and len(wanted) <= 2:  # a number from `/context list`
            listing = await self.live.snapshots()
            if not 1 <= int(wanted) <= len(listing.snapshots):
                shown = f"1–{len(listing.snapshots)}" if listing.snapshots else "none"
                raise CommandError(
                    usage, f"there is no snapshot number {wanted} (`/context list` shows {shown})"
                )
            wanted = listing.snapshots[int(wanted) - 1].id
        try:
            await self.live.resolve_snapshot(wanted)
        except LiveError as exc:
            raise CommandError(usage, str(exc)) from None
        await self.live.request(
            RestoreRequested(snapshot_id=wanted),
            until=(SnapshotRestored, RestoreFailed),
            timeout=self.timeout,
        )
        return None  # the snapshot manager's notice says what happened

    async def _pick(self) -> str:
        listing = await self.live.snapshots()
        if not listing.snapshots:
            return ""
        print_list = render.snapshot_list(listing.snapshots, listing.problems, self.now())
        answer = (
            await self.ask(f"{print_list}\nrestore which? (number or id; Enter cancels) ")
        ).strip()
        return answer  # a number is read as `/context restore N` reads it

    async def _save(self, args: list[str]) -> str | None:
        usage = self.top["/save"].usage
        if len(args) != 1:
            raise CommandError(usage, "give one name, without spaces, e.g. /save draft")
        name = args[0]
        if len(name) > NAME_MAX or not name.isprintable():
            raise CommandError(usage, f"a name is at most {NAME_MAX} printable characters")
        await self.live.request(
            SnapshotRequested(reason="manual", name=name),
            until=(SnapshotCreated, SnapshotFailed),
            timeout=self.timeout,
        )
        return None  # the snapshot manager's notice says what happened

    async def _load(self, args: list[str]) -> str | None:
        usage = self.top["/load"].usage
        if len(args) != 1:
            raise CommandError(usage, "give the name a snapshot was saved with (/save NAME)")
        listing = await self.live.snapshots()
        named = next((m for m in listing.snapshots if m.name == args[0]), None)
        if named is None:
            names = sorted({m.name for m in listing.snapshots if m.name})
            known = f"this session has {', '.join(names)}" if names else "none is named yet"
            raise CommandError(usage, f"no snapshot is named {args[0]!r} ({known})")
        return await self._restore([named.id])

    async def _list(self, args: list[str]) -> str:
        self._no_args(self.context["list"], args)
        listing = await self.live.snapshots()
        return render.snapshot_list(listing.snapshots, listing.problems, self.now())

    async def _clear(self, args: list[str]) -> str | None:
        self._no_args(self.context["clear"], args)
        await self.live.request(
            ClearRequested(), until=(ContextCleared, ClearFailed), timeout=self.timeout
        )
        return None  # the session's notice says what happened

    async def _compress(self, args: list[str]) -> str | None:
        self._no_args(self.context["compress"], args)
        # A compression already under way takes the request over: its end is the answer.
        await self.live.request(
            CompressRequested(reason="user"),
            until=(CompressionCompleted, CompressionFailed),
            timeout=self.timeout,
            caused=False,
        )
        return None

    async def _stats(self, args: list[str]) -> str:
        self._no_args(self.context["stats"], args)
        return render.stats(self.live.status)

    async def _test(self, args: list[str]) -> str:
        if args != ["prompt"]:
            raise CommandError(self.top["/test"].usage, "the only test is `/test prompt`")
        planned = self.live.next_request()
        if planned.payload is None:
            return planned.refused
        shown = "POST /api/chat\n" + json.dumps(planned.payload, indent=2, ensure_ascii=False)
        if planned.dropped:
            shown += (
                f"\n(the hard limit takes the {len(planned.dropped)} oldest messages out "
                "before it goes)"
            )
        return shown

    async def _model(self, args: list[str]) -> str:
        usage = self.top["/model"].usage
        if not args:
            installed = await self.live.installed_models()
            if not installed:
                return f"chatting with {self.live.model}; the server lists no installed models"
            listed = "\n".join(
                f"  {name}{'  (in use)' if name == self.live.model else ''}" for name in installed
            )
            return f"installed models (`/model NAME` switches):\n{listed}"
        if len(args) != 1:
            raise CommandError(usage, "give one model name, e.g. /model llama3.1:8b")
        try:
            selected = await self.live.select_model(args[0])
        except LiveError as exc:
            raise CommandError(usage, str(exc)) from None
        result = await self.live.request(
            selected, until=(ModelLoaded, ModelLoadFailed), timeout=self.timeout
        )
        if isinstance(result, ModelLoadFailed):
            return f"switched to {selected.model}, but loading it failed: {result.message}"
        return f"now chatting with {selected.model}, num_ctx {self.live.num_ctx} ({selected.how})"

    async def _set(self, args: list[str]) -> str | None:
        usage = self.top["/set"].usage
        if len(args) == 3 and args[:2] == ["parameter", "num_ctx"]:
            return await self._size(args[2:])
        if args[:1] == ["system"]:
            if len(args) == 1:
                raise CommandError(
                    usage,
                    'give the text, e.g. /set system Answer briefly. (`/set system ""` removes it)',
                )
            return await self._system(unquoted(" ".join(args[1:])))
        if args[:1] == ["parameter"]:
            raise CommandError(
                usage,
                "only num_ctx can be set here; model options such as temperature are given "
                "when ollm starts (`-o KEY VALUE`, or ollama.options in the config)",
            )
        raise CommandError(
            usage,
            "only `parameter num_ctx N` and `system TEXT` can be set here (other runner "
            "options would reload the model)",
        )

    async def _system(self, text: str) -> str:
        await self.live.request(
            SystemPromptSet(text=text), until=(UsageChanged,), timeout=self.timeout
        )
        if not text:
            return "the system prompt is removed; the next request goes without one"
        ledger = self.live.status.ledger
        system = ledger.conversation.system_message()
        tokens = ledger.accounting.count(system).tokens(ledger.accounting.factor) if system else 0
        return f"the system prompt is set ({tokens} tokens); the next request starts with it"

    async def _quit(self, args: list[str]) -> str:
        raise Quit
