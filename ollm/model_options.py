"""Model options: what `-o KEY VALUE` and `ollama.options` in the config may set.

These are the per-request options of Ollama's `Options` (`api/types.go`): sampling and the
like, sent with every chat request and free to change between requests. The runner options
are refused with a sentence: any change to one makes Ollama reload the model, and ollm keeps
them identical on every request (`ollm.profiles.runner_options`). Summaries are not sampled
with them: a summary wants the model's defaults, not the user's creative temperature.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .events import ModelOption

OPTIONS_KEY = ("ollama", "options")
"""Where the model options live in the settings; `-o KEY VALUE` sets `ollama.options.KEY`."""
WHOLE = ("num_keep", "seed", "top_k", "repeat_last_n")
NUMBER = (
    "temperature",
    "top_p",
    "min_p",
    "typical_p",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
)
TEXTS = ("stop",)
KNOWN = (*NUMBER, *WHOLE, *TEXTS)
RUNNER = ("num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread", "draft_num_predict")
"""Ollama's `Runner` options other than num_ctx: each one changed reloads the model."""


class OptionError(ValueError):
    """A model option that cannot be used; `str()` says why and what to do instead."""


def checked(name: str, value: Any) -> int | float | list[str]:
    """`value` as Ollama takes option `name` (text from the command line is read as a
    number where one is wanted; `stop` is a list of texts).

    Raises:
        OptionError: not an option ollm sends, or not a value it can take.
    """
    if name == "num_ctx":
        raise OptionError(
            "num_ctx is the context size ollm manages; use --context-size N "
            "(or /context size N in the chat)"
        )
    if name == "num_predict":
        raise OptionError(
            "ollm sets num_predict from ollama.maxReplyTokens and the room left in the "
            "context; set ollama.maxReplyTokens instead"
        )
    if name in RUNNER:
        raise OptionError(
            f"{name} is a runner option: changing it makes Ollama reload the model, so ollm "
            "does not send it; set it on the Ollama server instead"
        )
    if name not in KNOWN:
        raise OptionError(
            f"it is not one of Ollama's model options; use one of {', '.join(sorted(KNOWN))}"
        )
    if name in TEXTS:
        texts = value if isinstance(value, list) else [value]
        if not texts or not all(isinstance(t, str) and t for t in texts):
            raise OptionError("it must be a text, or a list of texts, that ends the reply")
        return list(texts)
    number = _number(value)
    if number is None or not math.isfinite(number):
        raise OptionError("it must be a number" if name in NUMBER else "it must be a whole number")
    if name in WHOLE:
        if number != int(number):
            raise OptionError("it must be a whole number")
        return int(number)
    return float(number)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def model_options(options: Mapping[str, Any]) -> tuple[ModelOption, ...]:
    """The options as a request carries them, sorted by name (already `checked`)."""
    from .events import ModelOption  # not at import: the config reads this module, and the
    # prompt draws before the events (and the actors under them) are imported

    return tuple(
        ModelOption(name=name, value=tuple(value) if isinstance(value, list) else value)
        for name, value in sorted(options.items())
    )
