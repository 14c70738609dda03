#!/usr/bin/env bash
# Installs what building, running and testing SelfDiffusion needs on Debian/Ubuntu, skipping
# what is already there. Sourced by run.sh and test.sh.
#   system packages (apt, as root or via sudo): build tools, WebKitGTK 4.1 + GTK 3 dev files,
#     librsvg, libxdo, appindicator, OpenSSL and D-Bus (OS keyring) dev files; for tests also Xvfb and
#     webkit2gtk-driver (WebKitWebDriver), dbus-daemon + gnome-keyring (a real Secret Service),
#     PostgreSQL (the scale-out tests initdb a throwaway cluster; no service is used) and openssl
#     (certificates for its TLS test)
#   Rust: the toolchain pinned in rust-toolchain.toml via rustup if cargo is missing
#   for tests: tauri-driver, cargo-deny and the S3 server s3s-fs (cargo install), Node.js and npm
#     (apt) if missing, and the Cognito emulator moto 5.2.5 (PyPI) in a virtualenv under
#     ~/.cache/selfdiffusion-moto
#   for packages (package.sh): what the app needs, plus Node.js and npm (the Tauri CLI comes from
#     package-lock.json through npm ci; the .deb and .rpm writers are part of it)
set -euo pipefail

APP_PACKAGES=(build-essential pkg-config curl file libwebkit2gtk-4.1-dev libgtk-3-dev libssl-dev
  libxdo-dev libayatana-appindicator3-dev librsvg2-dev libdbus-1-dev)
TEST_PACKAGES=(xvfb xauth webkit2gtk-driver dbus gnome-keyring postgresql openssl)
MOTO_VENV="${MOTO_VENV:-$HOME/.cache/selfdiffusion-moto}"

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root (or sudo) to run: $*" >&2; exit 1; fi
}

install_packages() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> apt: installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  fi
}

ensure_rust() {
  if ! command -v cargo >/dev/null; then
    # The toolchain rust-toolchain.toml pins (run.sh, test.sh and package.sh run in the checkout).
    local channel
    channel=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml 2>/dev/null || true)
    echo "==> rustup: installing the Rust toolchain ${channel:-stable}"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
      sh -s -- -y --profile minimal --default-toolchain "${channel:-stable}" -c clippy,rustfmt
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
  fi
}

setup_app() {
  install_packages "${APP_PACKAGES[@]}"
  ensure_rust
}

ensure_node() {
  command -v node >/dev/null || install_packages nodejs
  command -v npm >/dev/null || install_packages npm
}

setup_tests() {
  setup_app
  install_packages "${TEST_PACKAGES[@]}"
  ensure_node
  export PATH="$HOME/.cargo/bin:$PATH"
  if ! command -v tauri-driver >/dev/null; then
    echo "==> cargo: installing tauri-driver"
    cargo install tauri-driver --locked
  fi
  if ! command -v cargo-deny >/dev/null; then
    echo "==> cargo: installing cargo-deny"
    cargo install cargo-deny --locked
  fi
  if ! command -v s3s-fs >/dev/null; then
    # An S3 server over a folder that checks signatures and presigned links' expiry.
    echo "==> cargo: installing the S3 server s3s-fs"
    cargo install s3s-fs@0.14.1 --features binary --locked
  fi
  if [ ! -x "$MOTO_VENV/bin/moto_server" ]; then
    echo "==> pip: installing the Cognito emulator (moto) into $MOTO_VENV"
    python3 -m venv "$MOTO_VENV" 2>/dev/null || { install_packages python3-venv; python3 -m venv "$MOTO_VENV"; }
    "$MOTO_VENV/bin/pip" install -q 'moto[server,cognitoidp]==5.2.5'
  fi
  export MOTO_SERVER="$MOTO_VENV/bin/moto_server"
}

setup_package() {
  setup_app
  ensure_node
}
