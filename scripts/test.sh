#!/usr/bin/env bash
# Runs every check and test of the project. Installs what it needs.
#
#   ./scripts/test.sh           everything (what CI runs)
#   ./scripts/test.sh --quick   the loop while you work: format, clippy, the
#                               Rust tests, the browser and worker-library
#                               tests; no dependency audit, template checks,
#                               Lambda builds, Autobahn, Lambda smoke test,
#                               emulate tests, schemathesis, soak or benchmark
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
case "${1:-}" in
  --quick) quick=1 ;;
  "") ;;
  *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
esac
# True for the steps the quick loop leaves out.
full() { [ "$quick" = 0 ]; }

step() { printf '\n==> %s  (%ss in)\n' "$*" "$SECONDS"; }

if [ "${CI:-}" = true ]; then
  # A clean clone builds once: incremental state would only cost disk.
  export CARGO_INCREMENTAL=0
fi
# Disk is the resource a clean run can run out of (a full disk shows up as
# the linker dying with SIGBUS): say what there is, before and after.
disk_report() { df -h . | awk 'NR==2 {print "  disk: " $4 " free of " $2}'; [ -d target ] && du -sh target | awk '{print "  target/: " $1}' || true; }
disk_report

if command -v rustup >/dev/null 2>&1; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

# Commands installed by pip land in the interpreter's scripts directory.
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH

pip_install() {
  # $1: a command that must exist afterwards; the rest: pip requirements.
  local cmd=$1; shift
  if ! command -v "$cmd" >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check "$@"
    hash -r
    command -v "$cmd" >/dev/null || { echo "installing $* did not provide $cmd" >&2; exit 1; }
  fi
}

if full; then
step "dependencies: licenses, bans, sources and advisories (cargo deny)"
if ! command -v cargo-deny >/dev/null 2>&1; then
  cargo install --locked --quiet cargo-deny@0.20.2
fi
cargo deny --locked check licenses bans sources
# The advisory database is fetched from github.com; where that is out of
# reach the rest still runs, and the skip is said plainly.
if git ls-remote --exit-code https://github.com/RustSec/advisory-db HEAD >/dev/null 2>&1; then
  cargo deny --locked check advisories
else
  echo "warning: github.com is unreachable here: advisories not checked (run cargo deny check advisories where it is)" >&2
fi

step "infrastructure template"
pip_install cfn-lint "cfn-lint>=1.20"
pip_install sam "aws-sam-cli>=1.130"
cfn-lint infra/template.yaml
# The examples name managed runtimes, whose deprecation warning (W2531)
# depends on the day the check runs: everything else must be clean.
cfn-lint --ignore-checks W2531 -- examples/chat-node/template.yaml examples/chat-python/template.yaml
SAM_CLI_TELEMETRY=0 sam validate --lint --template infra/template.yaml --region us-east-1

step "Lambda builds"
pip_install cargo-lambda "cargo-lambda>=1.9" "ziglang>=0.13"
arch_flag=--arm64
if ! rustup target list --installed 2>/dev/null | grep -q aarch64-unknown-linux-gnu \
   && ! rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1; then
  echo "warning: the arm64 target cannot be installed here; building x86_64 instead" >&2
  arch_flag=--x86-64
fi
if [ "${CI:-}" = true ]; then
  # CI proves the cross build and the template's build in the dev profile
  # (without debug info): the optimized release build, whose sizes
  # BENCHMARKS.md records, takes about 12 of CI's minutes on two cores.
  lambda_release=()
  export SAM_BUILD_MODE=debug CARGO_PROFILE_DEV_DEBUG=0
else
  lambda_release=(--release)
