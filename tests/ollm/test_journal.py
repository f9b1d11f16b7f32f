"""The sessions journal: what is kept, how it grows, and what survives a kill or a bad disk."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import sys
from pathlib import Path

import anyio
import msgspec
import pytest

from actors import (
    Actor,
    ChildSpec,
    Context,
    Envelope,
    FakeClock,
    LogHeader,
    Recorder,
    SeededIds,
    open_runtime,
)
from ollm.config import Settings
from ollm.context.snapshot_manager import RetentionPolicy, SnapshotManagerActor
from ollm.core import core_specs, make_header, rebuild, replay_log
from ollm.events import (
    AnyEvent,
    ClearRequested,
    CompressionCompleted,
    CompressRequested,
    ContextReduced,
    ConversationState,
    MessageAdded,
    ModelSelected,
    SessionOpened,
    SnapshotCreated,
    SnapshotFailed,
    SnapshotRequested,
    UserSubmitted,
)
from ollm.live import Start, open_live_session
from ollm.providers.ollama import OllamaClient, OllamaProviderActor, make_http_client
from ollm.providers.scripted import ScriptedProviderActor
from ollm.storage.journal import (
    DATABASE,
    JournalError,
    SessionLock,
    SessionWriter,
    connect,
    open_session,
    read_session,
    session_state,
    stream_session,
)
from ollm.storage.store import SnapshotStore
from tests.fakes.ollama_server import ollama_server_thread, open_ollama_server
from tests.ollm.processes import ollm

from .live import NoDevices, open_live

WORDS = "alpha beta gamma delta epsilon "


def home() -> Path:
    return Path(os.environ["OLLM_HOME"])


def stored() -> int:
    """Bytes the journal holds: event bodies and keys, and the texts they refer to."""
    db = sqlite3.connect(home() / DATABASE)
    try:
        body, rows = db.execute("SELECT sum(length(body)), count(*) FROM events").fetchone()
        text, kept = db.execute("SELECT sum(length(body)), count(*) FROM texts").fetchone()
        return int(body + rows * 24 + (text or 0) + kept * 24)
    finally:
        db.close()


# --- growth ---------------------------------------------------------------------------------

pytestmark_anyio = pytest.mark.anyio


@pytest.mark.anyio
@pytest.mark.parametrize("size", [4096, 131072])
async def test_a_turn_adds_what_is_new_not_the_whole_prompt(size):
    marks: dict[int, tuple[int, int]] = {}
    said = 0
    async with open_ollama_server() as server, open_live(server, size=size) as live:
        for t in range(1, 161):
            text = f"turn {t}: " + WORDS * 25
            ended = await live.say(text)
            assert isinstance(ended, MessageAdded)
            said += len(text) + len(ended.message.content)
            if t in (20, 60, 120, 160):
                marks[t] = (stored(), said)
    # Windows of 40 turns: each holds several compressions at 4k.
    early = (marks[60][0] - marks[20][0]) / 40
    late = (marks[160][0] - marks[120][0]) / 40
    new_text = (marks[160][1] - marks[120][1]) / 40
    assert late <= 1.2 * early, f"flat: {late:.0f} bytes per turn late, {early:.0f} early"
    # The fixed part of a turn: its events' envelopes and numbers (each usage figure carries
    # the newest turn's and the carried part's counts since exact counting, issue 18).
    assert late <= 2 * new_text + 1792, f"{late:.0f} bytes per turn for {new_text:.0f} new"
    db = sqlite3.connect(home() / DATABASE)
    chunks = db.execute("SELECT count(*) FROM events WHERE kind = 'reply.chunk'").fetchone()[0]
    db.close()
    assert chunks == 0, "a completed reply keeps its text once, not its chunks too"


# --- a kill at any instant ------------------------------------------------------------------


class Printer(Actor[MessageAdded]):
    """Shows each message as the console would: only once it is recorded."""

    accepts = (MessageAdded,)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    async def handle(self, event: MessageAdded, ctx: Context) -> None:
        line = msgspec.json.encode([event.message.role, event.message.content]) + b"\n"
        os.write(self.fd, line)


def script() -> list[object]:
    steps: list[object] = []
    for t in range(22):
        steps.append(UserSubmitted(text=f"turn {t}: " + WORDS * (20 + 7 * (t % 5))))
        if t == 5:
            steps.append(SnapshotRequested(reason="manual"))
        if t == 11:
            steps.append(ClearRequested())
        if t == 16:
            steps.append(CompressRequested(reason="user"))
    return steps


async def talk(data: Path, kill_at: int, fd: int, inside_writes: bool = False) -> None:
    """The scripted session, killed at the `kill_at`-th envelope published, or (with
    `inside_writes`) at the start of the journal's `kill_at`-th SQL statement: in the
    middle of a batch's transaction."""
    settings = Settings()
    journal = connect(data)
    header = make_header(settings, id_seed="kill", created_at=1.7e9)
    writer = open_session(journal, data, "s1", header)
    published = [0]
    statements = [0]

    def killer(envelope: object) -> None:
        published[0] += 1
        if published[0] == kill_at and not inside_writes:
            os.kill(os.getpid(), signal.SIGKILL)

    def statement(sql: str) -> None:
        statements[0] += 1
        if statements[0] == kill_at and inside_writes:
            os.kill(os.getpid(), signal.SIGKILL)

    journal.set_trace_callback(statement)

    store = SnapshotStore(data / "sessions" / "s1" / "snapshots")
    specs = [
        *core_specs(settings),
        ChildSpec(name="provider", factory=ScriptedProviderActor),
        ChildSpec(
            name="snapshot_manager",
            factory=lambda: SnapshotManagerActor(store, RetentionPolicy(keep=3)),
        ),
        ChildSpec(name="printer", factory=lambda: Printer(fd), recorded_only=True),
    ]
    clock = FakeClock(1.7e9)
    async with open_runtime(
        specs, clock=clock, ids=SeededIds("kill"), recorder=Recorder(writer), taps=(killer,)
    ) as runtime:
        system = ConversationState(system_prompt="You are terse.")
        await runtime.publish(SessionOpened(session_id="s1", state=system), source="cli")
        await runtime.publish(ModelSelected(model="m", size=4096, num_ctx=3482), source="cli")
        await runtime.settle()
        for step in script():
            clock.advance(1.0)
            await runtime.publish(step, source="cli")
            await runtime.settle()
    writer.close()
    counts = [str(published[0]), str(statements[0])]
    os.write(fd, msgspec.json.encode(["published", *counts]) + b"\n")


