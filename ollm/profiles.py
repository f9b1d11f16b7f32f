"""`LLM_profiles.json`: per model, the context options, and the sizing rule.

The sizing rule (design §3): the user picks a `size`; the model's profile maps it to
`ollama_context_size`, which is `num_ctx` on every request and the denominator of every
threshold, passed through unchanged. Only when an option lacks `ollama_context_size` is
floor(0.85 × size) used, and the user is told. A model without a profile gets
min(target, the model's own context length).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import msgspec

from .events import RunnerOptions, SizeOption

FALLBACK_FRACTION = 0.85


class ProfileError(ValueError):
    """A profile file is unreadable or malformed; `str()` is one sentence naming the file."""


class ContextOption(msgspec.Struct, frozen=True, kw_only=True):
    size: int
    size_label: str = ""
    ollama_context_size: int | None = None
    vram_estimate_gb: float | None = None


class ModelProfile(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str = ""
    max_context_window: int = 0
    thinking: bool = False
    context_profiles: tuple[ContextOption, ...] = ()


class ProfileFile(msgspec.Struct, frozen=True, kw_only=True):
    version: int = 1
    models: tuple[ModelProfile, ...] = ()


@dataclass(frozen=True)
class Profiles:
    """The shipped profiles with the user's file laid over them (by model id)."""

    models: dict[str, ModelProfile]

    def find(self, model: str) -> ModelProfile | None:
        """The profile of `model`; `name` and `name:latest` are the same model."""
        if model in self.models:
            return self.models[model]
        if model.endswith(":latest"):
            return self.models.get(model.removesuffix(":latest"))
        return self.models.get(f"{model}:latest")


def load_profiles(user_file: Path | None = None) -> Profiles:
    """The shipped `LLM_profiles.json`, overridden model by model by `user_file` if it exists.

    Raises:
        ProfileError: a file cannot be read or does not follow the format.
    """
    shipped = resources.files("ollm").joinpath("data/LLM_profiles.json")
    models = {m.id: m for m in _parse(shipped.read_bytes(), "the shipped LLM_profiles.json")}
    if user_file is not None and user_file.exists():
        try:
            data = user_file.read_bytes()
        except OSError as exc:
            raise ProfileError(f"{user_file}: cannot be read ({exc.strerror or exc})") from exc
        for model in _parse(data, str(user_file)):
            models[model.id] = model
    return Profiles(models)


PROFILES_MAX_BYTES = 16 << 20
"""The shipped file is about 11 KiB; a profile file past 16 MiB is refused unread."""
MAX_SIZE = 1 << 24
"""No model has a context of more than 16 Mi tokens."""


def _parse(data: bytes, name: str) -> tuple[ModelProfile, ...]:
    if len(data) > PROFILES_MAX_BYTES:
        raise ProfileError(f"{name}: is over 16 MiB, too large for a profile file")
    try:
        parsed = msgspec.json.decode(data, type=ProfileFile)
    except msgspec.ValidationError as exc:
        raise ProfileError(f"{name}: does not follow the profile format ({exc})") from exc
    except msgspec.DecodeError as exc:
        raise ProfileError(f"{name}: is not valid JSON ({exc})") from exc
    except RecursionError:
        raise ProfileError(f"{name}: is nested too deeply for a profile file") from None
    for model in parsed.models:
        if not model.id:
            raise ProfileError(f"{name}: a model has an empty id")
        shown = model.id if model.id.isprintable() else repr(model.id)
        shown = shown if len(shown) <= 60 else shown[:59] + "…"
        for option in model.context_profiles:
            if option.size < 1 or (option.ollama_context_size or 1) < 1:
                raise ProfileError(
                    f"{name}: model {shown} has a context option with a size below 1"
                )
            if max(option.size, option.ollama_context_size or 0) > MAX_SIZE:
                raise ProfileError(
                    f"{name}: model {shown} has a context option above {MAX_SIZE} tokens, "
                    "larger than any model's"
                )
    return parsed.models


@dataclass(frozen=True)
class ContextChoice:
    """The context in force for a model: what the user sees and what Ollama is sent."""

    size: int
    num_ctx: int
    how: str
    warning: str = ""
    options: tuple[SizeOption, ...] = ()
    """Every option within the limits, smallest first."""


def choose_context(
    profile: ModelProfile | None, target: int, model_max: int = 0, max_size: int = 0
) -> ContextChoice:
    """Apply the sizing rule to a requested size.

    Args:
        profile: the model's profile, if it has one.
        target: the size the user asked for (`context.targetSize`, `/context size`).
        model_max: the model's own maximum context (from `/api/show`), 0 if unknown.
        max_size: the user's cap (`context.maxSize`), 0 for none.
    """
    caps = [c for c in (model_max, max_size, profile.max_context_window if profile else 0) if c]
    cap = min(caps) if caps else 0
    options = sorted(
        (o for o in (profile.context_profiles if profile else ()) if not cap or o.size <= cap),
        key=lambda o: o.size,
    )
    if not options:
        size = min(target, cap) if cap else target
        how = (
            f"no profile for this model: {size} tokens (the smaller of your target and the "
            "model's maximum), sent unchanged"
            if profile is None
            else f"profile has no option within the limit: {size} tokens, sent unchanged"
        )
        return ContextChoice(size=size, num_ctx=size, how=how)
    fitting = [o for o in options if o.size <= target]
    option = fitting[-1] if fitting else options[0]
    exact = option.size == target
    how = f"profile option {option.size_label or option.size}"
    if not exact:
        how += f" (closest to the requested {target})"
    num_ctx, warning = _num_ctx(option)
    how += f": num_ctx {num_ctx}"
    every = tuple(SizeOption(size=o.size, num_ctx=_num_ctx(o)[0]) for o in options)
    return ContextChoice(size=option.size, num_ctx=num_ctx, how=how, warning=warning, options=every)


def _num_ctx(option: ContextOption) -> tuple[int, str]:
    if option.ollama_context_size is not None:
        return option.ollama_context_size, ""
    value = math.floor(FALLBACK_FRACTION * option.size)
    return value, (
        f"the profile option {option.size} has no ollama_context_size, so num_ctx is "
        f"floor(0.85 × {option.size}) = {value}; add ollama_context_size to the profile to "
        "choose it yourself"
    )


def runner_options(num_ctx: int) -> RunnerOptions:
    """The load-time options of every request to a model: chat, summary and warm-up alike."""
    return RunnerOptions(num_ctx=num_ctx)


def dump_profiles(models: list[ModelProfile]) -> str:
    """A profile file's text (used by tests and tools)."""
    return json.dumps(msgspec.to_builtins(ProfileFile(models=tuple(models))), indent=2)
