"""Checks every API Gateway edge `jobcast emulate` reproduces, through a
real WebSocket client, against tests/emulate/edges.yaml served in front of
lambdas/src/bin/emulate_edges.rs under `cargo lambda watch`.

Usage: edges_client.py EDGES_WS_URL GUARDED_WS_URL EDGES_TEMPLATE HOOK_PORT ROUTES_WS_URL
(EDGES_TEMPLATE: the file the EdgesApi emulate reads, which this rewrites
to check the reload; HOOK_PORT: where this serves the HTTP_PROXY route's
endpoint, the template's HookUrl; ROUTES_WS_URL: an emulate given
--route flags instead of a template.)
"""
import asyncio
import http.server
import json
import re
import sys
import threading
import urllib.request

import websockets
from websockets.exceptions import InvalidStatus


async def refused(url, status, **kw):
    try:
        async with websockets.connect(url, **kw):
            raise AssertionError(f"{url} was accepted, expected {status}")
    except InvalidStatus as e:
        got = e.response.status_code
        assert got == status, f"{url}: {got}, expected {status}"


async def reply(ws, message, timeout=10):
    await ws.send(json.dumps(message))
    return await asyncio.wait_for(ws.recv(), timeout)


async def edges(url):
    # $connect: the function's status refuses the handshake with it; a
    # failed invocation is a 500; a Sec-WebSocket-Protocol header selects
    # the subprotocol.
    await refused(url + "?status=401", 401)
    await refused(url + "?status=429", 429)
    await refused(url + "?fail=1", 500)
    print("$connect: the function's 401 and 429 refuse the handshake; a failed invocation is 500")
    await refused(url + "?post=1", 410)
    print("$connect: posting to the connection from its own $connect is 410")
    async with websockets.connect(url + "?protocol=chat.v1", subprotocols=["chat.v1"]) as ws:
        assert ws.subprotocol == "chat.v1", ws.subprotocol
    print("$connect: the function's Sec-WebSocket-Protocol selects the subprotocol")

    async with websockets.connect(url) as ws:
        # A two-way route sends the integration's body back.
        got = await reply(ws, {"action": "echo", "n": 1})
        assert json.loads(got) == {"action": "echo", "n": 1}, got
        # A one-way route sends nothing: the next thing back is the next echo.
        await ws.send(json.dumps({"action": "oneway"}))
        got = await reply(ws, {"action": "echo", "n": 2})
        assert json.loads(got)["n"] == 2, got
        print("two-way route: the body comes back; one-way route: nothing")
        # No route and no $default: API Gateway's Forbidden, with ids.
        got = json.loads(await reply(ws, {"action": "nosuchroute"}))
        assert got["message"] == "Forbidden" and got["connectionId"] and got["requestId"], got
        got = json.loads(await reply(ws, {"action": "boom"}))
        assert got["message"] == "Internal server error" and got["connectionId"], got
        got = json.loads(await reply(ws, {"action": "slow"}))
        assert got["message"] == "Endpoint request timed out", got
        # The connection stays open through all of it.
        got = await reply(ws, {"action": "echo", "n": 3})
        assert json.loads(got)["n"] == 3, got
        print("no route: Forbidden; a failing function: Internal server error; "
              "past TimeoutInMillis: Endpoint request timed out; the connection stays open")


class Hook(http.server.BaseHTTPRequestHandler):
    """The HTTP_PROXY endpoint: answers what it was posted, wrapped."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        answer = json.dumps({"hooked": json.loads(body)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


async def http_proxy(url):
    async with websockets.connect(url) as ws:
        got = json.loads(await reply(ws, {"action": "hook", "n": 5}))
        assert got == {"hooked": {"action": "hook", "n": 5}}, got
    print("HTTP_PROXY route: the message is POSTed to its URL and the answer comes back")


ADDED = """
  AddedRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties: { ApiId: !Ref EdgesApi, RouteKey: added, Target: !Sub "integrations/${EdgesInteg}" }
  AddedResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties: { ApiId: !Ref EdgesApi, RouteId: !Ref AddedRoute, RouteResponseKey: $default }
"""


async def reload(url, template):
    async with websockets.connect(url) as ws:
        got = json.loads(await reply(ws, {"action": "added"}))
        assert got["message"] == "Forbidden", got
        with open(template, "a") as f:
            f.write(ADDED)
        for _ in range(40):
            await asyncio.sleep(0.25)
            got = json.loads(await reply(ws, {"action": "added", "n": 4}))
            if got.get("n") == 4:
                break
        assert got.get("n") == 4, f"the added route never answered: {got}"
    print("reload: a route added to the template answers on a connection opened before")


def metrics(url):
    base = url.replace("ws://", "http://").rsplit("/", 1)[0]
    text = urllib.request.urlopen(base + "/metrics").read().decode()

    def value(route, outcome):
        m = re.search(
            r'jobcast_emulate_invocations_total\{route="%s",function="emulate_edges",outcome="%s"\} (\d+)'
            % (re.escape(route), outcome), text)
        return int(m.group(1)) if m else None

    assert (value("echo", "ok") or 0) >= 3, text
    assert value("slow", "timeout") == 1, text
    assert value("boom", "failed") == 1, text
    assert 'jobcast_emulate_invocation_seconds_count{route="echo",function="emulate_edges"}' in text, text
    print("metrics: invocations by route, function and outcome, and their latency, at /metrics")


async def guarded(url):
    await refused(url, 401)
    print("authorizer: identity source missing -> 401")
    await refused(url, 403, additional_headers={"Auth": "deny"})
    print("authorizer: policy Deny -> 403")
    await refused(url, 401, additional_headers={"Auth": "nonsense"})
    print("authorizer: Unauthorized -> 401")
    async with websockets.connect(url, additional_headers={"Auth": "allow"}) as ws:
        got = json.loads(await reply(ws, {"action": "whoami"}))
        assert got.get("principalId") == "alice" and got.get("plan") == "pro", got
    print("authorizer: Allow -> connected; principalId and context reach later events")


async def routes_only(url):
    await refused(url + "?status=403", 403)
    async with websockets.connect(url) as ws:
        # --route routes are one-way: the echo sends nothing back, and an
        # action without a route (no $default given) is Forbidden.
        await ws.send(json.dumps({"do": "echo"}))
        got = json.loads(await reply(ws, {"do": "nothing"}))
        assert got["message"] == "Forbidden", got
    print("--route without a template: $connect and routes on --route-selection $request.body.do")


async def main(edges_url, guarded_url, edges_template, hook_port, routes_url):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", hook_port), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    await edges(edges_url)
    await http_proxy(edges_url)
    metrics(edges_url)
    await guarded(guarded_url)
    await reload(edges_url, edges_template)
    await routes_only(routes_url)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]))
