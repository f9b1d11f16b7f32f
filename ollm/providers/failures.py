"""What went wrong with a request, in one sentence the user can act on (pure, no I/O).

Ollama's error texts differ by version (reference: ollama-api-and-memory.md §1.3, §4); the
`error` string may itself be JSON (llama-server bodies are forwarded verbatim, sometimes
encoded twice), so it is unwrapped before matching.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..events import FailureKind

OVERFLOW_TEXTS = (
    "exceed_context_size_error",
    "exceeds the available context size",
    "the prompt is longer than the context length",
    "the input length exceeds the context length",
)
OOM_TEXTS = (
    "out of memory",
    "cudamalloc failed",
    "failed to allocate",
    "not enough memory",
    "vk_error_out_of_device_memory",
    "requires more system memory",
    "memory layout cannot be allocated",
    "unable to load full model on gpu",
)


PARSED_ERROR_MAX = 65536
"""An error text longer than this is not parsed as JSON (only its start is shown anyway)."""


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    message: str
    n_prompt_tokens: int = 0
    n_ctx: int = 0


def unwrap_error(text: str) -> tuple[str, dict[str, Any]]:
    """The innermost message of an error string and any fields found on the way.

    Handles `{"error": "..."}`, `{"error": {"message": ..., "n_ctx": ...}}`, and the same
    encoded as a JSON string inside a JSON string.
    """
    fields: dict[str, Any] = {}
    current: Any = text
    for _ in range(4):
        if isinstance(current, str):
            stripped = current.strip()
            if not stripped.startswith(("{", '"')) or len(stripped) > PARSED_ERROR_MAX:
                break
            try:
                current = json.loads(stripped)
            except (ValueError, RecursionError):  # nested past Python's limit: shown as text
                break
            continue
        if isinstance(current, dict):
            fields.update({k: v for k, v in current.items() if k not in ("error", "message")})
            inner = current.get("error", current.get("message"))
            if inner is None:
                break
            current = inner
            continue
        break
    return _one_line(shown(current)), fields


def shown(value: Any) -> str:
    """An error value that is not a string, as short JSON text (never raising)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value)[:PARSED_ERROR_MAX]
    except (TypeError, ValueError, RecursionError):
        return "(an error nested too deeply to show)"


def _one_line(text: str, limit: int = 300) -> str:
    """A server's text made fit for one sentence: one line, bounded, never empty."""
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return flat or "(no message)"


def _number(fields: dict[str, Any], key: str, message: str, pattern: str) -> int:
    value = fields.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    found = re.search(pattern, message)
    return int(found.group(1)) if found else 0


def classify_error(status: int, body: str, *, host: str, model: str) -> Failure:
    """A failure from an HTTP error status and body (or an `error` line in a stream)."""
    message, fields = unwrap_error(body)
    lowered = f"{message} {fields.get('type', '')}".lower()
    if any(text in lowered for text in OVERFLOW_TEXTS):
        n_prompt = _number(fields, "n_prompt_tokens", message, r"request \((\d+) tokens\)")
        n_ctx = _number(fields, "n_ctx", message, r"context size \((\d+) tokens\)")
        sizes = f" ({n_prompt} tokens for a {n_ctx}-token context)" if n_prompt and n_ctx else ""
        return Failure(
            "context_overflow",
            f"the conversation no longer fits the context Ollama gave {model}{sizes}",
            n_prompt,
            n_ctx,
        )
    if any(text in lowered for text in OOM_TEXTS):
        return Failure(
            "out_of_memory",
            f"Ollama ran out of memory running {model}; a smaller context "
            "(/context size) or a smaller model needs less",
        )
    if status == 404 and "model" not in lowered:  # the route, not the model (gin's 404)
        return Failure(
            "server_error",
            f"Ollama at {host} has no such API path (HTTP 404: {message}); check OLLAMA_HOST "
            "or --host: a path in it (like /api) goes before every API path",
        )
    if status == 404 and "not found" in lowered:
        return Failure(
            "model_not_found",
            f"the model {model} is not installed on {host}; "
            f"run `ollama pull {model}` and try again",
        )
    if status == 503:
        return Failure("server_error", f"Ollama at {host} is busy ({message}); try again shortly")
    if status == 0:
        return Failure("stream_error", f"Ollama stopped the reply with an error: {message}")
    return Failure("server_error", f"Ollama at {host} answered HTTP {status}: {message}")


def unreachable(host: str) -> Failure:
    return Failure(
        "server_unreachable",
        f"cannot reach Ollama at {host}; start it with `ollama serve`, or point OLLAMA_HOST "
        "at the machine that runs it",
    )


def timed_out(host: str, seconds: float) -> Failure:
    return Failure(
        "timeout",
        f"Ollama at {host} sent nothing for {seconds:g} s; it may still be loading the model, "
        "so try again, or raise ollama.timeout in config.yaml",
    )


def reset(host: str) -> Failure:
    return Failure(
        "connection_reset",
        f"the connection to Ollama at {host} broke in the middle of the reply; try again",
    )


def malformed(host: str, what: str = "a line of the reply") -> Failure:
    """`what` the server sent could not be read (e.g. "its /api/tags answer")."""
    return Failure(
        "malformed_reply",
        f"Ollama at {host} sent {what} that ollm cannot read; try again, and update Ollama "
        "if it keeps happening",
    )


def implausible(host: str, what: str) -> Failure:
    """The server reported a figure no model can produce (`what`, in words)."""
    return Failure(
        "malformed_reply",
        f"Ollama at {host} reported {what}, which cannot be right, so the reply is not used; "
        "try again, and update Ollama if it keeps happening",
    )


def internal(host: str, error: BaseException) -> Failure:
    """ollm itself failed while handling the reply (a bug, not the server's fault)."""
    return Failure(
        "malformed_reply",
        f"ollm could not handle the reply from Ollama at {host} ({type(error).__name__}), "
        "a bug in ollm; try again",
    )


def version_at_least(version: str, wanted: tuple[int, ...]) -> bool:
    """`0.12.6` ≥ (0, 12, 6); unparseable versions count as old."""
    numbers = re.findall(r"\d+", version.split("-")[0])
    if not numbers:
        return False
    return tuple(int(n) for n in numbers[: len(wanted)]) >= wanted
