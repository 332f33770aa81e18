#!/usr/bin/env bash
# The benchmark the README quotes: builds release, runs the bakery on fresh
# temporary data directories and drives it with bakery-bench, then writes
# bench/results/latest.json, the charts media/bench-*.png and a markdown
# summary table (printed at the end).
#
#   scripts/bench.sh                      # everything, 5 runs of each
#   BENCH_REPEAT=3 scripts/bench.sh       # 3 runs of each, quicker
#   TMPDIR=/dev/shm scripts/bench.sh      # the data directories on tmpfs, not disk
#   BENCH_BACKEND=aws scripts/bench.sh    # also the AWS adapters on an emulator
#
# Parts: (a) orders mode (POST /order only): accepted orders/s, at
# BENCH_CUSTOMERS (128) and at BENCH_FEWER_CUSTOMERS (64); (b) lifecycle
# mode (the whole flow): lifecycles/s; (c) lifecycle at half of (b) with a
# fixed arrival rate: latency percentiles; (d) start-up time and memory with
# BENCH_SEED_ORDERS (1,000,000) orders stored; (e) the storage baseline: the
# same rows written straight to SQLite, grouped and one transaction per
# order, and the embedded crate in process; (f) with BENCH_BACKEND=aws, the
# lifecycle on the AWS adapters against moto.
#
# Everything runs on this machine: the load generator shares the cores with
# the bakery, and every request goes to 127.0.0.1.
set -euo pipefail

cd "$(dirname "$0")/.."

REPEAT=${BENCH_REPEAT:-5}
DURATION=${BENCH_DURATION:-10s}
CUSTOMERS=${BENCH_CUSTOMERS:-128}
FEWER_CUSTOMERS=${BENCH_FEWER_CUSTOMERS:-64}
LIFECYCLE_CUSTOMERS=${BENCH_LIFECYCLE_CUSTOMERS:-192}
SEED_ORDERS=${BENCH_SEED_ORDERS:-1000000}
STARTUP_REPEAT=${BENCH_STARTUP_REPEAT:-5}
RAW_ORDERS=${BENCH_RAW_ORDERS:-100000}
RAW_PER_ORDER=${BENCH_RAW_PER_ORDER:-3000}
BACKEND=${BENCH_BACKEND:-embedded}
AWS_DURATION=${BENCH_AWS_DURATION:-10s}
AWS_CUSTOMERS=${BENCH_AWS_CUSTOMERS:-8}
AWS_POLL_MS=${BENCH_AWS_POLL_MS:-200}
OUT=${BENCH_OUT:-bench/results/latest.json}
CHARTS=${BENCH_CHARTS:-media}

started_at=$(date +%s)
say() { printf '\n== %s\n' "$*" >&2; }

say "building (release)"
cargo build --release -p bakery -p loadgen
BAKERY=${CARGO_TARGET_DIR:-target}/release/bakery
BENCH=${CARGO_TARGET_DIR:-target}/release/bakery-bench

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bakery-bench.XXXXXX")
RUNS=$WORK/runs
mkdir -p "$RUNS"
NOTES=()
BAKERY_PID=
MOTO_PID=

