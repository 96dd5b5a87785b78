#!/usr/bin/env bash
# Measures jobcast and serverless-offline side by side with `jobcast bench run`
# and writes the results into BENCHMARKS.md.
#
#   ./scripts/bench.sh           the full run (1,000 clients on both systems,
#                                10,000 and 50,000 on jobcast; ~4 minutes)
#   ./scripts/bench.sh --quick   a few seconds with 200 clients on a debug
#                                build, to prove the tooling works (CI);
#                                writes target/bench/ only
#
# Installs what it needs: a release build of jobcast, and serverless@3.40.0 +
# serverless-offline@13.10.1 from bench/peer/package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[ "${1:-}" = --quick ] && quick=1
out=target/bench
mkdir -p "$out"
step() { printf '\n==> %s\n' "$*"; }

# Every client and every server connection is a file descriptor.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "open files limit: $(ulimit -n)"

step "build"
if [ $quick = 1 ]; then
  # Proves the tooling only: the debug build the tests already made will do.
  cargo build --locked --bin jobcast
  bin=$PWD/target/debug/jobcast
else
  cargo build --release --locked --bin jobcast
  bin=$PWD/target/release/jobcast
fi
(cd bench/peer && npm ci --no-audit --no-fund --loglevel=error)

. scripts/lib.sh
server_pid=
stop_server() {
  if [ -n "$server_pid" ]; then
    kill -TERM -- "-$server_pid" 2>/dev/null || kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$server_pid" 2>/dev/null || true
    server_pid=
  fi
}
trap stop_server EXIT

if [ $quick = 1 ]; then
  small=200; phase=1s; rate=2000; rounds=2; steps=10
else
  small=1000; phase=5s; rate=10000; rounds=5; steps=100
fi

# $1 label, $2 clients, then extra `bench run` flags.
run_jobcast() {
  local label=$1 clients=$2; shift 2
  local port; port=$(free_port)
  setsid "$bin" serve --listen "127.0.0.1:$port" --max-connections 100000 \
    --workers 1 --outbound-queue 1024 --idle-timeout 30m >"$out/$label.serve.log" 2>&1 &
  server_pid=$!
  wait_port "$port"
  "$bin" bench run --label "$label" --clients "$clients" \
    --ws-url "ws://127.0.0.1:$port/dev" --management-url "http://127.0.0.1:$port/dev" \
    --jobs-url "http://127.0.0.1:$port" --metrics-url "http://127.0.0.1:$port/metrics" \
    --server-pid "$server_pid" --json-out "$out/$label.json" "$@"
  stop_server
}

run_peer() {
  local label=$1 clients=$2; shift 2
  local ws_port http_port lambda_port
  ws_port=$(free_port); http_port=$(free_port); lambda_port=$(free_port)
  local log=$out/$label.disconnects.log
  : >"$log"
  (cd bench/peer && PEER_WS_PORT=$ws_port PEER_HTTP_PORT=$http_port PEER_LAMBDA_PORT=$lambda_port \
    PEER_DISCONNECT_LOG=$PWD/../../$log SLS_TELEMETRY_DISABLED=1 SLS_NOTIFICATIONS_MODE=off \
    AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local \
    exec setsid node node_modules/serverless/bin/serverless.js offline start) >"$out/$label.serve.log" 2>&1 &
  server_pid=$!
  wait_port "$ws_port"
  "$bin" bench run --label "$label" --clients "$clients" \
    --ws-url "ws://127.0.0.1:$ws_port" --management-url "http://127.0.0.1:$ws_port" \
    --disconnect-log "$log" --server-pid "$server_pid" --json-out "$out/$label.json" "$@"
  stop_server
}

common=(--post-duration "$phase" --rate "$rate" --rate-duration "$phase" --fanout-rounds "$rounds" --drain-timeout 15s)

step "jobcast, $small clients"
run_jobcast jobcast-small "$small" "${common[@]}" --demo-steps "$steps"
step "serverless-offline, $small clients"
run_peer peer-small "$small" "${common[@]}"

if [ $quick = 0 ]; then
  step "jobcast, 10,000 clients"
  run_jobcast jobcast-10k 10000 "${common[@]}" --demo-steps "$steps" --handshake-concurrency 256
  step "jobcast, 50,000 clients (where does it stop?)"
  run_jobcast jobcast-50k 50000 --source-ips 4 --handshake-concurrency 256 \
    --post-duration 2s --rate 0 --fanout-rounds 0 --demo-steps 1 --drain-timeout 10s || true
fi

step "AWS cost and fan-out at AWS latency (DynamoDB Local, @connections answering later)"
eval "$(scripts/dynamodb-local.sh start)"
trap 'stop_server; scripts/dynamodb-local.sh stop' EXIT
export AWS_ENDPOINT_URL_DYNAMODB=$JOBCAST_TEST_DYNAMODB
if [ $quick = 1 ]; then
  "$bin" bench cost --subscribers 1,10 --updates 5 --samples 2 --json-out "$out/cost.json" >"$out/cost.md"
  "$bin" bench cost --subscribers 10 --updates 8 --update-interval 100ms --samples 2 \
    --coalesce 500ms >"$out/cost-coalesce-500ms.md"
  "$bin" bench cost --subscribers 1 --updates 5 --chunks-per-update 5 --samples 2 >"$out/cost-stream.md"
  "$bin" bench fanout --subscribers 100 --rounds 2 --push http --management-latency 10ms --json >"$out/fanout-latency.jsonl"
else
  "$bin" bench cost --subscribers 1,10,1000 --updates 100 --json-out "$out/cost.json" >"$out/cost.md"
  # A worker reporting about once a second: the liveness deadline it stores moves.
  "$bin" bench cost --subscribers 10 --updates 12 --update-interval 1100ms --samples 5 \
    --json-out "$out/cost-paced.json" >"$out/cost-paced.md"
  # A worker reporting every 100 ms, every update pushed and then coalesced
  # into 500 ms windows (the template's CoalesceMs), side by side.
  for window in 0 500ms; do
    "$bin" bench cost --subscribers 10 --updates 100 --update-interval 100ms --samples 5 \
      --coalesce "$window" --json-out "$out/cost-coalesce-$window.json" >"$out/cost-coalesce-$window.md"
  done
  # A model's answer: 1,000 tokens at 50 a second, gathered 5 to an append
  # (the libraries' 100 ms), watched by 1 and 10; with and without coalescing.
  for window in 0 500ms; do
    "$bin" bench cost --subscribers 1,10 --updates 200 --chunks-per-update 5 --update-interval 100ms \
      --connection-minutes 0.34 --samples 5 --coalesce "$window" \
      --json-out "$out/cost-stream-$window.json" >"$out/cost-stream-$window.md"
  done
  : >"$out/fanout-latency.jsonl"
  for latency in 0 10ms 30ms; do
    for fixed in "--publish-concurrency 64" ""; do
      # shellcheck disable=SC2086
      "$bin" bench fanout --subscribers 1000 --rounds 10 --push http \
        --management-latency "$latency" $fixed --json >>"$out/fanout-latency.jsonl"
    done
  done
fi
scripts/dynamodb-local.sh stop

step "report"
if [ $quick = 1 ]; then
  python3 scripts/bench_report.py --quick "$out" "$out/BENCHMARKS.quick.md"
  cat "$out/BENCHMARKS.quick.md"
else
  python3 scripts/bench_report.py "$out" BENCHMARKS.md
  echo "BENCHMARKS.md updated"
fi
