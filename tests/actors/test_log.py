from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import (
    Actor,
    ChildSpec,
    Context,
    Envelope,
    FakeClock,
    LogError,
    LogHeader,
    LogWriter,
    Recorder,
    open_runtime,
    read_log,
)
from actors.testing import open_harness

from .events import Echo, Ping, Pong, TestEvent

HEADER = LogHeader(format=1, app="test", app_version="0", config_digest="abc", id_seed="s")


def envelopes(n: int) -> list[Envelope[TestEvent]]:
    return [
        Envelope(seq=i + 1, at=float(i), source="t", causation=None, event=Ping(n=i))
        for i in range(n)
    ]


def write_log(path: Path, n: int) -> None:
    writer = LogWriter(path, HEADER)
    writer.append(envelopes(n))
    writer.close()


def test_a_log_round_trips_and_is_private(tmp_path):
    path = tmp_path / "sessions" / "s1" / "events.jsonl"
    write_log(path, 5)
    log = read_log(path, TestEvent)
    assert log.header == HEADER
    assert log.envelopes == envelopes(5)
    assert log.torn_line == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


@pytest.mark.anyio
async def test_the_recorder_appends_every_envelope_in_order(tmp_path):
    path = tmp_path / "events.jsonl"
    writer = LogWriter(path, HEADER)
    async with open_harness(ChildSpec(name="echo", factory=Echo), recorder=Recorder(writer)) as h:
        for n in range(50):
            await h.publish(Ping(n=n))
        await h.settle()
        published = list(h.published)
    writer.close()
    log = read_log(path, TestEvent)
    assert log.envelopes == published
    assert [e.seq for e in log.envelopes] == list(range(1, 101))
    assert len([e for e in log.envelopes if isinstance(e.event, Pong)]) == 50


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(min_value=1, max_value=400))
def test_a_log_cut_anywhere_gives_back_every_complete_event(tmp_path_factory, cut):
    path = tmp_path_factory.mktemp("torn") / "events.jsonl"
    write_log(path, 20)
    data = path.read_bytes()
    header_end = data.index(b"\n") + 1
    cut_at = max(header_end, len(data) - cut)
    path.write_bytes(data[:cut_at])
    log = read_log(path, TestEvent)
    # A record is whole when its JSON text is, with or without the newline after it.
    line_ends = [i for i, byte in enumerate(data) if byte == ord("\n")][1:]
    whole = sum(1 for end in line_ends if end <= cut_at)
    assert log.envelopes == envelopes(20)[:whole]
    torn = cut_at not in line_ends and cut_at - 1 not in line_ends and cut_at != header_end
    assert (log.torn_line != 0) == torn


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from actors import Envelope, LogHeader, LogWriter
    from tests.actors.events import Ping
    writer = LogWriter(Path(sys.argv[1]), LogHeader(format=1, app="t", app_version="0", config_digest="x"))
    n = 0
    while True:
        n += 1
        # Large, uneven batches make a kill in the middle of a line likely.
        batch = [Envelope(seq=n * 1000 + i, at=0.0, source="w" * (i % 50), causation=None,
                          event=Ping(n=i)) for i in range(1000)]
        writer.append(batch)
        if n == 3:
            print("ready", flush=True)
    """
)


def test_a_log_whose_writer_was_killed_gives_back_every_complete_event(tmp_path):
    path = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    data = path.read_bytes()
    log = read_log(path, TestEvent)
    assert len(log.envelopes) == data.count(b"\n") - 1
    assert len(log.envelopes) >= 3000
    assert [e.seq for e in log.envelopes] == sorted(e.seq for e in log.envelopes)


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        (b"", 1, "is empty, so it is not an event log"),
        (
            b"hello, this is a text file\n",
            1,
            "is not an event log (the first line is not a log header)",
        ),
        (b'{"some": "json"}\n', 1, "is not an event log (the first line is not a log header)"),
        (
            b'{"record":"header","format":99,"app":"x","app_version":"1","config_digest":"d"}\n',
            1,
            "has log format version 99, but this program reads version 1; "
            "open it with the version that wrote it",
        ),
    ],
)
def test_a_file_that_is_not_a_readable_log_is_refused_in_one_sentence(
    tmp_path, content, line, reason
):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(LogError) as info:
        read_log(path, TestEvent)
    assert info.value.line == line
    assert str(info.value) == f"{path}, line {line}: {reason}"


def test_an_unknown_tag_or_garbage_line_names_the_line(tmp_path):
    path = tmp_path / "events.jsonl"
    write_log(path, 3)
    lines = path.read_bytes().split(b"\n")
    unknown = [*lines[:2], lines[2].replace(b"test.ping", b"test.nope"), *lines[3:]]
    path.write_bytes(b"\n".join(unknown))
    with pytest.raises(LogError) as info:
        read_log(path, TestEvent)
    assert str(info.value) == (
        f"{path}, line 3: holds an event of unknown kind 'test.nope' "
        "(written by a newer version, or damaged)"
    )
    garbage = [*lines[:2], b"\x00\xff garbage {", *lines[3:]]
    path.write_bytes(b"\n".join(garbage))
    with pytest.raises(LogError) as info:
        read_log(path, TestEvent)
    assert str(info.value) == f"{path}, line 3: is not a JSON record (the file is damaged)"


def test_a_missing_log_is_one_sentence(tmp_path):
    with pytest.raises(LogError) as info:
        read_log(tmp_path / "nope.jsonl", TestEvent)
    assert (
        str(info.value) == f"{tmp_path / 'nope.jsonl'}: cannot be read (No such file or directory)"
    )


class _Held(Recorder):
    """A recorder whose writer task starts only when the test lets it."""

    def __init__(self, writer: LogWriter, start: anyio.Event) -> None:
        super().__init__(writer)
        self.start = start

    async def run(self) -> None:
        await self.start.wait()
        await super().run()


class _Shown(Actor[Ping]):
    accepts = (Ping,)

    def __init__(self, seen: list[int]) -> None:
        self.seen = seen

    async def handle(self, event: Ping, ctx: Context) -> None:
        self.seen.append(event.n)


@pytest.mark.anyio
async def test_a_recorded_only_actor_sees_nothing_before_the_recorder_wrote_it(tmp_path):
    start = anyio.Event()
    shown: list[int] = []
    plain: list[int] = []
    writer = LogWriter(tmp_path / "log.jsonl", HEADER)
    recorder = _Held(writer, start)
    specs = [
        ChildSpec(name="shown", factory=lambda: _Shown(shown), recorded_only=True),
        ChildSpec(name="plain", factory=lambda: _Shown(plain)),
    ]
    async with open_runtime(specs, clock=FakeClock(), recorder=recorder) as runtime:
        await runtime.publish(Ping(n=1), source="test")
        await anyio.wait_all_tasks_blocked()
        assert plain == [1] and shown == [], "held until it is written"
        start.set()
        await runtime.settle()
        assert shown == [1]
        assert recorder.written >= 1
    writer.close()
    assert [e.event for e in read_log(tmp_path / "log.jsonl", TestEvent).envelopes] == [Ping(n=1)]
