"""Where ollm keeps things on this machine: the config file, the sessions, the REPL's state.

Light on purpose (no msgspec, no settings): the REPL finds its input history before it draws
the prompt, before the settings are read.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir("ollm", appauthor=False))


def default_config_path() -> Path:
    return config_dir() / "config.yaml"


def private_dir(path: Path, inside: Path | None = None) -> Path:
    """Create `path` (and missing parents) readable by the user only (0700).

    Raises:
        OSError: it cannot be created, or it (or a directory between `inside` and it) is
            a symbolic link: nothing follows a link out of ollm's directories.
    """
    for parent in reversed([path, *path.parents]):
        mine = parent == path or (inside is not None and inside in parent.parents)
        if mine and parent.is_symlink():
            raise OSError(f"{parent} is a symbolic link; ollm does not follow links; remove it")
        if not parent.exists():
            parent.mkdir(mode=0o700)
    path.chmod(0o700)
    return path


def data_home() -> Path:
    """`OLLM_HOME`, else the platform's user data directory."""
    home = os.environ.get("OLLM_HOME")
    return Path(home).expanduser() if home else Path(platformdirs.user_data_dir("ollm", False))


def state_dir() -> Path:
    return Path(platformdirs.user_state_dir("ollm", appauthor=False))


def cache_dir() -> Path:
    """The platform's user cache directory (`$XDG_CACHE_HOME/ollm` on Linux): what ollm can
    rebuild when it is gone (each model's tokenizer)."""
    return Path(platformdirs.user_cache_dir("ollm", appauthor=False))
