"""Every backend against fakes at the library level: a fake pynvml module, fake sysfs and
cgroup trees, fake nvidia-smi / rocm-smi programs on PATH (outputs in the real formats)."""

from __future__ import annotations

import io
import os
import stat
import sys
from collections import namedtuple
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest

from ollm.gpu.amd import AmdSmiProbe, AmdSysfsProbe, RocmSmiProbe, rocm_library
from ollm.gpu.apple import AppleProbe
from ollm.gpu.chain import ProbeChain
from ollm.gpu.host import HostProbe
from ollm.gpu.nvidia import NvidiaSmiProbe, NvmlProbe
from ollm.gpu.records import ProbeUnavailable, headroom
from ollm.memory import GiB, MiB

# --- NVIDIA: NVML -----------------------------------------------------------------------------

Mem1 = namedtuple("Mem1", "total free used")
Mem2 = namedtuple("Mem2", "version total reserved free used")
Proc = namedtuple("Proc", "pid usedGpuMemory")


def fake_nvml(gpus, *, v2=True, init_error=None, processes=None):
    """A stand-in for the pynvml module, with the real exception classes."""

    def init():
        if init_error:
            raise init_error

    def memory(handle, version=None):
        gpu = gpus[handle]
        if gpu.get("unsupported"):
            raise pynvml.NVMLError_NotSupported()
        if version is not None:
            if not v2:
                raise pynvml.NVMLError_FunctionNotFound()
            return Mem2(0x02000028, gpu["total"], gpu["reserved"], gpu["free"], gpu["used"])
        return Mem1(gpu["total"], gpu["free"], gpu["used"] + gpu["reserved"])

    return SimpleNamespace(
        NVMLError=pynvml.NVMLError,
        NVMLError_FunctionNotFound=pynvml.NVMLError_FunctionNotFound,
        NVMLError_NotSupported=pynvml.NVMLError_NotSupported,
        NVMLError_LibraryNotFound=pynvml.NVMLError_LibraryNotFound,
        NVMLError_DriverNotLoaded=pynvml.NVMLError_DriverNotLoaded,
        nvmlMemory_v2=0x02000028,
        nvmlInit=init,
        nvmlDeviceGetCount=lambda: len(gpus),
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetName=lambda h: gpus[h]["name"],
        nvmlDeviceGetUUID=lambda h: f"GPU-{h:08d}",
        nvmlDeviceGetMemoryInfo=memory,
        nvmlDeviceGetComputeRunningProcesses=lambda h: (processes or {}).get(h, []),
        nvmlDeviceGetGraphicsRunningProcesses=lambda h: [],
    )


H100: dict[str, Any] = {
    "name": "NVIDIA H100 80GB HBM3",
    "total": 85_520_809_984,
    "reserved": 553_648_128,
    "free": 84_420_018_176,
    "used": 547_143_680,
}
RTX: dict[str, Any] = {
    "name": "NVIDIA GeForce RTX 4090",
    "total": 25_757_220_864,
    "reserved": 333_447_168,
    "free": 3_221_225_472,
    "used": 22_202_548_224,
}


def test_nvml_reports_every_gpu_in_exact_bytes_with_memory_info_v2():
    probe = NvmlProbe(fake_nvml([H100, RTX]))
    devices = probe.read()
    assert [d.device for d in devices] == ["nvidia:0", "nvidia:1"]
    assert (devices[0].total_bytes, devices[0].free_bytes, devices[0].used_bytes) == (
        85_520_809_984,
        84_420_018_176,
        547_143_680,
    )
    assert devices[1].name == "NVIDIA GeForce RTX 4090"
    assert headroom(devices) == 3_221_225_472, "the device that fills first"


def test_nvml_without_v2_falls_back_to_v1_with_the_same_free():
    devices = NvmlProbe(fake_nvml([H100], v2=False)).read()
    assert devices[0].free_bytes == H100["free"]
    assert devices[0].used_bytes == H100["used"] + H100["reserved"], "v1 lumps reserved in"


def test_nvml_without_a_driver_is_unavailable_with_a_reason():
    probe = NvmlProbe(fake_nvml([], init_error=pynvml.NVMLError_LibraryNotFound()))
    with pytest.raises(ProbeUnavailable, match="no NVIDIA driver library"):
        probe.read()
    probe = NvmlProbe(fake_nvml([], init_error=pynvml.NVMLError_DriverNotLoaded()))
    with pytest.raises(ProbeUnavailable, match="driver is not loaded"):
        probe.read()