def run_child(data: Path, kill_at: int, inside_writes: bool = False) -> list[list[str]]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            anyio.run(talk, data, kill_at, write_end, inside_writes, backend="asyncio")
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        shown = [msgspec.json.decode(line) for line in pipe]
    os.waitpid(pid, 0)
    return shown


async def resume_request(data: Path) -> tuple[ConversationState, list[dict[str, str]], set[str]]:
    """Resume the killed session as `ollm --resume` does and send one more message to the
    Ollama test server: the state, the messages the server received, and the ids the
    session took out on the way (a limit reached, a compression)."""
    journal = connect(data, readonly=True)
    meta, rows = stream_session(journal, data, "s1", AnyEvent)
    state = (await rebuild(meta, rows)).state
    journal.close()
    removed: set[str] = set()

    def tap(envelope: object) -> None:
        event = getattr(envelope, "event", None)
        if isinstance(event, ContextReduced):
            removed.update(event.removed_ids)
        if isinstance(event, CompressionCompleted):
            removed.update(event.covered_ids)

    async with open_ollama_server() as server, make_http_client(server.url, 10.0) as http:
        client = OllamaClient(http, server.url, 10.0)
        specs = [
            *core_specs(Settings()),
            ChildSpec(
                name="provider", factory=lambda: OllamaProviderActor(client, keep_alive="5m")
            ),
        ]
        async with open_runtime(specs, clock=FakeClock(2e9), taps=(tap,)) as runtime:
            resumed = SessionOpened(session_id="s1", state=state, resumed=True)
            await runtime.publish(resumed, source="cli")
            chosen = ModelSelected(model="llama3.1:8b", size=4096, num_ctx=3482)
            await runtime.publish(chosen, source="cli")
            await runtime.settle()
            await runtime.publish(UserSubmitted(text="after the crash"), source="cli")
            await runtime.settle()
        received = [
            c["messages"]
            for c in server.chats()
            if c["messages"] and c["messages"][-1]["content"] == "after the crash"
        ]
    return state, received[-1], removed


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_session_killed_at_200_random_points_loses_nothing_that_was_shown(tmp_path):
    full = run_child(tmp_path / "full", kill_at=10**9)
    total, statements = int(full[-1][1]), int(full[-1][2])
    assert total > 500, "the scripted session covers chat, snapshot, clear and compression"
    rng = random.Random(2026)
    unreadable = diverged = 0
    for round_ in range(200):
        data = tmp_path / f"k{round_}"
        # Half the kills land between events, half inside the journal's transactions.
        inside = round_ % 2 == 1
        kill_at = rng.randint(1, statements if inside else total)
        shown = run_child(data, kill_at, inside)
        if not (data / DATABASE).exists():
            continue  # killed before the journal was made: nothing was shown either
        assert shown == [] or shown[-1][0] != "published", "it was killed"
        try:
            journal = connect(data, readonly=True)
            log = read_session(journal, data, "s1", AnyEvent)
            index = session_state(journal, "s1")
            journal.close()
        except JournalError:
            unreadable += 1
            continue
        last = log.envelopes[-1].seq if log.envelopes else 0
        assert index.last_seq == last, "the index and the events are written together"
        result = anyio.run(replay_log, log, backend="asyncio")
        if result.divergence is not None:
            diverged += 1
            print(result.divergence.describe(), file=sys.stderr)
        rebuilt = {
            (e.event.message.role, e.event.message.content)
            for e in result.envelopes
            if isinstance(e.event, MessageAdded)
        }
        assert {tuple(s) for s in shown} <= rebuilt, "every message shown is rebuilt"
        accepted = [e.event.text for e in log.envelopes if isinstance(e.event, UserSubmitted)]
        assert {("user", text) for text in accepted} <= rebuilt, "every message accepted"
        state, received, removed = anyio.run(resume_request, data, backend="asyncio")
        sent = [(m["role"], m["content"]) for m in received]
        for message in state.messages:
            # In the next request, or taken out there by a limit (with a snapshot first).
            carried = (message.role, message.content) in sent or message.id in removed
            assert carried, "the next request the server received carries it"
    assert unreadable == 0
    assert diverged == 0


