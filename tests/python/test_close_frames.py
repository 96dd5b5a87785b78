"""Every close the server starts reaches a client built on asyncio streams.

asyncio streams (like Windows TCP stacks) surface a TCP reset before the
bytes already received, so a server that closes with unread client bytes in
its receive buffer (which makes the kernel send a reset) loses its close
frame with these clients. Each case below runs 20 times and must see its
close code every time. Run by ./scripts/test.sh against the built binary in
JOBCAST_BIN.
"""

import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

RUNS = 20
BIN = os.environ.get("JOBCAST_BIN", "target/debug/jobcast")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Serve:
    def __init__(self, *args):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [BIN, "serve", "--listen", f"127.0.0.1:{self.port}", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError("serve did not start")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def serve():
    started = []

    def start(*args):
        s = Serve(*args)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def frame(opcode, payload, rsv=0):
    """One masked client frame."""
    head = bytearray([0x80 | rsv | opcode])
    n = len(payload)
    if n < 126:
        head.append(0x80 | n)
    elif n <= 0xFFFF:
        head.append(0x80 | 126)
        head += n.to_bytes(2, "big")
    else:
        head.append(0x80 | 127)
        head += n.to_bytes(8, "big")
    mask = os.urandom(4)
    return bytes(head) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def connect(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /dev HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def next_frame(reader):
    h = await reader.readexactly(2)
    n = h[1] & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8), "big")
    return h[0] & 0x0F, await reader.readexactly(n)


async def close_code(reader, writer, pause=0.5):
    """The code of the server's close frame, or the error that came instead.
    Reading starts after `pause`, as a busy client would: by then a reset
    the server caused has arrived too, and asyncio reports it first."""
    try:
        await writer.drain()
        await asyncio.sleep(pause)
        while True:
            opcode, payload = await asyncio.wait_for(next_frame(reader), 15)
            if opcode == 8:
                return int.from_bytes(payload[:2], "big")
    except (ConnectionResetError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
        return type(e).__name__
    finally:
        writer.close()


async def connection_id(reader, writer):
    writer.write(frame(1, b'{"action":"ping"}'))
    opcode, payload = await next_frame(reader)
    assert opcode == 1
    return json.loads(payload)["connectionId"]


def run_many(one):
    async def all_runs():
        return await asyncio.gather(*(one() for _ in range(RUNS)))

    return asyncio.run(all_runs())


# What each client sends to make the server close, with bytes the server
# will never read behind it.
JUNK = frame(1, b"x" * 30000) * 4
CLIENT_FAULTS = {
    "text frame of 64 KiB": (frame(1, b"a" * 65536), 1009),
    "text frame of 200 KiB": (frame(1, b"a" * 204800), 1009),
    "invalid UTF-8": (frame(1, b"\xff\xfe") + JUNK, 1007),
    "binary frame": (frame(2, b"\x01\x02") + JUNK, 1003),
    "reserved bits": (frame(1, b"{}", rsv=0x40) + JUNK, 1002),
}


@pytest.mark.parametrize("case", sorted(CLIENT_FAULTS))
def test_a_client_fault_gets_its_close_frame_every_time(serve, case):
    data, expected = CLIENT_FAULTS[case]
    s = serve()

    async def one():
        reader, writer = await connect(s.port)
        writer.write(data)
        return await close_code(reader, writer)

    assert run_many(one) == [expected] * RUNS


def test_rate_limit_1008_with_messages_still_unread(serve):
    s = serve("--client-messages-per-second", "5")

    async def one():
        reader, writer = await connect(s.port)
        writer.write(frame(1, b'{"action":"nope"}') * 400)
        return await close_code(reader, writer)

    assert run_many(one) == [1008] * RUNS


def test_idle_and_lifetime_1001(serve):
    idle = serve("--idle-timeout", "1s")
    lifetime = serve("--max-lifetime", "2s")

    def ending_at(port, keep_busy):
        async def one():
            reader, writer = await connect(port)
            if keep_busy:
                # Activity keeps idle away; lifetime ends it regardless.
                writer.write(frame(9, b"ping"))
            return await close_code(reader, writer)

        return one

    assert run_many(ending_at(idle.port, False)) == [1001] * RUNS
    assert run_many(ending_at(lifetime.port, True)) == [1001] * RUNS


def test_delete_connection_1000(serve):
    s = serve()

    async def one():
        reader, writer = await connect(s.port)
        cid = await connection_id(reader, writer)
        url = f"http://127.0.0.1:{s.port}/dev/@connections/{urllib.parse.quote(cid, safe='')}"
        req = urllib.request.Request(url, method="DELETE")
        status = (await asyncio.to_thread(urllib.request.urlopen, req)).status
        assert status == 204
        return await close_code(reader, writer)

    assert run_many(one) == [1000] * RUNS


def test_shutdown_1001(serve):
    s = serve()

    async def all_runs():
        clients = [await connect(s.port) for _ in range(RUNS)]
        await asyncio.to_thread(s.stop)
        return await asyncio.gather(*(close_code(r, w) for r, w in clients))

    assert asyncio.run(all_runs()) == [1001] * RUNS