def test_nvml_unified_memory_parts_are_passed_over():
    with pytest.raises(ProbeUnavailable, match="no usable GPU"):
        NvmlProbe(fake_nvml([{**H100, "unsupported": True}])).read()


def test_nvml_attributes_memory_to_processes_and_skips_unknown_figures():
    probe = NvmlProbe(fake_nvml([H100], processes={0: [Proc(4242, 6_000_000_000), Proc(77, None)]}))
    assert probe.processes() == {4242: 6_000_000_000}


def test_the_real_pynvml_on_a_machine_without_a_gpu_is_unavailable_not_an_error():
    if Path("/proc/driver/nvidia").exists():
        pytest.skip("this machine has an NVIDIA driver")
    with pytest.raises(ProbeUnavailable):
        NvmlProbe().read()


# --- NVIDIA: nvidia-smi -------------------------------------------------------------------------


def fake_program(directory: Path, name: str, script: str) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


SMI_TWO = "0, GPU-2f0d8a2c, NVIDIA H100 80GB HBM3, 81559, 522, 80508\n1, GPU-77a1, NVIDIA A10, 23028, 20000, 2617\n"


def test_nvidia_smi_csv_in_mib_becomes_exact_bytes(tmp_path, monkeypatch):
    fake_program(tmp_path, "nvidia-smi", f"printf '{SMI_TWO}'\n")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    devices = NvidiaSmiProbe().read()
    assert [(d.device, d.total_bytes, d.free_bytes) for d in devices] == [
        ("nvidia:0", 81559 * MiB, 80508 * MiB),
        ("nvidia:1", 23028 * MiB, 2617 * MiB),
    ]


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        ("printf '0, GPU-1, NVIDIA GB10, [N/A], [N/A], [N/A]\\n'\n", "reported no GPU memory"),
        (
            "echo 'NVIDIA-SMI has failed because it couldn'\\''t communicate with the NVIDIA driver.'; exit 9\n",
            "failed: NVIDIA-SMI has failed",
        ),
        ("sleep 5\n", "did not answer within"),
    ],
)
def test_a_broken_nvidia_smi_is_unavailable_with_a_reason(tmp_path, script, reason):
    program = fake_program(tmp_path, "nvidia-smi", script)
    probe = NvidiaSmiProbe(executable=str(program), timeout=0.3)
    with pytest.raises(ProbeUnavailable, match=reason):
        probe.read()


def test_a_missing_nvidia_smi_says_so(tmp_path):
    with pytest.raises(ProbeUnavailable, match="is not installed"):
        NvidiaSmiProbe(executable=str(tmp_path / "nvidia-smi")).read()


# --- AMD ------------------------------------------------------------------------------------------


def card(root: Path, name: str, files: dict[str, str]) -> None:
    device = root / name / "device"
    device.mkdir(parents=True)
    for file, text in files.items():
        (device / file).write_text(text)


def test_amd_sysfs_reads_dgpus_and_apus_and_skips_the_rest(tmp_path):
    card(tmp_path, "card0", {"vendor": "0x10de\n"})  # NVIDIA: no mem_info files
    card(
        tmp_path,
        "card1",
        {
            "vendor": "0x1002\n",
            "mem_info_vram_total": "17163091968\n",
            "mem_info_vram_used": "1073741824\n",
            "board_info": "x",
        },
    )
    card(
        tmp_path,
        "card2",
        {
            "vendor": "0x1002\n",
            "mem_info_vram_total": str(512 * MiB),
            "mem_info_vram_used": str(100 * MiB),
            "mem_info_gtt_total": str(16 * GiB),
            "mem_info_gtt_used": str(GiB),
        },
    )
    card(
        tmp_path,
        "card3",
        {"vendor": "0x1002\n", "mem_info_vram_total": "garbage", "mem_info_vram_used": "1"},
    )
    (tmp_path / "card1-DP-1").mkdir()
    devices = AmdSysfsProbe(tmp_path).read()
    assert [(d.device, d.total_bytes, d.free_bytes, d.unified) for d in devices] == [
        ("amd:0", 17163091968, 17163091968 - 1073741824, False),
        ("amd:1", 512 * MiB + 16 * GiB, 512 * MiB + 16 * GiB - 100 * MiB - GiB, True),
    ]


