#!/usr/bin/env bash
# Fuzzes the running bakery against the OpenAPI document it serves.
#
# Installs the pinned schemathesis into the project's venv (once), builds
# and starts the real `bakery` binary on a free port with a temporary data
# directory and a known baker token, then runs `schemathesis run` against
# its own GET /openapi.yaml with that token. Every response must be no 5xx,
# a documented status with the documented content type, headers and schema.
# Bounded: at most $MAX_EXAMPLES cases per operation and $MAX_TIME seconds.
# Exits non-zero on any finding.
#
#   tests/schemathesis/run.sh                 # defaults: 50 cases, 90 s
#   MAX_EXAMPLES=200 tests/schemathesis/run.sh
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
VENV=${BAKERY_VENV:-$ROOT/.venv}
REQUIREMENTS=$ROOT/tests/schemathesis/requirements.txt
MAX_EXAMPLES=${MAX_EXAMPLES:-50}
MAX_TIME=${MAX_TIME:-90}
SEED=${SEED:-20261124}
TOKEN=schemathesis-baker-token-0123456789

# The pinned version, installed only when it is not there yet.
WANTED=$(sed -n 's/^schemathesis==//p' "$REQUIREMENTS")
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
if [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null)" != "$WANTED" ]; then
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
fi

cargo build --quiet -p bakery
BAKERY=${CARGO_TARGET_DIR:-$ROOT/target}/debug/bakery

WORK=$(mktemp -d)
PID=
cleanup() {
    if [ -n "$PID" ]; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# Long-polls (`waitFor`) answer within 0.2 s, so generated cases that wait
# for a step that never comes do not eat the time budget.
BAKERY_LOG=warn "$BAKERY" --listen 127.0.0.1:0 --data-dir "$WORK/data" --max-wait-ms 200 \
    --baker-token "$TOKEN" >"$WORK/stdout" 2>"$WORK/stderr" &
PID=$!

# The bakery prints "listening on http://..." once it serves.
URL=
for _ in $(seq 300); do
    URL=$(sed -n 's/^listening on //p' "$WORK/stdout")
    [ -n "$URL" ] && break
    if ! kill -0 "$PID" 2>/dev/null; then
        echo "the bakery exited before listening:" >&2
        cat "$WORK/stderr" >&2
        exit 1
    fi
    sleep 0.1
done
if [ -z "$URL" ]; then
    echo "the bakery did not listen within 30 s" >&2
    exit 1
fi
echo "bakery at $URL (pid $PID)"

status=0
"$VENV/bin/schemathesis" run "$URL/openapi.yaml" \
    --url "$URL" \
    --header "Authorization: Bearer $TOKEN" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --max-examples "$MAX_EXAMPLES" \
    --max-time "$MAX_TIME" \
    --request-timeout 15 \
    --seed "$SEED" \
    --workers 2 \
    --warnings off \
    --no-color \
    || status=$?

if ! kill -0 "$PID" 2>/dev/null; then
    echo "the bakery died during the run:" >&2
    cat "$WORK/stderr" >&2
    exit 1
fi
if grep -q "panicked" "$WORK/stderr"; then
    echo "the bakery panicked during the run:" >&2
    grep -A5 "panicked" "$WORK/stderr" >&2
    exit 1
fi
exit "$status"
