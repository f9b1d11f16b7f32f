"""Each model's tokenizer on disk, under the user cache directory, keyed by the model's digest.

A file is the tokenizer's own `tokenizer.json` (Hugging Face `tokenizers`), written
atomically; a damaged or missing one is simply not there (the loader fetches the vocabulary
again). Files are read once per process and kept: the loader (a worker thread) and the token
counter share one instance.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from blake3 import blake3

from .. import vocabulary
from .atomic import StorageError, write_atomic

_UNSAFE = re.compile(r"[^0-9A-Za-z_-]")


class TokenizerCache:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._loaded: dict[str, vocabulary.Vocabulary] = {}

    def path(self, digest: str) -> Path:
        """The file for `digest` (`sha256:…` as Ollama writes it; anything else is made safe)."""
        return self.root / f"{_UNSAFE.sub('-', digest)[:100]}.json"

    def has(self, digest: str) -> bool:
        return bool(digest) and (digest in self._loaded or self.path(digest).is_file())

    def get(self, digest: str) -> vocabulary.Vocabulary | None:
        """The vocabulary cached for `digest`, or None when there is none (or it is damaged)."""
        if not digest:
            return None
        found = self._loaded.get(digest)
        if found is not None:
            return found
        try:
            tokenizer = vocabulary.from_json(self.path(digest).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, vocabulary.Unsupported):
            return None
        return self._loaded.setdefault(digest, vocabulary.Vocabulary(tokenizer))

    def refused(self, digest: str) -> str:
        """Why the vocabulary of `digest` could not be reproduced at an earlier start ("" if
        it was not refused)."""
        try:
            return self._refusal(digest).read_text(encoding="utf-8").strip()[:300]
        except (OSError, UnicodeDecodeError):
            return ""

    def refuse(self, digest: str, reason: str) -> None:
        """Remember that the vocabulary of `digest` cannot be reproduced (and why)."""
        self._write(self._refusal(digest), reason)

    def _refusal(self, digest: str) -> Path:
        return self.path(digest).with_suffix(".unsupported")

    def _write(self, path: Path, text: str) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            write_atomic(path, [text.encode()], durable=False)
        except (OSError, StorageError):
            pass

    def put(self, digest: str, tokenizer: Any) -> tuple[str, vocabulary.Vocabulary]:
        """Keep `tokenizer` for `digest`, on disk when it can be written (a cache: a failed
        write costs the next start a fetch, nothing else); returns the key it is kept under:
        `digest`, or without one (a server that gives none) the tokenizer's own content's."""
        text = vocabulary.to_json(tokenizer)
        key = digest or "content-" + blake3(text.encode()).hexdigest()
        kept = self._loaded.setdefault(key, vocabulary.Vocabulary(tokenizer))
        self._write(self.path(key), text)
        return key, kept