def test_amd_sysfs_without_amd_cards_is_unavailable(tmp_path):
    card(tmp_path, "card0", {"vendor": "0x8086\n"})
    with pytest.raises(ProbeUnavailable, match="no AMD GPU"):
        AmdSysfsProbe(tmp_path).read()


def test_amdsmi_stub_and_its_real_failure_shape():
    class Kind:
        VRAM = "vram"

    lib = SimpleNamespace(
        amdsmi_init=lambda: None,
        amdsmi_get_processor_handles=lambda: ["h0"],
        AmdSmiMemoryType=Kind,
        amdsmi_get_gpu_memory_total=lambda h, kind: 25753026560,
        amdsmi_get_gpu_memory_usage=lambda h, kind: 7516192768,
    )
    devices = AmdSmiProbe(lambda: lib).read()
    assert (devices[0].total_bytes, devices[0].free_bytes) == (
        25753026560,
        25753026560 - 7516192768,
    )

    def broken():
        raise KeyError("libamd_smi.so")

    with pytest.raises(ProbeUnavailable, match="no ROCm library"):
        AmdSmiProbe(broken).read()


def test_rocm_library_is_searched_where_amdsmi_searches(tmp_path):
    assert rocm_library({"ROCM_PATH": str(tmp_path)}) in (None, Path("/opt/rocm/lib/libamd_smi.so"))
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libamd_smi.so").write_bytes(b"")
    assert rocm_library({"ROCM_PATH": str(tmp_path)}) == tmp_path / "lib" / "libamd_smi.so"
    assert rocm_library({"LD_LIBRARY_PATH": f"/nowhere:{tmp_path / 'lib'}"}) == (
        tmp_path / "lib" / "libamd_smi.so"
    )


def test_the_amdsmi_probe_never_swaps_the_process_stdout(monkeypatch):
    # It runs in a worker thread: a redirect of sys.stdout there once captured the REPL's
    # terminal as it started. A line tracer checks sys.stdout at every line the probe runs.
    sentinel = io.StringIO()
    monkeypatch.setattr(sys, "stdout", sentinel)
    swapped: list[str] = []

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if sys.stdout is not sentinel:
            swapped.append(f"{frame.f_code.co_filename}:{frame.f_lineno}")
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        with pytest.raises(ProbeUnavailable):
            AmdSmiProbe().read()
    finally:
        sys.settrace(previous)
    assert swapped == []


ROCM_JSON = '{"card0": {"VRAM Total Memory (B)": "25753026560", "VRAM Total Used Memory (B)": "1016397824"}}'


def test_rocm_smi_json_in_bytes(tmp_path, monkeypatch):
    fake_program(tmp_path, "rocm-smi", f"echo '{ROCM_JSON}'\n")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    devices = RocmSmiProbe().read()
    assert (devices[0].device, devices[0].total_bytes, devices[0].used_bytes) == (
        "amd:0",
        25753026560,
        1016397824,
    )
    fake_program(
        tmp_path, "rocm-smi", "echo 'WARNING: AMD GPU device(s) is/are in a low-power state'\n"
    )
    with pytest.raises(ProbeUnavailable, match="not JSON"):
        RocmSmiProbe().read()


# --- Apple --------------------------------------------------------------------------------------

VM = namedtuple("VM", "total available")


