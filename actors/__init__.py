"""A small actor runtime on anyio: a typed event bus, supervision, an event log and replay.

Layering: this package knows nothing about the application that uses it and never imports it.
Implementation modules are private; everything public is re-exported here.
"""

from __future__ import annotations

from ._activity import Activity as Activity
from ._actor import Actor as Actor
from ._actor import Context as Context
from ._bus import Bus as Bus
from ._bus import BusStatistics as BusStatistics
from ._bus import MailboxStatistics as MailboxStatistics
from ._clock import Clock as Clock
from ._clock import FakeClock as FakeClock
from ._clock import SystemClock as SystemClock
from ._envelope import Envelope as Envelope
from ._events import ActorCrashed as ActorCrashed
from ._events import ActorRestarted as ActorRestarted
from ._events import Event as Event
from ._events import Input as Input
from ._events import Lagged as Lagged
from ._events import RuntimeEvent as RuntimeEvent
from ._events import SupervisorGaveUp as SupervisorGaveUp
from ._exceptions import LogError as LogError
from ._exceptions import NotQuietError as NotQuietError
from ._exceptions import RuntimeFailure as RuntimeFailure
from ._exceptions import SupervisorGaveUpError as SupervisorGaveUpError
from ._ids import IdSource as IdSource
from ._ids import SeededIds as SeededIds
from ._ids import SequentialIds as SequentialIds
from ._ids import new_seed as new_seed
from ._log import FORMAT_VERSION as FORMAT_VERSION
from ._log import LogContents as LogContents
from ._log import LogHeader as LogHeader
from ._log import LogSink as LogSink
from ._log import LogWriter as LogWriter
from ._log import Recorder as Recorder
from ._log import read_log as read_log
from ._mailbox import Mailbox as Mailbox
from ._mailbox import Overflow as Overflow
from ._replay import Divergence as Divergence
from ._replay import ReplayResult as ReplayResult
from ._replay import replay as replay
from ._runtime import Runtime as Runtime
from ._runtime import open_runtime as open_runtime
from ._supervisor import ChildSpec as ChildSpec

__all__ = (
    "FORMAT_VERSION",
    "Activity",
    "Actor",
    "ActorCrashed",
    "ActorRestarted",
    "Bus",
    "BusStatistics",
    "ChildSpec",
    "Clock",
    "Context",
    "Divergence",
    "Envelope",
    "Event",
    "FakeClock",
    "IdSource",
    "Input",
    "Lagged",
    "LogContents",
    "LogError",
    "LogHeader",
    "LogSink",
    "LogWriter",
    "Mailbox",
    "MailboxStatistics",
    "NotQuietError",
    "Overflow",
    "Recorder",
    "ReplayResult",
    "Runtime",
    "RuntimeEvent",
    "RuntimeFailure",
    "SeededIds",
    "SequentialIds",
    "SupervisorGaveUp",
    "SupervisorGaveUpError",
    "SystemClock",
    "new_seed",
    "open_runtime",
    "read_log",
    "replay",
)
