"""Apple Silicon: unified memory; the GPU's budget is Metal's working set."""

from __future__ import annotations

import platform
from collections.abc import Callable
from typing import Any

import psutil

from ..memory import GiB, MiB
from .records import DeviceMemory, ProbeUnavailable, run_command


def sysctl(name: str) -> str | None:
    try:
        return run_command(["sysctl", "-n", name], 2.0).stdout.strip()
    except ProbeUnavailable:
        return None


def working_set(memsize: int, wired_limit_mb: int) -> tuple[int, bool]:
    """Metal's recommended working set: the wired limit when set (exact), else the default
    rule (about 2/3 of RAM up to 36 GiB, 3/4 above; an estimate)."""
    if wired_limit_mb > 0:
        return wired_limit_mb * MiB, True
    fraction = 0.67 if memsize <= 36 * GiB else 0.75
    return int(memsize * fraction), False


class AppleProbe:
    name = "apple"

    def __init__(
        self,
        read_sysctl: Callable[[str], str | None] = sysctl,
        system: Callable[[], str] = platform.system,
        machine: Callable[[], str] = platform.machine,
        virtual_memory: Callable[[], Any] = psutil.virtual_memory,
    ) -> None:
        self._sysctl = read_sysctl
        self._system = system
        self._machine = machine
        self._vm = virtual_memory

    def read(self) -> list[DeviceMemory]:
        if self._system() != "Darwin" or self._machine() != "arm64":
            raise ProbeUnavailable("not Apple Silicon")
        try:
            memsize = int(self._sysctl("hw.memsize") or "")
        except ValueError:
            raise ProbeUnavailable("sysctl hw.memsize is unreadable") from None
        try:
            wired = int(self._sysctl("iogpu.wired_limit_mb") or "0")
        except ValueError:
            wired = 0
        budget, exact = working_set(memsize, wired)
        # GPU allocations come out of the same RAM: never promise more than is available.
        free = max(0, min(budget, int(self._vm().available)))
        return [
            DeviceMemory(
                backend="apple",
                index=0,
                name="Apple Silicon (unified memory)",
                total_bytes=budget,
                free_bytes=free,
                used_bytes=budget - free,
                unified=True,
                exact=exact,
            )
        ]
