"""NVIDIA: NVML through nvidia-ml-py (module `pynvml`), else the `nvidia-smi` CSV query."""

from __future__ import annotations

import csv
import io
from types import ModuleType
from typing import Any

import psutil

from ..memory import MiB
from .records import DeviceMemory, ProbeUnavailable, Run, run_command


def _import_pynvml() -> ModuleType:
    # From nvidia-ml-py, NVIDIA's own bindings (the `pynvml` module). No warning filter is
    # touched here: this runs in a worker thread and the filters are process-wide.
    import pynvml

    module: ModuleType = pynvml
    return module


class NvmlProbe:
    """NVML, initialised once per process; memory info v2 where the driver has it."""

    name = "nvml"

    def __init__(self, nvml: ModuleType | None = None) -> None:
        self._nvml = nvml
        self._ready = False

    def _lib(self) -> Any:
        if self._nvml is None:
            try:
                self._nvml = _import_pynvml()
            except ImportError as exc:
                raise ProbeUnavailable("nvidia-ml-py is not installed") from exc
        nvml = self._nvml
        if not self._ready:
            try:
                nvml.nvmlInit()
            except nvml.NVMLError as exc:
                raise ProbeUnavailable(_init_reason(nvml, exc)) from exc
            self._ready = True
        return nvml

    def read(self) -> list[DeviceMemory]:
        nvml = self._lib()
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError as exc:
            raise ProbeUnavailable(f"NVML cannot count devices ({exc})") from exc
        devices = []
        for index in range(count):
            try:
                devices.append(self._device(nvml, index))
            except nvml.NVMLError:
                continue  # a device that fell off the bus; keep the others
        if not devices:
            raise ProbeUnavailable("NVML sees no usable GPU")
        return devices

    def _device(self, nvml: Any, index: int) -> DeviceMemory:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        name = _text(nvml.nvmlDeviceGetName(handle))
        uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        try:
            memory = nvml.nvmlDeviceGetMemoryInfo(handle, version=nvml.nvmlMemory_v2)
        except (nvml.NVMLError_FunctionNotFound, TypeError, AttributeError):
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        except nvml.NVMLError_NotSupported:
            memory = None
        if memory is None or int(memory.total) == 0:
            # Unified-memory parts (GB10, Jetson) report no framebuffer of their own.
            raise nvml.NVMLError_NotSupported()
        total, free = int(memory.total), int(memory.free)
        return DeviceMemory(
            backend="nvml",
            index=index,
            name=name,
            total_bytes=total,
            free_bytes=free,
            used_bytes=int(memory.used),
            uuid=uuid,
        )

    def processes(self) -> dict[int, int]:
        """GPU memory per process id, summed over devices (None figures, as on WSL, skipped)."""
        nvml = self._lib()
        used: dict[int, int] = {}
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            for getter in (
                nvml.nvmlDeviceGetComputeRunningProcesses,
                nvml.nvmlDeviceGetGraphicsRunningProcesses,
            ):
                try:
                    entries = getter(handle)
                except Exception:  # NVMLError, or NVMLLibraryMismatchError (not one)
                    continue
                for entry in entries:
                    amount = getattr(entry, "usedGpuMemory", None)
                    if isinstance(amount, int):
                        used[entry.pid] = max(used.get(entry.pid, 0), amount)
        return used


def is_ollama_runner(name: str, cmdline: list[str]) -> bool:
    """The process that holds a model, by Ollama era: `ollama_llama_server` (≤ 0.5.1),
    `ollama runner` (0.5.2–0.29), `llama-server` (≥ 0.30)."""
    base = name.rsplit("/", 1)[-1]
    if base in ("ollama_llama_server", "llama-server"):
        return True
    return base == "ollama" and "runner" in cmdline[1:2]


def ollama_runner_bytes(per_process: dict[int, int]) -> int:
    """GPU memory held by Ollama's runner processes (host PIDs; unknown ones are skipped)."""
    total = 0
    for pid, used in per_process.items():
        try:
            process = psutil.Process(pid)
            name, cmdline = process.name(), process.cmdline()
        except (psutil.Error, OSError):
            continue  # gone since NVML listed it, or not ours to read
        if is_ollama_runner(name, cmdline):
            total += used
    return total


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _init_reason(nvml: Any, exc: Exception) -> str:
    if isinstance(exc, getattr(nvml, "NVMLError_LibraryNotFound", ())):
        return "no NVIDIA driver library"
    if isinstance(exc, getattr(nvml, "NVMLError_DriverNotLoaded", ())):
        return "the NVIDIA driver is not loaded"
    if isinstance(exc, getattr(nvml, "NVMLError_LibRmVersionMismatch", ())):
        return "the NVIDIA driver was updated without a reboot"
    return f"NVML failed to start ({exc})"


QUERY = "--query-gpu=index,uuid,name,memory.total,memory.used,memory.free"


class NvidiaSmiProbe:
    """The `nvidia-smi` CSV query (MiB); slower (a process per sample) but driver-independent."""

    name = "nvidia-smi"

    def __init__(
        self, run: Run = run_command, executable: str = "nvidia-smi", timeout: float = 5.0
    ) -> None:
        self._run = run
        self._exe = executable
        self._timeout = timeout

    def read(self) -> list[DeviceMemory]:
        result = self._run([self._exe, QUERY, "--format=csv,noheader,nounits"], self._timeout)
        return parse_nvidia_smi(result.stdout)


def parse_nvidia_smi(text: str) -> list[DeviceMemory]:
    devices = []
    for row in csv.reader(io.StringIO(text)):
        cells = [c.strip() for c in row]
        if len(cells) < 6:
            continue
        index, uuid, name, total, used, free = cells[:6]
        try:
            devices.append(
                DeviceMemory(
                    backend="nvidia-smi",
                    index=int(index),
                    name=name,
                    total_bytes=int(float(total)) * MiB,
                    free_bytes=int(float(free)) * MiB,
                    used_bytes=int(float(used)) * MiB,
                    uuid=uuid,
                )
            )
        except ValueError:
            continue  # `[N/A]` / `[Not Supported]`: no framebuffer figures for this device
    if not devices:
        raise ProbeUnavailable("nvidia-smi reported no GPU memory")
    return devices
