#!/usr/bin/env bash
# Renders the pictures in media/ from their committed sources.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v dot >/dev/null || { echo "needs Graphviz (apt-get install graphviz)" >&2; exit 1; }
dot -Tsvg media/flow.dot -o media/flow.svg
dot -Tpng -Gdpi=110 media/flow.dot -o media/flow.png
echo "rendered media/flow.svg and media/flow.png"
