#!/usr/bin/env bash
# The pages end to end in a real browser: installs Debian's Chromium and the
# test's one npm package if missing, builds the bakery, then runs
# bakery.test.mjs (one order through the shop, tracking, cake maker's and
# operator's pages, with a failing delivery webhook) and staff.test.mjs (the
# cake maker's page with hundreds of orders and other cake makers at work,
# the operator's page on a phone and after a redrive), each against its own
# bakery on a free port; harness.mjs is what they share. Screenshots go to
# media/page-*.png.
#
#   tests/browser/run.sh            # from anywhere
#   CHROMIUM=/path/to/chromium tests/browser/run.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

if [[ ! -x "$CHROMIUM" ]]; then
  echo "run.sh: installing Debian's chromium" >&2
  sudo=""
  [[ "$(id -u)" -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi

if ! command -v node >/dev/null; then
  echo "run.sh: node (20 or later) is needed" >&2
  exit 1
fi

if [[ ! -d "$here/node_modules/playwright-core" || ! -d "$here/node_modules/axe-core" ]]; then
  # playwright-core, not playwright: it downloads no browser.
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

(cd "$root" && cargo build -p bakery)
target_dir="$(cd "$root" && cargo metadata --format-version 1 --no-deps | node -e \
  'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
export BAKERY_BIN="$target_dir/debug/bakery"

cd "$here"
exec node --test --test-reporter=spec --test-timeout=180000 bakery.test.mjs staff.test.mjs
