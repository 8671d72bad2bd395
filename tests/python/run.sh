#!/usr/bin/env bash
# Tests the gRPC API from Python: creates a virtual environment, installs
# grpcio, grpcio-tools and protobuf from PyPI, generates stubs from proto/
# alone, and runs test_client.py against the built `occoder serve`.
#
# Usage: bash tests/python/run.sh
# Environment: CARGO_TARGET_DIR (default: target), OCCODER_BIN (skips the
# cargo build), OCCODER_TEST_MODELS (default: the shipped models/),
# PYTHON (default: python3).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
python="${PYTHON:-python3}"
venv="$target/python-grpc-venv"
models="${OCCODER_TEST_MODELS:-$repo/models}"

if [[ -z "${OCCODER_BIN:-}" ]]; then
    # The debug build, which `cargo test` has usually built already.
    (cd "$repo" && cargo build --bin occoder)
    OCCODER_BIN="$target/debug/occoder"
fi

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check grpcio grpcio-tools protobuf

stubs="$(mktemp -d)"
trap 'rm -rf "$stubs"' EXIT
"$venv/bin/python" -m grpc_tools.protoc -I "$repo/proto" \
    --python_out="$stubs" --grpc_python_out="$stubs" \
    "$repo"/proto/occoder/v1/*.proto

OCCODER_BIN="$OCCODER_BIN" OCCODER_MODELS="$models" PYTHONPATH="$stubs" \
    "$venv/bin/python" "$repo/tests/python/test_client.py"

# The example must run against the same kind of server.
OCCODER_BIN="$OCCODER_BIN" OCCODER_MODELS="$models" PYTHONPATH="$stubs" \
    "$venv/bin/python" "$repo/tests/python/test_client.py" --example "$repo/examples/python_client.py"