fi
cargo lambda build "${lambda_release[@]}" "$arch_flag" --output-format zip -p jobcast-lambdas
for zip in target/lambda/*/bootstrap.zip; do
  printf '  %-12s %8d bytes zipped\n' "$(basename "$(dirname "$zip")")" "$(stat -c %s "$zip")"
done
if [ "$arch_flag" = --arm64 ]; then
  # The template's own build, reusing what cargo lambda just compiled.
  (cd infra && SAM_CLI_TELEMETRY=0 sam build --beta-features)
fi
unset SAM_BUILD_MODE CARGO_PROFILE_DEV_DEBUG
fi

step "DynamoDB Local and an SQS emulator"
eval "$(scripts/dynamodb-local.sh start)"
# The pinned moto: older ones answer ECS RunTask in a shape the SDK cannot read.
if ! python3 -c 'import moto, sys; sys.exit(moto.__version__ != "5.2.5")' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check "moto[server]==5.2.5"
  hash -r
fi
command -v moto_server >/dev/null || { echo "installing moto[server]==5.2.5 did not provide moto_server" >&2; exit 1; }
sqs_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
moto_server -H 127.0.0.1 -p "$sqs_port" >target/moto.log 2>&1 &
moto_pid=$!
trap 'scripts/dynamodb-local.sh stop; kill $moto_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  (exec 3<>"/dev/tcp/127.0.0.1/$sqs_port") 2>/dev/null && break
  sleep 0.25
done
export JOBCAST_TEST_SQS=http://127.0.0.1:$sqs_port
echo "DynamoDB Local at $JOBCAST_TEST_DYNAMODB, SQS at $JOBCAST_TEST_SQS"

step "tests: in process, then the emulator tier (DynamoDB Local, moto)"
# The emulator tier is #[ignore]d so a plain `cargo test` needs nothing
# installed; here both tiers run.
cargo test --workspace --locked -- --include-ignored 2>&1 | tee target/test-output.txt

if full; then
step "WebSocket conformance (Autobahn|Testsuite, groups 1-7, 9, 10)"
scripts/autobahn.sh target/debug/jobcast 2>&1 | tee target/autobahn-output.txt
ab_passed=$(sed -n 's/^  OK: \([0-9]*\) of.*/\1/p' target/autobahn-output.txt | tail -1)
fi

# The Python the tests use: pytest and websockets for the test clients,
# boto3 for the Python chat example (Lambda's Python runtimes have it), and
# the OpenTelemetry project's protobuf classes for the OTLP receiver.
make_venv() {
  if [ ! -x target/py-venv/bin/pytest ] || ! target/py-venv/bin/python -c 'import boto3, opentelemetry.proto' 2>/dev/null; then
    python3 -m venv target/py-venv
    target/py-venv/bin/pip install --quiet --disable-pip-version-check pytest==8.3.4 websockets==14.1 boto3==1.35.99 \
      opentelemetry-proto==1.29.0
  fi
}

step "web demo and the chat examples in chromium"
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
  else
    echo "chromium is missing: sudo apt-get install chromium" >&2
    exit 1
  fi
fi
(cd web-demo && npm ci --no-audit --no-fund --loglevel=error)
# The chat examples run as a user runs them: the Node one's own packages, the
# Python one's boto3 in the venv.
(cd examples/chat-node/src && npm ci --no-audit --no-fund --loglevel=error)
make_venv
(cd web-demo && JOBCAST_BIN="$PWD/../target/debug/jobcast" node --test tests/) 2>&1 | tee target/web-test-output.txt
web_passed=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' target/web-test-output.txt | tail -1)

step "@jobcast/client: the browser client, its types, and its React hooks in chromium"
(cd clients/browser && npm ci --no-audit --no-fund --loglevel=error)
(cd clients/browser && JOBCAST_BIN="$PWD/../../target/debug/jobcast" node --test tests/) 2>&1 | tee target/browser-client-output.txt
browser_passed=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' target/browser-client-output.txt | tail -1)