@pytest.mark.parametrize(
    ("memsize", "wired", "budget", "exact"),
    [
        (16 * GiB, "0", int(16 * GiB * 0.67), False),
        (128 * GiB, "0", int(128 * GiB * 0.75), False),
        (128 * GiB, "114688", 114688 * MiB, True),
    ],
)
def test_apple_silicon_budget_is_metals_working_set(memsize, wired, budget, exact):
    values = {"hw.memsize": str(memsize), "iogpu.wired_limit_mb": wired}
    probe = AppleProbe(
        read_sysctl=values.get,
        system=lambda: "Darwin",
        machine=lambda: "arm64",
        virtual_memory=lambda: VM(memsize, memsize // 2),
    )
    (device,) = probe.read()
    assert (device.total_bytes, device.unified, device.exact) == (budget, True, exact)
    assert device.free_bytes == min(budget, memsize // 2)


def test_apple_probe_elsewhere_is_unavailable():
    with pytest.raises(ProbeUnavailable, match="not Apple Silicon"):
        AppleProbe(system=lambda: "Linux").read()


# --- host and cgroups -------------------------------------------------------------------------


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_host_memory_is_psutil_available_without_a_cgroup_limit(tmp_path):
    write(tmp_path / "proc", "0::/\n")
    write(tmp_path / "cg" / "memory.max", "max\n")
    (device,) = HostProbe(lambda: VM(32 * GiB, 20 * GiB), tmp_path / "cg", tmp_path / "proc").read()
    assert (device.device, device.total_bytes, device.free_bytes) == ("host", 32 * GiB, 20 * GiB)


def test_cgroup_v2_limits_clamp_host_memory_with_the_tightest_ancestor(tmp_path):
    root = tmp_path / "cg"
    write(tmp_path / "proc", "0::/outer/inner\n")
    write(root / "outer" / "memory.max", f"{8 * GiB}\n")
    write(root / "outer" / "memory.current", f"{6 * GiB}\n")
    write(root / "outer" / "memory.stat", f"anon 1\ninactive_file {GiB}\n")
    write(root / "outer" / "inner" / "memory.max", "max\n")
    (device,) = HostProbe(lambda: VM(64 * GiB, 40 * GiB), root, tmp_path / "proc").read()
    assert device.total_bytes == 8 * GiB
    assert device.free_bytes == 8 * GiB - (6 * GiB - GiB)
    assert "cgroup" in device.name


def test_cgroup_v1_limit_and_its_unlimited_sentinel(tmp_path):
    root = tmp_path / "cg"
    write(tmp_path / "proc", "12:memory:/docker/abc\n11:cpu,cpuacct:/docker/abc\n")
    mem = root / "memory" / "docker" / "abc"
    write(mem / "memory.limit_in_bytes", f"{4 * GiB}\n")
    write(mem / "memory.usage_in_bytes", f"{3 * GiB}\n")
    write(mem / "memory.stat", f"total_inactive_file {512 * MiB}\n")
    (device,) = HostProbe(lambda: VM(64 * GiB, 40 * GiB), root, tmp_path / "proc").read()
    assert (device.total_bytes, device.free_bytes) == (4 * GiB, 4 * GiB - (3 * GiB - 512 * MiB))
    write(mem / "memory.limit_in_bytes", "9223372036854771712\n")
    (device,) = HostProbe(lambda: VM(64 * GiB, 40 * GiB), root, tmp_path / "proc").read()
    assert (device.total_bytes, device.free_bytes) == (64 * GiB, 40 * GiB)


def test_the_real_host_probe_works_here():
    (device,) = HostProbe().read()
    assert 0 < device.free_bytes <= device.total_bytes


# --- the chain ----------------------------------------------------------------------------------


class Scripted:
    def __init__(self, name, outcomes):
        self.name, self.outcomes = name, list(outcomes)

    def read(self):
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def test_a_failing_probe_falls_back_to_the_next_and_says_which_and_why():
    gpu = NvmlProbe(fake_nvml([H100])).read()
    host = HostProbe(
        lambda: VM(32 * GiB, 20 * GiB), Path("/nonexistent"), Path("/nonexistent")
    ).read()
    chain = ProbeChain(
        [
            Scripted("nvml", [ProbeUnavailable("no NVIDIA driver library")]),
            Scripted("nvidia-smi", [gpu, ProbeUnavailable("nvidia-smi failed: driver gone")]),
            Scripted("host", [host]),
        ]
    )
    first = chain.read()
    assert first.source == "nvidia-smi"
    assert first.skipped == (("nvml", "no NVIDIA driver library"),)
    second = chain.read()
    assert second.source == "host"
    assert ("nvidia-smi", "nvidia-smi failed: driver gone") in second.skipped
    assert "memory from host" in second.describe()


def test_the_ollama_runner_is_recognised_in_every_era():
    from ollm.gpu.nvidia import is_ollama_runner, ollama_runner_bytes

    assert is_ollama_runner("ollama_llama_server", ["ollama_llama_server", "--model", "x"])
    assert is_ollama_runner("llama-server", ["llama-server", "-m", "x"])
    assert is_ollama_runner("ollama", ["/usr/bin/ollama", "runner", "--model", "x"])
    assert not is_ollama_runner("ollama", ["/usr/bin/ollama", "serve"])
    assert not is_ollama_runner("python3", ["python3"])
    assert ollama_runner_bytes({os.getpid(): 123, 999_999_999: 456}) == 0
