#!/usr/bin/env bash
# The whole test suite, as CI runs it. It installs what it needs (a Python
# venv with the AWS API emulator and the template linters; npm packages for
# the template and browser checks; Debian's Chromium) and is quick when
# they are already there.
set -euo pipefail
cd "$(dirname "$0")/.."
# A clean run gains nothing from incremental caches, and they would double
# the disk our own crates take.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

echo "== tools"
scripts/install-test-tools.sh

echo "== format"
cargo fmt --all --check
echo "== lint"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== deployment templates"
scripts/check-templates.sh
echo "== pages in a real browser"
tests/browser/run.sh
echo "== the API against its OpenAPI description (schemathesis)"
tests/schemathesis/run.sh
# Last, so its summary closes the output.
echo "== Rust tests (unit, adapters against SQLite, SMTP, webhooks and the AWS emulator, end to end)"
cargo test --workspace
