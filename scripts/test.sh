#!/usr/bin/env bash
# Runs the whole test suite: every Rust test of the workspace, then the
# Python gRPC client test (which installs grpcio from PyPI into a virtual
# environment under target/). CI runs exactly this script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Release mode: the end-to-end tests code hundreds of thousands of records
# and hash client secrets with argon2, both far slower in a debug build.
cargo test --workspace --release --locked

OCCODER_BIN="${CARGO_TARGET_DIR:-target}/release/occoder" bash tests/python/run.sh
