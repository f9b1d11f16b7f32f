"""Pure memory arithmetic: the KV cache a context costs, from the model's own architecture.

The KV cache llama.cpp allocates (Ollama embeds it) is, in bytes,

    n_stream × Σ_{layers l with KV} cells(l) × [row(type_k, d_k·K_l) + row(type_v, d_v·K_l)]

where K_l is the layer's KV head count, d_k/d_v the key/value head sizes, and row(t, n) the
bytes of n values of type t (f16: 2 per value; q8_0: 34 per block of 32; q4_0: 18 per 32).
The context is padded to a multiple of 256 cells; with several sequences and a split
(non-unified) cache each of the n_stream sequences gets pad256(n_ctx / n_seq) cells;
sliding-window layers hold at most pad256(window + n_ubatch) cells. No parameter-count rule
of thumb is used anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

CELL_PADDING = 256
KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

_BYTE_UNITS = (("GiB", GiB, 1), ("MiB", MiB, 0), ("KiB", KiB, 2))


def _unit(n_bytes: float) -> tuple[str, int, int]:
    return next((u for u in _BYTE_UNITS if n_bytes >= u[1]), ("B", 1, 0))


def _number(n_bytes: float, size: int, digits: int) -> str:
    scale = 10**digits
    return f"{math.floor(n_bytes / size * scale) / scale:.{digits}f}"


def format_bytes(n_bytes: float) -> str:
    """A size as ollm shows it everywhere: binary units, labelled as such ("935 MiB",
    "7.5 GiB", "68.00 KiB"), rounded down so that free memory is never overstated."""
    unit, size, digits = _unit(n_bytes)
    return f"{_number(n_bytes, size, digits)} {unit}"


def format_bytes_of(part: float, whole: float) -> str:
    """Two sizes in the unit that suits the larger, as in "5.8 / 7.5 GiB"."""
    unit, size, digits = _unit(whole)
    return f"{_number(part, size, digits)} / {_number(whole, size, digits)} {unit}"


def reload_budget(free_bytes: int, held_bytes: int, buffer_bytes: int) -> int:
    """Memory a (re)load of the model can use: the free memory of the device that fills
    first, plus what the model holds there now (a reload releases it), minus the buffer the
    user keeps free (`context.vramBuffer`)."""
    return free_bytes + held_bytes - buffer_bytes


# (values per block, bytes per block), from ggml's block layouts.
_BLOCKS: dict[str, tuple[int, int]] = {
    "f32": (1, 4),
    "f16": (1, 2),
    "bf16": (1, 2),
    "q8_0": (32, 34),
    "q5_1": (32, 24),
    "q5_0": (32, 22),
    "q4_1": (32, 20),
    "q4_0": (32, 18),
    "iq4_nl": (32, 18),
}
CACHE_TYPES = tuple(_BLOCKS)

# Sliding-window layout by architecture when the GGUF carries no per-layer pattern:
# every `n`-th layer is global (full attention), the others slide. gemma2: layer 0 slides,
# then every other one; gemma3: five local then one global.
_SWA_PERIOD = {"gemma2": 2, "gemma3": 6, "gemma3n": 5, "cohere2": 4, "llama4": 4, "gpt-oss": 2}


class ArchitectureError(ValueError):
    """`model_info` lacks what the KV arithmetic needs; `str()` says which key."""


def pad(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def row_bytes(cache_type: str, values: int) -> int:
    """Bytes of `values` elements of `cache_type`.

    Raises:
        ValueError: unknown type, or a quantized row that is not a whole number of blocks
            (llama.cpp refuses such a cache).
    """
    try:
        per_block, block_bytes = _BLOCKS[cache_type]
    except KeyError:
        raise ValueError(
            f"unknown KV cache type {cache_type!r}; use one of {', '.join(CACHE_TYPES)}"
        ) from None
    if values % per_block:
        raise ValueError(
            f"a {cache_type} cache needs rows that are multiples of {per_block} values, "
            f"this model's rows have {values}"
        )
    return values // per_block * block_bytes


class Architecture(msgspec.Struct, frozen=True, kw_only=True):
    """What the KV arithmetic needs, read from GGUF metadata (`/api/show` `model_info`)."""

    name: str
    layers: int
    kv_heads: tuple[int, ...]
    """Per layer; 0 in a layer means it has no KV cache."""
    key_length: int
    value_length: int
    context_length: int = 0
    """The trained context (0 = unknown)."""
    sliding_window: int = 0
    swa_layers: tuple[bool, ...] = ()
    """Per layer: True where the layer attends over a sliding window."""
    parameter_count: int = 0

    @classmethod
    def from_model_info(cls, info: Mapping[str, Any]) -> Architecture:
        """Read the architecture from `/api/show`'s `model_info` (or any GGUF key/value map).

        Raises:
            ArchitectureError: a required key is missing or has the wrong type.
        """
        name = info.get("general.architecture")
        if not isinstance(name, str) or not name:
            raise ArchitectureError("model_info has no general.architecture")

        def number(key: str, default: int | None = None) -> int:
            value = info.get(f"{name}.{key}", default)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                if default is not None and value is None:
                    return default
                raise ArchitectureError(f"model_info has no usable {name}.{key}")
            return int(value)

        layers = number("block_count")
        if layers < 1:
            raise ArchitectureError(f"model_info has no usable {name}.block_count")
        heads = _per_layer(info.get(f"{name}.attention.head_count", 1), layers, name, "head_count")
        kv = info.get(f"{name}.attention.head_count_kv", None)
        kv_heads = _per_layer(kv if kv is not None else heads, layers, name, "head_count_kv")
        max_heads = max(heads) or 1
        embedding = number("embedding_length", 0)
        default_head = embedding // max_heads if embedding else 0
        key_length = number("attention.key_length", default_head)
        value_length = number("attention.value_length", default_head)
        if key_length <= 0 or value_length <= 0:
            raise ArchitectureError(
                f"model_info has no {name}.attention.key_length and no embedding_length"
            )
        window = number("attention.sliding_window", 0)
        swa = _swa_layers(info, name, layers, window)
        return cls(
            name=name,
            layers=layers,
            kv_heads=kv_heads,
            key_length=key_length,
            value_length=value_length,
            context_length=number("context_length", 0),
            sliding_window=window,
            swa_layers=swa,
            parameter_count=int(info.get("general.parameter_count", 0) or 0),
        )


def _per_layer(value: Any, layers: int, arch: str, key: str) -> tuple[int, ...]:
    if isinstance(value, bool):
        raise ArchitectureError(f"model_info has no usable {arch}.attention.{key}")
    if isinstance(value, int | float):
        return (int(value),) * layers
    if (
        isinstance(value, list | tuple)
        and len(value) == layers
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        return tuple(int(v) for v in value)
    raise ArchitectureError(
        f"model_info {arch}.attention.{key} is neither a number nor one per layer "
        "(ask /api/show with verbose=true for per-layer arrays)"
    )


def _swa_layers(info: Mapping[str, Any], arch: str, layers: int, window: int) -> tuple[bool, ...]:
    if window <= 0:
        return (False,) * layers
    pattern = info.get(f"{arch}.attention.sliding_window_pattern")
    if isinstance(pattern, list | tuple) and len(pattern) == layers:
        return tuple(bool(p) for p in pattern)
    period = pattern if isinstance(pattern, int) and not isinstance(pattern, bool) else None
    period = period or _SWA_PERIOD.get(arch)
    if not period:
        return (True,) * layers  # every layer slides (e.g. mistral's window)
    return tuple((i % period) < period - 1 for i in range(layers))


def kv_cache_bytes(
    arch: Architecture,
    n_ctx: int,
    cache_type_k: str = "f16",
    cache_type_v: str | None = None,
    *,
    n_seq: int = 1,
    unified: bool = False,
    n_ubatch: int = 512,
) -> int:
    """The bytes llama.cpp allocates for the KV cache of a context of `n_ctx` cells in all.

    Args:
        n_ctx: the context llama.cpp is given (Ollama gives `num_ctx × parallel`).
        n_seq: parallel sequences (Ollama's `OLLAMA_NUM_PARALLEL`).
        unified: one shared pool for all sequences instead of one stream each.
    """
    if n_ctx < 1 or n_seq < 1:
        raise ValueError("n_ctx and n_seq must be positive")
    cache_type_v = cache_type_v or cache_type_k
    check_cache_types(arch, cache_type_k, cache_type_v)
    total = pad(n_ctx, CELL_PADDING)
    if unified or n_seq == 1:
        per_stream, streams = total, 1
    else:
        per_stream, streams = pad(total // n_seq, CELL_PADDING), n_seq
    window_cells = 0
    if arch.sliding_window:
        span = arch.sliding_window * (n_seq if unified else 1) + n_ubatch
        window_cells = min(per_stream, pad(span, CELL_PADDING))
    size = 0
    for layer, heads in enumerate(arch.kv_heads):
        if heads <= 0:
            continue
        slides = bool(arch.swa_layers) and arch.swa_layers[layer]
        cells = window_cells if slides and window_cells else per_stream
        size += cells * (
            row_bytes(cache_type_k, arch.key_length * heads)
            + row_bytes(cache_type_v, arch.value_length * heads)
        )
    return size * streams


def check_cache_types(arch: Architecture, cache_type_k: str, cache_type_v: str) -> None:
    """llama.cpp refuses a quantized cache whose block does not divide one head's size.

    Raises:
        ValueError: the type is unknown, or its blocks do not divide the head size.
    """
    for kind, head in ((cache_type_k, arch.key_length), (cache_type_v, arch.value_length)):
        per_block = _BLOCKS[kind][0] if kind in _BLOCKS else 0
        if not per_block:
            row_bytes(kind, 0)  # raises the unknown-type error
        if head % per_block:
            raise ValueError(
                f"a {kind} cache needs head sizes that are multiples of {per_block} values, "
                f"this model's heads have {head}"
            )


def kv_bytes_per_token(arch: Architecture, cache_type: str = "f16") -> int:
    """KV bytes one token of context costs with every layer counted (no sliding window)."""
    return sum(
        row_bytes(cache_type, arch.key_length * k) + row_bytes(cache_type, arch.value_length * k)
        for k in arch.kv_heads
        if k > 0
    )


def ollama_kv_bytes(
    arch: Architecture, num_ctx: int, cache_type: str = "f16", parallel: int = 1
) -> int:
    """The KV cache Ollama's llama-server allocates for `num_ctx` per slot and `parallel` slots
    (it passes `-c num_ctx·parallel -np parallel`, a split cache)."""
    return kv_cache_bytes(arch, num_ctx * parallel, cache_type, n_seq=parallel)


def usable_cache_type(arch: Architecture, kind: str) -> str:
    """The configured KV type, or f16 where llama.cpp would refuse it for this model."""
    try:
        check_cache_types(arch, kind, kind)
    except ValueError:
        return "f16"
    return kind


DEFAULT_COMPUTE_BYTES = 512 * MiB
"""Compute-buffer allowance until a loaded model lets it be measured (an estimate)."""


class Footprint(msgspec.Struct, frozen=True, kw_only=True):
    """What a model needs in memory besides its KV cache."""

    weights_bytes: int
    compute_bytes: int = DEFAULT_COMPUTE_BYTES
    compute_measured: bool = False


def footprint_of(
    arch: Architecture,
    weights_bytes: int,
    cache_type: str,
    *,
    loaded_context: int = 0,
    loaded_bytes: int = 0,
    parallel: int = 1,
) -> Footprint:
    """The model's weights and compute buffers: measured when it is loaded (what `/api/ps`
    `size` holds beyond the weights and the exact KV cache of its context), else the
    allowance."""
    if loaded_context and loaded_bytes and weights_bytes:
        kind = usable_cache_type(arch, cache_type)
        kv = ollama_kv_bytes(arch, loaded_context, kind, parallel)
        rest = loaded_bytes - weights_bytes - kv
        if rest >= 0:
            return Footprint(weights_bytes=weights_bytes, compute_bytes=rest, compute_measured=True)
    return Footprint(weights_bytes=weights_bytes)


GROWTH_SHARE = 0.65
"""Between two loads the allocation grows by the cache's growth plus the compute buffers'
change, which llama.cpp sometimes shrinks a little (SmolLM2 on CPU, q8_0: −5.2 MiB from 2,048
to 4,096 tokens, 22 % of that cache growth). A type is ruled out only when the allocation grew
by less than this share of what its cache grows; the next smaller type's cache grows by 53 %."""


