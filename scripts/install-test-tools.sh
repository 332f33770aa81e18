#!/usr/bin/env bash
# Installs the test suite's Python tools into .venv, once: a stamp of the
# requirement files' contents skips the install when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(cat tests/requirements.txt tests/*/requirements.txt 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing Python test tools into .venv"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
    echo "$want" > "$stamp"
fi
