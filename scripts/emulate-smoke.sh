#!/usr/bin/env bash
# `jobcast emulate` in front of a real Lambda runner: jobcast's own
# WebSocket functions under `cargo lambda watch`, wired by the routes of
# infra/template.yaml with owners on (so `$connect` passes the template's
# REQUEST authorizer, the `authorizer` function), driven by WebSocket
# clients (tests/emulate).
#
# Needs JOBCAST_TEST_DYNAMODB (./scripts/test.sh sets it) and the Python
# venv test.sh makes (target/py-venv, with websockets).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${JOBCAST_TEST_DYNAMODB:?start DynamoDB Local first: eval \"\$(scripts/dynamodb-local.sh start)\"}"
. scripts/lib.sh
fail() { echo "emulate smoke: $*" >&2; exit 1; }

work=target/emulate-smoke
mkdir -p "$work"
export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_REGION=us-east-1
export AWS_ENDPOINT_URL_DYNAMODB=$JOBCAST_TEST_DYNAMODB
table=jobcast-emulate-$RANDOM$RANDOM
cargo build --quiet -p jobcast --bins
cargo build --quiet -p jobcast-lambdas --features emulate-edges --bins
target/debug/jobcast table create --table "$table" >/dev/null
# Owners: development tokens, the key's JWKS for the Lambda functions, and
# a token from a key the functions do not know.
export JOBCAST_DEV_KEY=$PWD/$work/dev-key.pem
jwks=$PWD/$work/jwks.json
target/debug/jobcast token jwks >"$jwks"
good_token=$(target/debug/jobcast token issue --sub alice 2>/dev/null)
foreign_token=$(JOBCAST_DEV_KEY=$PWD/$work/foreign-key.pem target/debug/jobcast token issue --sub mallory 2>/dev/null)

port=$(free_port)
invoke_port=$(free_port)
(cd lambdas && exec cargo lambda watch --invoke-port "$invoke_port" --ignore-changes \
  --features emulate-edges \
  --env-var "JOBCAST_TABLE=$table" \
  --env-var "JOBCAST_TOKEN_SECRET=emulate-smoke-secret-0123456789" \
  --env-var "JOBCAST_MANAGEMENT_ENDPOINT=http://127.0.0.1:$port/prod" \
  --env-var "AWS_ENDPOINT_URL_DYNAMODB=$JOBCAST_TEST_DYNAMODB" \
  --env-var JOBCAST_JWT_ISSUER=urn:jobcast:dev --env-var JOBCAST_JWT_AUDIENCE=jobcast-dev \
  --env-var "JOBCAST_JWKS=$jwks" \
  --env-var AWS_ACCESS_KEY_ID=local --env-var AWS_SECRET_ACCESS_KEY=local \
  --env-var AWS_REGION=us-east-1) >"$work/watch.log" 2>&1 &
watch_pid=$!
AWS_ENDPOINT_URL_LAMBDA=http://127.0.0.1:$invoke_port target/debug/jobcast emulate \
  --template infra/template.yaml --listen "127.0.0.1:$port" \
  --parameter JwtIssuer=urn:jobcast:dev --parameter JwtAudience=jobcast-dev \
  --function AuthorizerFunction=authorizer --function ConnectFunction=connect \
  --function DisconnectFunction=disconnect --function MessageFunction=message \
  >"$work/emulate.log" 2>&1 &
emulate_pid=$!
# The edge cases: two APIs of one template over a function that misbehaves on demand.
edges_port=$(free_port)
guarded_port=$(free_port)
hook_port=$(free_port)
# EdgesApi reads a copy, which the client rewrites to check the reload.
cp tests/emulate/edges.yaml "$work/edges.yaml"
for api in EdgesApi:$edges_port GuardedApi:$guarded_port; do
  AWS_ENDPOINT_URL_LAMBDA=http://127.0.0.1:$invoke_port target/debug/jobcast emulate \
    --template "$work/edges.yaml" --api "${api%%:*}" --listen "127.0.0.1:${api#*:}" \
    --function EdgesFunction=emulate_edges --parameter "HookUrl=http://127.0.0.1:$hook_port/hook" \
    >"$work/${api%%:*}.log" 2>&1 &
  edge_pids="${edge_pids:-} $!"
done
# Without a template.
routes_port=$(free_port)
AWS_ENDPOINT_URL_LAMBDA=http://127.0.0.1:$invoke_port target/debug/jobcast emulate \
  --route '$connect=emulate_edges' --route echo=emulate_edges --route-selection '$request.body.do' \
  --listen "127.0.0.1:$routes_port" --stage routes >"$work/routes.log" 2>&1 &
edge_pids="$edge_pids $!"
trap 'kill $emulate_pid $watch_pid $edge_pids 2>/dev/null || true' EXIT
wait_port "$port" 60 || fail "emulate did not start; see $work/emulate.log"
wait_port "$invoke_port" 120 || fail "cargo lambda watch did not start; see $work/watch.log"
grep -q 'route ping .*-> Lambda message' "$work/emulate.log" || fail "emulate did not read the ping route; see $work/emulate.log"
grep -q "authorizer ConnectAuthorizer -> Lambda authorizer" "$work/emulate.log" || fail "emulate did not read the $connect authorizer; see $work/emulate.log"

target/py-venv/bin/python tests/emulate/smoke_client.py "ws://127.0.0.1:$port/prod" \
  "http://127.0.0.1:$invoke_port/2015-03-31/functions/message/invocations" \
  || fail "the client's checks failed; see $work/*.log"
# $disconnect reached the disconnect function, once per closed connection.
for _ in $(seq 1 50); do
  grep -q 'route=$disconnect' "$work/emulate.log" && break
  sleep 0.1
done
grep -q 'route=$disconnect target="disconnect"' "$work/emulate.log" \
  || grep -q 'route=$disconnect target=disconnect' "$work/emulate.log" \
  || fail "no \$disconnect invocation logged; see $work/emulate.log"
echo "\$disconnect: the disconnect function ran"
target/py-venv/bin/python tests/emulate/owners_client.py "ws://127.0.0.1:$port/prod" \
  "$good_token" "$foreign_token" || fail "an owners check failed; see $work/emulate.log and $work/watch.log"
wait_port "$edges_port" 60 && wait_port "$guarded_port" 60 && wait_port "$routes_port" 60 || fail "emulate (edges) did not start; see $work/*Api.log"
target/py-venv/bin/python tests/emulate/edges_client.py "ws://127.0.0.1:$edges_port/edges" \
  "ws://127.0.0.1:$guarded_port/guarded" "$work/edges.yaml" "$hook_port" \
  "ws://127.0.0.1:$routes_port/routes" || fail "an edge case failed; see $work/*.log"
echo "emulate smoke: ok"
