"""The vocabulary loader: each selected model's own tokenizer, off the start-up path.

On `ModelSelected` it looks in the user cache for the model's digest; on a miss it asks
Ollama for the whole vocabulary (`/api/show` with `verbose`, megabytes) and builds the
tokenizer in a worker thread, then caches it. A vocabulary ollm cannot reproduce is
remembered per digest too, so it is not fetched again at every start. Either way it says
so on the bus (`VocabularyLoaded` or `VocabularyUnavailable`), and the session sends
nothing for the model before it has.

A boundary actor: what it publishes are inputs (a replay reads the tokenizer from the cache).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread

from actors import Actor, Context

from .. import vocabulary
from ..events import ModelSelected, VocabularyLoaded, VocabularyUnavailable
from ..storage.tokenizer_cache import TokenizerCache

Show = Callable[[str], Awaitable[dict[str, Any]]]
"""A model's `model_info` with its vocabulary (`/api/show` verbose).

Raises an exception whose `str()` is one sentence when the server cannot say."""


class VocabularyLoaderActor(Actor[ModelSelected]):
    accepts = (ModelSelected,)

    def __init__(self, show: Show, cache: TokenizerCache) -> None:
        self.show = show
        self.cache = cache

    async def handle(self, event: ModelSelected, ctx: Context) -> None:
        if event.vocabulary:
            ctx.start_soon(self._load, event, ctx)

    async def _load(self, selected: ModelSelected, ctx: Context) -> None:
        model, digest = selected.model, selected.digest
        try:
            loaded = await self._tokenizer(model, digest)
        except Exception as exc:  # unsupported, or the server's failure: one sentence each
            await ctx.publish(VocabularyUnavailable(model=model, reason=str(exc)))
            return
        found, key, cached = loaded
        await ctx.publish(
            VocabularyLoaded(
                model=model,
                digest=key,
                tokens=vocabulary.vocabulary_size(found.tokenizer),
                cached=cached,
            )
        )

    async def _tokenizer(self, model: str, digest: str) -> tuple[vocabulary.Vocabulary, str, bool]:
        """(the vocabulary, its cache key, whether it came from the cache).

        Raises:
            Unsupported: the vocabulary cannot be reproduced (now or at an earlier start).
        """
        if digest:
            found = await anyio.to_thread.run_sync(self.cache.get, digest)
            if found is not None:
                return found, digest, True
            refused = await anyio.to_thread.run_sync(self.cache.refused, digest)
            if refused:
                raise vocabulary.Unsupported(refused)
        info = await self.show(model)
        try:
            tokenizer = await anyio.to_thread.run_sync(_build, info)
        except vocabulary.Unsupported as exc:
            if digest:
                await anyio.to_thread.run_sync(self.cache.refuse, digest, str(exc))
            raise
        key, kept = await anyio.to_thread.run_sync(self.cache.put, digest, tokenizer)
        return kept, key, False


def _build(info: dict[str, Any]) -> Any:
    """The tokenizer, or `Unsupported` in one sentence, whatever the server sent."""
    try:
        return vocabulary.build_tokenizer(info)
    except vocabulary.Unsupported:
        raise
    except Exception as exc:  # a vocabulary of the wrong shape (not strings, bad merges)
        raise vocabulary.Unsupported("the vocabulary Ollama sent for it cannot be read") from exc
