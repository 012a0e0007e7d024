"""GPU offload speed of llama-cpp-python, against the CPU in the same run.

    python bench/gpu_check.py SMALL.gguf [LARGE.gguf] [--repeats 3] [--json-out FILE]

Run by `bench/gpu_check.sh` inside its own venv; it needs only llama-cpp-python (no flurry
import), so it runs in whatever venv holds the CUDA build. For each GGUF, fully offloaded
(``n_gpu_layers=-1``), and for the small one on the CPU too (``n_gpu_layers=0``, the
baseline), it measures:

- prompt tok/s: one ~512-token prompt read in one batch;
- time to first token: that prompt read plus the first greedy token;
- decode tok/s: 256 greedy tokens after it, one ``eval`` each (flurry's path);
- decode bytes/s ÷ the GPU's memory bandwidth: a decoded token reads every weight once,
  so decode tok/s × the file's size is the bytes read per second; near 1 is the ceiling.

Each figure is the median of ``--repeats`` runs after a warm-up. Speeds are also given as
GPU ÷ CPU for the small model. Without GPU offload (a CPU build, or no GPU) it says so and
prints the CPU figures only. Output: one table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import llama_cpp

PROMPT_TOKENS = 512
DECODE_TOKENS = 256
N_CTX = 1024  # prompt + decode + room

# Peak memory bandwidth, bytes/s, from the vendors' data sheets; the first name contained
# in nvidia-smi's name wins, so the more specific names come first.
KNOWN_BANDWIDTH = [
    ("H200", 4.8e12),
    ("H100 PCIe", 2.0e12),
    ("H100", 3.35e12),  # SXM, HBM3
    ("A100-SXM4-40GB", 1.555e12),
    ("A100-PCIE-40GB", 1.555e12),
    ("A100", 2.0e12),  # 80 GB
    ("L40S", 8.64e11),
    ("L4", 3.0e11),
    ("RTX 4090", 1.0e12),
]

TEXT = (
    "The lighthouse keeper kept a log of every ship that passed, the weather at dawn and dusk, "
    "the oil she burned and the letters she wrote to her sister on the mainland. "
)


@dataclass
class Run:
    model: str
    size_bytes: int
    device: str  # "gpu" or "cpu"
    prompt_tok_s: float
    ttft_s: float
    decode_tok_s: float
    decode_bytes_s: float
    bandwidth_fraction: float | None  # decode bytes/s ÷ the GPU's bandwidth; None on the CPU


@dataclass
class Gpu:
    name: str | None
    memory_total: str | None
    max_memory_clock_mhz: str | None
    bandwidth: float | None
    bandwidth_source: str


def gpu_info() -> Gpu:
    """The GPU as nvidia-smi names it and its memory bandwidth: FLURRY_GPU_BANDWIDTH (bytes/s)
    if set, else the table above. nvidia-smi gives the memory clock but not the bus width,
    so the bandwidth is not computed from the clock."""
    name = total = clock = None
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                [
                    "nvidia-smi",
                    "--query-gpu=name,memory.total,clocks.max.memory",
                    "--format=csv,noheader,nounits",
                ],
                capture_output=True,
                text=True,
                timeout=20,
                check=True,
            ).stdout.splitlines()[0]
            name, total, clock = (part.strip() for part in out.split(",")[:3])
            total += " MiB"
        except (subprocess.SubprocessError, IndexError, ValueError) as e:
            print(f"nvidia-smi failed: {e}", file=sys.stderr)
    if os.environ.get("FLURRY_GPU_BANDWIDTH"):
        return Gpu(
            name, total, clock, float(os.environ["FLURRY_GPU_BANDWIDTH"]), "FLURRY_GPU_BANDWIDTH"
        )
    for known, bandwidth in KNOWN_BANDWIDTH:
        if name and known.lower() in name.lower():
            return Gpu(name, total, clock, bandwidth, f"data-sheet table ({known})")
    source = "unknown GPU: set FLURRY_GPU_BANDWIDTH (bytes/s)" if name else "no GPU"
    return Gpu(name, total, clock, None, source)


def prompt_tokens(llm: llama_cpp.Llama) -> list[int]:
    tokens = llm.tokenize(TEXT.encode(), add_bos=True)
    body = llm.tokenize(TEXT.encode(), add_bos=False)
    while len(tokens) < PROMPT_TOKENS:
        tokens += body
    return tokens[:PROMPT_TOKENS]


def one_run(llm: llama_cpp.Llama, prompt: list[int], decode: int) -> tuple[float, float, float]:
    """(prompt seconds, time to first token, decode seconds for ``decode`` tokens) from an
    empty KV cache. Greedy; an end-of-generation token is fed back like any other, so every
    run decodes the same count."""
    llm.reset()
    start = time.perf_counter()
    llm.eval(prompt)
    read = time.perf_counter()
    token = llm.sample(top_k=1, temp=0.0)
    first = time.perf_counter()
    for _ in range(decode):
        llm.eval([token])
        token = llm.sample(top_k=1, temp=0.0)
    done = time.perf_counter()
    return read - start, first - start, done - first


def measure(path: Path, gpu_layers: int, repeats: int, gpu: Gpu) -> Run:
    size = path.stat().st_size
    llm = llama_cpp.Llama(
        model_path=str(path),
        n_ctx=N_CTX,
        n_batch=PROMPT_TOKENS,
        n_ubatch=PROMPT_TOKENS,
        n_gpu_layers=gpu_layers,
        n_threads=os.cpu_count() or 1,
        seed=0,
        verbose=False,
    )
    try:
        prompt = prompt_tokens(llm)
        one_run(llm, prompt[:64], 16)  # warm-up: kernels loaded, caches and clocks up
        runs = [one_run(llm, prompt, DECODE_TOKENS) for _ in range(repeats)]
    finally:
        llm.close()
    decode_tok_s = DECODE_TOKENS / statistics.median(r[2] for r in runs)
    on_gpu = gpu_layers != 0
    return Run(
        model=path.name,
        size_bytes=size,
        device="gpu" if on_gpu else "cpu",
        prompt_tok_s=len(prompt) / statistics.median(r[0] for r in runs),
        ttft_s=statistics.median(r[1] for r in runs),
        decode_tok_s=decode_tok_s,
        decode_bytes_s=decode_tok_s * size,
        bandwidth_fraction=decode_tok_s * size / gpu.bandwidth
        if on_gpu and gpu.bandwidth
        else None,
    )


def table(runs: list[Run]) -> str:
    head = f"{'model':<44} {'dev':<4} {'size GB':>8} {'prompt tok/s':>13} {'TTFT ms':>9} {'decode tok/s':>13} {'GB/s read':>10} {'÷ GPU bw':>9}"
    lines = [head, "-" * len(head)]
    for r in runs:
        frac = f"{r.bandwidth_fraction:.3g}" if r.bandwidth_fraction is not None else "—"
        lines.append(
            f"{r.model[:44]:<44} {r.device:<4} {r.size_bytes / 1e9:>8.3f} {r.prompt_tok_s:>13.1f} "
            f"{r.ttft_s * 1e3:>9.1f} {r.decode_tok_s:>13.1f} {r.decode_bytes_s / 1e9:>10.2f} {frac:>9}"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("small", type=Path, help="the default model's GGUF (also the CPU baseline)")
    parser.add_argument(
        "large", type=Path, nargs="?", help="a larger GGUF, measured on the GPU only"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()

    offload = bool(llama_cpp.llama_supports_gpu_offload())
    gpu = gpu_info()
    print(
        f"llama-cpp-python {llama_cpp.__version__}; GPU offload supported by this build: {offload}"
    )
    print(
        f"GPU: {gpu.name or 'none'} ({gpu.memory_total or '-'}, max memory clock {gpu.max_memory_clock_mhz or '-'} MHz)"
    )
    bw = f"{gpu.bandwidth / 1e12:.2f} TB/s" if gpu.bandwidth else "unknown"
    print(f"memory bandwidth: {bw}, from {gpu.bandwidth_source}")
    if not offload:
        why = "this llama-cpp-python build has no GPU backend" if gpu.name else "no GPU"
        print(f"!!! NO GPU OFFLOAD ({why}): CPU figures only !!!")

    runs: list[Run] = []
    plan = [(args.small, 0)]
    if offload:
        plan.append((args.small, -1))
        if args.large:
            plan.append((args.large, -1))
    elif args.large:
        print(f"skipped on the CPU: {args.large.name} (measured only when offloaded)")
    for path, layers in plan:
        start = time.perf_counter()
        runs.append(measure(path, layers, args.repeats, gpu))
        print(
            f"  measured {path.name} on {runs[-1].device} in {time.perf_counter() - start:.1f} s",
            flush=True,
        )

    print()
    print(table(runs))
    ratios = {}
    cpu = runs[0]
    gpu_small = next((r for r in runs[1:] if r.model == args.small.name), None)
    if gpu_small:
        ratios = {
            "prompt_tok_s_gpu_over_cpu": gpu_small.prompt_tok_s / cpu.prompt_tok_s,
            "decode_tok_s_gpu_over_cpu": gpu_small.decode_tok_s / cpu.decode_tok_s,
            "ttft_cpu_over_gpu": cpu.ttft_s / gpu_small.ttft_s,
        }
        print(
            f"\n{args.small.name}, GPU ÷ CPU (same run): prompt {ratios['prompt_tok_s_gpu_over_cpu']:.1f}×, "
            f"decode {ratios['decode_tok_s_gpu_over_cpu']:.1f}×, time to first token {ratios['ttft_cpu_over_gpu']:.1f}× shorter"
        )
    result = {
        "bench": "gpu_check",
        "llama_cpp_python": llama_cpp.__version__,
        "offload": offload,
        "gpu": asdict(gpu),
        "cpu_threads": os.cpu_count(),
        "prompt_tokens": PROMPT_TOKENS,
        "decode_tokens": DECODE_TOKENS,
        "repeats": args.repeats,
        "runs": [asdict(r) for r in runs],
        "ratios": ratios,
    }
    line = json.dumps(result)
    print(line)
    if args.json_out:
        args.json_out.write_text(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
