#!/usr/bin/env bash
# Runs every check and test of the project. Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

if command -v rustup >/dev/null 2>&1; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "DynamoDB Local"
eval "$(scripts/dynamodb-local.sh start)"
trap 'scripts/dynamodb-local.sh stop' EXIT
echo "running at $JOBCAST_TEST_DYNAMODB"

step "tests"
cargo test --workspace --locked 2>&1 | tee target/test-output.txt
# A run that executed no test is a failure, not a pass.
passed=$(grep -Eo 'test result: ok\. [0-9]+ passed' target/test-output.txt | awk '{s+=$4} END {print s+0}')
if [ "$passed" -eq 0 ]; then
  echo "no test ran" >&2
  exit 1
fi
step "all checks passed ($passed tests)"
