#!/usr/bin/env bash
# Checks the two deployment descriptions, offline, and exits non-zero on any
# finding:
#   template.yaml   cfn-lint, `sam validate --lint` and `sam validate`
#   serverless.yml  `serverless package` (Serverless Framework v3) in a scratch
#                   copy with dummy artifacts, then cfn-lint on the
#                   CloudFormation it compiled
#   both            tests/templates/test_templates.py (pytest)
# Tools: Python ones into the project's .venv (created if missing, shared with
# other tools), the Serverless Framework into tests/templates/node_modules.
# Each is installed only when missing or at another version, so a second run
# is quick.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
HERE=tests/templates

# ---------------------------------------------------------------- tools
if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv"
    python3 -m venv .venv
fi
PY=.venv/bin/python

# Installed only if one of the pinned versions is missing.
if ! "$PY" - "$HERE/requirements.txt" <<'PYEOF'
import sys
from importlib.metadata import version, PackageNotFoundError
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, want = line.split("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PYEOF
then
    echo "== installing Python tools into .venv"
    "$PY" -m pip install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "check-templates: node and npm are needed for the serverless.yml check" >&2
    exit 1
fi
SLS="$HERE/node_modules/.bin/serverless"
want_sls=$(node -p "require('./$HERE/package.json').devDependencies.serverless")
have_sls=$(node -p "try { require('./$HERE/node_modules/serverless/package.json').version } catch (e) { '' }")
if [ ! -x "$SLS" ] || [ "$have_sls" != "$want_sls" ]; then
    echo "== installing serverless@$want_sls into $HERE/node_modules"
    (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)
fi

# ---------------------------------------------------------------- offline
# Dummy credentials and no shared config: nothing here may reach AWS.
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE
export SAM_CLI_TELEMETRY=0 SLS_TELEMETRY_DISABLED=1 SLS_NOTIFICATIONS_MODE=off

# ---------------------------------------------------------------- template.yaml
echo "== cfn-lint template.yaml"
.venv/bin/cfn-lint template.yaml

echo "== sam validate --lint"
.venv/bin/sam validate --lint --template template.yaml --region us-east-1
.venv/bin/sam validate --template template.yaml --region us-east-1

# ---------------------------------------------------------------- serverless.yml
echo "== serverless package (v$want_sls)"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp serverless.yml "$scratch/"
ln -s "$ROOT/$HERE/node_modules" "$scratch/node_modules"
for crate in order notify-baker fulfilled dispatch notify-delivery delivered feedback; do
    mkdir -p "$scratch/target/lambda/$crate"
    "$PY" -c 'import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w") as z:
    z.writestr("bootstrap", "dummy")' "$scratch/target/lambda/$crate/bootstrap.zip"
done
(
    cd "$scratch"
    node_modules/.bin/serverless package --stage ci --region us-east-1 \
        --param="mailFrom=orders@bakery.invalid" \
        --param="bakerEmail=baker@bakery.invalid" \
        --param="deliveryEmail=delivery@courier.invalid" \
        --param="customerServiceWebhookUrl=https://customer-service.invalid/hook" \
        >package.log 2>&1
) || { cat "$scratch/package.log"; echo "check-templates: serverless package failed" >&2; exit 1; }
if grep -Eiq 'warning|deprecat' "$scratch/package.log"; then
    cat "$scratch/package.log"
    echo "check-templates: serverless package warned" >&2
    exit 1
fi
compiled="$scratch/.serverless/cloudformation-template-update-stack.json"

echo "== cfn-lint on the CloudFormation compiled from serverless.yml"
# W3005 (a DependsOn that a Ref already implies) is the framework's own output.
.venv/bin/cfn-lint --ignore-checks W3005 -- "$compiled"

# ---------------------------------------------------------------- structure
echo "== pytest $HERE"
BAKERY_SLS_TEMPLATE="$compiled" "$PY" -m pytest -q -p no:cacheprovider "$HERE"
