#!/usr/bin/env bash
# Installs what is missing (see setup-debian.sh), then runs every check and test:
# npm ci (when package-lock.json changed), the UI type check, the bundle configuration, rustfmt,
# clippy (-D warnings), cargo deny (licenses, bans, sources), unit + integration tests (nextest
# when present, else cargo test), and the end-to-end test through the real WebView under Xvfb.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup-debian.sh
setup_tests

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export GSETTINGS_BACKEND=memory

echo "==> npm ci"
# Reinstall node_modules only when package-lock.json is not the one it was installed from.
lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat node_modules/.selfdiffusion-lock.sha256 2>/dev/null)" != "$lock_sum" ]; then
  npm ci --no-audit --no-fund
  echo "$lock_sum" >node_modules/.selfdiffusion-lock.sha256
fi
if [ -f ui/tsconfig.json ]; then
  echo "==> type-check the UI"
  npx --no-install tsc -p ui --noEmit
fi
echo "==> bundle configuration (tauri bundle deb,rpm of a placeholder binary)"
# `tauri build --no-bundle` never reads the bundle settings; `tauri bundle` turns them into the
# bundler's (category, deb/rpm fields, icons, files) and writes both packages, in a second, from
# a stand-in for the app binary in a throwaway target dir.
bundle_dir=$(mktemp -d)
mkdir -p "$bundle_dir/debug"
printf '#!/bin/sh\n' >"$bundle_dir/debug/selfdiffusion"
chmod +x "$bundle_dir/debug/selfdiffusion"
if ! out=$(CARGO_TARGET_DIR="$bundle_dir" npx --no-install tauri bundle --ci --debug \
  --bundles deb,rpm --no-sign --no-binary-patching 2>&1); then
  echo "$out" >&2
  rm -rf "$bundle_dir"
  exit 1
fi
ls "$bundle_dir"/debug/bundle/deb/*.deb "$bundle_dir"/debug/bundle/rpm/*.rpm >/dev/null
rm -rf "$bundle_dir"
echo "==> rustfmt"
cargo fmt --all -- --check
echo "==> clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo deny"
# Errors in full; warnings (duplicate crate versions, allowed by deny.toml) only counted: drop
# `--log-level error` to list them.
cargo deny --locked --log-level error check --show-stats licenses bans sources
echo "==> build"
cargo build --workspace --all-targets --locked
echo "==> unit and integration tests"
if command -v cargo-nextest >/dev/null; then
  cargo nextest run --workspace --locked
else
  cargo test --workspace --locked
fi
echo "==> end-to-end (real WebView under Xvfb)"
xvfb-run -a -s "-screen 0 1280x800x24" node e2e/app.e2e.mjs "$CARGO_TARGET_DIR/debug/selfdiffusion" target/e2e
