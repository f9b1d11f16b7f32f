"""The host's memory: psutil `available`, clamped by cgroup v1 and v2 limits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from .records import DeviceMemory

V1_UNLIMITED = 1 << 62
"""cgroup v1 reports "no limit" as a huge page-aligned number (0x7ffffffffffff000)."""


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _stat(text: str | None, key: str) -> int:
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return _int(value) or 0
    return 0


def cgroup_room(root: Path, proc_cgroup: Path) -> tuple[int, int] | None:
    """(limit, room left) of the tightest memory cgroup this process is in, else None.

    Room = limit − (usage − inactive file cache), as the kubelet counts it.
    """
    lines = (_read(proc_cgroup) or "").splitlines()
    best: tuple[int, int] | None = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        rel = rel.lstrip("/")
        if controllers == "":
            found = _v2(root, rel)
        elif "memory" in controllers.split(","):
            found = _v1(root / "memory", rel)
        else:
            continue
        if found and (best is None or found[1] < best[1]):
            best = found
    return best


def _v2(root: Path, rel: str) -> tuple[int, int] | None:
    here = root / rel if rel else root
    best: tuple[int, int] | None = None
    while True:
        limit_text = _read(here / "memory.max")
        if limit_text is not None and limit_text.strip() != "max":
            limit, usage = _int(limit_text), _int(_read(here / "memory.current"))
            if limit is not None and usage is not None:
                cache = _stat(_read(here / "memory.stat"), "inactive_file")
                room = max(0, limit - max(0, usage - cache))
                if best is None or room < best[1]:
                    best = (limit, room)
        if here == root or root not in here.parents:
            return best
        here = here.parent


def _v1(base: Path, rel: str) -> tuple[int, int] | None:
    for here in (base / rel, base):
        limit = _int(_read(here / "memory.limit_in_bytes"))
        usage = _int(_read(here / "memory.usage_in_bytes"))
        if limit is None or usage is None:
            continue
        if limit >= V1_UNLIMITED:
            return None
        cache = _stat(_read(here / "memory.stat"), "total_inactive_file")
        return limit, max(0, limit - max(0, usage - cache))
    return None


class HostProbe:
    name = "host"

    def __init__(
        self,
        virtual_memory: Callable[[], Any] = psutil.virtual_memory,
        cgroup_root: Path = Path("/sys/fs/cgroup"),
        proc_cgroup: Path = Path("/proc/self/cgroup"),
    ) -> None:
        self._vm = virtual_memory
        self._root = cgroup_root
        self._proc = proc_cgroup

    def read(self) -> list[DeviceMemory]:
        vm = self._vm()
        total, available = int(vm.total), int(vm.available)
        name = "host memory"
        room = cgroup_room(self._root, self._proc)
        if room is not None:
            limit, left = room
            if limit < total or left < available:
                total, available = min(total, limit), min(available, left)
                name = "host memory (limited by cgroup)"
        return [
            DeviceMemory(
                backend="host",
                index=0,
                name=name,
                total_bytes=total,
                free_bytes=available,
                used_bytes=max(0, total - available),
                unified=True,
            )
        ]
