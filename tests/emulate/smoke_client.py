"""WebSocket client of scripts/emulate-smoke.sh: drives `jobcast emulate`
in front of jobcast's own Lambda functions (infra/template.yaml, run by
`cargo lambda watch`) as a browser would, and checks what comes back.

Usage: smoke_client.py WS_URL INVOKE_URL
Prints one line per check and the per-message overhead of the gateway
(ping round trip through emulate against invoking the function directly).
"""
import asyncio
import json
import statistics
import sys
import time
import urllib.request

import websockets


async def expect(ws, predicate, what, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {what} within {timeout} s")
        msg = json.loads(await asyncio.wait_for(ws.recv(), left))
        if predicate(msg):
            return msg


async def main(ws_url, invoke_url):
    # A plain connection: $connect (the connect function) accepts it.
    async with websockets.connect(ws_url) as ws:
        await ws.send(json.dumps({"action": "ping"}))
        pong = await expect(ws, lambda m: m.get("type") == "pong", "pong")
        conn = pong["connectionId"]
        print(f"ping through the message function: pong for {conn}")

        # A subscribe with a bad token: the function's error, posted back
        # through emulate's @connections.
        await ws.send(json.dumps({"action": "subscribe", "jobId": "job_0000000000000000", "token": "1.AAAA"}))
        err = await expect(ws, lambda m: m.get("type") == "error", "error")
        print(f"subscribe with a bad token: error {err['code']}")

        # Round trips: through emulate, and the same function invoked directly.
        rtts = []
        for _ in range(30):
            t = time.perf_counter()
            await ws.send('{"action":"ping"}')
            await expect(ws, lambda m: m.get("type") == "pong", "pong")
            rtts.append((time.perf_counter() - t) * 1000)
        event = json.dumps({
            "requestContext": {
                "routeKey": "ping", "eventType": "MESSAGE", "connectionId": conn,
                "connectedAt": 0, "requestTimeEpoch": 0, "stage": "prod",
                "domainName": "localhost", "apiId": "local", "requestId": "x",
                "messageDirection": "IN", "identity": {"sourceIp": "127.0.0.1"},
            },
            "body": '{"action":"ping"}', "isBase64Encoded": False,
        }).encode()
        direct = []
        for _ in range(30):
            req = urllib.request.Request(invoke_url, data=event, method="POST")
            t = time.perf_counter()
            urllib.request.urlopen(req).read()
            direct.append((time.perf_counter() - t) * 1000)
        # The direct invokes also posted pongs; let them arrive before closing.
        await asyncio.sleep(0.5)
        m_e, m_d = statistics.median(rtts), statistics.median(direct)
        print(f"overhead: ping round trip through emulate median {m_e:.2f} ms, "
              f"direct invoke of the function median {m_d:.2f} ms, "
              f"difference {m_e - m_d:.2f} ms per message")

    # $connect refusing: the function's 403 is the handshake's status.
    try:
        async with websockets.connect(ws_url + "?jobId=job_0000000000000000&token=1.AAAA"):
            raise AssertionError("a bad token was accepted")
    except websockets.exceptions.InvalidStatus as e:
        assert e.response.status_code == 403, e.response.status_code
        print("connect with a bad token: refused with 403")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
