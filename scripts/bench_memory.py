"""Memory probes: one sample through each probe beside spawning `nvidia-smi` (or `true`
where it is absent), and the VRAM monitor's CPU use over 60 s of 5-s polling.

Usage: python scripts/bench_memory.py [--seconds 60] [--repeats 20] [--smoke]

Target: the monitor uses at most 0.5 % of one core.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import anyio
from _bench import best, parser

from actors import ChildSpec, SystemClock, open_runtime
from ollm.context.vram_monitor import MonitorPolicy, VramMonitorActor
from ollm.events import ChatRequested, RunnerOptions
from ollm.gpu.chain import ProbeChain, default_probes
from ollm.gpu.records import ProbeUnavailable


def probes_table(repeats: int) -> None:
    smi = shutil.which("nvidia-smi")
    baseline_cmd = [smi, "--query-gpu=memory.free", "--format=csv,noheader"] if smi else ["true"]
    baseline = best(lambda: subprocess.run(baseline_cmd, capture_output=True, check=False), repeats)
    print(f"best of {repeats} calls each")
    print(f"{'source':<14}{'one sample':>14}   vs spawning {' '.join(baseline_cmd[:1])}")
    for probe in default_probes():
        try:
            probe.read()
        except ProbeUnavailable as exc:
            print(f"{probe.name:<14}{'unavailable':>14}   ({exc})")
            continue
        seconds = best(probe.read, repeats)
        print(f"{probe.name:<14}{seconds * 1e3:>11.3f} ms   {baseline / seconds:8.1f}x faster")
    print(f"{'spawn ' + baseline_cmd[0].rsplit('/', 1)[-1]:<14}{baseline * 1e3:>11.3f} ms")


async def monitor_cpu(seconds: float) -> tuple[float, int]:
    samples = 0
    chain = ProbeChain()
    original = chain.read

    def counting():  # type: ignore[no-untyped-def]
        nonlocal samples
        samples += 1
        return original()

    chain.read = counting  # type: ignore[method-assign]
    spec = ChildSpec(
        name="vram_monitor",
        factory=lambda: VramMonitorActor(
            chain, host="http://127.0.0.1:11434", policy=MonitorPolicy()
        ),
    )
    async with open_runtime([spec], clock=SystemClock()) as runtime:
        # Poll at the busy interval (5 s), as while a reply is generating.
        await runtime.publish(
            ChatRequested(
                request_id="bench", model="m", messages=(), options=RunnerOptions(num_ctx=1)
            ),
            source="bench",
        )
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await anyio.sleep(seconds)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        runtime.stop()
    return cpu / wall, samples


def main() -> None:
    options = parser(__doc__)
    options.add_argument("--seconds", type=float, default=60.0)
    options.add_argument("--repeats", type=int, default=20)
    args = options.parse_args()
    if args.smoke:
        args.seconds, args.repeats = 0.2, 1
    probes_table(args.repeats)
    share, samples = anyio.run(monitor_cpu, args.seconds, backend="asyncio")
    print(
        f"monitor over {args.seconds:g} s of 5-s polling: {samples} samples, "
        f"{share * 100:.3f} % of one core (target <= 0.5 %)"
    )


if __name__ == "__main__":
    main()