def test_a_clean_close_keeps_the_conversation_its_events_fold_to():
    """Resuming a cleanly closed session reads its checkpoint, not its history: the two
    must be the same conversation."""
    from ollm.conversation import resumed

    with ollama_server_thread() as server:
        script = "remember kiwi\n/context snapshot\nsecond\n/context clear\nthird\n"
        assert ollm("--host", server.url, "-m", "llama3.1:8b", stdin=script).returncode == 0
        journal = connect(home(), readonly=True)
        session = journal.execute("SELECT id FROM sessions").fetchone()[0]
        index = session_state(journal, session)
        log = read_session(journal, home(), session, AnyEvent)
        journal.close()
        assert index.closed and index.checkpoint is not None
        assert index.checkpoint.state == resumed(log).state
        assert index.checkpoint.model == "llama3.1:8b"
        again = ollm("-p", "fourth", "--host", server.url, "--resume", session)
        assert again.returncode == 0, again.stderr
        sent = [m["content"] for m in server.chats()[-1]["messages"] if m["role"] == "user"]
        assert sent == ["third", "fourth"], "the cleared conversation, then the new message"


# --- one writer, contained, bad disks -------------------------------------------------------


def test_a_second_writer_of_a_session_is_refused_naming_the_first():
    with ollama_server_thread() as server:
        first = ollm("-p", "hello", "--host", server.url, "-m", "llama3.1:8b")
        assert first.returncode == 0, first.stderr
        session = ollm("sessions").stdout.splitlines()[1].split()[0]
        lock = SessionLock(home(), session)
        lock.acquire()  # as a running `ollm --resume` holds it
        try:
            second = ollm("-p", "again", "--host", server.url, "--resume", session)
        finally:
            lock.release()
        assert second.returncode == 2
        assert f"session {session} is open in another ollm (pid {os.getpid()})" in second.stderr
        assert "Traceback" not in second.stderr
        third = ollm("-p", "again", "--host", server.url, "--resume", session)
        assert third.returncode == 0, third.stderr
        assert server.chats()[-1]["messages"][-1]["content"] == "again"


