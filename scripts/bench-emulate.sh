#!/usr/bin/env bash
# A message's round trip through `jobcast emulate` running bench/peer's Node
# handler itself, beside serverless-offline running the same handler file:
# both up at once, measured in turns by `jobcast bench roundtrip`.
#
#   scripts/bench-emulate.sh           release build, the figures BENCHMARKS.md records
#   scripts/bench-emulate.sh --quick   debug build, a short run (CI: the tooling works)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

quick=0
[ "${1:-}" = --quick ] && quick=1
out=target/bench
mkdir -p "$out"
if [ $quick = 1 ]; then
  cargo build --locked --quiet --bin jobcast
  bin=$PWD/target/debug/jobcast
  args=(--messages 20 --rounds 2 --warmup 5)
else
  cargo build --locked --quiet --release --bin jobcast
  bin=$PWD/target/release/jobcast
  args=(--messages 500 --rounds 6 --warmup 50)
fi
(cd bench/peer && npm ci --no-audit --no-fund --loglevel=error)

pids=()
stop() { for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true; done; }
trap stop EXIT

emulate_port=$(free_port)
env -u AWS_ENDPOINT_URL_LAMBDA setsid "$bin" emulate --template bench/peer/template.yaml \
  --listen "127.0.0.1:$emulate_port" >"$out/roundtrip.emulate.log" 2>&1 &
pids+=($!)
ws_port=$(free_port); http_port=$(free_port); lambda_port=$(free_port)
(cd bench/peer && PEER_WS_PORT=$ws_port PEER_HTTP_PORT=$http_port PEER_LAMBDA_PORT=$lambda_port \
  SLS_TELEMETRY_DISABLED=1 SLS_NOTIFICATIONS_MODE=off AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local \
  exec setsid node node_modules/serverless/bin/serverless.js offline start) >"$out/roundtrip.peer.log" 2>&1 &
pids+=($!)
wait_port "$emulate_port" 60 || { echo "emulate did not start; see $out/roundtrip.emulate.log" >&2; exit 1; }
wait_port "$ws_port" 120 || { echo "serverless-offline did not start; see $out/roundtrip.peer.log" >&2; exit 1; }

for clients in 1 8; do
  "$bin" bench roundtrip --clients "$clients" "${args[@]}" \
    --target "jobcast emulate=ws://127.0.0.1:$emulate_port/dev" \
    --target "serverless-offline=ws://127.0.0.1:$ws_port" | tee "$out/roundtrip-$clients.md"
done
