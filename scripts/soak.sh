#!/usr/bin/env bash
# Soak: `jobcast bench soak` against a fresh `serve` for minutes of churn.
# Fails on a lost terminal snapshot, RSS growth of 10% or more after the
# warm-up, or open file descriptors not back to where they started.
#
#   scripts/soak.sh           10 minutes, ~5,000 connections, 200 connects/s, 50 jobs/s (release build)
#   scripts/soak.sh --ci      60 seconds, ~500 connections, 50 connects/s, 10 jobs/s (debug build)
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
mkdir -p target/soak
if [ "${1:-}" = --ci ]; then
  cargo build --locked --bin jobcast
  bin=target/debug/jobcast
  args=(--duration 60s --connections 500 --connects-per-second 50 --jobs-per-second 10)
else
  cargo build --release --locked --bin jobcast
  bin=target/release/jobcast
  args=(--duration 10m --connections 5000 --connects-per-second 200 --jobs-per-second 50)
fi
. scripts/lib.sh
port=$(free_port)
# A short retention keeps the memory store at a steady size, as DynamoDB's TTL would.
"$bin" serve --listen "127.0.0.1:$port" --retention 20s --max-connections 20000 \
  >target/soak/serve.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
wait_port "$port" 10
"$bin" bench soak --jobs-url "http://127.0.0.1:$port" --ws-url "ws://127.0.0.1:$port/dev" \
  --server-pid "$pid" --json-out target/soak/soak.json "${args[@]}"
if grep -q 'panicked at' target/soak/serve.log; then
  echo "serve panicked during the soak (target/soak/serve.log)" >&2
  exit 1
fi
