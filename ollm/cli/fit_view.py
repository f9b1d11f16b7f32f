"""`ollm fit MODEL`: the model's architecture, its KV cost, and the largest context that fits
(the text; the facts come from `ollm.live.gather_fit`)."""

from __future__ import annotations

from typing import TextIO

from ..config import Settings
from ..live import FitFacts, StartError, gather_fit, installed_models
from ..memory import format_bytes as human
from .exits import exit_status


def memory_line(facts: FitFacts) -> str:
    """Where memory figures come from and what they are."""
    if not facts.local:
        return (
            f"Ollama runs at {facts.host}, not on this machine: this machine's memory says "
            "nothing about it, so no fit is computed (the KV figures below still hold)"
        )
    line = facts.memory_source
    for device in facts.devices:
        line += (
            f"\n  {device.device}: {device.name}, {human(device.total_bytes)} total, "
            f"{human(device.free_bytes)} free"
        )
    if facts.devices and facts.held_bytes:
        line += (
            f"\n  {facts.model} is loaded and holds {human(facts.held_bytes)}; a reload frees it"
        )
    if facts.runner_bytes:
        line += (
            f"\n  Ollama's runner processes hold {human(facts.runner_bytes)} of GPU memory "
            "[NVML per-process]"
        )
    return line


async def run_fit(
    settings: Settings,
    model: str,
    parallel: int | None,
    out: TextIO,
    err: TextIO,
    kv_type: str | None = None,
) -> int:
    try:
        facts = await gather_fit(settings, model, parallel, kv_type)
    except StartError as exc:
        err.write(f"ollm: {exc}\n")
        return exit_status(exc.failure)
    out.write("\n".join(fit_lines(facts)) + "\n")
    return 0


def fit_lines(facts: FitFacts) -> list[str]:
    arch, report, kv_type, parallel = facts.arch, facts.report, facts.kv_type, facts.parallel
    footprint, weights = facts.footprint, facts.weights_bytes
    compute = footprint.compute_bytes
    compute_source = (
        "measured: /api/ps size − weights − KV"
        if footprint.compute_measured
        else "an allowance (no loaded model to measure)"
    )
    swa = sum(arch.swa_layers)
    kv_heads = "/".join(map(str, sorted(set(arch.kv_heads))))
    lines = [
        f"{facts.model}: {arch.name}, {arch.layers} layers, {kv_heads} KV heads "
        f"× {arch.key_length}+{arch.value_length}, trained context {arch.context_length or '?'}"
        + (f", {swa} sliding-window layers (window {arch.sliding_window})" if swa else "")
        + "   [/api/show model_info]",
        f"weights: {human(weights) if weights else 'unknown'}   [/api/tags size]",
        f"compute buffers: {human(compute)}   [{compute_source}]",
        f"kept free: {facts.buffer_mib} MiB   [config context.vramBuffer]",
        *server_lines(facts),
        f"memory: {memory_line(facts)}",
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
            f"(the server's KV cache type: {facts.kv_source}); "
            + ", ".join(f"{best[t]} with {t}" for t in best if t != kv_type)
        )
        if parallel > 1:
            lines.append(f"(per slot, with {parallel} parallel slots)")
    lines += ["", *option_lines(facts)]
    if facts.preference:
        lines.append(facts.preference)
    return lines


def server_lines(facts: FitFacts) -> list[str]:
    """What the server runs that sizing depends on, and where each was read."""
    slots = f"{facts.parallel} parallel slot" + ("s" if facts.parallel > 1 else "")
    flash = {"auto": "auto (llama-server decides per model)"}.get(
        facts.flash_attention, facts.flash_attention
    )
    if facts.kv_source == facts.parallel_source:
        return [
            f"server: {facts.kv_type} KV cache, flash attention {flash}, {slots}   "
            f"[{facts.kv_source}]"
        ]
    return [
        f"server: {facts.kv_type} KV cache, flash attention {flash}   [{facts.kv_source}]",
        f"server: {slots}   [{facts.parallel_source}]",
    ]


def option_lines(facts: FitFacts) -> list[str]:
    """The chat's own options (the size you pick → the num_ctx it sends), what each needs
    with the KV cache type in force, and the one the chat would take now."""
    slots = f", {facts.parallel} slots" if facts.parallel > 1 else ""
    lines = [
        f"the chat's context options (memory with the {facts.kv_type} KV cache the server "
        f"runs{slots}):",
        f"{'size':>9} {'num_ctx':>9} {'needs':>11}  fits",
    ]
    for option in facts.options:
        fits = "?" if option.fits is None else ("yes" if option.fits else "no")
        lines.append(
            f"{option.size:>9} {option.num_ctx:>9} {human(option.needed_bytes):>11}  {fits}"
        )
    pick = facts.pick
    if pick is None:
        lines.append("which one fits is unknown here (no memory reading of the server's machine)")
    else:
        lines.append(
            f"the largest that fits now: {pick.size} (num_ctx {pick.num_ctx}); choose it with "
            f"`ollm --context-size {pick.size}`, or `targetSize: {pick.size}` under `context:` "
            "in config.yaml"
        )
    return lines


async def run_models(settings: Settings, out: TextIO, err: TextIO) -> int:
    """`ollm models`: each installed model, its size, its context options and the largest
    that fits now (by the chat's own sizing, as `ollm fit` shows in full)."""
    try:
        names = await installed_models(settings)
    except StartError as exc:
        err.write(f"ollm: {exc}\n")
        return exit_status(exc.failure)
    if not names:
        out.write(
            f"no models are installed on {settings.ollama.host}; `ollama pull NAME` adds one\n"
        )
        return 0
    for name in names:
        try:
            facts = await gather_fit(settings, name)
        except StartError as exc:
            out.write(f"{name}: {exc}\n")
            continue
        sizes = ", ".join(_short(o.size) for o in facts.options)
        if facts.pick is None:
            fits = "fit unknown (no memory reading of the server's machine)"
        elif facts.pick.fits:
            fits = (
                f"largest that fits now: {_short(facts.pick.size)} (num_ctx {facts.pick.num_ctx})"
            )
        else:
            fits = "nothing fits in free memory now"
        out.write(f"{name}  {human(facts.weights_bytes)}  options {sizes}  {fits}\n")
    out.write("`ollm fit MODEL` shows how each figure is reached; `ollm -m MODEL` chats\n")
    return 0


def _short(size: int) -> str:
    return f"{size // 1024}k" if size % 1024 == 0 else str(size)
