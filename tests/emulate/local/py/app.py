"""A Python handler: module state survives between invocations."""
import json
import os
import sys
import time

CALLS = 0


def handler(event, context):
    global CALLS
    CALLS += 1
    body = json.loads(event["body"])
    print("python got", event["body"])
    if body.get("hang"):
        time.sleep(5)
    if body.get("flood"):
        # Binary garbage and 4 MiB without a newline, on both streams.
        sys.stdout.buffer.write(bytes(range(256)) * 64)
        sys.stdout.write("x" * (4 * 1024 * 1024))
        sys.stderr.write("\xff\xfe not text\n")
        sys.stdout.flush()
    if body.get("exit"):
        os._exit(3)
    if body.get("big"):
        # An answer over Lambda's 6 MB limit.
        return {"statusCode": 200, "body": "x" * (7 * 1024 * 1024)}
    return {
        "statusCode": 200,
        "body": json.dumps({
            "lang": "python",
            "calls": CALLS,
            "greeting": os.environ.get("GREETING"),
            "undeclared": os.environ.get("UNDECLARED"),
            "requestId": context.aws_request_id,
            "remaining": context.get_remaining_time_in_millis(),
        }),
    }
