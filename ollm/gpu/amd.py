"""AMD: sysfs `mem_info_vram_*` (no ROCm needed), then amdsmi, then `rocm-smi --json`."""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from ..memory import GiB, MiB
from .records import DeviceMemory, ProbeUnavailable, Run, run_command

AMD_VENDOR = "0x1002"


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


class AmdSysfsProbe:
    """`/sys/class/drm/card*/device/mem_info_*`: bytes, world-readable, from the amdgpu driver."""

    name = "amd-sysfs"

    def __init__(self, drm: Path = Path("/sys/class/drm")) -> None:
        self._drm = drm

    def read(self) -> list[DeviceMemory]:
        devices: list[DeviceMemory] = []
        cards = sorted(
            (p for p in self._drm.glob("card*") if re.fullmatch(r"card\d+", p.name)),
            key=lambda p: int(p.name[4:]),
        )
        for card in cards:
            device = card / "device"
            try:
                vendor = (device / "vendor").read_text().strip()
            except OSError:
                continue
            total = _read_int(device / "mem_info_vram_total")
            used = _read_int(device / "mem_info_vram_used")
            if vendor != AMD_VENDOR or total is None or used is None:
                continue
            devices.append(self._record(len(devices), card, device, total, used))
        if not devices:
            raise ProbeUnavailable("no AMD GPU in sysfs")
        return devices

    def _record(self, index: int, card: Path, device: Path, total: int, used: int) -> DeviceMemory:
        gtt_total = _read_int(device / "mem_info_gtt_total") or 0
        gtt_used = _read_int(device / "mem_info_gtt_used") or 0
        dedicated = (device / "mem_info_vram_vendor").exists() or (device / "board_info").exists()
        integrated = (
            not dedicated and total <= 4 * GiB and gtt_total >= 8 * GiB and gtt_total >= 4 * total
        )
        if integrated:
            # An APU's VRAM is only the BIOS carve-out; it really allocates from GTT.
            total_all = total + gtt_total
            free = max(0, total_all - used - gtt_used)
            return DeviceMemory(
                backend="amd-sysfs",
                index=index,
                name=f"AMD integrated GPU ({card.name})",
                total_bytes=total_all,
                free_bytes=free,
                used_bytes=total_all - free,
                unified=True,
            )
        return DeviceMemory(
            backend="amd-sysfs",
            index=index,
            name=f"AMD GPU ({card.name})",
            total_bytes=total,
            free_bytes=max(0, total - used),
            used_bytes=used,
        )


def rocm_library(env: Mapping[str, str]) -> Path | None:
    """Where ROCm's `libamd_smi.so` is, searched as amdsmi searches: `$ROCM_HOME/lib`,
    `$ROCM_PATH/lib`, the `LD_LIBRARY_PATH` folders, then `/opt/rocm/lib`."""
    folders = [Path(env[key], "lib") for key in ("ROCM_HOME", "ROCM_PATH") if env.get(key)]
    folders += [Path(p) for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    folders.append(Path("/opt/rocm/lib"))
    for folder in folders:
        if (folder / "libamd_smi.so").exists():
            return folder / "libamd_smi.so"
    return None


def _import_amdsmi() -> ModuleType:
    # Without ROCm's library, `import amdsmi` prints to stdout and raises KeyError. Look for the
    # library first instead of redirecting stdout around the import: the probe runs in a worker
    # thread and `sys.stdout` is process-wide, so a redirect there can capture the terminal
    # from under the REPL as it starts (it did: the prompt then never drew).
    if importlib.util.find_spec("amdsmi") is None:
        raise ProbeUnavailable("amdsmi is not installed")
    if rocm_library(os.environ) is None:
        raise ProbeUnavailable("amdsmi is not usable here (no ROCm library)")
    import amdsmi  # type: ignore[import-not-found]

    return amdsmi  # type: ignore[no-any-return]


class AmdSmiProbe:
    """ROCm's amdsmi bindings (needs `libamd_smi.so`)."""

    name = "amdsmi"

    def __init__(self, loader: Callable[[], Any] = _import_amdsmi) -> None:
        self._loader = loader
        self._lib: Any = None

    def read(self) -> list[DeviceMemory]:
        if self._lib is None:
            try:
                lib = self._loader()
                lib.amdsmi_init()
            except ProbeUnavailable:
                raise
            except Exception as exc:
                raise ProbeUnavailable("amdsmi is not usable here (no ROCm library)") from exc
            self._lib = lib
        lib = self._lib
        devices = []
        try:
            handles = lib.amdsmi_get_processor_handles()
            vram = lib.AmdSmiMemoryType.VRAM
            for index, handle in enumerate(handles):
                total = int(lib.amdsmi_get_gpu_memory_total(handle, vram))
                used = int(lib.amdsmi_get_gpu_memory_usage(handle, vram))
                devices.append(
                    DeviceMemory(
                        backend="amdsmi",
                        index=index,
                        name=f"AMD GPU {index}",
                        total_bytes=total,
                        free_bytes=max(0, total - used),
                        used_bytes=used,
                    )
                )
        except Exception as exc:
            raise ProbeUnavailable(f"amdsmi failed ({exc})") from exc
        if not devices:
            raise ProbeUnavailable("amdsmi sees no GPU")
        return devices


class RocmSmiProbe:
    """`rocm-smi --showmeminfo vram --json`: string values in bytes, keyed `card<N>`."""

    name = "rocm-smi"

    def __init__(self, run: Run = run_command, executable: str = "rocm-smi") -> None:
        self._run = run
        self._exe = executable

    def read(self) -> list[DeviceMemory]:
        result = self._run([self._exe, "--showmeminfo", "vram", "--json"], 5.0)
        return parse_rocm_smi(result.stdout)


def parse_rocm_smi(text: str) -> list[DeviceMemory]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ProbeUnavailable("rocm-smi printed something that is not JSON") from exc
    devices = []
    if isinstance(data, dict):
        for key in sorted(k for k in data if re.fullmatch(r"card\d+", k)):
            fields = data[key] if isinstance(data[key], dict) else {}
            try:
                total = int(fields["VRAM Total Memory (B)"])
                used = int(fields["VRAM Total Used Memory (B)"])
            except (KeyError, TypeError, ValueError):
                continue
            devices.append(
                DeviceMemory(
                    backend="rocm-smi",
                    index=int(key[4:]),
                    name=f"AMD GPU ({key})",
                    total_bytes=total,
                    free_bytes=max(0, total - used),
                    used_bytes=used,
                )
            )
    if not devices:
        raise ProbeUnavailable("rocm-smi reported no VRAM")
    return devices


__all__ = ("AmdSmiProbe", "AmdSysfsProbe", "MiB", "RocmSmiProbe", "parse_rocm_smi")
