"""A running session and its one door, `LiveSession`, for the CLI.

`open_live_session` is the live composition root (the REPL, `ollm -p` and the tests' live
harness all start here); `LiveSession` is everything the CLI may do with a running session.
The CLI imports only this package and the pure modules (events, config, memory arithmetic);
never the actors' modules, the provider, the storage or the probes (a test checks it).
Also here: the other doors the CLI has to the outside world (`ollm fit`, `ollm sessions`).
"""

from __future__ import annotations

from ..storage.snapshot_file import SnapshotMeta as SnapshotMeta
from ..storage.store import Listing as Listing
from ._fit_facts import Device as Device
from ._fit_facts import FitFacts as FitFacts
from ._fit_facts import gather_fit as gather_fit
from ._fit_facts import installed_models as installed_models
from ._live_session import LiveError as LiveError
from ._live_session import LiveSession as LiveSession
from ._live_session import Outcome as Outcome
from ._preview import NextRequest as NextRequest
from ._records import RecordsError as RecordsError
from ._records import SessionRow as SessionRow
from ._records import check_session as check_session
from ._records import export_session as export_session
from ._records import recorded_sessions as recorded_sessions
from ._records import session_log as session_log
from ._root import RecordError as RecordError
from ._root import Start as Start
from ._root import StartError as StartError
from ._root import open_live_session as open_live_session
from ._selection import SelectionError as SelectionError
from ._selection import select_model as select_model
from ._status import Status as Status
from ._unsent import keep_unsent as keep_unsent

__all__ = (
    "Device",
    "FitFacts",
    "Listing",
    "LiveError",
    "LiveSession",
    "NextRequest",
    "Outcome",
    "RecordError",
    "RecordsError",
    "SelectionError",
    "SessionRow",
    "SnapshotMeta",
    "Start",
    "StartError",
    "Status",
    "check_session",
    "export_session",
    "gather_fit",
    "installed_models",
    "keep_unsent",
    "open_live_session",
    "recorded_sessions",
    "select_model",
    "session_log",
)
