"""WebSocket client of scripts/emulate-smoke.sh for owners: `jobcast emulate`
serving infra/template.yaml with JwtIssuer set, so `$connect` goes through
the template's REQUEST authorizer (the `authorizer` Lambda, run by
`cargo lambda watch`) before jobcast's connect function, and the owner it
verifies reaches the message function in `requestContext.authorizer`.

Usage: owners_client.py WS_URL GOOD_TOKEN FOREIGN_TOKEN
"""
import asyncio
import json
import sys

import websockets
from websockets.exceptions import InvalidStatus


async def reply(ws, timeout=15):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def follow(ws):
    await ws.send(json.dumps({"action": "subscribe", "owner": True}))
    return await reply(ws)


async def main(url, good, foreign):
    # The token in the query: the authorizer allows, the message function
    # sees the owner and follows.
    async with websockets.connect(f"{url}?access_token={good}") as ws:
        m = await follow(ws)
        assert m == {"type": "subscribed", "owner": True, "tag": None}, m
        print("access_token: the authorizer passed the owner on; subscribed")

    # The token as a subprotocol, answered with jobcast.
    async with websockets.connect(url, subprotocols=["jobcast", good]) as ws:
        assert ws.subprotocol == "jobcast", ws.subprotocol
        m = await follow(ws)
        assert m["type"] == "subscribed", m
        print("Sec-WebSocket-Protocol: jobcast, <JWT>: answered jobcast; subscribed")

    # No token: allowed, but following is unauthorized and the connection stays.
    async with websockets.connect(url) as ws:
        m = await follow(ws)
        assert (m["type"], m["code"]) == ("error", "unauthorized"), m
        await ws.send(json.dumps({"action": "ping"}))
        assert (await reply(ws))["type"] == "pong"
        print("no token: connected, following is unauthorized, the connection stays")

    # A token the issuer's keys did not sign, and no token at all in the
    # subprotocol slot: the authorizer denies (403).
    for bad in (foreign, "not-a-jwt"):
        try:
            async with websockets.connect(f"{url}?access_token={bad}"):
                raise AssertionError("a bad token was accepted")
        except InvalidStatus as e:
            assert e.response.status_code == 403, e.response.status_code
    print("a foreign or malformed token: 403 from the authorizer")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
