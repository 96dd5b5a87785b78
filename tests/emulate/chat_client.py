"""Two people chatting through `jobcast emulate --template
tests/emulate/chat/template.yaml`, the app's functions run by
serverless-offline's Lambda port (scripts/emulate-chat.sh).

Usage: chat_client.py WS_URL
"""
import asyncio
import json
import sys

import websockets


async def recv(ws, timeout=20):
    return await asyncio.wait_for(ws.recv(), timeout)


async def main(url):
    async with websockets.connect(url) as alice, websockets.connect(url) as bob:
        await alice.send(json.dumps({"action": "sendmessage", "data": "hello from alice"}))
        # The app broadcasts to every connection it stored, the sender too.
        assert await recv(bob) == "hello from alice"
        assert await recv(alice) == "hello from alice"
        await bob.send(json.dumps({"action": "sendmessage", "data": "hi alice"}))
        assert await recv(alice) == "hi alice"
        assert await recv(bob) == "hi alice"
        print("chat: alice and bob each received both messages")
        # No route for this action and no $default: API Gateway's Forbidden.
        await bob.send(json.dumps({"action": "shout", "data": "?"}))
        forbidden = json.loads(await recv(bob))
        assert forbidden["message"] == "Forbidden", forbidden
        print("chat: an action without a route is answered Forbidden")
    # Both gone: $disconnect removed them, so a third person's broadcast
    # reaches only them.
    async with websockets.connect(url) as carol:
        await asyncio.sleep(0.5)
        await carol.send(json.dumps({"action": "sendmessage", "data": "anyone?"}))
        assert await recv(carol) == "anyone?"
        print("chat: after alice and bob left, carol's message reaches only carol")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
