"""What the Ollama server runs that sizing depends on — its KV cache type, flash attention
and parallel slots — read from the environment it was started with (pure: finding that
environment is the caller's). Ollama's own rules (`envconfig`): values are trimmed of
spaces and quotes; `OLLAMA_KV_CACHE_TYPE` defaults to f16 and takes effect only with flash
attention; `OLLAMA_FLASH_ATTENTION` unset means llama-server's `auto`, and a value
`strconv.ParseBool` cannot read counts as true; `OLLAMA_NUM_PARALLEL` defaults to 1.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from .config import KvType
from .events import ModelSelected, UserNotified
from .memory import Architecture, kv_bytes_per_token

DEFAULTS = "Ollama's defaults, as nothing says the server runs otherwise"
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
_TYPES: tuple[KvType, ...] = ("f16", "q8_0", "q4_0")


@dataclass(frozen=True)
class ServerSetup:
    kv_type: KvType = "f16"
    flash_attention: str = "auto"
    """"on", "off" or "auto" (llama-server decides per model and device)."""
    parallel: int = 1
    source: str = DEFAULTS


def _var(env: Mapping[str, str], key: str) -> str:
    return env.get(key, "").strip().strip("\"'")


def from_environment(env: Mapping[str, str], source: str) -> ServerSetup:
    """The setup an Ollama server started with `env` runs."""
    flash = _var(env, "OLLAMA_FLASH_ATTENTION")
    attention = "auto" if not flash else ("off" if flash in _FALSE else "on")
    kind = _var(env, "OLLAMA_KV_CACHE_TYPE").lower() or "f16"
    kv: KvType = next((t for t in _TYPES if t == kind), "f16")
    if attention == "off":
        kv = "f16"  # a quantized cache needs flash attention
    slots = _var(env, "OLLAMA_NUM_PARALLEL")
    parallel = int(slots) if slots.isdigit() and int(slots) > 0 else 1
    if not any(
        _var(env, k)
        for k in ("OLLAMA_FLASH_ATTENTION", "OLLAMA_KV_CACHE_TYPE", "OLLAMA_NUM_PARALLEL")
    ):
        source = f"{source}, which sets none of them: Ollama's defaults"
    return ServerSetup(kv_type=kv, flash_attention=attention, parallel=parallel, source=source)


def unit_environment(text: str) -> dict[str, str]:
    """The `Environment=` assignments of a systemd unit or drop-in, in order (later wins)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition("=")
        if key.strip() != "Environment":
            continue
        try:
            words = shlex.split(value)
        except ValueError:
            continue
        for word in words:
            name, sep, setting = word.partition("=")
            if sep:
                found[name] = setting
    return found


def a_cache(kind: str) -> str:
    """The type with its article, as the sentences say it: "an f16", "a q8_0"."""
    return f"{'an' if kind == 'f16' else 'a'} {kind}"


def preference_note(
    arch: Architecture | None, kv_type: str, flash_attention: str, preferred: str, source: str = ""
) -> str:
    """One sentence when the server runs another KV cache type (`kv_type`, learned from
    `source`) than the one the user prefers (`kvQuantization`), with what the preferred one
    would gain; "" when they agree or no preference is known."""
    if not preferred or preferred == kv_type:
        return ""
    gain = ""
    if arch is not None:
        try:
            ratio = kv_bytes_per_token(arch, kv_type) / kv_bytes_per_token(arch, preferred)
        except ValueError:
            ratio = 0.0
        if ratio:
            gain = f", {ratio:.1f}× the context would fit in the same memory"
    flash = "" if flash_attention == "on" or preferred == "f16" else " and OLLAMA_FLASH_ATTENTION=1"
    return (
        f"the server runs {a_cache(kv_type)} KV cache"
        + (f" (from {source})" if source else "")
        + f", not the {preferred} of kvQuantization, "
        f"and sizing follows the server; with OLLAMA_KV_CACHE_TYPE={preferred}{flash} set "
        f"for `ollama serve`{gain}"
    )


def preference_notice(selected: ModelSelected) -> UserNotified | None:
    """The preference note for a selection, as a notice given once per (server type, wish)."""
    note = preference_note(
        selected.architecture,
        selected.kv_cache_type,
        selected.flash_attention,
        selected.kv_preferred,
        selected.kv_source,
    )
    if not note:
        return None
    key = f"kv-preference {selected.kv_cache_type} {selected.kv_preferred}"
    return UserNotified(level="info", text=note, once=key)
