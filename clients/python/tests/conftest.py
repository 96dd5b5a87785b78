"""Fixtures: a live ``jobcast serve`` (the binary in JOBCAST_BIN) and small
local HTTP servers standing in for workers and webhook receivers."""

import http.server
import json
import os
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
WEBHOOK_SECRET = "python-tests-webhook-secret-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recorder:
    """An HTTP server that records each POST and answers from a script of
    (status, headers, body) tuples, the last one repeating."""

    def __init__(self, script):
        self.script = list(script)
        self.requests = []
        self.lock = threading.Lock()
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                with recorder.lock:
                    recorder.requests.append({"path": self.path, "headers": self.headers, "body": body})
                    status, headers, answer = recorder.script[min(len(recorder.requests), len(recorder.script)) - 1]
                payload = json.dumps(answer).encode() if answer is not None else b""
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, n, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= n:
                    return list(self.requests)
            time.sleep(0.02)
        raise AssertionError(f"expected {n} requests, got {len(self.requests)}")

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder():
    made = []

    def make(script=((200, {}, {"ok": True}),)):
        r = Recorder(script)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


class Serve:
    def __init__(self, args):
        binary = os.environ.get("JOBCAST_BIN") or str(ROOT / "target" / "debug" / "jobcast")
        if not Path(binary).exists():
            pytest.fail(f"no jobcast binary at {binary}: build it (cargo build) or set JOBCAST_BIN")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, JOBCAST_WEBHOOK_SECRET=WEBHOOK_SECRET, RUST_LOG="warn")
        env.pop("JOBCAST_KINDS", None)
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", f"127.0.0.1:{self.port}", *args],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"jobcast serve exited: {self.proc.stderr.read().decode()}")
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1).read()
                return
            except OSError:
                time.sleep(0.1)
        pytest.fail("jobcast serve did not start in 20 s")

    def request(self, method, path, body=None, token=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as res:
                return res.status, json.loads(res.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def create(self, kind, input=None, callback_url=None):
        body = {"kind": kind, "input": input or {}}
        if callback_url:
            body["callbackUrl"] = callback_url
        status, job = self.request("POST", "/jobs", body)
        assert status == 202, job
        return job

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def serve():
    started = []

    def start(*args):
        s = Serve(args)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()
