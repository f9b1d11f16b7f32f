"""Probe in order of trust and keep to the first source that works."""

from __future__ import annotations

from collections.abc import Sequence

from .amd import AmdSmiProbe, AmdSysfsProbe, RocmSmiProbe
from .apple import AppleProbe
from .host import HostProbe
from .nvidia import NvidiaSmiProbe, NvmlProbe
from .records import Probe, ProbeUnavailable, Reading


def default_probes() -> list[Probe]:
    """NVIDIA (NVML, nvidia-smi), AMD (sysfs, amdsmi, rocm-smi), Apple, then the host."""
    return [
        NvmlProbe(),
        NvidiaSmiProbe(),
        AmdSysfsProbe(),
        AmdSmiProbe(),
        RocmSmiProbe(),
        AppleProbe(),
        HostProbe(),
    ]


class ProbeChain:
    """Reads through the first probe that works, remembering it; if it stops working, falls
    back down the list and says why (`Reading.skipped`)."""

    def __init__(self, probes: Sequence[Probe] | None = None) -> None:
        self.probes = list(probes) if probes is not None else default_probes()
        self._current: int | None = None
        self._skipped: tuple[tuple[str, str], ...] = ()

    def read(self) -> Reading:
        """Blocking: call from a worker thread."""
        start = self._current or 0
        skipped = list(self._skipped[:start])
        for position in range(start, len(self.probes)):
            probe = self.probes[position]
            try:
                devices = probe.read()
            except ProbeUnavailable as exc:
                skipped.append((probe.name, str(exc)))
                continue
            self._current, self._skipped = position, tuple(skipped)
            return Reading(devices=tuple(devices), source=probe.name, skipped=tuple(skipped))
        self._current = None
        return Reading(devices=(), source="none", skipped=tuple(skipped))
