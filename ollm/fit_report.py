"""`ollm fit MODEL`: how much context a model can have on this machine now (pure part)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from .config import KvType
from .memory import (
    Architecture,
    Footprint,
    GiB,
    MiB,
    kv_bytes_per_token,
    largest_fitting,
    needed_bytes,
    ollama_kv_bytes,
    usable_cache_type,
)

KV_TYPES: tuple[str, ...] = get_args(KvType)
SIZES = (2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144)


@dataclass(frozen=True)
class FitRow:
    num_ctx: int
    kv: dict[str, int]
    total: int
    fits: bool | None


@dataclass(frozen=True)
class FitReport:
    per_token: dict[str, int]
    rows: tuple[FitRow, ...]
    largest: dict[str, int]
    """Largest num_ctx that fits per KV type (absent when memory is unknown)."""


def fit_report(
    arch: Architecture,
    footprint: Footprint,
    budget: int | None,
    kv_type: str,
    parallel: int = 1,
) -> FitReport:
    top = arch.context_length or SIZES[-1]
    sizes = [s for s in SIZES if s <= top] or [top]
    types = tuple(t for t in KV_TYPES if usable_cache_type(arch, t) == t)
    kv_type = kv_type if kv_type in types else "f16"
    rows = []
    for size in sizes:
        kv = {t: ollama_kv_bytes(arch, size, t, parallel) for t in types}
        total = needed_bytes(arch, size, footprint, kv_type, parallel)
        rows.append(
            FitRow(
                num_ctx=size, kv=kv, total=total, fits=None if budget is None else total <= budget
            )
        )
    largest = {}
    if budget is not None:
        for t in types:
            largest[t] = largest_fitting(arch, budget, footprint, t, parallel=parallel, high=top)
    return FitReport(
        per_token={t: kv_bytes_per_token(arch, t) for t in types},
        rows=tuple(rows),
        largest=largest,
    )


def human(n_bytes: float) -> str:
    if n_bytes >= GiB:
        return f"{n_bytes / GiB:.1f} GiB"
    if n_bytes >= MiB:
        return f"{n_bytes / MiB:.0f} MiB"
    return f"{n_bytes / 1024:.2f} KiB"
