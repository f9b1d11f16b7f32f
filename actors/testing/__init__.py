"""What tests use: a fake clock, readable ids, and a harness to inject events and settle."""

from __future__ import annotations

from .._clock import FakeClock as FakeClock
from .._ids import SequentialIds as SequentialIds
from ._harness import Harness as Harness
from ._harness import open_harness as open_harness

__all__ = ("FakeClock", "Harness", "SequentialIds", "open_harness")
