#!/usr/bin/env bash
# Builds the GPU check for a CUDA machine that has no Rust toolchain (the device tool's machine:
# CUDA 13, PyTorch, no crate registry, at most 64 MiB carried per call). Runs here, where there is
# no GPU: installs CUDA 13.0's compiler and link libraries from PyPI wheels into a cache folder,
# builds the engine's parity test and benchmark with the GPU features (release, for the compute
# capability CUDA_COMPUTE_CAP, default 90 = H100/H200), and writes BUNDLE (default .gpu-bundle,
# ignored by git): the two binaries, the tiny SD 1.5 fixture and the diffusers wheel the
# reference needs. On the GPU machine, from the repository root:
#
#   scripts/gpu-check.sh cuda --bundle .gpu-bundle      (device tool: carry [".gpu-bundle"])
#
# The binaries load the CUDA libraries of the machine they run on (the driver's libcuda and the
# cuBLAS, cuRAND, NVRTC and cuDNN that its PyTorch ships); the ones installed here are only
# linked against. libcuda, which only a driver installs, is linked against a stub made here from
# cuda.h's function names.
#
# Usage: scripts/gpu-bundle.sh [BUNDLE]
# Environment: CUDA_COMPUTE_CAP (default 90), SELFDIFFUSION_CUDA_TOOLKIT (default
# ~/.cache/selfdiffusion-cuda), SELFDIFFUSION_GPU_FEATURES (default cuda,cudnn),
# SELFDIFFUSION_FIXTURES (the folder holding tiny-sd15), CARGO_TARGET_DIR (default
# ~/.cache/selfdiffusion-gpu-target: its own, so this build never evicts the CPU one).
set -euo pipefail
cd "$(dirname "$0")/.."
bundle="${1:-.gpu-bundle}"
toolkit="${SELFDIFFUSION_CUDA_TOOLKIT:-$HOME/.cache/selfdiffusion-cuda}"
features="${SELFDIFFUSION_GPU_FEATURES:-cuda,cudnn}"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/selfdiffusion-gpu-target}"
# The size the device tool carries in one call, less what the checkout itself takes.
limit_mib=64

# 1. CUDA 13.0 from PyPI (versions pinned: the build must not change under us).
wheels=(
  nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85
  nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvrtc==13.0.88 nvidia-cublas==13.0.2.14
  nvidia-curand==10.4.0.35 nvidia-cudnn-cu13==9.13.0.50
)
if [ ! -f "$toolkit/installed" ] || [ "$(cat "$toolkit/installed")" != "${wheels[*]}" ]; then
  echo "==> installing CUDA 13.0's compiler and libraries from PyPI into $toolkit (about 1.2 GB)"
  rm -rf "$toolkit"
  python3 -m venv "$toolkit/venv"
  "$toolkit/venv/bin/pip" install -q --no-deps "${wheels[@]}"
  echo "${wheels[*]}" >"$toolkit/installed"
fi
site="$("$toolkit/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
export CUDA_HOME="$site/nvidia/cu13"
export PATH="$CUDA_HOME/bin:$PATH"
lib="$CUDA_HOME/lib"
# The linker's names for the libraries (-lcublas finds libcublas.so).
for so in cudart.so.13 nvrtc.so.13 cublas.so.13 cublasLt.so.13 curand.so.10; do
  ln -sf "lib$so" "$lib/lib${so%.so.*}.so"
done
ln -sf "$site/nvidia/cudnn/lib/libcudnn.so.9" "$lib/libcudnn.so"
if [ ! -f "$lib/libcuda.so" ]; then
  echo '#include <cuda.h>' | gcc -E -I "$CUDA_HOME/include" - |
    grep -oE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' | tr -d '( \t' | sort -u |
    sed 's/.*/void &(void) {}/' >"$toolkit/libcuda-stub.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$lib/libcuda.so" "$toolkit/libcuda-stub.c"
fi
nvcc --version | tail -2

# 2. The two binaries, built once for the GPU.
built() { # cargo's JSON messages → the executable of the one test or bench target built
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$1"
}
echo "==> building the parity test and the benchmark with --features $features for sm_$CUDA_COMPUTE_CAP"
parity="$(cargo test --release --locked -p selfdiffusion-engine --features "$features" --test parity \
  --no-run --message-format=json-render-diagnostics | built parity)"
bench="$(cargo bench --locked -p selfdiffusion-engine --features "$features" --bench sd15 \
  --no-run --message-format=json-render-diagnostics | built sd15)"

# 3. The bundle.
rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/fixtures" "$bundle/wheels"
strip -o "$bundle/bin/parity" "$parity"
strip -o "$bundle/bin/sd15" "$bench"
fixtures="${SELFDIFFUSION_FIXTURES:-../shared/fixtures}"
[ -f "$fixtures/tiny-sd15/README.md" ] || { echo "tiny-sd15 not found under $fixtures: set SELFDIFFUSION_FIXTURES"; exit 1; }
cp -r "$fixtures/tiny-sd15" "$bundle/fixtures/"
chmod -R u+w "$bundle/fixtures"
# The reference's one package missing on the device machine (its PyTorch, transformers,
# safetensors and huggingface_hub are there).
"$toolkit/venv/bin/pip" download -q --no-deps --only-binary=:all: -d "$bundle/wheels" diffusers==0.42.1
xz -T0 -6 "$bundle/bin/parity" "$bundle/bin/sd15"
tracked=$(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1)
total=$(($(du -sb "$bundle" | cut -f1) + tracked))
ls -l "$bundle/bin"
echo "bundle $bundle: $((total / 1048576)) MiB with the checkout (the device tool carries $limit_mib)"
[ "$total" -le $((limit_mib * 1048576)) ] || { echo "too large to carry"; exit 1; }
