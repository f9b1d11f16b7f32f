"""What a probe returns, and how probes fail."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import msgspec


class DeviceMemory(msgspec.Struct, frozen=True, kw_only=True):
    """One memory device: a GPU, an Apple unified pool, or the host."""

    backend: str
    """nvml | nvidia-smi | amd-sysfs | amdsmi | rocm-smi | apple | host"""
    index: int
    name: str
    total_bytes: int
    free_bytes: int
    used_bytes: int
    unified: bool = False
    """The GPU draws on host memory (Apple, AMD APUs, GB10-class NVIDIA)."""
    exact: bool = True
    """False when a figure is an estimate (e.g. Apple's default working-set rule)."""
    uuid: str = ""

    @property
    def device(self) -> str:
        """A stable short name, e.g. `nvidia:0`, `amd:1`, `apple:0`, `host`."""
        family = {
            "nvml": "nvidia",
            "nvidia-smi": "nvidia",
            "amd-sysfs": "amd",
            "amdsmi": "amd",
            "rocm-smi": "amd",
        }.get(self.backend, self.backend)
        return "host" if family == "host" else f"{family}:{self.index}"


class ProbeUnavailable(Exception):
    """This source cannot report here; `str()` says why, in a few words."""


class Probe(Protocol):
    name: str

    def read(self) -> list[DeviceMemory]:
        """Read every device. Blocking (files, subprocesses, driver calls): call from a
        worker thread.

        Raises:
            ProbeUnavailable: this source does not work on this machine.
        """
        ...


Run = Callable[[Sequence[str], float], "subprocess.CompletedProcess[str]"]


def run_command(args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a probe command; a missing binary, a failure or a hang becomes `ProbeUnavailable`."""
    try:
        result = subprocess.run(
            list(args), capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise ProbeUnavailable(f"{args[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise ProbeUnavailable(f"{args[0]} did not answer within {timeout:g} s") from None
    except OSError as exc:
        raise ProbeUnavailable(f"{args[0]} could not run ({exc.strerror or exc})") from None
    if result.returncode != 0:
        first = (result.stderr or result.stdout).strip().splitlines()
        detail = first[0] if first else f"exit status {result.returncode}"
        raise ProbeUnavailable(f"{args[0]} failed: {detail}")
    return result


@dataclass(frozen=True)
class Reading:
    """A sample: the devices, which source gave them, and why earlier sources were passed over."""

    devices: tuple[DeviceMemory, ...]
    source: str
    skipped: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        text = f"memory from {self.source}"
        if self.skipped:
            text += " (" + "; ".join(f"{name}: {why}" for name, why in self.skipped) + ")"
        return text


class MemorySource(Protocol):
    """Anything that samples every device at once (a `ProbeChain`, or a fake in tests)."""

    def read(self) -> Reading:
        """Blocking: call from a worker thread."""
        ...


class Device(Protocol):
    """A device's memory as a probe read it or as the bus carries it (`MemorySampled`)."""

    @property
    def device(self) -> str: ...
    @property
    def free_bytes(self) -> int: ...


D = TypeVar("D", bound=Device)


def filling_first(devices: Iterable[D]) -> D | None:
    """The device that fills first: the GPU with the least free memory (GPUs split a model's
    layers, so its KV cache grows on every one of them), else the host."""
    listed = list(devices)
    pool = [d for d in listed if d.device != "host"] or listed
    return min(pool, key=lambda d: d.free_bytes, default=None)


def headroom(devices: Iterable[Device]) -> int:
    """Free memory of the device that fills first (0 when there is none)."""
    first = filling_first(devices)
    return first.free_bytes if first is not None else 0
