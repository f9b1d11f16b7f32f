"""A real model behind the Ollama test server: llama.cpp (the cyllama bindings) on one GGUF.

`LlamaEngine` is the runner's side of `tests.fakes.ollama_server.OllamaTestServer`: it
renders the GGUF's own chat template (Jinja, as llama.cpp applies it), tokenizes with the
model's vocabulary, allocates a real KV cache per load and reads the allocation from
llama.cpp's own log lines (as current Ollama reads llama-server's), keeps the prompt cache
between requests as llama-server does (only the new suffix is evaluated;
`prompt_eval_count` still counts the whole prompt, as Ollama v0.30.1+ does), decodes
greedily on one thread, and shifts the context when generation fills it (Ollama launches
llama-server with `--context-shift`).

llama.cpp aborts the process on a batch larger than `n_batch` and fails on a batch past
`n_ctx`: every decode here is cut to `n_batch` and bounded by the context, so neither can
happen; the server still runs in its own process (`python -m tests.fakes.ollama_server
--gguf PATH`), so a crash there is a failed request, never a dead test run.
"""

from __future__ import annotations

import re
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread

from tests.fakes.ollama_server import Allocation, Card, Piece, Token

from .tiny_gguf import model_info

GGML_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 8}
MIB = 1024 * 1024
_KV = re.compile(r"llama_kv_cache: size =\s+([\d.]+) MiB")
_BUFFER = re.compile(r"(?:compute|output) buffer size =\s+([\d.]+) MiB")


class EngineLog:
    """llama.cpp's log lines (the bindings route every line to one process-wide callback)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, level: object, text: str) -> None:
        with self.lock:
            self.lines.append(text)

    def since(self, mark: int) -> list[str]:
        with self.lock:
            return self.lines[mark:]


@dataclass
class LlamaModel:
    """One installed model: the GGUF, its loaded weights and what Ollama would say of it."""

    name: str
    path: Path
    weights: Any
    template: str
    info: dict[str, Any]
    runner: Any = None
    cached: list[int] = field(default_factory=list)
    """The tokens the runner's KV cache holds now, position by position."""

    def card(self) -> Card:
        return Card(
            name=self.name,
            family=str(self.info.get("general.architecture", "")),
            context_length=int(self.weights.n_ctx_train),
            weights_bytes=self.path.stat().st_size,
            capabilities=("completion",),
            model_info=self.info,
            parameter_size=f"{self.weights.n_params / 1e6:.0f}M",
            add_bos=bool(self.weights.get_vocab().get_add_bos()),
            template=self.template,
            quantization=_quantization(self.info.get("general.file_type")),
        )


