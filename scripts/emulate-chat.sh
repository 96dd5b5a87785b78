#!/usr/bin/env bash
# A chat app in the shape `sam init` users deploy (Node handlers using
# @aws-sdk/client-apigatewaymanagementapi and @aws-sdk/client-dynamodb,
# tests/emulate/chat), with `jobcast emulate --template` as its API Gateway;
# two WebSocket clients chat. Twice: the functions run by serverless-offline's
# Lambda port (AWS_ENDPOINT_URL_LAMBDA), then by emulate itself.
#
# Needs JOBCAST_TEST_DYNAMODB (./scripts/test.sh sets it) and the Python
# venv test.sh makes (target/py-venv, with websockets).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${JOBCAST_TEST_DYNAMODB:?start DynamoDB Local first: eval \"\$(scripts/dynamodb-local.sh start)\"}"
. scripts/lib.sh
fail() { echo "emulate chat: $*" >&2; exit 1; }

work=$PWD/target/emulate-chat
mkdir -p "$work"
(cd tests/emulate/chat && npm ci --no-audit --no-fund --loglevel=error)
cargo build --quiet -p jobcast --bins

export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ENDPOINT_URL_DYNAMODB=$JOBCAST_TEST_DYNAMODB
export CHAT_TABLE=chat-$RANDOM$RANDOM
(cd tests/emulate/chat && node create-table.mjs)

port=$(free_port)
export CHAT_HTTP_PORT=$(free_port) CHAT_WS_PORT=$(free_port) CHAT_LAMBDA_PORT=$(free_port)
export AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI=http://127.0.0.1:$port/Prod
(cd tests/emulate/chat && exec node node_modules/serverless/bin/serverless.js offline start) \
  >"$work/runner.log" 2>&1 &
runner_pid=$!
AWS_ENDPOINT_URL_LAMBDA=http://127.0.0.1:$CHAT_LAMBDA_PORT target/debug/jobcast emulate \
  --template tests/emulate/chat/template.yaml --listen "127.0.0.1:$port" \
  --parameter "TableName=$CHAT_TABLE" >"$work/emulate.log" 2>&1 &
emulate_pid=$!
trap 'kill $emulate_pid 2>/dev/null; kill -- -$runner_pid 2>/dev/null || kill $runner_pid 2>/dev/null || true' EXIT
wait_port "$port" 60 || fail "emulate did not start; see $work/emulate.log"
wait_port "$CHAT_LAMBDA_PORT" 120 || fail "serverless-offline did not start; see $work/runner.log"

target/py-venv/bin/python tests/emulate/chat_client.py "ws://127.0.0.1:$port/Prod" \
  || fail "the chat failed; see $work/*.log"
echo "emulate chat, functions under serverless-offline: ok"
kill $emulate_pid 2>/dev/null; kill -- -$runner_pid 2>/dev/null || kill $runner_pid 2>/dev/null || true

# The same app with nothing but node: emulate runs the functions itself.
port=$(free_port)
env -u AWS_ENDPOINT_URL_LAMBDA -u AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI target/debug/jobcast emulate \
  --template tests/emulate/chat/template.yaml --listen "127.0.0.1:$port" \
  --parameter "TableName=$CHAT_TABLE" >"$work/emulate-builtin.log" 2>&1 &
emulate_pid=$!
trap 'kill $emulate_pid 2>/dev/null || true' EXIT
wait_port "$port" 60 || fail "emulate did not start; see $work/emulate-builtin.log"
target/py-venv/bin/python tests/emulate/chat_client.py "ws://127.0.0.1:$port/Prod" \
  || fail "the chat under emulate's own runner failed; see $work/emulate-builtin.log"
grep -q "REPORT RequestId" "$work/emulate-builtin.log" || fail "no REPORT lines in $work/emulate-builtin.log"
echo "emulate chat, functions run by emulate itself: ok"
kill $emulate_pid 2>/dev/null || true

# The Python example (boto3) with its connections in DynamoDB, as in AWS:
# given a DynamoDB endpoint it uses the table, not its local files.
target/py-venv/bin/python - <<'PY'
import boto3
ddb = boto3.client("dynamodb")
if "ConnectionsTable" not in ddb.list_tables()["TableNames"]:
    ddb.create_table(TableName="ConnectionsTable", BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "connectionId", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "connectionId", "KeyType": "HASH"}])
PY
port=$(free_port)
tmp=$work/python-tmp
rm -rf "$tmp" && mkdir -p "$tmp"
TMPDIR=$tmp PATH=$PWD/target/py-venv/bin:$PATH env -u AWS_ENDPOINT_URL_LAMBDA -u AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI \
  target/debug/jobcast emulate --template examples/chat-python/template.yaml --listen "127.0.0.1:$port" \
  >"$work/emulate-python.log" 2>&1 &
emulate_pid=$!
trap 'kill $emulate_pid 2>/dev/null || true' EXIT
wait_port "$port" 60 || fail "emulate did not start; see $work/emulate-python.log"
target/py-venv/bin/python tests/emulate/chat_client.py --example "ws://127.0.0.1:$port/Prod" \
  || fail "the Python example with DynamoDB failed; see $work/emulate-python.log"
kill $emulate_pid 2>/dev/null || true
left=$(target/py-venv/bin/python -c 'import boto3; print(boto3.client("dynamodb").scan(TableName="ConnectionsTable")["Count"])')
[ "$left" = 0 ] || fail "$left connection ids left in DynamoDB after everyone left"
[ ! -e "$tmp/jobcast-chat-ConnectionsTable" ] || fail "the example kept its connections in files, not in DynamoDB"
echo "emulate chat, the Python example (boto3) with DynamoDB: ok"
