#!/usr/bin/env bash
# Installs what is missing (see setup-debian.sh) and launches SelfDiffusion.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup-debian.sh
setup_app
exec cargo run --release --locked --bin selfdiffusion -- "$@"
