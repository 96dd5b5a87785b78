"""Two people chatting through `jobcast emulate --template
tests/emulate/chat/template.yaml` (scripts/emulate-chat.sh), or through one
of the chat apps in examples/ with --example (they speak
{"action": "sendmessage", "name", "text"} and answer {"from", "text"}).

Usage: chat_client.py [--example] WS_URL
"""
import asyncio
import json
import sys

import websockets


async def recv(ws, timeout=20):
    return await asyncio.wait_for(ws.recv(), timeout)


EXAMPLE = False


def say(text, name="someone"):
    if EXAMPLE:
        return json.dumps({"action": "sendmessage", "name": name, "text": text})
    return json.dumps({"action": "sendmessage", "data": text})


def heard(frame):
    """The text of a message as the app delivers it."""
    return json.loads(frame)["text"] if EXAMPLE else frame


async def main(url):
    async with websockets.connect(url) as alice, websockets.connect(url) as bob:
        await alice.send(say("hello from alice"))
        # The app broadcasts to every connection it stored, the sender too.
        assert heard(await recv(bob)) == "hello from alice"
        assert heard(await recv(alice)) == "hello from alice"
        await bob.send(say("hi alice"))
        assert heard(await recv(alice)) == "hi alice"
        assert heard(await recv(bob)) == "hi alice"
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
        await carol.send(say("anyone?"))
        assert heard(await recv(carol)) == "anyone?"
        print("chat: after alice and bob left, carol's message reaches only carol")


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--example"]:
        EXAMPLE = True
        args = args[1:]
    asyncio.run(main(args[0]))