class LlamaEngine:
    """Runs the models on llama.cpp, one request at a time (the server serialises them)."""

    def __init__(
        self, gguf: Path, name: str, kv_type: str = "f16", *, vocabulary: bool = True
    ) -> None:
        """`vocabulary`: `/api/show` verbose gives the model's vocabulary (else, as for a
        model whose vocabulary ollm cannot use, the arrays stay empty)."""
        from cyllama.llama import llama_cpp as cy

        self.cy = cy
        self.log = EngineLog()
        cy.set_log_callback(self.log)
        self.kv_type = kv_type
        weights = cy.LlamaModel(path_model=str(gguf))
        self._models = {
            name: LlamaModel(
                name,
                gguf,
                weights,
                weights.get_default_chat_template(),
                model_info(gguf, verbose=vocabulary),
            )
        }
        self._jinja = _jinja_environment()

    @property
    def models(self) -> dict[str, Any]:
        return self._models

    def close(self) -> None:
        """Free the runners, then the weights (llama.cpp crashes when the order is reversed)."""
        for model in self._models.values():
            if model.runner is not None:
                model.runner.close()
                model.runner = None
            model.weights.close()

    # --- rendering and counting -----------------------------------------------------------

    def render_text(
        self, model: LlamaModel, messages: list[dict[str, Any]], tools: list[Any] | None = None
    ) -> str:
        """The prompt as text, rendered by the GGUF's own chat template."""
        vocab = model.weights.get_vocab()
        return str(
            self._jinja.from_string(model.template).render(
                messages=[
                    {"role": str(m.get("role", "")), "content": str(m.get("content", ""))}
                    for m in messages
                ],
                add_generation_prompt=True,
                bos_token=vocab.token_to_piece(vocab.token_bos(), special=True),
                eos_token=vocab.token_to_piece(vocab.token_eos(), special=True),
            )
        )

    def render(
        self, model: LlamaModel, messages: list[dict[str, Any]], tools: list[Any] | None
    ) -> list[Token]:
        vocab = model.weights.get_vocab()
        text = self.render_text(model, messages)
        return list(vocab.tokenize(text, add_special=True, parse_special=True))

    def count_text(self, model: LlamaModel, text: str) -> int:
        return len(model.weights.get_vocab().tokenize(text, add_special=False, parse_special=False))

    # --- the runner -----------------------------------------------------------------------

    def load(self, model: LlamaModel, num_ctx: int, options: dict[str, Any]) -> Allocation:
        cy = self.cy
        if model.runner is not None:
            model.runner.close()
            model.runner = None
        params = cy.LlamaContextParams()
        params.n_ctx = num_ctx
        params.n_batch = params.n_ubatch = int(options.get("num_batch") or 512)
        params.n_threads = params.n_threads_batch = 1  # two threads collapse on 2 busy cores
        params.type_k = params.type_v = GGML_TYPE[self.kv_type]
        params.flash_attn_type = -1  # llama-server's default, `--flash-attn auto`
        params.swa_full = False  # llama-server's default; Ollama passes no `--swa-full`
        mark = len(self.log.lines)
        model.runner = cy.LlamaContext(model.weights, params)
        model.cached = []
        lines = self.log.since(mark)
        kv = sum(float(m.group(1)) for line in lines if (m := _KV.search(line)))
        buffers = sum(float(m.group(1)) for line in lines if (m := _BUFFER.search(line)))
        return Allocation(
            context_length=int(model.runner.n_ctx),
            kv_bytes=round(kv * MIB),
            compute_bytes=round(buffers * MIB),
        )

    async def generate(
        self, model: LlamaModel, prompt: list[Token], messages: list[dict[str, Any]], limit: int
    ) -> AsyncIterator[Piece]:
        tokens = [int(t) for t in prompt]  # type: ignore[call-overload]
        await anyio.to_thread.run_sync(self._prefill, model, tokens)
        sampler = self.cy.LlamaSampler()
        sampler.add_greedy()
        vocab = model.weights.get_vocab()
        produced: list[int] = []
        shown = ""
        pending = 0
        try:
            while limit < 0 or len(produced) < limit:
                token = await anyio.to_thread.run_sync(self._step, model, sampler)
                if vocab.is_eog(token):
                    break
                produced.append(token)
                pending += 1
                text = vocab.detokenize(produced, remove_special=True, unparse_special=False)
                if text.endswith("\ufffd"):
                    continue  # a character split across tokens: wait for the rest
                yield Piece(text[len(shown) :], pending)
                shown, pending = text, 0
        finally:
            sampler.close()

    def _prefill(self, model: LlamaModel, tokens: list[int]) -> None:
        """Evaluate the prompt, reusing the cached prefix (at least one token is evaluated,
        for the logits the first sample needs)."""
        runner = model.runner
        same = 0
        for old, new in zip(model.cached, tokens, strict=False):
            if old != new:
                break
            same += 1
        same = min(same, len(tokens) - 1)
        runner.memory_seq_rm(0, same, -1)
        model.cached = model.cached[:same]
        step = int(runner.n_batch)
        for start in range(same, len(tokens), step):
            chunk = tokens[start : start + step]
            runner.decode(self.cy.llama_batch_get_one(chunk, start))
            model.cached.extend(chunk)

    def _step(self, model: LlamaModel, sampler: Any) -> int:
        """Sample the next token and feed it back, shifting the context first when it is full
        (llama-server's `--context-shift`: drop half of what follows the kept prefix)."""
        runner = model.runner
        token = int(sampler.sample(runner, -1))
        if model.weights.get_vocab().is_eog(token):
            return token
        n_past = len(model.cached)
        if n_past + 1 >= int(runner.n_ctx):
            keep = 4 + (1 if model.card().add_bos else 0)
            discard = (n_past - keep) // 2
            runner.memory_seq_rm(0, keep, keep + discard)
            runner.memory_seq_add(0, keep + discard, n_past, -discard)
            model.cached = model.cached[:keep] + model.cached[keep + discard :]
            n_past -= discard
        runner.decode(self.cy.llama_batch_get_one([token], n_past))
        model.cached.append(token)
        return token


def _jinja_environment() -> Any:
    """A sandboxed Jinja environment like the one llama.cpp's template engine emulates."""
    from cyllama._vendor.jinja2.exceptions import TemplateError
    from cyllama._vendor.jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> str:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env


def _quantization(file_type: object) -> str:
    """`general.file_type` as Ollama names it (3 → "Q4_1")."""
    import gguf

    try:
        return gguf.LlamaFileType(int(str(file_type))).name.removeprefix("MOSTLY_")
    except ValueError:
        return "unknown"
