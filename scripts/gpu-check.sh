#!/usr/bin/env bash
# The GPU check, for a CUDA machine with a Rust toolchain and the CUDA toolkit (nvcc): builds the
# engine with the GPU features, runs the parity test on the GPU (the tiny SD 1.5 fixture, DDIM
# and Euler ancestral, in f32 and in f16, every stage against diffusers) and the benchmark
# (`compare.sh cuda`, beside diffusers when PYTHON has it with a CUDA torch). About 10 minutes
# on 16 cores, most of it the release build. Writes everything it prints to $OUT/gpu-check.log
# when OUT is set (the device tool's output folder), else to ./gpu-check.log.
#
# Usage: scripts/gpu-check.sh [cuda|cuda:N]
# Environment: SELFDIFFUSION_FIXTURES (the folder holding tiny-sd15, tiny-sdxl; default
# ../shared/fixtures), PYTHON (an interpreter with diffusers for the reference figures),
# SELFDIFFUSION_GPU_FEATURES (default: cuda, plus cudnn when the machine has libcudnn).
set -euo pipefail
cd "$(dirname "$0")/.."
device="${1:-cuda}"
log="${OUT:-.}/gpu-check.log"
exec > >(tee "$log") 2>&1

command -v nvcc >/dev/null || { echo "nvcc not found: install the CUDA toolkit (or put it on PATH)"; exit 1; }
command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)"; exit 1; }
nvidia-smi -L || true
features="${SELFDIFFUSION_GPU_FEATURES:-cuda}"
if [ -z "${SELFDIFFUSION_GPU_FEATURES:-}" ] && ldconfig -p 2>/dev/null | grep -q libcudnn; then
  features="cuda,cudnn"
fi
echo "device $device, features $features, $(nproc) cores"

export SELFDIFFUSION_TEST_DEVICE="$device"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
started=$SECONDS
# Release: the f16 kernels and the parity runs are slow in a debug build.
cargo test --release --locked -p selfdiffusion-engine --features "$features" --test parity \
  -- --nocapture the_pipeline_matches_diffusers_on_the_test_device
echo "parity on $device: passed ($((SECONDS - started)) s)"

crates/engine/benches/compare.sh "$device" 3
echo "gpu check finished in $((SECONDS - started)) s"
