#!/usr/bin/env bash
# Installs what is missing (see setup-debian.sh), then runs every check and test:
# rustfmt, clippy (-D warnings), unit + integration tests (nextest when present, else cargo
# test), and the end-to-end test through the real WebView under Xvfb.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup-debian.sh
setup_tests

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export GSETTINGS_BACKEND=memory

echo "==> rustfmt"
cargo fmt --all -- --check
echo "==> clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
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
