"""`ollm fit MODEL`: what the server and this machine say about a model's fit (the I/O part;
`fit_report` is the arithmetic, `cli/fit_view` the text)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import anyio
import msgspec

from ..config import Settings
from ..context.context_pool import PoolState, budget_bytes, choose, footprint
from ..context.vram_monitor import is_local
from ..events import MemorySampled, ModelLoaded, ModelSelected, SizeOption
from ..fit_report import FitReport, fit_report
from ..gpu.chain import ProbeChain
from ..gpu.nvidia import NvmlProbe, ollama_runner_bytes
from ..gpu.records import DeviceMemory, ProbeUnavailable, Reading, headroom
from ..memory import (
    Architecture,
    ArchitectureError,
    Footprint,
    MiB,
    footprint_of,
    needed_bytes,
    reload_budget,
)
from ..providers.ollama import (
    OllamaClient,
    ProviderError,
    PsModel,
    loaded_model,
    make_http_client,
)
from ..server_setup import preference_note
from ._root import StartError, load_profile_db
from ._selection import SelectionError, select_model
from ._server_env import read_server_setup


@dataclass(frozen=True)
class Device:
    device: str
    name: str
    total_bytes: int
    free_bytes: int


@dataclass(frozen=True)
class FitOption:
    """One context option as the chat sends it, and whether it fits now."""

    size: int
    num_ctx: int
    needed_bytes: int
    fits: bool | None


@dataclass(frozen=True)
class FitFacts:
    model: str
    arch: Architecture
    weights_bytes: int
    footprint: Footprint
    report: FitReport
    kv_type: str
    parallel: int
    buffer_mib: int
    host: str
    local: bool
    """Ollama runs on this machine, so its memory is what matters."""
    memory_source: str = ""
    """Which probe read the memory, and why earlier ones were passed over."""
    kv_source: str = ""
    """Where the KV cache type in force was read."""
    flash_attention: str = "auto"
    """The server's flash attention ("on", "off", "auto"), read with the KV type."""
    parallel_source: str = ""
    """Where the parallel slots were read."""
    preference: str = ""
    """When `kvQuantization` asks for another type than the server runs: what it would gain."""
    options: tuple[FitOption, ...] = ()
    """The chat's context options for this model (profile size → num_ctx)."""
    pick: FitOption | None = None
    """What the chat would choose now, by the context pool's own rule (None: no memory)."""
    devices: tuple[Device, ...] = ()
    held_bytes: int = 0
    """What the model holds while loaded (a reload frees it)."""
    runner_bytes: int = 0
    """GPU memory Ollama's runner processes hold (NVML per-process), 0 when unknown."""


def _runner_bytes() -> int:
    try:
        return ollama_runner_bytes(NvmlProbe().processes())
    except ProbeUnavailable:
        return 0


async def installed_models(settings: Settings) -> list[str]:
    """The models the server has installed, by name.

    Raises:
        StartError: the server cannot answer.
    """
    host, timeout = settings.ollama.host, settings.ollama.timeout
    async with make_http_client(host, timeout) as http:
        try:
            return [m.name for m in await OllamaClient(http, host, timeout).tags()]
        except ProviderError as exc:
            raise StartError(exc.failure.message, exc.failure.kind) from exc