@pytest.mark.parametrize("planted", ["sessions.db", "sessions"])
def test_a_symlink_planted_in_ollm_home_is_never_followed(tmp_path, planted):
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o755)
    home().mkdir(parents=True, exist_ok=True)
    (home() / planted).symlink_to(outside / planted)
    with ollama_server_thread() as server:
        result = ollm("-p", "hello", "--host", server.url, "-m", "llama3.1:8b")
    assert result.returncode in (2, 8)
    assert "is a symbolic link; ollm does not follow links" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(outside.iterdir()) == [], "nothing was written outside OLLM_HOME"
    assert oct(outside.stat().st_mode & 0o777) == "0o755", "nor chmodded"


def test_a_damaged_journal_is_one_sentence_and_exit_8():
    home().mkdir(parents=True, exist_ok=True)
    (home() / DATABASE).write_bytes(b"this is not a database at all" * 200)
    with ollama_server_thread() as server:
        result = ollm("-p", "hello", "--host", server.url, "-m", "llama3.1:8b")
    assert result.returncode == 8
    assert result.stderr.count("\n") == 1
    assert "it is damaged; move it aside" in result.stderr
    listing = ollm("sessions")
    assert listing.returncode == 1 and "it is damaged" in listing.stderr
    assert "Traceback" not in result.stderr + listing.stderr


@pytest.mark.anyio
async def test_a_full_disk_stops_the_session_in_one_sentence_and_it_resumes_after():
    """SQLite's own full-disk path: the database may not grow past its pages."""
    from ollm.live import RecordError

    async with open_ollama_server() as server:
        settings = msgspec.structs.replace(
            Settings(),
            model="llama3.1:8b",
            ollama=msgspec.structs.replace(Settings().ollama, host=server.url),
        )
        with pytest.raises(RecordError, match="the disk is full; free some space"):
            async with open_live_session(settings, Start(), memory=NoDevices()) as live:
                assert (await live.send("before the disk fills")).answered
                db = sqlite3.connect(home() / DATABASE)
                pages = db.execute("PRAGMA page_count").fetchone()[0]
                db.close()
                recorder = live._recorder
                assert recorder is not None
                writer = recorder.writer
                assert isinstance(writer, SessionWriter)
                writer.connection.execute(f"PRAGMA max_page_count = {pages}")
                for n in range(200):
                    await live.send(f"message {n} " + WORDS * 40)
        journal = connect(home(), readonly=True)
        session = journal.execute("SELECT id FROM sessions").fetchone()[0]
        log = read_session(journal, home(), session, AnyEvent)
        assert not session_state(journal, session).closed
        journal.close()
        said = [e.event.text for e in log.envelopes if isinstance(e.event, UserSubmitted)]
        assert said[0] == "before the disk fills", "what was written is intact"
        async with open_live_session(settings, Start(resume=session), memory=NoDevices()) as live:
            assert (await live.send("after space came back")).answered
        sent = [m["content"] for m in server.chats()[-1]["messages"]]
        assert "before the disk fills" in sent and sent[-1] == "after space came back"


def header() -> LogHeader:
    return make_header(Settings(), id_seed="t", created_at=1.7e9)


def envelope(seq: int, text: str) -> Envelope[UserSubmitted]:
    return Envelope(seq=seq, at=1.7e9, source="cli", causation=None, event=UserSubmitted(text=text))


def test_a_journal_locked_by_another_program_is_one_sentence_and_loses_nothing():
    writer = open_session(connect(home()), home(), "s1", header())
    writer.append([envelope(1, "kept")])
    other = sqlite3.connect(home() / DATABASE)
    other.execute("BEGIN EXCLUSIVE")
    try:
        blocked = open_session(connect(home(), timeout=0.05), home(), "s1", None)
        with pytest.raises(JournalError, match="another program holds it locked; try again"):
            blocked.append([envelope(2, "while locked")])
    finally:
        other.rollback()
        other.close()
    writer.append([envelope(3, "after")])
    said = [e.event.text for e in read_session(connect(home()), home(), "s1", AnyEvent).envelopes]
    assert said == ["kept", "after"], "nothing half-written, the session goes on"


