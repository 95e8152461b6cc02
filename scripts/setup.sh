#!/usr/bin/env bash
# Installs what a fresh machine with only the Rust toolchain lacks. Idempotent.
#  - clang and libclang (apt): RocksDB's bindings are generated with them.
#  - iproute2 (apt): `cargo xtask testnet up --netns` and its test put each
#    node in a network namespace of its own with `ip`.
#  - openapi-spec-validator (pip): the gateway's test validates the OpenAPI
#    document against the OpenAPI 3.1 schema with it.
set -euo pipefail

if ! { command -v clang >/dev/null 2>&1 && ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1; }; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    echo "floe: installing clang and libclang-dev (needed to build RocksDB's bindings)" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang libclang-dev >/dev/null
fi

if ! command -v ip >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    echo "floe: installing iproute2 (testnets in network namespaces use ip)" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq iproute2 >/dev/null
fi

if ! python3 -c "import openapi_spec_validator" >/dev/null 2>&1; then
    echo "floe: installing openapi-spec-validator (validates docs/openapi.json in the tests)" >&2
    python3 -m pip install --quiet --disable-pip-version-check openapi-spec-validator \
        || python3 -m pip install --quiet --disable-pip-version-check --user openapi-spec-validator
fi
