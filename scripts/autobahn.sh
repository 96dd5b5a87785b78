#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzing client against `jobcast serve`:
# groups 1-7 (framing, pings, reserved bits, opcodes, fragmentation, UTF-8,
# close handshake), 9 (big messages and many small ones) and 10 (auto-
# fragmentation). Groups 12 and 13 (compression) are left out: API Gateway
# WebSocket APIs do not negotiate permessage-deflate, nor does jobcast.
#
#   scripts/autobahn.sh [JOBCAST_BINARY]
#
# The report is kept in target/autobahn/report (index.html to browse it).
# scripts/autobahn/judge.py decides the verdict; see it for the rules.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/debug/jobcast}
out=target/autobahn
mkdir -p "$out"
. scripts/lib.sh

# Autobahn|Testsuite runs on Python 2.7 only.
py2=$(ls -1 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/2.7*/bin/python2.7 2>/dev/null | tail -1 || true)
[ -n "$py2" ] || py2=$(command -v python2.7 || true)
if [ -z "$py2" ] && command -v pyenv >/dev/null 2>&1; then
  pyenv install -s 2.7.18 >&2
  py2="$(pyenv root)/versions/2.7.18/bin/python2.7"
fi
if [ ! -x "${py2:-}" ]; then
  echo "Python 2.7 is missing (Autobahn|Testsuite needs it): install pyenv, then pyenv install 2.7.18" >&2
  exit 1
fi
if [ ! -x "$out/venv/bin/wstest" ]; then
  # virtualenv 20.21 is the last that makes Python 2.7 environments.
  python3 -m venv "$out/tool-venv"
  "$out/tool-venv/bin/pip" install --quiet --disable-pip-version-check virtualenv==20.21.1
  "$out/tool-venv/bin/virtualenv" --quiet -p "$py2" "$out/venv"
  "$out/venv/bin/pip" install --quiet --disable-pip-version-check autobahntestsuite==25.10.1 2>&1 \
    | grep -v DEPRECATION || true
fi

port=$(free_port)
# Group 9 sends 1,000 messages back to back: the per-client message rate
# limit (a jobcast default, not a protocol rule) is off for this run.
"$bin" serve --listen "127.0.0.1:$port" --client-messages-per-second 0 >"$out/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
wait_port "$port" 10

rm -rf "$out/report"
cat >"$out/fuzzingclient.json" <<JSON
{"outdir": "./report",
 "servers": [{"agent": "jobcast", "url": "ws://127.0.0.1:$port/dev"}],
 "cases": ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"],
 "exclude-cases": [], "exclude-agent-cases": {}}
JSON
here=$PWD
(cd "$out" && venv/bin/python "$here/scripts/autobahn/wstest_jobcast.py" \
  -m fuzzingclient -s fuzzingclient.json >wstest.log 2>&1) \
  || { tail -20 "$out/wstest.log" >&2; exit 1; }
kill -0 "$pid" 2>/dev/null || { echo "serve died during the run" >&2; tail -20 "$out/serve.log" >&2; exit 1; }
python3 scripts/autobahn/judge.py "$out/report/index.json"
