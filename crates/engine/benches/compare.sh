#!/usr/bin/env bash
# Runs the candle benchmark and, when the Python reference is installed (see the recipe in
# diffusers_reference.py; PYTHON points at its interpreter), the diffusers one in the same run,
# then prints ours ÷ theirs for each measure (below 1 means we are faster / smaller).
#
# Usage: compare.sh [cpu|cuda] [steps] [sdxl]  (sdxl: also the SDXL base UNet step, ~11 GB each)
# Per stage: text encoding, a UNet step, VAE decodes at 512² and 1024², peak RSS. End to end:
# each side, in a process of its own, loads a full-size SD 1.5 folder with random weights from
# disk and makes one 512² image in 4 steps (wall time and peak RSS of the whole process). The
# folder is written once by diffusers (SELFDIFFUSION_BENCH_MODEL, default
# ~/.cache/selfdiffusion-bench/sd15-random, 4.1 GB). SELFDIFFUSION_BENCH_BIN runs a benchmark
# binary built elsewhere (scripts/gpu-bundle.sh) instead of building it with cargo.
set -euo pipefail
cd "$(dirname "$0")/../../.."
device="${1:-cpu}"
steps="${2:-3}"
sdxl=()
[ "${3:-}" = sdxl ] && sdxl=(--sdxl)
out="$(mktemp -d)"
features=()
[ "$device" != cpu ] && features=(--features cuda)
bench() {
  if [ -n "${SELFDIFFUSION_BENCH_BIN:-}" ]; then
    "$SELFDIFFUSION_BENCH_BIN" --device "$device" "$@"
  else
    cargo bench -q -p selfdiffusion-engine "${features[@]}" --bench sd15 -- --device "$device" "$@"
  fi
}
bench --steps "$steps" "${sdxl[@]}" --json "$out/ours.json"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import diffusers, torch, transformers' 2>/dev/null; then
  echo "diffusers is not installed for $PYTHON: no reference run (see crates/engine/benches/diffusers_reference.py)"
  exit 0
fi
reference() {
  "$PYTHON" crates/engine/benches/diffusers_reference.py --device "$device" "$@"
}
reference --steps "$steps" "${sdxl[@]}" --json "$out/ref.json"
model="${SELFDIFFUSION_BENCH_MODEL:-$HOME/.cache/selfdiffusion-bench/sd15-random}"
mkdir -p "$(dirname "$model")"
reference --write-model "$model"
bench --end-to-end "$model" --steps 4 --json "$out/ours-e2e.json"
bench --end-to-end "$model" --steps 4 --low-memory --json "$out/ours-e2e-low.json"
bench --end-to-end "$model" --steps 4 --low-memory --half-weights --json "$out/ours-e2e-half.json"
reference --end-to-end "$model" --steps 4 --json "$out/ref-e2e.json"
"$PYTHON" - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
def read(*names):
    merged = {}
    for n in names:
        merged.update(json.loads((out / n).read_text()))
    return merged
# The ordinary run last: its load figures are the ones reported.
ours = read("ours.json", "ours-e2e-low.json", "ours-e2e-half.json", "ours-e2e.json")
ref = read("ref.json", "ref-e2e.json")
# diffusers' end-to-end run beside ours with our memory options (its own f32 run has none).
for k in ["end_to_end_s", "end_to_end_peak_rss_mib"]:
    if k in ref:
        ref[f"{k}_low_memory"] = ref[k]
        ref[f"{k}_low_memory_half_weights"] = ref[k]
print(f"cpu: {ours.get('cpu_model')} ({', '.join(ours.get('simd') or []) or 'no SIMD flags read'}); "
      f"threads: ours {ours.get('threads')}, diffusers {ref.get('threads')}; {ref.get('implementation')}")
print(f"{'measure':<48}{'ours':>12}{'diffusers':>12}{'ratio':>8}")
for k in ["text_encode_batch2_s", "unet_step_batch2_64x64_s", "vae_decode_512_s",
          "vae_decode_1024_s", "unet_step_sdxl_batch2_128x128_s", "peak_rss_mib",
          "end_to_end_s", "end_to_end_peak_rss_mib", "end_to_end_s_low_memory",
          "end_to_end_peak_rss_mib_low_memory", "end_to_end_s_low_memory_half_weights",
          "end_to_end_peak_rss_mib_low_memory_half_weights"]:
    a, b = ours.get(k), ref.get(k)
    if a and b:
        print(f"{k:<48}{a:>12.3f}{b:>12.3f}{a / b:>8.2f}")
if ours.get("unet_sdxl_params"):
    same = "the same" if ours["unet_sdxl_params"] == ref.get("unet_sdxl_params") else "DIFFERENT"
    print(f"SDXL UNet parameters: ours {ours['unet_sdxl_params']:,}, diffusers "
          f"{ref.get('unet_sdxl_params') or 0:,} ({same})")
if ours.get("load_peak_rss_mib") and ours.get("weights_mib"):
    print(f"our peak RSS after loading: {ours['load_peak_rss_mib']:.0f} MiB for "
          f"{ours['weights_mib']:.0f} MiB of weights ({ours['load_peak_rss_mib'] / ours['weights_mib']:.2f}×)")
PY
