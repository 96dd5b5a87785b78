#!/usr/bin/env bash
# What traces cost on the hot path: serve's CPU time per worker update
# (`jobcast bench updates --server-pid`) with traces off and on (exported
# over OTLP/HTTP to a receiver that accepts everything), alternating
# off/on so the machine's noise falls on both.
#
#   scripts/bench-tracing.sh                   release build, the figures BENCHMARKS.md records
#   scripts/bench-tracing.sh --baseline BIN    also BIN (a build without the tracing code), to
#                                              show what "off" costs
#   scripts/bench-tracing.sh --quick           debug build, one short round (CI: the tooling works)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

quick=0
baseline=
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --baseline) baseline=$(realpath "$2"); shift ;;
    *) echo "usage: $0 [--quick] [--baseline BIN]" >&2; exit 2 ;;
  esac
  shift
done
modes="off on"
[ -n "$baseline" ] && modes="baseline off on"
out=target/bench
mkdir -p "$out"
if [ $quick = 1 ]; then
  cargo build --locked --quiet --bin jobcast
  bin=$PWD/target/debug/jobcast
  rounds=1 jobs=4 updates=50
else
  if [ -n "${JOBCAST_BENCH_BIN:-}" ]; then
    bin=$(realpath "$JOBCAST_BENCH_BIN")      # a build of this tree made elsewhere
  else
    cargo build --locked --quiet --release --bin jobcast
    bin=$PWD/target/release/jobcast
  fi
  rounds=6 jobs=20 updates=1000
fi

# An OTLP/HTTP receiver that takes every export and counts its bytes.
sink_port=$(free_port)
python3 - "$sink_port" >"$out/tracing-sink.log" 2>&1 <<'PY' &
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
sink_pid=$!
serve_pid=
trap 'kill $sink_pid $serve_pid 2>/dev/null || true' EXIT
wait_port "$sink_port" 20

run() {
  local mode=$1 port receiver
  port=$(free_port)
  receiver=$(free_port)
  local otlp=() server=$bin
  [ "$mode" = on ] && otlp=(--otlp-endpoint "http://127.0.0.1:$sink_port")
  [ "$mode" = baseline ] && server=$baseline
  JOBCAST_WEBHOOK_SECRET=bench-tracing-secret-0123456789abcdef "$server" serve --listen "127.0.0.1:$port" \
    --kind "bench=http://127.0.0.1:$receiver/" "${otlp[@]}" >"$out/tracing-serve-$mode.log" 2>&1 &
  serve_pid=$!
  wait_port "$port" 30
  "$bin" bench updates --jobs-url "http://127.0.0.1:$port" --receiver "127.0.0.1:$receiver" \
    --jobs "$jobs" --updates "$updates" --server-pid "$serve_pid" 2>/dev/null \
    | python3 -c 'import json, sys; r = json.load(sys.stdin); print("%.0f updates/s, server CPU %.1f µs/update" % (r["updatesPerSecond"], r["serverCpuUsPerUpdate"]))'
  kill "$serve_pid" && wait "$serve_pid" 2>/dev/null || true
  serve_pid=
}

: >"$out/tracing.txt"
for round in $(seq 1 "$rounds"); do
  for mode in $modes; do
    line=$(run "$mode")
    echo "round $round, traces $mode: $line" | tee -a "$out/tracing.txt"
  done
done
python3 - "$out/tracing.txt" <<'PY'
import re, statistics, sys
cpu = {"baseline": [], "off": [], "on": []}
for line in open(sys.argv[1]):
    m = re.search(r"traces (baseline|on|off):.*server CPU ([\d.]+) µs/update", line)
    if m:
        cpu[m.group(1)].append(float(m.group(2)))
med = {k: statistics.median(v) for k, v in cpu.items() if v}
print(f"| build, traces | server CPU per update (median of {len(cpu['off'])}) |")
print("|---|---|")
if "baseline" in med:
    print(f"| without the tracing code | {med['baseline']:.1f} µs |")
    print(f"| with it, off | {med['off']:.1f} µs ({(med['off'] / med['baseline'] - 1) * 100:+.1f}%) |")
else:
    print(f"| off | {med['off']:.1f} µs |")
print(f"| on (OTLP/HTTP export) | {med['on']:.1f} µs ({(med['on'] / med['off'] - 1) * 100:+.1f}% over off) |")
PY
