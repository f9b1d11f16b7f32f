"""Choosing the model and its context at start-up, from config, profiles and the server."""

from __future__ import annotations

from ..config import Settings
from ..events import FailureKind, ModelSelected
from ..memory import Architecture, ArchitectureError, MiB
from ..profiles import Profiles, choose_context
from ..providers.ollama import OllamaClient, ProviderError, installed_model
from ..server_setup import ServerSetup


class SelectionError(Exception):
    """No model can be used; `str()` is one sentence for the user."""

    def __init__(self, kind: FailureKind | None, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _context_length(model_info: dict[str, object]) -> int:
    arch = model_info.get("general.architecture")
    value = model_info.get(f"{arch}.context_length") if isinstance(arch, str) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


async def _not_installed(client: OllamaClient, name: str) -> str:
    """Why `name` cannot be used, naming the installed models of the same family."""
    base = name.split(":", 1)[0]
    try:
        alike = [m.name for m in await client.tags() if m.name.split(":", 1)[0] == base]
    except ProviderError:
        alike = []
    pull = f"`ollama pull {name}`"
    if alike:
        return (
            f"the model {name} is not installed on {client.host}, but {', '.join(alike[:4])} "
            f"is; pass `-m {alike[0]}`, or run {pull}"
        )
    return f"the model {name} is not installed on {client.host}; run {pull} and try again"


async def select_model(
    client: OllamaClient,
    settings: Settings,
    profiles: Profiles,
    *,
    model: str | None = None,
    size: int | None = None,
    setup: ServerSetup | None = None,
    vocabulary: bool = False,
) -> ModelSelected:
    """The model to use and its context, by the sizing rule (`vocabulary`: a vocabulary
    loader will answer for it).

    Raises:
        SelectionError: no model chosen, the server cannot be reached, or the model is missing.
    """
    name = model or settings.model
    try:
        if not name:
            installed = [m.name for m in await client.tags()]
            if not installed:
                raise SelectionError(
                    None,
                    f"no models are installed on {client.host}; run `ollama pull llama3.1:8b` "
                    "(or another model) first",
                )
            raise SelectionError(
                None,
                "no model chosen; pass --model NAME or set `model:` in config.yaml "
                f"(installed: {', '.join(installed[:8])})",
            )
        try:
            shown = await client.show(name)
        except ProviderError as exc:
            if exc.failure.kind != "model_not_found":
                raise
            raise SelectionError(exc.failure.kind, await _not_installed(client, name)) from exc
        tag = installed_model(await client.tags(), name)
    except ProviderError as exc:
        raise SelectionError(exc.failure.kind, exc.failure.message) from exc
    model_max = _context_length(shown.model_info)
    try:
        architecture: Architecture | None = Architecture.from_model_info(shown.model_info)
    except ArchitectureError:
        architecture = None
    setup = setup or ServerSetup()
    choice = choose_context(
        profiles.find(name),
        size or settings.context.target_size,
        model_max,
        settings.context.max_size,
    )
    return ModelSelected(
        model=name,
        size=choice.size,
        num_ctx=choice.num_ctx,
        model_max=model_max,
        thinking="thinking" in shown.capabilities,
        how=choice.how,
        warning=choice.warning,
        options=choice.options,
        architecture=architecture,
        weights_bytes=tag.size if tag else 0,
        digest=tag.digest if tag else "",
        vocabulary=vocabulary,
        auto_size=settings.context.auto_size,
        kv_cache_type=setup.kv_type,  # what the server runs, not the wish
        kv_source=setup.source,
        flash_attention=setup.flash_attention,
        kv_preferred=settings.context.kv_quantization,
        parallel=setup.parallel,
        vram_buffer_bytes=settings.context.vram_buffer * MiB,
    )
