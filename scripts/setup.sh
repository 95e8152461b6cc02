#!/usr/bin/env bash
# Installs what a fresh machine with only the Rust toolchain lacks:
# RocksDB's bindings need clang and libclang (apt). Idempotent.
set -euo pipefail
if command -v clang >/dev/null 2>&1 && ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "floe: installing clang and libclang-dev (needed to build RocksDB's bindings)" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang libclang-dev >/dev/null
