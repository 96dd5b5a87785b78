#!/usr/bin/env bash
# Smoke test of the real Lambda binaries under `cargo lambda watch` (the
# Lambda runtime API emulator): jobs_api, connect, worker, message and
# sweeper are invoked with the events in tests/fixtures, against DynamoDB
# Local, an SQS emulator and `jobcast serve` as the @connections endpoint.
# A kind of your own with a `lambda:` target is handed to example_worker
# (asynchronous Invoke through the emulator), which reports through the
# jobs_api function's update route.
#
# Needs JOBCAST_TEST_DYNAMODB and JOBCAST_TEST_SQS (./scripts/test.sh sets both).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${JOBCAST_TEST_DYNAMODB:?start DynamoDB Local first: eval \"\$(scripts/dynamodb-local.sh start)\"}"
: "${JOBCAST_TEST_SQS:?start an SQS emulator first, e.g. moto_server -p 5000, and export JOBCAST_TEST_SQS}"

work=target/lambda-smoke
mkdir -p "$work"
export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_REGION=us-east-1
export AWS_ENDPOINT_URL_DYNAMODB=$JOBCAST_TEST_DYNAMODB AWS_ENDPOINT_URL_SQS=$JOBCAST_TEST_SQS
table=jobcast-smoke-$RANDOM$RANDOM
secret=smoke-secret-0123456789abcdef
. scripts/lib.sh
fail() { echo "lambda smoke: $*" >&2; exit 1; }
json_get() { python3 -c 'import json, sys; v = json.load(sys.stdin)
for k in sys.argv[1:]: v = v[k] if not isinstance(v, str) else json.loads(v)[k]
print(v if not isinstance(v, (dict, list)) else json.dumps(v))' "$@"; }

# Built apart, as `cargo lambda watch` builds the functions (the library
# without its cli feature), so the watch finds them fresh.
cargo build --quiet -p jobcast --bins
cargo build --quiet -p jobcast-lambdas --features example-worker --bins
target/debug/jobcast table create --table "$table" >/dev/null
# The emulator routes on the credential scope; it does not check signatures.
queue_url=$(curl -sf -X POST "$JOBCAST_TEST_SQS/" -H 'X-Amz-Target: AmazonSQS.CreateQueue' \
  -H 'Content-Type: application/x-amz-json-1.0' \
  -H 'Authorization: AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=00' \
  -d "{\"QueueName\":\"$table\"}" | json_get QueueUrl)

serve_port=$(free_port)
invoke_port=$(free_port)
JOBCAST_TOKEN_SECRET=$secret target/debug/jobcast serve --listen "127.0.0.1:$serve_port" \
  --stage prod --store dynamodb --table "$table" >"$work/serve.log" 2>&1 &
serve_pid=$!
(cd lambdas && exec cargo lambda watch --invoke-port "$invoke_port" --ignore-changes \
  --features example-worker --concurrency 2 \
  --env-var "JOBCAST_KINDS=export=lambda:example_worker" \
  --env-var "JOBCAST_HEARTBEAT_TIMEOUT_SECONDS=1" \
  --env-var "JOBCAST_PUBLIC_URL=http://127.0.0.1:$invoke_port/lambda-url/jobs_api" \
  --env-var "AWS_ENDPOINT_URL_LAMBDA=http://127.0.0.1:$invoke_port" \
  --env-var "JOBCAST_TABLE=$table" \
  --env-var "JOBCAST_TOKEN_SECRET=$secret" \
  --env-var "JOBCAST_QUEUE_URL=$queue_url" \
  --env-var "JOBCAST_MANAGEMENT_ENDPOINT=http://127.0.0.1:$serve_port/prod" \
  --env-var "JOBCAST_WEBSOCKET_URL=ws://127.0.0.1:$serve_port/prod" \
  --env-var "AWS_ENDPOINT_URL_DYNAMODB=$JOBCAST_TEST_DYNAMODB" \
  --env-var "AWS_ENDPOINT_URL_SQS=$JOBCAST_TEST_SQS" \
  --env-var AWS_ACCESS_KEY_ID=local --env-var AWS_SECRET_ACCESS_KEY=local \
  --env-var AWS_REGION=us-east-1) >"$work/watch.log" 2>&1 &
watch_pid=$!
trap 'kill $serve_pid $watch_pid 2>/dev/null || true' EXIT
wait_port "$serve_port" 120 || fail "serve did not start; see $work/*.log"
wait_port "$invoke_port" 120 || fail "cargo lambda watch did not start; see $work/*.log"

fill() {
  # fill FIXTURE OUT key=value...
  local src=tests/fixtures/$1 out=$work/$2; shift 2
  cp "$src" "$out"
  sed -i "s/{{connectedAt}}/$(date +%s%3N)/g" "$out"
  for kv in "$@"; do sed -i "s|{{${kv%%=*}}}|${kv#*=}|g" "$out"; done
  echo "$out"
}
invoke() { cargo lambda invoke "$1" --invoke-port "$invoke_port" --data-file "$2"; }
# wait_status JOB STATUS: polls the job (30 s at most); prints the last status seen.
wait_status() {
  local status=
  for _ in $(seq 1 100); do
    status=$(curl -s "http://127.0.0.1:$serve_port/jobs/$1" | json_get status)
    [ "$status" = "$2" ] && break
    sleep 0.3
  done
  echo "$status"
}

# jobs_api: accept a job (202), queued on SQS.
out=$(invoke jobs_api "$(fill jobs-post.json post.json idempotencyKey=smoke-1)")
[ "$(echo "$out" | json_get statusCode)" = 202 ] || fail "jobs_api answered $out"
job_id=$(echo "$out" | json_get body jobId)
token=$(echo "$out" | json_get body token)
echo "jobs_api: 202, job $job_id"

# connect: the right token is accepted, a wrong one refused with 403.
out=$(invoke connect "$(fill connect.json connect.json jobId="$job_id" token="$token" connectionId=SmokeConn0000A=)")
[ "$(echo "$out" | json_get statusCode)" = 200 ] || fail "connect answered $out"
out=$(invoke connect "$(fill connect.json connect-bad.json jobId="$job_id" token=1.AAAA connectionId=SmokeConn0001A=)")
[ "$(echo "$out" | json_get statusCode)" = 403 ] || fail "connect with a bad token answered $out"
echo "connect: 200 with the token, 403 without"

# worker: runs the job; the malformed message of the batch is reported, alone.
out=$(invoke worker "$(fill sqs.json sqs.json jobId="$job_id")")
failed=$(echo "$out" | json_get batchItemFailures)
[ "$failed" = '[{"itemIdentifier": "2e1424d4-f796-459a-8184-9c92662be6da"}]' ] || fail "worker answered $out"
status=$(curl -s "http://127.0.0.1:$serve_port/jobs/$job_id" | json_get status)
[ "$status" = succeeded ] || fail "after the worker, the job is $status"
echo "worker: job succeeded, malformed message reported"

# message: warm invoke latency of a ping, straight to the runtime emulator's
# invoke API (its reply finds no live connection: a 410, ignored).
ping=$(fill message-ping.json ping.json connectionId=SmokeConn0000A=)
invoke message "$ping" >/dev/null
url="http://127.0.0.1:$invoke_port/2015-03-31/functions/message/invocations"
times=$(for _ in $(seq 1 20); do
  curl -s -o /dev/null -w '%{time_total}\n' -X POST "$url" --data-binary "@$ping"
done | sort -n)
echo "message: warm invoke over 20 calls: median $(echo "$times" | sed -n 10p) s, max $(echo "$times" | tail -1) s (debug build)"
# A kind of your own: jobs_api hands the job to example_worker (lambda:
# target, asynchronous Invoke), which reports through jobs_api's
# POST /jobs/{id}/updates until the job succeeds.
post_export=$(fill jobs-post.json post-export.json idempotencyKey=smoke-2)
sed -i 's|{\\"kind\\":\\"demo\\",\\"input\\":{\\"steps\\":3,\\"stepMs\\":0}}|{\\"kind\\":\\"export\\",\\"input\\":{\\"steps\\":3}}|' "$post_export"
grep -q export "$post_export" || fail "could not make the export job event"
out=$(invoke jobs_api "$post_export")
[ "$(echo "$out" | json_get statusCode)" = 202 ] || fail "jobs_api answered $out for a lambda: kind"
export_id=$(echo "$out" | json_get body jobId)
status=$(wait_status "$export_id" succeeded)
[ "$status" = succeeded ] || fail "the lambda: kind job is $status; see $work/watch.log"
seq=$(curl -s "http://127.0.0.1:$serve_port/jobs/$export_id" | json_get seq)
[ "$seq" = 5 ] || fail "the lambda: kind job ended at seq $seq, not 5"
echo "lambda: kind: handed to example_worker, reported through jobs_api to succeeded (seq 5)"

# sweeper: a worker that goes quiet is ended worker_lost by the scheduled sweep.
post_quiet=$(fill jobs-post.json post-quiet.json idempotencyKey=smoke-3)
sed -i 's|{\\"kind\\":\\"demo\\",\\"input\\":{\\"steps\\":3,\\"stepMs\\":0}}|{\\"kind\\":\\"export\\",\\"input\\":{\\"steps\\":3,\\"stopAfter\\":1}}|' "$post_quiet"
out=$(invoke jobs_api "$post_quiet")
quiet_id=$(echo "$out" | json_get body jobId)
status=$(wait_status "$quiet_id" running)
[ "$status" = running ] || fail "the quiet job is $status, not running"
sleep 2.5
echo '{"version":"0","id":"smoke","detail-type":"Scheduled Event","source":"aws.scheduler","detail":{}}' >"$work/schedule.json"
# The schedule runs the sweep again and again; so does this, for up to 10
# sweeps (a busy machine can deliver the worker's last report late, which
# moves the deadline on).
code=
for _ in $(seq 1 10); do
  out=$(invoke sweeper "$work/schedule.json")
  [ -n "$(echo "$out" | json_get ended)" ] || fail "sweeper answered $out"
  code=$(curl -s "http://127.0.0.1:$serve_port/jobs/$quiet_id" | json_get error code 2>/dev/null || true)
  [ "$code" = worker_lost ] && break
  sleep 1
done
[ "$code" = worker_lost ] || fail "after 10 sweeps (last answer: $out), the quiet job's error is '$code'"
echo "sweeper: a quiet worker's job ended failed worker_lost"
echo "lambda smoke: ok"
