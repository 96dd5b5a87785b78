#!/usr/bin/env bash
# Compares two builds of `jobcast serve` under the same load, alternating
# A and B so the machine's noise falls on both alike:
#
#   scripts/bench-ab.sh OLD_BINARY NEW_BINARY [ROUNDS] [CLIENTS]
#
# The load generator is NEW_BINARY's `bench run`. Prints, per build, the
# median of each figure, and the server's CPU time per message, which
# depends far less on what else runs than any rate does.
set -euo pipefail
a=$1 b=$2 rounds=${3:-3} clients=${4:-5000}
out=$(mktemp -d)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
. "$(dirname "$0")/lib.sh"

for r in $(seq 1 "$rounds"); do
  for which in a b; do
    bin=$a; [ $which = b ] && bin=$b
    p=$(free_port)
    "$bin" serve --listen "127.0.0.1:$p" --max-connections 100000 --workers 1 \
      --outbound-queue 1024 --idle-timeout 30m >"$out/$which.$r.log" 2>&1 &
    pid=$!
    wait_port "$p" 10
    "$b" bench run --quiet --label "$which" --clients "$clients" --handshake-concurrency 256 \
      --ws-url "ws://127.0.0.1:$p/dev" --management-url "http://127.0.0.1:$p/dev" \
      --jobs-url "http://127.0.0.1:$p" --server-pid "$pid" --post-duration 3s \
      --rate 0 --fanout-rounds 0 --demo-steps 200 --json-out "$out/$which.$r.json" 2>/dev/null
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done

python3 - "$out" "$rounds" <<'EOF'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def med(which, *path):
    vals = []
    for r in range(1, rounds + 1):
        d = json.load(open(f"{out}/{which}.{r}.json"))
        for p in path:
            d = d.get(p) if isinstance(d, dict) else None
        if d is not None:
            vals.append(d)
    return statistics.median(vals) if vals else float("nan")
rows = [
    ("connect rate /s", ("connect", "perSecond"), True),
    ("posts accepted /s", ("posts", "perSecond"), True),
    ("posts: server CPU µs/message", ("posts", "serverCpuUsPerMessage"), False),
    ("posts: end-to-end p99 ms", ("posts", "endToEnd", "p99Ms"), False),
    ("in-process fan-out msg/s", ("inProcessFanout", "deliveredPerSecond"), True),
    ("in-process: server CPU µs/message", ("inProcessFanout", "serverCpuUsPerMessage"), False),
    ("RSS per connection KiB", ("memory", "perConnectionKib"), False),
]
print(f"| figure (median of {rounds}) | A | B | B vs A |")
print("|---|---|---|---|")
for name, path, higher in rows:
    x, y = med("a", *path), med("b", *path)
    change = (y / x if higher else x / y) if x and y else float("nan")
    print(f"| {name} | {x:,.2f} | {y:,.2f} | {change:.2f}× better |")
EOF
rm -rf "$out"
