"""Snapshot storage: exact round trips, corruption, crashes, full disks, hostile ids."""

from __future__ import annotations

import errno
import os
import random
import signal
import stat
import sys

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ollm.events import ConversationState, Message, ToolCall
from ollm.storage.atomic import StorageError
from ollm.storage.snapshot_file import SnapshotMeta, SnapshotState
from ollm.storage.store import INDEX, IdError, IndexFile, SnapshotStore


def state(n: int = 6, size: int = 80, seed: int = 0) -> SnapshotState:
    rng = random.Random(seed)
    messages = tuple(
        Message(
            id=f"m{i + 1}",
            role="user" if i % 2 == 0 else "assistant",
            content=" ".join(
                rng.choice(["alpha", "beta", "gamma", "src/app.py", "42 ms"]) for _ in range(size)
            ),
            tool_calls=(ToolCall(name="read_file", arguments='{"path": "a.py"}'),)
            if i == 3
            else (),
        )
        for i in range(n)
    )
    conversation = ConversationState(
        system_prompt="Be precise.",
        summary="Earlier: the user set up the project.",
        pinned=("never push to main",),
        messages=messages,
        next_message=n + 1,
        next_request=n // 2 + 1,
    )
    return SnapshotState(conversation=conversation, message_tokens=tuple(range(n)))


def meta(snapshot_id: str, created_at: float = 1.0, reason: str = "manual") -> SnapshotMeta:
    return SnapshotMeta(
        id=snapshot_id,
        session_id="s1",
        created_at=created_at,
        model="llama3.1:8b",
        num_ctx=13926,
        tokens=1234,
        messages=6,
        compression_ratio=1.0,
        reason=reason,  # type: ignore[arg-type]
    )


def test_a_snapshot_round_trips_exactly_and_is_private(tmp_path):
    store = SnapshotStore(tmp_path / "snapshots")
    saved = store.save(meta("a1b2c3"), state())
    assert 0 < saved.compression_ratio < 0.4
    loaded_meta, loaded = SnapshotStore(tmp_path / "snapshots").load("a1b2")
    assert loaded == state()
    assert loaded_meta == saved
    path = tmp_path / "snapshots" / "a1b2c3.snap"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert (tmp_path / "snapshots" / INDEX).exists()


@settings(max_examples=150, deadline=None)
@given(position=st.floats(min_value=0, max_value=0.9999), bit=st.integers(0, 7))
def test_any_flipped_byte_is_detected_and_never_loaded(tmp_path_factory, position, bit):
    directory = tmp_path_factory.mktemp("flip")
    store = SnapshotStore(directory)
    store.save(meta("aaaa01", 1.0), state(seed=1))
    store.save(meta("bbbb02", 2.0), state(seed=2))
    victim = directory / "aaaa01.snap"
    data = bytearray(victim.read_bytes())
    data[int(position * len(data))] ^= 1 << bit
    victim.write_bytes(bytes(data))
    fresh = SnapshotStore(directory)
    listing = fresh.listing()
    assert [m.id for m in listing.snapshots] == ["bbbb02"]
    assert len(listing.problems) == 1
    assert listing.problems[0].startswith(str(victim))
    assert "\n" not in listing.problems[0]
    with pytest.raises(IdError):
        fresh.load("aaaa01")
    assert fresh.load("bbbb02")[1] == state(seed=2)


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda data: data[: len(data) // 2], "damaged"),
        (lambda data: data[:10], "truncated"),
        (lambda data: b"", "truncated or empty"),
        (lambda data: b"PK\x03\x04 not a snapshot at all" * 10, "is not an ollm snapshot"),
    ],
    ids=["half", "stub", "empty", "garbage"],
)
def test_truncation_and_garbage_are_one_sentence_naming_the_file(tmp_path, damage, words):
    store = SnapshotStore(tmp_path)
    store.save(meta("cccc03"), state())
    store.save(meta("dddd04", 2.0), state(seed=4))
    victim = tmp_path / "cccc03.snap"
    victim.write_bytes(damage(victim.read_bytes()))
    listing = SnapshotStore(tmp_path).listing()
    assert [m.id for m in listing.snapshots] == ["dddd04"]
    assert listing.problems == [
        p for p in listing.problems if p.startswith(f"{victim} ") and words in p
    ]
    assert len(listing.problems) == 1
    fresh = SnapshotStore(tmp_path)
    for wanted in ("cccc03", "ccc"):  # restoring it by its id says why it cannot be
        with pytest.raises(IdError) as caught:
            fresh.resolve(wanted)
        assert str(caught.value) == f"snapshot {wanted} cannot be restored: {listing.problems[0]}"


