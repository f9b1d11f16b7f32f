"""`ollm fit MODEL`: the model's architecture, its KV cost, and the largest context that fits."""

from __future__ import annotations

from typing import TextIO

import anyio

from ..config import Settings
from ..context.vram_monitor import is_local
from ..fit import fit_report, human
from ..gpu.chain import ProbeChain
from ..gpu.nvidia import NvmlProbe, ollama_runner_bytes
from ..gpu.records import ProbeUnavailable, headroom
from ..memory import Architecture, ArchitectureError, MiB, footprint_of
from ..providers.ollama import (
    OllamaClient,
    ProviderError,
    loaded_model,
    make_http_client,
    weights_bytes,
)
from .exits import EXIT_CODES


def _runner_bytes() -> int:
    try:
        return ollama_runner_bytes(NvmlProbe().processes())
    except ProbeUnavailable:
        return 0


async def run_fit(settings: Settings, model: str, parallel: int, out: TextIO, err: TextIO) -> int:
    host, timeout = settings.ollama.host, settings.ollama.timeout
    async with make_http_client(host, timeout) as http:
        client = OllamaClient(http, host, timeout)
        try:
            shown = await client.show(model)
            weights = weights_bytes(await client.tags(), model)
            loaded = loaded_model(await client.ps(), model)
        except ProviderError as exc:
            err.write(f"ollm: {exc.failure.message}\n")
            return EXIT_CODES.get(exc.failure.kind, 1)
    try:
        arch = Architecture.from_model_info(shown.model_info)
    except ArchitectureError as exc:
        err.write(f"ollm: cannot size {model}: {exc}\n")
        return 1
    kv_type = settings.context.kv_quantization
    footprint = footprint_of(
        arch,
        weights,
        kv_type,
        loaded_context=loaded.context_length if loaded else 0,
        loaded_bytes=loaded.size if loaded else 0,
        parallel=parallel,
    )
    compute = footprint.compute_bytes
    compute_source = (
        "measured: /api/ps size − weights − KV"
        if footprint.compute_measured
        else "an allowance (no loaded model to measure)"
    )
    budget: int | None = None
    if is_local(host):
        reading = await anyio.to_thread.run_sync(ProbeChain().read)
        memory_line = reading.describe()
        if reading.devices:
            free = headroom(reading.devices)
            held = (loaded.size_vram or loaded.size) if loaded else 0
            budget = free + held - settings.context.vram_buffer * MiB
            for device in reading.devices:
                memory_line += (
                    f"\n  {device.device}: {device.name}, {human(device.total_bytes)} total, "
                    f"{human(device.free_bytes)} free"
                )
            if held:
                memory_line += f"\n  {model} is loaded and holds {human(held)}; a reload frees it"
            if reading.source == "nvml":
                runner = await anyio.to_thread.run_sync(_runner_bytes)
                if runner:
                    memory_line += (
                        f"\n  Ollama's runner processes hold {human(runner)} of GPU memory "
                        "[NVML per-process]"
                    )
    else:
        memory_line = (
            f"Ollama runs at {host}, not on this machine: this machine's memory says nothing "
            "about it, so no fit is computed (the KV figures below still hold)"
        )
    report = fit_report(arch, footprint, budget, kv_type, parallel)
    swa = sum(arch.swa_layers)
    kv_heads = sorted(set(arch.kv_heads))
    lines = [
        f"{model}: {arch.name}, {arch.layers} layers, {'/'.join(map(str, kv_heads))} KV heads "
        f"× {arch.key_length}+{arch.value_length}, trained context {arch.context_length or '?'}"
        + (f", {swa} sliding-window layers (window {arch.sliding_window})" if swa else "")
        + "   [/api/show model_info]",
        f"weights: {human(weights) if weights else 'unknown'}   [/api/tags size]",
        f"compute buffers: {human(compute)}   [{compute_source}]",
        f"kept free: {settings.context.vram_buffer} MiB   [config context.vramBuffer]",
        f"memory: {memory_line}",
        "KV cache per token (all layers): "
        + ", ".join(f"{t} {human(b)}" for t, b in report.per_token.items())
        + "   [computed from model_info]",
        "",
        f"{'num_ctx':>9} "
        + "".join(f"{'KV ' + t:>11}" for t in report.per_token)
        + f"{'total (' + kv_type + ')':>16}  fits",
    ]
    for row in report.rows:
        fits = "?" if row.fits is None else ("yes" if row.fits else "no")
        lines.append(
            f"{row.num_ctx:>9} "
            + "".join(f"{human(row.kv[t]):>11}" for t in report.per_token)
            + f"{human(row.total):>16}  {fits}"
        )
    lines.append("")
    if report.largest:
        best = report.largest
        lines.append(
            f"largest context that fits now: {best.get(kv_type, best.get('f16'))} tokens with "
            f"{kv_type if kv_type in best else 'f16'} "
            f"(your KV cache type); "
            + ", ".join(f"{best[t]} with {t}" for t in best if t != kv_type)
        )
        if parallel > 1:
            lines.append(f"(per slot, with {parallel} parallel slots)")
    out.write("\n".join(lines) + "\n")
    return 0
