"""Reading the environment the local Ollama server was started with: its process's own
(`/proc/PID/environ`, readable when it runs as this user — `ollama serve` in a terminal),
else the `ollama.service` unit's `Environment=` lines (the Linux installer's service), else
nothing: Ollama's defaults. A server on another machine cannot be read: its defaults too."""

from __future__ import annotations

from pathlib import Path

from ..context.vram_monitor import is_local
from ..server_setup import ServerSetup, from_environment, unit_environment

PROC = Path("/proc")
UNITS = (
    Path("/lib/systemd/system/ollama.service"),
    Path("/usr/lib/systemd/system/ollama.service"),
    Path("/etc/systemd/system/ollama.service"),
)


def read_server_setup(
    host: str, proc: Path | None = None, units: tuple[Path, ...] | None = None
) -> ServerSetup:
    """What the server at `host` runs, and where that was read (`PROC` and `UNITS` unless
    other places are given)."""
    proc = PROC if proc is None else proc
    units = UNITS if units is None else units
    if not is_local(host):
        return ServerSetup(
            source=f"Ollama's defaults (the server at {host} runs on another machine, whose "
            "environment cannot be read here)"
        )
    found = _process_environment(proc)
    if found is not None:
        return found
    env: dict[str, str] = {}
    read: list[str] = []
    for unit in units:
        for path in (unit, *sorted(unit.with_name(unit.name + ".d").glob("*.conf"))):
            try:
                env.update(unit_environment(path.read_text(encoding="utf-8", errors="replace")))
            except OSError:
                continue
            read.append(str(path))
    if read:
        return from_environment(env, f"the ollama.service unit ({', '.join(read)})")
    return ServerSetup()


def _process_environment(proc: Path) -> ServerSetup | None:
    try:
        entries = [p for p in proc.iterdir() if p.name.isdigit()]
    except OSError:
        return None
    for entry in sorted(entries, key=lambda p: int(p.name)):
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if Path(argv[0].decode(errors="replace")).name != "ollama" or b"serve" not in argv:
                continue
            raw = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone, or another user's process
        env = dict(
            item.decode(errors="replace").partition("=")[::2] for item in raw.split(b"\0") if item
        )
        return from_environment(env, f"the environment of `ollama serve` (pid {entry.name})")
    return None