def test_a_stray_file_is_skipped(tmp_path):
    store = SnapshotStore(tmp_path)
    store.save(meta("eeee05"), state())
    (tmp_path / "zzzz99.snap").write_bytes((tmp_path / "eeee05.snap").read_bytes())
    listing = SnapshotStore(tmp_path).listing()
    assert [m.id for m in listing.snapshots] == ["eeee05"]
    assert "does not hold the snapshot its name says" in listing.problems[0]


def test_a_full_disk_fails_cleanly_and_keeps_the_earlier_snapshots(tmp_path, monkeypatch):
    store = SnapshotStore(tmp_path)
    store.save(meta("ffff06"), state())
    real_write = os.write
    written = [0]

    def filling(fd, data):
        written[0] += 1
        if written[0] > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, bytes(data)[:100])

    monkeypatch.setattr("ollm.storage.atomic.os.write", filling)
    with pytest.raises(StorageError) as info:
        store.save(meta("gggg07", 2.0), state(n=40, size=400))
    monkeypatch.undo()
    assert (
        str(info.value)
        == "the disk is full, so gggg07.snap could not be saved; free some space and try again"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ffff06.snap", INDEX]
    fresh = SnapshotStore(tmp_path)
    assert [m.id for m in fresh.listing().snapshots] == ["ffff06"]
    assert fresh.load("ffff06")[1] == state()


@pytest.mark.parametrize(
    ("wanted", "words"),
    [
        ("../../etc/passwd", "is not a snapshot id"),
        ("/etc/passwd", "is not a snapshot id"),
        ("a1/../b2", "is not a snapshot id"),
        ("", "give a snapshot id"),
        ("   ", "give a snapshot id"),
        ("ab", "could be ab1111, ab2222; type more of the id"),
        ("zz", "no snapshot id starts with 'zz'"),
    ],
)
def test_hostile_empty_unknown_and_ambiguous_ids_are_refused_clearly(tmp_path, wanted, words):
    store = SnapshotStore(tmp_path)
    store.save(meta("ab1111"), state())
    store.save(meta("ab2222", 2.0), state())
    with pytest.raises(IdError) as info:
        store.load(wanted)
    assert words in str(info.value)


def test_the_index_is_rebuilt_when_missing_damaged_or_stale(tmp_path):
    store = SnapshotStore(tmp_path)
    for i in range(3):
        store.save(meta(f"idx00{i}", float(i)), state(seed=i))
    (tmp_path / INDEX).unlink()
    assert len(SnapshotStore(tmp_path).listing().snapshots) == 3
    assert (tmp_path / INDEX).exists()
    (tmp_path / INDEX).write_text("{ torn")
    assert len(SnapshotStore(tmp_path).listing().snapshots) == 3
    other = SnapshotStore(tmp_path / "elsewhere")
    other.save(meta("new999", 9.0), state())
    os.replace(tmp_path / "elsewhere" / "new999.snap", tmp_path / "new999.snap")
    listing = SnapshotStore(tmp_path).listing()
    assert next(m.id for m in listing.snapshots) == "new999"
    index = msgspec.json.decode((tmp_path / INDEX).read_bytes(), type=IndexFile)
    assert sorted(e.file for e in index.entries) == sorted(p.name for p in tmp_path.glob("*.snap"))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_writer_killed_at_random_200_times_never_leaves_a_partial_snapshot(tmp_path):
    directory = tmp_path / "snapshots"
    rng = random.Random(2026)
    completed: list[str] = []
    for round_ in range(200):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the writer
            os.close(read_end)
            try:
                writer = SnapshotStore(directory)
                for k in range(50):
                    snapshot_id = f"r{round_:03d}x{k:02d}"
                    size = rng.choice([5, 50, 500, 3000])
                    writer.save(meta(snapshot_id, round_ * 100 + k), state(n=8, size=size, seed=k))
                    os.write(write_end, f"{snapshot_id}\n".encode())
            finally:
                os._exit(0)
        os.close(write_end)
        wanted = rng.randint(0, 3)
        with os.fdopen(read_end, "rb") as pipe:
            for _ in range(wanted):
                line = pipe.readline()
                if not line:
                    break
                completed.append(line.decode().strip())
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    store = SnapshotStore(directory)
    listing = store.listing()
    assert listing.problems == [], "no partial or unreadable snapshot is ever visible"
    present = {m.id for m in listing.snapshots}
    assert set(completed) <= present, "every snapshot completed before a kill survives"
    for snapshot_id in completed[-20:]:
        assert store.load(snapshot_id)[0].id == snapshot_id
    assert not list(directory.glob(".*.tmp")), "leftover temporaries are cleaned up"
    assert len(completed) > 100
    print(f"{len(completed)} snapshots completed across 200 kills", file=sys.stderr)
