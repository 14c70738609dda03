#!/usr/bin/env bash
# The GPU check: runs the parity test on the GPU (the tiny SD 1.5 fixture, DDIM and Euler
# ancestral, in f32 and in f16, every stage against diffusers) and the benchmark (`compare.sh
# cuda`, beside diffusers when PYTHON has it with a CUDA torch). Writes everything it prints to
# $OUT/gpu-check.log when OUT is set (the device tool's output folder), else to ./gpu-check.log.
#
# Two ways to run it:
# - on a CUDA workstation with a Rust toolchain and nvcc: builds the engine with the GPU
#   features first (about 10 minutes on 16 cores, most of it the release build);
# - with --bundle DIR, on a CUDA machine with no Rust toolchain (the device tool's): runs the
#   binaries `scripts/gpu-bundle.sh` built elsewhere, against the machine's own CUDA libraries
#   (the driver's and those its PyTorch ships), in a few minutes.
#
# Usage: scripts/gpu-check.sh [cuda|cuda:N] [--bundle DIR]
# Environment: SELFDIFFUSION_FIXTURES (the folder holding tiny-sd15; default ../shared/fixtures,
# or the bundle's), PYTHON (an interpreter with diffusers for the reference figures),
# SELFDIFFUSION_GPU_FEATURES (default: cuda, plus cudnn when the machine has libcudnn).
set -euo pipefail
cd "$(dirname "$0")/.."
device=cuda
bundle=
while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) bundle="${2:?--bundle needs the folder scripts/gpu-bundle.sh wrote}"; shift 2 ;;
    cuda*) device="$1"; shift ;;
    *) echo "unknown argument $1 (usage: scripts/gpu-check.sh [cuda|cuda:N] [--bundle DIR])"; exit 2 ;;
  esac
done
log="${OUT:-.}/gpu-check.log"
exec > >(tee "$log") 2>&1
nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not found (no NVIDIA driver?)"
export SELFDIFFUSION_TEST_DEVICE="$device"
started=$SECONDS
parity_test=the_pipeline_matches_diffusers_on_the_test_device

if [ -n "$bundle" ]; then
  [ -d "$bundle/bin" ] || { echo "$bundle holds no bin/: make it with scripts/gpu-bundle.sh"; exit 1; }
  bin="$(mktemp -d)"
  for f in "$bundle"/bin/*.xz; do xz -dc "$f" >"$bin/$(basename "$f" .xz)"; done
  chmod +x "$bin"/*
  # The machine's CUDA libraries: the driver's, and cuBLAS/cuRAND/NVRTC/cuDNN from its PyTorch.
  PYTHON="${PYTHON:-python3}"
  libs="$("$PYTHON" -c 'import glob, os, nvidia
print(":".join(d for p in nvidia.__path__ for d in sorted(glob.glob(os.path.join(p, "*", "lib")))))' 2>/dev/null || true)"
  export LD_LIBRARY_PATH="$libs:/usr/local/nvidia/lib64:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
  if ldd "$bin/parity" | grep "not found"; then
    echo "the CUDA libraries above are missing on this machine (looked in $LD_LIBRARY_PATH)"
    exit 1
  fi
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$bin/site" "$bundle"/wheels/*.whl
  export PYTHONPATH="$bin/site${PYTHONPATH:+:$PYTHONPATH}"
  export SELFDIFFUSION_FIXTURES="${SELFDIFFUSION_FIXTURES:-$bundle/fixtures}"
  echo "device $device, prebuilt binaries from $bundle, $(nproc) cores"
  "$bin/parity" --exact "$parity_test" --nocapture
  echo "parity on $device: passed ($((SECONDS - started)) s)"
  SELFDIFFUSION_BENCH_BIN="$bin/sd15" crates/engine/benches/compare.sh "$device" 3
  echo "gpu check finished in $((SECONDS - started)) s"
  exit 0
fi

command -v nvcc >/dev/null || { echo "nvcc not found: install the CUDA toolkit (or put it on PATH)"; exit 1; }
command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs), or run with --bundle"; exit 1; }
features="${SELFDIFFUSION_GPU_FEATURES:-cuda}"
if [ -z "${SELFDIFFUSION_GPU_FEATURES:-}" ] && ldconfig -p 2>/dev/null | grep -q libcudnn; then
  features="cuda,cudnn"
fi
echo "device $device, features $features, $(nproc) cores"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# Release: the f16 kernels and the parity runs are slow in a debug build.
cargo test --release --locked -p selfdiffusion-engine --features "$features" --test parity \
  -- --exact "$parity_test" --nocapture
echo "parity on $device: passed ($((SECONDS - started)) s)"
crates/engine/benches/compare.sh "$device" 3
echo "gpu check finished in $((SECONDS - started)) s"
