"""Identifiers, injected: reproducible from a seed so that a replay makes the same ones."""

from __future__ import annotations

import secrets
from typing import Protocol

from blake3 import blake3


class IdSource(Protocol):
    """Makes identifiers; one source per actor, so the order of other actors cannot change them."""

    def new_id(self) -> str:
        """A fresh identifier, unique within the run that owns this source."""
        ...

    def scoped(self, scope: str) -> IdSource:
        """An independent source for `scope` (an actor's name), derived from this one."""
        ...


def new_seed() -> str:
    """A random seed for a live run; it is recorded so that replay derives the same ids."""
    return secrets.token_hex(8)


class SeededIds:
    """Short hex ids: blake3(seed, scope, counter). Same seed and order, same ids."""

    def __init__(self, seed: str, scope: str = "", length: int = 12) -> None:
        self._seed = seed
        self._scope = scope
        self._length = length
        self._counter = 0

    def new_id(self) -> str:
        self._counter += 1
        material = f"{self._seed}\x00{self._scope}\x00{self._counter}".encode()
        return blake3(material).hexdigest(length=self._length // 2 + 1)[: self._length]

    def scoped(self, scope: str) -> SeededIds:
        return SeededIds(self._seed, f"{self._scope}/{scope}", self._length)


class SequentialIds:
    """Readable ids for tests: `a1`, `a2`, … per scope."""

    def __init__(self, prefix: str = "") -> None:
        self._prefix = prefix
        self._counter = 0

    def new_id(self) -> str:
        self._counter += 1
        return f"{self._prefix}{self._counter}"

    def scoped(self, scope: str) -> SequentialIds:
        return SequentialIds(f"{scope}-")
