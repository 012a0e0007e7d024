"""`flurry models recommend`: which catalog chat models this machine can run, and why.

What is measured: the cores this process may use (a container's limit, not the host's), the
memory (MemTotal and MemAvailable, capped by a cgroup limit), and, where this llama.cpp build
can offload to a GPU, each NVIDIA GPU's memory as nvidia-smi reports it. The rules are
deliberately plain, so the reason printed is the rule applied:

- a model whose memory need fits in a GPU's free memory runs there (when the build offloads);
- otherwise it must fit in the memory available now, and it is called slow below its
  ``min_cores``; fitting only in total memory means closing other programs first.

The recommendation is the largest model that fits comfortably.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from agent.models import HUB_CATALOG, HubModel

GB = 1024**3


@dataclass(frozen=True)
class Gpu:
    name: str
    total: int  # bytes
    free: int


@dataclass(frozen=True)
class Machine:
    cores: int
    ram_total: int  # bytes
    ram_available: int
    gpu_offload: bool  # this llama.cpp build can put layers on a GPU
    gpus: tuple[Gpu, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Fit:
    model: HubModel
    verdict: str  # "gpu", "good", "slow", "tight" or "no"
    reason: str

    @property
    def runs(self) -> bool:
        return self.verdict != "no"


def _meminfo() -> dict[str, int]:
    values = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            values[key] = int(rest.split()[0]) * 1024  # kB
    return values


def _cgroup_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            return int(text)
    return None


def _memory() -> tuple[int, int]:
    try:
        info = _meminfo()
        total, available = info["MemTotal"], info.get("MemAvailable", info["MemTotal"])
    except (OSError, KeyError, ValueError):  # not Linux
        import os

        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        available = total
    limit = _cgroup_limit()
    if limit is not None and limit < total:  # a container sees the host's meminfo
        total, available = limit, min(available, limit)
    return total, available


def nvidia_gpus() -> tuple[Gpu, ...]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ()
    try:
        result = subprocess.run(
            [exe, "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return parse_nvidia_smi(result.stdout) if result.returncode == 0 else ()


def parse_nvidia_smi(text: str) -> tuple[Gpu, ...]:
    """``name, total MiB, free MiB`` lines; anything else (an error line, "[N/A]") is skipped."""
    gpus = []
    for line in text.splitlines():
        parts = [
            p.strip() for p in line.rsplit(",", 2)
        ]  # a GPU's name may hold a comma; the numbers do not
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            gpus.append(Gpu(parts[0], int(parts[1]) * 1024**2, int(parts[2]) * 1024**2))
    return tuple(gpus)


def probe() -> Machine:
    """This machine, as llama.cpp would run on it."""
    import llama_cpp

    from agent.runtime import default_threads

    total, available = _memory()
    return Machine(
        default_threads(),
        total,
        available,
        bool(llama_cpp.llama_supports_gpu_offload()),
        nvidia_gpus(),
    )


def fit(model: HubModel, machine: Machine) -> Fit:
    need = model.ram_gb * GB
    gb = f"~{model.ram_gb:.1f} GB"
    if machine.gpu_offload:
        for gpu in machine.gpus:
            if gpu.free >= need:
                return Fit(
                    model,
                    "gpu",
                    f"runs on the GPU: needs {gb}, {gpu.name} has {gpu.free / GB:.1f} GB free",
                )
    if machine.ram_available >= need:
        if machine.cores < model.min_cores:
            return Fit(
                model,
                "slow",
                f"fits in memory ({gb} of {machine.ram_available / GB:.1f} GB available), "
                f"but slow on {machine.cores} cores (wants {model.min_cores})",
            )
        return Fit(
            model,
            "good",
            f"fits in memory: needs {gb}, {machine.ram_available / GB:.1f} GB available, {machine.cores} cores",
        )
    if machine.ram_total >= need:
        return Fit(
            model,
            "tight",
            f"needs {gb}: only {machine.ram_available / GB:.1f} GB of {machine.ram_total / GB:.1f} GB "
            "is available now; close other programs first",
        )
    return Fit(
        model, "no", f"does not fit: needs {gb}, this machine has {machine.ram_total / GB:.1f} GB"
    )


def recommend(
    machine: Machine, catalog: dict[str, HubModel] = HUB_CATALOG
) -> tuple[list[Fit], Fit | None]:
    """Every catalog model's fit, smallest first, and the best one: the largest that runs comfortably."""
    fits = [fit(m, machine) for m in sorted(catalog.values(), key=lambda m: m.size_gb)]
    comfortable = [f for f in fits if f.verdict in ("gpu", "good")]
    return fits, (comfortable[-1] if comfortable else None)


def describe(machine: Machine) -> str:
    ram = f"{machine.ram_total / GB:.1f} GB memory ({machine.ram_available / GB:.1f} GB available)"
    if machine.gpus and machine.gpu_offload:
        gpu = ", ".join(
            f"{g.name} {g.free / GB:.1f} GB free of {g.total / GB:.1f} GB" for g in machine.gpus
        )
    elif machine.gpus:
        gpu = (
            f"{len(machine.gpus)} NVIDIA GPU(s), but this llama.cpp build cannot offload to them "
            '(reinstall llama-cpp-python with CMAKE_ARGS="-DGGML_CUDA=on")'
        )
    elif machine.gpu_offload:
        gpu = "GPU offload supported by this llama.cpp build (no nvidia-smi: memory unknown, shared with the CPU on Apple)"
    else:
        gpu = "no GPU offload (CPU build)"
    return f"{machine.cores} cores, {ram}; {gpu}"
