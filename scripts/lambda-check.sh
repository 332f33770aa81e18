#!/usr/bin/env bash
# Builds the seven Lambda functions as they are deployed (cargo lambda build
# --release, zipped) and reports, per function, the bootstrap.zip size
# (goal: at most 4 MB for arm64), the cold start (process start to the first
# `GET /runtime/invocation/next`, and to the first response posted) under a
# local Lambda Runtime API against moto, and the peak memory (VmHWM) after
# that first response. Medians of RUNS runs (default 5). Writes a markdown
# table to standard output and bench/results/lambda.json. See docs/lambda.md.
#
#   scripts/lambda-check.sh              # build (arm64 too, when possible) and measure
#   scripts/lambda-check.sh --no-arm64   # build and measure this machine's architecture only
#   scripts/lambda-check.sh --no-build   # measure the last builds again
#   RUNS=9 scripts/lambda-check.sh
#   scripts/lambda-check.sh --meta source=my-branch   # an extra fact for the JSON's "build"
#
# Not part of scripts/test.sh: release builds of seven binaries with the AWS
# SDK take minutes on a small machine (docs/lambda.md has the times).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_LAMBDA_VERSION=1.9.2
ZIGLANG_VERSION=0.14.1
RUNS=${RUNS:-5}
FUNCTIONS=(order notify-baker fulfilled dispatch notify-delivery delivered feedback)
OUT=target/lambda-check
RESULTS=bench/results/lambda.json

build=yes
arm64=yes
extra_meta=()
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) build=no ;;
        --no-arm64) arm64=no ;;
        --meta) extra_meta+=(--meta "${2:?--meta needs KEY=VALUE}"); shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

echo "== tools" >&2
# moto (the AWS APIs the functions call during the measurement) into .venv.
scripts/install-test-tools.sh
# cargo-lambda, pinned, with the zig it cross-links with, into the same .venv.
if [ "$(.venv/bin/cargo-lambda lambda --version 2>/dev/null | awk '{print $2}')" != "$CARGO_LAMBDA_VERSION" ] \
    || ! .venv/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('ziglang') != '$ZIGLANG_VERSION')" 2>/dev/null; then
    echo "installing cargo-lambda $CARGO_LAMBDA_VERSION and ziglang $ZIGLANG_VERSION into .venv" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check \
        "cargo-lambda==$CARGO_LAMBDA_VERSION" "ziglang==$ZIGLANG_VERSION"
fi
# cargo finds `cargo-lambda` on PATH; cargo-lambda finds zig as `python3 -m ziglang`.
export PATH="$PWD/.venv/bin:$PATH"

case "$(uname -m)" in
    x86_64) host_arch=x86_64; host_flag=--x86-64 ;;
    aarch64|arm64) host_arch=arm64; host_flag=--arm64 ;;
    *) echo "cannot run Lambda binaries on $(uname -m)" >&2; exit 1 ;;
esac

# template.yaml deploys arm64. Its standard library must already be
# installed: where the Rust distribution cannot be reached, `rustup target
# add` (which cargo-lambda would run) hangs instead of failing.
arches=("$host_arch")
if [ "$host_arch" = arm64 ]; then
    deploy_note="arm64 built and measured: this machine is arm64, as template.yaml deploys"
elif [ "$arm64" = no ]; then
    deploy_note="arm64 not built (--no-arm64); sizes and timings are of the x86_64 build"
elif rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
    arches=(arm64 "$host_arch")
    deploy_note="arm64 built for its zip sizes (what template.yaml deploys); cold starts and memory measured on the $host_arch build, which this machine can run"
else
    deploy_note="arm64 NOT built: rustup has no aarch64-unknown-linux-gnu standard library here and cannot download one; sizes and timings are of the $host_arch build"
fi
echo "== $deploy_note" >&2

packages=()
for f in "${FUNCTIONS[@]}"; do packages+=(-p "$f"); done

declare -A build_seconds
if [ "$build" = yes ]; then
    for arch in "${arches[@]}"; do
        flag=--x86-64
        [ "$arch" = arm64 ] && flag=--arm64
        echo "== cargo lambda build --release $flag --output-format zip (${FUNCTIONS[*]})" >&2
        start=$(date +%s)
        cargo lambda build --release "$flag" --output-format zip \
            --lambda-dir "$OUT/$arch" "${packages[@]}" >&2
        build_seconds[$arch]=$(( $(date +%s) - start ))
        echo "   $arch: ${build_seconds[$arch]} s" >&2
    done
fi

zips=()
for arch in "${arches[@]}"; do
    for f in "${FUNCTIONS[@]}"; do
        [ -f "$OUT/$arch/$f/bootstrap.zip" ] || {
            echo "$OUT/$arch/$f/bootstrap.zip is missing: run without --no-build" >&2
            exit 1
        }
    done
    zips+=(--zip "$arch=$OUT/$arch")
done
# The measured binaries are exactly what is in the host architecture's zips.
for f in "${FUNCTIONS[@]}"; do
    unzip -q -o "$OUT/$host_arch/$f/bootstrap.zip" bootstrap -d "$OUT/$host_arch/$f"
done

meta=(--meta "note=$deploy_note" --meta "measuredArch=$host_arch"
      --meta "builtArches=${arches[*]}" --meta "cargoLambda=$CARGO_LAMBDA_VERSION"
      --meta "rustc=$(rustc --version)"
      --meta "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
      ${extra_meta[@]+"${extra_meta[@]}"})
for arch in "${!build_seconds[@]}"; do
    meta+=(--meta "buildSeconds.$arch=${build_seconds[$arch]}")
done

echo "== measuring cold starts ($RUNS runs per function)" >&2
cargo build --quiet -p lambda-check --features cli
mkdir -p "$(dirname "$RESULTS")"
"${CARGO_TARGET_DIR:-target}/debug/lambda-check" --lambda-dir "$OUT/$host_arch" "${zips[@]}" \
    --runs "$RUNS" --json "$RESULTS" "${meta[@]}"
echo >&2
echo "$deploy_note." >&2
for arch in "${!build_seconds[@]}"; do
    echo "build time, $arch: ${build_seconds[$arch]} s" >&2
done