def allocation_types(
    arch: Architecture,
    loads: Sequence[tuple[int, int]],
    weights_bytes: int,
    parallel: int = 1,
) -> tuple[str, ...]:
    """The KV cache types the allocations `/api/ps` reported (`loads`: context, size) allow,
    the largest cache first. A type is ruled out when its exact cache does not fit in what a
    load holds beyond the weights, or when the cache it would add between two loads is more
    than the allocation grew, by a margin for compute buffers (`GROWTH_SHARE`). A type that is
    left is possible, not proven."""
    points = sorted({context: size for context, size in loads if context > 0 and size > 0}.items())
    found = []
    for kind in ("f16", "q8_0", "q4_0"):
        if usable_cache_type(arch, kind) != kind:
            continue
        caches = [ollama_kv_bytes(arch, context, kind, parallel) for context, _size in points]
        if any(
            size - weights_bytes - kv < 0 for (_c, size), kv in zip(points, caches, strict=True)
        ):
            continue
        steps = zip(points, points[1:], caches, caches[1:], strict=False)
        if any(b[1] - a[1] < GROWTH_SHARE * (kv_b - kv_a) for a, b, kv_a, kv_b in steps):
            continue
        found.append(kind)  # f16, q8_0, q4_0: the largest cache first
    return tuple(found)


