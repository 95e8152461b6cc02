#!/usr/bin/env bash
# Runs Floe's whole test suite. Installs what a fresh machine with only the
# Rust toolchain lacks (nothing yet; RocksDB's bindings will need clang).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked "$@"
