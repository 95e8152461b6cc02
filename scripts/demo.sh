#!/usr/bin/env bash
# Floe's main job, on a fresh machine with only the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "floe demo: checking system packages, then building Floe and starting a local testnet" >&2
bash scripts/setup.sh
cargo xtask demo "$@"
