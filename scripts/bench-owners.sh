#!/usr/bin/env bash
# What owners add to POST /jobs end to end: a release `serve` without owners
# and one with --dev-tokens, side by side, the same client (keep-alive,
# one request at a time) timing N posts against each. Prints medians and p99.
#
#   scripts/bench-owners.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
. scripts/lib.sh
cargo build --quiet --release --bin jobcast
bin=target/release/jobcast
export JOBCAST_DEV_KEY=$PWD/target/bench-owners-dev-key.json
token=$("$bin" token issue --sub bench 2>/dev/null)
off=$(free_port); on=$(free_port)
"$bin" serve --listen "127.0.0.1:$off" --workers 1 >/dev/null 2>&1 & p1=$!
"$bin" serve --listen "127.0.0.1:$on" --workers 1 --dev-tokens >/dev/null 2>&1 & p2=$!
trap 'kill $p1 $p2 2>/dev/null || true' EXIT
wait_port "$off" 10; wait_port "$on" 10
python3 - "$off" "$on" "$token" "$n" <<'PY'
import http.client, json, statistics, sys, time
off, on, token, n = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
body = json.dumps({"kind": "demo", "input": {"steps": 1, "stepMs": 60000}})
def run(port, auth):
    c = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Bearer " + token
    times = []
    for i in range(n + 100):
        t = time.perf_counter()
        c.request("POST", "/jobs", body, headers)
        r = c.getresponse(); r.read()
        assert r.status == 202, r.status
        if i >= 100:
            times.append((time.perf_counter() - t) * 1e6)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99)]
# Interleaved rounds, so both see the same machine.
res = {"off": [], "on": []}
for _ in range(3):
    res["off"].append(run(off, False)); res["on"].append(run(on, True))
for k in ("off", "on"):
    med = statistics.median(m for m, _ in res[k]); p99 = statistics.median(p for _, p in res[k])
    print(f"owners {k:3}: POST /jobs median {med:.0f} µs, p99 {p99:.0f} µs over {n} requests x3")
moff = statistics.median(m for m, _ in res["off"]); mon = statistics.median(m for m, _ in res["on"])
print(f"added by owners: {mon - moff:.0f} µs a request (x{mon / moff:.2f})")
PY
