#!/usr/bin/env bash
# The whole test suite, as CI runs it. Safe to run again and again: what it
# installs, it installs once.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== format"
cargo fmt --all --check
echo "== lint"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== tests"
cargo test --workspace