async def gather_fit(
    settings: Settings, model: str, parallel: int | None = None, kv_type: str | None = None
) -> FitFacts:
    """Ask the server about `model` and this machine about its memory.

    Raises:
        StartError: the server cannot answer, or the model cannot be sized.
    """
    host, timeout = settings.ollama.host, settings.ollama.timeout
    async with make_http_client(host, timeout) as http:
        client = OllamaClient(http, host, timeout)
        setup = await anyio.to_thread.run_sync(read_server_setup, client.host)
        try:
            # The chat's own selection: /api/show and /api/tags, asked once.
            selected = await select_model(
                client, settings, load_profile_db(), model=model, setup=setup
            )
        except SelectionError as exc:
            raise StartError(str(exc), exc.kind) from exc
        try:
            loaded = loaded_model(await client.ps(), model)
            if selected.architecture is None:  # say why, in the parser's own words
                Architecture.from_model_info((await client.show(model)).model_info)
        except ProviderError as exc:
            raise StartError(exc.failure.message, exc.failure.kind) from exc
        except ArchitectureError as exc:
            raise StartError(f"cannot size {model}: {exc}", "server_error") from exc
    arch = selected.architecture
    weights = selected.weights_bytes
    if arch is None:
        raise StartError(f"cannot size {model}: /api/show has no architecture", "server_error")
    kv_source = "--kv-type" if kv_type else selected.kv_source
    parallel_source = "--parallel" if parallel else selected.kv_source
    kv_type = kv_type or selected.kv_cache_type
    parallel = parallel or selected.parallel
    footprint = footprint_of(
        arch,
        weights,
        kv_type,
        loaded_context=loaded.context_length if loaded else 0,
        loaded_bytes=loaded.size if loaded else 0,
        parallel=parallel,
    )
    local = is_local(host)
    budget: int | None = None
    source, held, runner = "", 0, 0
    devices: tuple[Device, ...] = ()
    reading: Reading | None = None
    if local:
        reading = await anyio.to_thread.run_sync(ProbeChain().read)
        held = (loaded.size_vram or loaded.size) if loaded else 0
        if reading.devices:
            free = headroom(reading.devices)
            budget = reload_budget(free, held, settings.context.vram_buffer * MiB)
        if reading.source == "nvml":
            runner = await anyio.to_thread.run_sync(_runner_bytes)
        source = reading.describe()
        devices = tuple(
            Device(d.device, d.name, d.total_bytes, d.free_bytes) for d in reading.devices
        )
    options, pick = _options(
        selected, kv_type, parallel, loaded, reading.devices if reading else ()
    )
    return FitFacts(
        model=model,
        arch=arch,
        weights_bytes=weights,
        footprint=footprint,
        report=fit_report(arch, footprint, budget, kv_type, parallel),
        kv_type=kv_type,
        kv_source=kv_source,
        flash_attention=selected.flash_attention,
        parallel_source=parallel_source,
        preference=""
        if kv_source == "--kv-type"
        else preference_note(
            arch, selected.kv_cache_type, selected.flash_attention, selected.kv_preferred
        ),
        parallel=parallel,
        buffer_mib=settings.context.vram_buffer,
        host=client.host,
        local=local,
        memory_source=source,
        devices=devices,
        held_bytes=held,
        runner_bytes=runner,
        options=options,
        pick=pick,
    )


def _options(
    selected: ModelSelected,
    kv_type: str,
    parallel: int,
    loaded: PsModel | None,
    devices: Sequence[DeviceMemory],
) -> tuple[tuple[FitOption, ...], FitOption | None]:
    """Every context option of the model and the one the chat would pick, by the context
    pool's own functions (`choose`, `needed_bytes`) on the same memory."""
    every = selected.options or (SizeOption(size=selected.size, num_ctx=selected.num_ctx),)
    widest = msgspec.structs.replace(
        selected,
        size=max(o.size for o in every),
        auto_size=True,
        kv_cache_type=kv_type,
        parallel=parallel,
    )
    state = PoolState(
        selected=widest,
        devices={
            d.device: MemorySampled(
                device=d.device, total_bytes=d.total_bytes, free_bytes=d.free_bytes
            )
            for d in devices
        },
        loaded=ModelLoaded(
            model=selected.model,
            context_length=loaded.context_length,
            size_bytes=loaded.size,
            size_vram_bytes=loaded.size_vram,
        )
        if loaded
        else None,
    )
    budget = budget_bytes(state)
    arch = widest.architecture
    rows = []
    for option in every:
        needed = (
            needed_bytes(arch, option.num_ctx, footprint(state), kv_type, parallel)
            if arch is not None
            else 0
        )
        rows.append(
            FitOption(
                option.size, option.num_ctx, needed, None if budget is None else needed <= budget
            )
        )
    chosen = choose(state) if budget is not None else None
    pick = next((r for r in rows if chosen and r.num_ctx == chosen[0].num_ctx), None)
    if chosen and pick is None:
        pick = FitOption(chosen[0].size, chosen[0].num_ctx, 0, True)
    return tuple(rows), pick