cleanup() {
    stop_bakery
    if [ -n "$MOTO_PID" ]; then
        kill "$MOTO_PID" 2>/dev/null || true
        wait "$MOTO_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# start_bakery DATA_DIR [extra bakery args...]: sets BAKERY_PID and BAKERY_URL.
start_bakery() {
    local dir=$1
    shift
    mkdir -p "$dir"
    : >"$dir.out"
    "$BAKERY" --data-dir "$dir" --listen 127.0.0.1:0 "$@" >"$dir.out" 2>"$dir.log" &
    BAKERY_PID=$!
    for _ in $(seq 1 600); do
        BAKERY_URL=$(sed -n 's/^listening on //p' "$dir.out")
        [ -n "$BAKERY_URL" ] && return 0
        if ! kill -0 "$BAKERY_PID" 2>/dev/null; then
            cat "$dir.log" >&2
            echo "the bakery exited before listening" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "the bakery did not listen within a minute" >&2
    exit 1
}

stop_bakery() {
    if [ -n "$BAKERY_PID" ]; then
        kill -TERM "$BAKERY_PID" 2>/dev/null || true
        wait "$BAKERY_PID" 2>/dev/null || true
        BAKERY_PID=
    fi
}

# median_of LABEL FIELD: the median of FIELD over the run files of LABEL.
median_of() {
    python3 - "$RUNS" "$1" "$2" <<'EOF'
import json, pathlib, statistics, sys
runs, label, field = sys.argv[1:]
values = [json.loads(p.read_text())[field] for p in sorted(pathlib.Path(runs).glob(label + "-[0-9]*.json"))]
print(statistics.median(values) if values else 0)
EOF
}

# load_run LABEL N [bakery-bench args...]: one load run on a fresh bakery.
load_run() {
    local label=$1 n=$2
    shift 2
    local dir=$WORK/$label-$n
    # Each run starts with nothing of the previous one left to write back:
    # the kernel's write-back of the last run's hundreds of megabytes
    # would otherwise compete with this run's fsyncs.
    sync
    start_bakery "$dir/data"
    "$BENCH" --url "$BAKERY_URL" --baker-token-file "$dir/data/baker-token" \
        --server-pid "$BAKERY_PID" --label "$label" --json "$RUNS/$label-$n.json" \
        --no-progress "$@" | sed -n '1,2p' >&2
    stop_bakery
    if [ "$label" = lifecycle ] && [ ! -f "$RUNS/sizes.json" ]; then
        record_sizes "$dir/data"
    fi
    settle "$dir"
}

# settle DIR: leaves the machine for the next run as the first run found it.
# A run leaves hundreds of megabytes of database and outbox in the page
# cache; when the outbox was a file per email, the cached inodes of earlier
# runs made each later run create files more slowly (six lifecycle runs in
# a row on one machine went from 1,984 down to 1,595 lifecycles/s). Where
# the kernel allows it (root), the run's files are deleted and the caches
# dropped; elsewhere they are kept until the end.
settle() {
    if [ -n "$DROP_CACHES" ]; then
        rm -rf "$1"
        sync
        echo 3 >/proc/sys/vm/drop_caches
    fi
}
DROP_CACHES=
if [ -w /proc/sys/vm/drop_caches ]; then
    DROP_CACHES=1
    NOTES+=("each load run started on a fresh data directory with the previous run's files deleted and the kernel's caches dropped")
else
    NOTES+=("each load run started on a fresh data directory; earlier runs' files were kept until the end (caches could not be dropped without root), which slows later runs on some filesystems")
fi

# record_sizes DATA_DIR: sizes of what a lifecycle stores, for scripts/cost.py:
# the order's JSON when placed and when finished, and a stream event.
record_sizes() {
    python3 - "$1/bakery.sqlite3" "$RUNS/sizes.json" <<'EOF'
import json, sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
events = [json.loads(row[0]) for row in db.execute("SELECT data FROM stream ORDER BY sequence LIMIT 1000")]
placed = [e["order"] for e in events if e["eventType"] == "order_placed"]
compact = lambda value: len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
finished = db.execute("SELECT avg(length(CAST(body AS BLOB))), count(*) FROM orders "
                      "WHERE body LIKE '%customer_service_notified%'").fetchone()
sizes = {
    "kind": "sizes",
    "label": "sizes",
    "placed_json_bytes": sum(map(compact, placed)) / max(len(placed), 1),
    "finished_json_bytes": finished[0] or 0,
    "finished_orders": finished[1],
    "event_bytes": db.execute("SELECT avg(length(data)) FROM stream").fetchone()[0] or 0,
}
open(sys.argv[2], "w").write(json.dumps(sizes, indent=2) + "\n")
EOF
}

say "(a) orders mode: POST /order only, $CUSTOMERS customers, $DURATION, $REPEAT runs"
for n in $(seq 1 "$REPEAT"); do
    load_run orders "$n" --mode orders --customers "$CUSTOMERS" --duration "$DURATION"
done

say "(a) orders mode at fewer customers: $FEWER_CUSTOMERS, $DURATION, $REPEAT runs"
for n in $(seq 1 "$REPEAT"); do
    load_run orders-fewer "$n" --mode orders --customers "$FEWER_CUSTOMERS" --duration "$DURATION"
done

say "(b) lifecycle mode: the whole flow, $LIFECYCLE_CUSTOMERS customers, $DURATION, $REPEAT runs"
for n in $(seq 1 "$REPEAT"); do
    load_run lifecycle "$n" --mode lifecycle --customers "$LIFECYCLE_CUSTOMERS" --duration "$DURATION"
done

max_rate=$(median_of lifecycle lifecycles_per_s)
half_rate=$(python3 -c "print(round(max($max_rate, 2) / 2, 1))")
say "(c) half load: $half_rate lifecycles/s arriving (open loop), $DURATION, $REPEAT runs"
for n in $(seq 1 "$REPEAT"); do
    load_run lifecycle-half "$n" --mode lifecycle --rate "$half_rate" --customers 4096 --duration "$DURATION"
done

say "(d) start-up and memory with $SEED_ORDERS orders stored"
"$BENCH" seed --data-dir "$WORK/seeded" --orders "$SEED_ORDERS" 2>/dev/null | tee "$RUNS/seeded.txt"
"$BENCH" startup --bakery "$BAKERY" --data-dir "$WORK/seeded" --repeat "$STARTUP_REPEAT" \
    --label startup-1m --json "$RUNS/startup-1m.json"
rm -rf "$WORK/seeded"

say "(e) storage baseline: the same rows straight to SQLite (synchronous=FULL), $REPEAT runs each"
for n in $(seq 1 "$REPEAT"); do
    "$BENCH" storage --method raw-grouped --group "$CUSTOMERS" --orders "$RAW_ORDERS" \
        --dir "$WORK/raw-grouped-$n" --json "$RUNS/raw-grouped-$n.json"
    "$BENCH" storage --method raw-per-order --orders "$RAW_PER_ORDER" \
        --dir "$WORK/raw-per-order-$n" --json "$RUNS/raw-per-order-$n.json"
    "$BENCH" storage --method embedded --group "$CUSTOMERS" --orders "$RAW_ORDERS" \
        --dir "$WORK/embedded-$n" --json "$RUNS/embedded-$n.json" 2>/dev/null
    rm -rf "$WORK/raw-grouped-$n" "$WORK/raw-per-order-$n" "$WORK/embedded-$n"
done

if [ "$BACKEND" = aws ]; then
    say "(f) the same flow on the AWS adapters against an emulator"
    if ! "$BAKERY" --help | grep -q -- '--backend'; then
        NOTES+=("BENCH_BACKEND=aws skipped: this bakery has no --backend option")
        echo "skipped: \`bakery --help\` has no --backend (the AWS mode of the runner is not built in)" >&2
    elif [ ! -x .venv/bin/moto_server ]; then
        NOTES+=("BENCH_BACKEND=aws skipped: no .venv/bin/moto_server (scripts/test.sh installs it)")
        echo "skipped: no .venv/bin/moto_server; run scripts/test.sh once to install the emulator" >&2
    else
        port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        .venv/bin/moto_server -H 127.0.0.1 -p "$port" >"$WORK/moto.log" 2>&1 &
        MOTO_PID=$!
        for _ in $(seq 1 600); do
            curl -sf "http://127.0.0.1:$port/moto-api/" >/dev/null 2>&1 && break
            sleep 0.1
        done
        export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
        for n in $(seq 1 "$REPEAT"); do
            dir=$WORK/aws-lifecycle-$n
            start_bakery "$dir/data" --backend aws --aws-endpoint-url "http://127.0.0.1:$port" \
                --aws-provision --aws-prefix "bench$n" --aws-poll-ms "$AWS_POLL_MS"
            "$BENCH" --url "$BAKERY_URL" --baker-token-file "$dir/data/baker-token" \
                --server-pid "$BAKERY_PID" --label aws-lifecycle --json "$RUNS/aws-lifecycle-$n.json" \
                --no-progress --mode lifecycle --customers "$AWS_CUSTOMERS" --duration "$AWS_DURATION" \
                --step-timeout 60s --poll-max-ms 100 | sed -n '1,2p' >&2
            stop_bakery
        done
        NOTES+=("AWS figures: the runner on the AWS adapters against moto on this machine (a Python emulator, not AWS), pollers at aws-poll-ms=$AWS_POLL_MS: they show the flow works over the real APIs, not AWS's speed")
    fi
fi

say "summary"
note_args=()
for note in "${NOTES[@]+"${NOTES[@]}"}"; do
    note_args+=(--note "$note")
done
elapsed=$(($(date +%s) - started_at))
note_args+=(--note "scripts/bench.sh took ${elapsed} s (BENCH_REPEAT=$REPEAT, BENCH_DURATION=$DURATION)")
mkdir -p "$(dirname "$OUT")" "$CHARTS"
"$BENCH" report "$RUNS" --out "$OUT" --charts "$CHARTS" --markdown "$WORK/summary.md" "${note_args[@]}"
echo
echo "wrote $OUT and $CHARTS/bench-*.png"
