#!/usr/bin/env bash
# Runs the candle benchmark and, when the Python reference is installed (see the recipe in
# diffusers_reference.py; PYTHON points at its interpreter), the diffusers one in the same run,
# then prints ours ÷ theirs for each measure (below 1 means we are faster / smaller).
set -euo pipefail
cd "$(dirname "$0")/../../.."
# Usage: compare.sh [cpu|cuda] [steps] [sdxl]  (sdxl: also the SDXL base UNet step, ~11 GB each)
device="${1:-cpu}"
steps="${2:-3}"
sdxl=()
[ "${3:-}" = sdxl ] && sdxl=(--sdxl)
out="$(mktemp -d)"
features=()
[ "$device" != cpu ] && features=(--features cuda)
cargo bench -q -p selfdiffusion-engine "${features[@]}" --bench sd15 -- --device "$device" --steps "$steps" "${sdxl[@]}" --json "$out/ours.json"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import diffusers, torch, transformers' 2>/dev/null; then
  echo "diffusers is not installed for $PYTHON: no reference run (see crates/engine/benches/diffusers_reference.py)"
  exit 0
fi
"$PYTHON" crates/engine/benches/diffusers_reference.py --device "$device" --steps "$steps" "${sdxl[@]}" --json "$out/ref.json"
"$PYTHON" - "$out/ours.json" "$out/ref.json" <<'PY'
import json, sys
ours, ref = (json.load(open(p)) for p in sys.argv[1:3])
print(f"cpu: {ours.get('cpu_model')} ({', '.join(ours.get('simd') or []) or 'no SIMD flags read'}); "
      f"threads: ours {ours.get('threads')}, diffusers {ref.get('threads')}")
print(f"{'measure':<28}{'ours':>12}{'diffusers':>12}{'ratio':>8}")
for k in ["text_encode_batch2_s", "unet_step_batch2_64x64_s", "vae_decode_512_s",
          "unet_step_sdxl_batch2_128x128_s", "peak_rss_mib"]:
    a, b = ours.get(k), ref.get(k)
    if a and b:
        print(f"{k:<28}{a:>12.3f}{b:>12.3f}{a / b:>8.2f}")
PY
