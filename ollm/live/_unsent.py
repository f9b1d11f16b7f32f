"""A one-shot message that could not be sent because the session never started (the server
down, the model missing): kept as a file under `OLLM_HOME/unsent/`, so nothing the user
typed or piped is lost."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from ..paths import data_home, private_dir
from ..storage.atomic import StorageError, write_atomic


def keep_unsent(text: str, now: float) -> Path | None:
    """Write `text` to a new file and return its path; None when even that fails (the
    caller still says the message was not sent)."""
    home = data_home()
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d-%H%M%S")
    try:
        folder = private_dir(home / "unsent", inside=home)
        for n in range(100):
            path = folder / (f"{stamp}.txt" if n == 0 else f"{stamp}-{n}.txt")
            if not path.exists():
                write_atomic(path, [text.encode("utf-8", "surrogatepass")])
                return path
    except (OSError, StorageError):
        return None
    return None
