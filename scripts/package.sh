#!/usr/bin/env bash
# Installs what is missing (see setup-debian.sh), then builds the Linux installers of
# SelfDiffusion with the Tauri CLI: a release build of the app, bundled as .deb and .rpm, and
# prints where they are and how big. Meant for a clean clone: node_modules comes from
# package-lock.json (npm ci). The bundles land in $CARGO_TARGET_DIR/release/bundle/{deb,rpm}/
# (CARGO_TARGET_DIR defaults to ./target, as in test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup-debian.sh
setup_package

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
bundle_dir="$CARGO_TARGET_DIR/release/bundle"
goal_bytes=$((30 * 1000 * 1000))

echo "==> npm ci"
npm ci --no-audit --no-fund
echo "$(sha256sum package-lock.json | cut -d' ' -f1)" >node_modules/.selfdiffusion-lock.sha256

echo "==> tauri build: release binary, bundled as .deb and .rpm"
# Only this run's packages are listed below.
rm -rf "$bundle_dir/deb" "$bundle_dir/rpm"
npx --no-install tauri build --ci --bundles deb,rpm -- --locked

echo "==> packages"
status=0
for f in "$bundle_dir"/deb/*.deb "$bundle_dir"/rpm/*.rpm; do
  [ -f "$f" ] || { echo "missing: $f" >&2; status=1; continue; }
  bytes=$(stat -c %s "$f")
  size=$(numfmt --to=iec-i --suffix=B --round=nearest --format=%.1f "$bytes")
  printf '%s (%s bytes)  %s\n' "$size" "$bytes" "$f"
  if [ "$bytes" -gt "$goal_bytes" ]; then
    echo "   over the 30 MB goal" >&2
  fi
done
exit "$status"
