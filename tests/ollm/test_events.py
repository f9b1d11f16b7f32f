from __future__ import annotations

import re
import subprocess
import sys
import typing
from pathlib import Path

import msgspec

import actors
from ollm import events

ROOT = Path(__file__).parents[2]


def _subclasses(cls: type) -> set[type]:
    out: set[type] = set()
    children: list[type] = cls.__subclasses__()
    for child in children:
        out |= {child} | _subclasses(child)
    return out


def test_every_event_is_in_the_union_with_a_unique_dotted_tag():
    union = set(typing.get_args(events.AnyEvent))
    defined = {
        cls
        for cls in _subclasses(actors.Event)
        if cls.__module__ in ("ollm.events", "actors._events")
        and cls is not actors.Input
        and not cls.__name__.startswith("_")
    }
    assert defined == union
    tags = [msgspec.inspect.type_info(cls).tag for cls in union]  # type: ignore[attr-defined]
    assert len(tags) == len(set(tags))
    for tag in tags:
        assert re.fullmatch(r"[a-z]+(\.[a-z_]+)+", tag), tag


def test_every_event_round_trips_through_the_log_encoding():
    msgspec.json.Decoder(events.AnyEvent)
    for cls in typing.get_args(events.AnyEvent):
        info = msgspec.inspect.type_info(cls)
        assert isinstance(info, msgspec.inspect.StructType)
        assert cls.__struct_config__.frozen


def test_the_event_catalog_is_up_to_date():
    result = subprocess.run(
        [sys.executable, "scripts/gen_event_catalog.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
