"""The chat's three WebSocket routes. The client sends
    {"action": "sendmessage", "name": "alice", "text": "hello"}
and every connected client receives {"from": "alice", "text": "hello"}.
"""

import json
import os

import boto3

from connections import connections

MAX_TEXT = 1000

# One client per endpoint, made once and reused while the process is warm.
# In AWS the endpoint is the API's own; locally AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI
# (which `jobcast emulate` sets, and boto3 reads) points at the emulator.
_clients = {}


def _management(request_context):
    endpoint = None
    if not os.environ.get("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"):
        endpoint = f"https://{request_context['domainName']}/{request_context['stage']}"
    if endpoint not in _clients:
        _clients[endpoint] = boto3.client("apigatewaymanagementapi", endpoint_url=endpoint)
    return _clients[endpoint]


def connect(event, context):
    connections.add(event["requestContext"]["connectionId"])
    return {"statusCode": 200}


def disconnect(event, context):
    connections.remove(event["requestContext"]["connectionId"])
    return {"statusCode": 200}


def send_message(event, context):
    api = _management(event["requestContext"])

    def post(connection_id, message):
        api.post_to_connection(ConnectionId=connection_id, Data=json.dumps(message).encode())

    try:
        body = json.loads(event.get("body") or "")
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not body["text"].strip():
        post(event["requestContext"]["connectionId"], {"error": 'send {"action": "sendmessage", "text": "..."}'})
        return {"statusCode": 400}
    sender = str(body.get("name") or "someone")[:40]
    text = body["text"][:MAX_TEXT]

    for connection_id in connections.all():
        try:
            post(connection_id, {"from": sender, "text": text})
        except api.exceptions.GoneException:
            # A connection that closed without $disconnect reaching us: forget it.
            connections.remove(connection_id)
    return {"statusCode": 200}