def needed_bytes(
    arch: Architecture,
    num_ctx: int,
    footprint: Footprint,
    cache_type: str,
    parallel: int = 1,
) -> int:
    """Weights + exact KV cache + compute buffers for a context of `num_ctx` per slot."""
    kv = ollama_kv_bytes(arch, num_ctx, cache_type, parallel)
    return footprint.weights_bytes + kv + footprint.compute_bytes


def largest_fitting(
    arch: Architecture,
    budget_bytes: int,
    footprint: Footprint,
    cache_type: str,
    *,
    parallel: int = 1,
    low: int = 256,
    high: int = 0,
) -> int:
    """The largest `num_ctx` (a multiple of 256, at most `high` or the trained context) whose
    needs fit `budget_bytes`; 0 when not even `low` fits."""
    high = high or arch.context_length or 1 << 20
    if needed_bytes(arch, low, footprint, cache_type, parallel) > budget_bytes:
        return 0
    lo, hi = low // CELL_PADDING, max(low, high) // CELL_PADDING
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if needed_bytes(arch, mid * CELL_PADDING, footprint, cache_type, parallel) <= budget_bytes:
            lo = mid
        else:
            hi = mid - 1
    return min(lo * CELL_PADDING, high) if lo * CELL_PADDING >= low else low