def test_a_read_only_journal_is_one_sentence_and_what_was_written_stays():
    writer = open_session(connect(home()), home(), "s1", header())
    writer.append([envelope(1, "kept")])
    readonly = connect(home(), readonly=True)
    stuck = SessionWriter(readonly, home(), "s1")
    with pytest.raises(JournalError, match=r"cannot be written \(read-only, or not yours\)"):
        stuck.append([envelope(2, "lost to the disk")])
    stuck.append([envelope(3, "dropped too: the run is stopping")])
    said = [e.event.text for e in read_session(readonly, home(), "s1", AnyEvent).envelopes]
    assert said == ["kept"]


# --- finding sessions -----------------------------------------------------------------------


def test_sessions_search_replay_by_prefix_and_export_round_trip(tmp_path):
    with ollama_server_thread() as server:
        for text in ("the build failed with JOB-90211", "what is a B-tree?"):
            assert ollm("-p", text, "--host", server.url, "-m", "llama3.1:8b").returncode == 0
    rows = ollm("sessions").stdout.splitlines()[1:-1]
    ids = [row.split()[0] for row in rows]
    found = ollm("sessions", "--search", "JOB-90211").stdout.splitlines()[1:-1]
    assert [row.split()[0] for row in found] == [ids[0]]
    assert "the build failed with JOB-90211" in found[0], "first words shown"
    prefix = ids[1][: len(ids[1]) - 2]
    assert ids[0][: len(prefix)] != prefix or len(ids) == 1
    check = ollm("replay", "--check", ids[1][:-1])
    assert check.returncode == 0, check.stderr
    exported = tmp_path / "one.jsonl"
    out = ollm("export", ids[0], "-o", str(exported))
    assert out.returncode == 0, out.stderr
    assert ollm("replay", "--check", str(exported)).returncode == 0
    assert "JOB-90211" in ollm("replay", str(exported)).stdout
    unknown = ollm("replay", "nope")
    assert unknown.returncode == 1 and "no session id starts with 'nope'" in unknown.stderr


def test_the_journal_is_private():
    with ollama_server_thread() as server:
        assert ollm("-p", "hello", "--host", server.url, "-m", "llama3.1:8b").returncode == 0
    assert oct(home().stat().st_mode & 0o777) == "0o700"
    for name in (DATABASE, f"{DATABASE}-wal"):
        path = home() / name
        if path.exists():
            assert oct(path.stat().st_mode & 0o777) == "0o600", name


@pytest.mark.anyio
async def test_snapshots_asked_for_at_once_all_succeed_and_exactly_max_count_stay():
    async with open_ollama_server() as server, open_live(server) as live:
        await live.say("something worth keeping")
        for _ in range(40):
            await live.h.publish(SnapshotRequested(reason="manual"))
        await live.h.settle()
        created = live.h.events(SnapshotCreated)
        failed = live.h.events(SnapshotFailed)
        listing = await live.session.snapshots()
        folder = home() / "sessions" / live.session.session_id / "snapshots"
    assert len(created) == 40 and failed == []
    assert len(listing.snapshots) == Settings().context.snapshots.max_count == 5
    assert len(list(folder.glob("*.snap"))) == 5, "on disk too"
    assert {m.id for m in listing.snapshots} <= {c.snapshot_id for c in created}
    assert listing.problems == []


def test_two_sessions_started_in_the_same_second_get_different_ids():
    from ollm.storage.journal import create_session

    journal = connect(home())
    draws = iter(["20261201-120000-beef", "20261201-120000-beef", "20261201-120000-cafe"])
    first = create_session(journal, home(), header(), draws.__next__)
    second = create_session(journal, home(), header(), draws.__next__)
    assert (first, second) == ("20261201-120000-beef", "20261201-120000-cafe")


def test_a_session_recorded_by_an_earlier_ollm_is_named_with_how_to_read_it():
    old = home() / "sessions" / "20260101-000000-abcd" / "events.jsonl"
    old.parent.mkdir(parents=True)
    from actors import LogWriter

    writer = LogWriter(old, header())
    writer.append([envelope(1, "from the old days")])
    writer.close()
    with ollama_server_thread() as server:
        result = ollm("-p", "hi", "--host", server.url, "--resume", "20260101")
    assert result.returncode == 2
    assert "was recorded by an earlier ollm as" in result.stderr
    assert f"`ollm replay {old}` shows it" in result.stderr
    shown = ollm("replay", "--events", str(old))
    assert shown.returncode == 0 and "from the old days" in shown.stdout
