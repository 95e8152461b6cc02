#!/usr/bin/env bash
# Runs Floe's whole test suite on a fresh machine with only the Rust
# toolchain: installs the system packages it needs, then tests every crate.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --workspace --locked "$@"