step "against a live serve: worker libraries (Python, Node), close frames through asyncio clients"
# Installed as a user would: pip install ./clients/python.
target/py-venv/bin/pip install --quiet --disable-pip-version-check --force-reinstall --no-deps ./clients/python
JOBCAST_BIN="$PWD/target/debug/jobcast" target/py-venv/bin/pytest -q -p no:cacheprovider clients/python \
  2>&1 | tee target/python-worker-output.txt
py_passed=$(sed -n 's/^\([0-9]*\) passed.*/\1/p' target/python-worker-output.txt | tail -1)
JOBCAST_BIN="$PWD/target/debug/jobcast" target/py-venv/bin/pytest -q -p no:cacheprovider tests/python \
  2>&1 | tee target/python-close-output.txt
close_passed=$(sed -n 's/^\([0-9]*\) passed.*/\1/p' target/python-close-output.txt | tail -1)
py_passed=$(( ${py_passed:-0} + ${close_passed:-0} ))
(cd clients/node && npm ci --no-audit --no-fund --loglevel=error)
(cd clients/node && JOBCAST_BIN="$PWD/../../target/debug/jobcast" node --test tests/) 2>&1 | tee target/node-worker-output.txt
node_passed=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' target/node-worker-output.txt | tail -1)

if full; then
step "Lambda binaries under cargo lambda watch"
scripts/lambda-smoke.sh

step "jobcast emulate in front of the Lambda functions (infra/template.yaml under cargo lambda watch)"
scripts/emulate-smoke.sh 2>&1 | tee target/emulate-smoke-output.txt

step "jobcast emulate: a SAM chat app (Node, AWS SDK v3) under serverless-offline's Lambda port"
scripts/emulate-chat.sh 2>&1 | tee target/emulate-chat-output.txt

step "CDK construct: synth offline, cfn-lint, the same deployment as the SAM template, emulate on cdk.out"
(cd infra/cdk && npm ci --no-audit --no-fund --loglevel=error)
(cd infra/cdk && JOBCAST_BIN="$PWD/../../target/debug/jobcast" npm test --silent) 2>&1 | tee target/cdk-output.txt
cdk_passed=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' target/cdk-output.txt | tail -1)

step "jobs API against docs/openapi.yaml (schemathesis)"
scripts/schemathesis.sh target/debug/jobcast 40 2>&1 | tee target/schemathesis-output.txt
st_passed=$(sed -n 's/^ *\([0-9]*\) generated, \1 passed.*/\1/p' target/schemathesis-output.txt | tail -1)
echo "schemathesis cases passed: ${st_passed:-0}"

step "soak, 60-second version (churn; no lost terminal snapshot, no leak)"
scripts/soak.sh --ci 2>&1 | tee target/soak-output.txt

step "benchmark tooling (short run, jobcast and serverless-offline; no timing asserted)"
scripts/bench.sh --quick 2>&1 | tee target/bench-quick-output.txt
bench_checks=$(grep -c '^| ' target/bench/BENCHMARKS.quick.md || true)
scripts/bench-emulate.sh --quick 2>&1 | tee target/bench-emulate-quick-output.txt
scripts/bench-tracing.sh --quick 2>&1 | tee target/bench-tracing-quick-output.txt
bench_checks=$((bench_checks + $(grep -c '^| jobcast emulate\|^| serverless-offline' target/bench-emulate-quick-output.txt || true)))
echo "benchmark report rows checked: ${bench_checks:-0}"
fi

# A run that executed no test is a failure, not a pass.
passed=$(grep -Eo 'test result: ok\. [0-9]+ passed' target/test-output.txt | awk '{s+=$4} END {print s+0}')
passed=$((passed + ${web_passed:-0} + ${browser_passed:-0} + ${cdk_passed:-0} + ${py_passed:-0} + ${node_passed:-0} + ${ab_passed:-0}))
if [ "$passed" -eq 0 ]; then
  echo "no test ran" >&2
  exit 1
fi
disk_report
step "all checks passed ($passed tests)"
