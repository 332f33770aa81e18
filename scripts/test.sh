#!/usr/bin/env bash
# The whole test suite, as CI runs it. It installs what it needs (a Python
# venv with the AWS API emulator and the template linters; npm packages for
# the template and browser checks) and is quick when they are already there.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== tools"
scripts/install-test-tools.sh

echo "== format"
cargo fmt --all --check
echo "== lint"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== Rust tests (unit, adapters against SQLite, SMTP, webhooks and the AWS emulator, end to end)"
cargo test --workspace
echo "== deployment templates"
scripts/check-templates.sh
