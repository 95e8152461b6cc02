#!/usr/bin/env bash
# Floe's main job, on a fresh machine with only the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo xtask demo "$@"
