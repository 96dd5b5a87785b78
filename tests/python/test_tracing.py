"""One trace from POST /jobs to the browser, seen by a real OTLP receiver.

`jobcast serve --otlp-endpoint` exports spans over OTLP/HTTP (protobuf) to a
receiver this test runs, which decodes them with the OpenTelemetry project's
own protobuf classes (opentelemetry-proto). The job's worker is a Python
process using the jobcast_worker library (a `command:` kind); a WebSocket
client follows the job. The receiver must see one trace: the POST /jobs
span, the hand-over under it, each worker update under the hand-over (the
library sent the job message's traceparent back), and one fan-out span per
pushed update under its update, naming the job, kind, seq and subscribers.
Run by ./scripts/test.sh against the built binary in JOBCAST_BIN.
"""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import websockets
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

BIN = os.environ.get("JOBCAST_BIN", "target/debug/jobcast")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """An OTLP/HTTP trace receiver: POST /v1/traces, protobuf bodies."""

    def __init__(self):
        self.spans = []
        self.resources = []
        self.content_types = set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.content_types.add(self.headers.get("Content-Type"))
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                req = ExportTraceServiceRequest()
                req.ParseFromString(body)
                for rs in req.resource_spans:
                    attrs = {a.key: a.value.string_value for a in rs.resource.attributes}
                    receiver.resources.append(attrs)
                    for ss in rs.scope_spans:
                        for s in ss.spans:
                            receiver.spans.append(s)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def attrs(span):
    out = {}
    for a in span.attributes:
        v = a.value
        out[a.key] = v.string_value if v.HasField("string_value") else v.int_value if v.HasField("int_value") else v.bool_value
    return out


def start_serve(*args, env=None):
    """`jobcast serve` with `args` on a free port; its process and port once it listens."""
    port = free_port()
    serve = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{port}", *args],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return serve, port
        except OSError:
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.05)


def stop(serve, receiver):
    serve.send_signal(signal.SIGTERM)
    try:
        serve.wait(timeout=15)
    except subprocess.TimeoutExpired:
        serve.kill()
    receiver.close()


def run_job(port, body, headers=None):
    """Creates a job and follows it over a WebSocket until it succeeds; its id."""
    async def follow():
        async with websockets.connect(f"ws://127.0.0.1:{port}/dev") as ws:
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/jobs", method="POST", data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json", **(headers or {})})
            created = json.loads(urllib.request.urlopen(req).read())
            await ws.send(json.dumps({"action": "subscribe", "jobId": created["jobId"], "token": created["token"]}))
            while True:
                m = json.loads(await asyncio.wait_for(ws.recv(), 20))
                if m.get("type") == "progress" and m["status"] == "succeeded":
                    return created["jobId"]

    return asyncio.run(follow())


WORKER = """
import sys, time
from jobcast_worker import Job
job = Job.from_env()
assert job.traceparent, "the job message carries a traceparent"
for n in (1, 2, 3):
    time.sleep(0.2)
    job.progress(percent=25 * n, message=f"step {n}")
job.succeed({"steps": 3})
"""


def test_one_trace_from_post_jobs_through_a_python_worker_to_the_fan_outs(tmp_path):
    receiver = Receiver()
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    env = dict(os.environ, OTEL_BSP_SCHEDULE_DELAY="100", OTEL_SERVICE_NAME="jobcast-test",
               PYTHONPATH=os.path.join(ROOT, "clients/python"))
    serve, port = start_serve("--otlp-endpoint", receiver.url,
                              "--kind", f"report=command:{sys.executable} {worker}", env=env)
    try:
        job_id = run_job(port, {"kind": "report", "input": {}})

        # The exporter sends every 100 ms here; wait for the last fan-out.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            fanouts = [s for s in receiver.spans if s.name == "fan-out" and attrs(s).get("jobcast.job.status") == "succeeded"]
            if fanouts:
                break
            time.sleep(0.1)
        spans = [s for s in receiver.spans if attrs(s).get("jobcast.job.id") == job_id]
        assert spans, f"no span names the job; got {[s.name for s in receiver.spans]}"
        assert receiver.content_types == {"application/x-protobuf"}
        assert {"service.name": "jobcast-test"}.items() <= receiver.resources[0].items()

        # One trace.
        trace_ids = {s.trace_id for s in spans}
        assert len(trace_ids) == 1, [(s.name, s.trace_id.hex()) for s in spans]
        by_id = {s.span_id: s for s in receiver.spans if s.trace_id in trace_ids}

        create = [s for s in spans if s.name == "POST /jobs"]
        assert len(create) == 1
        create = create[0]
        assert create.parent_span_id == b"", "POST /jobs began the trace"
        assert create.kind == create.SPAN_KIND_SERVER
        assert attrs(create)["jobcast.job.kind"] == "report"
        assert attrs(create)["http.response.status_code"] == 202

        dispatch = [s for s in spans if s.name == "dispatch report"]
        assert len(dispatch) == 1 and dispatch[0].parent_span_id == create.span_id
        assert attrs(dispatch[0])["jobcast.target"] == "command"

        # The Python worker's four updates (three progress, one success), each
        # a child of the hand-over through the traceparent the library sent.
        updates = [s for s in spans if s.name == "POST /jobs/{jobId}/updates"]
        assert len(updates) == 4, [s.name for s in spans]
        for u in updates:
            assert u.parent_span_id == dispatch[0].span_id
            assert attrs(u)["http.response.status_code"] == 200

        # One fan-out per pushed update, under that update, with the subscriber count.
        fanouts = [s for s in spans if s.name == "fan-out"]
        assert len(fanouts) == 4, [(s.name, attrs(s)) for s in spans]
        update_ids = {u.span_id for u in updates}
        for f in fanouts:
            assert f.parent_span_id in update_ids
            a = attrs(f)
            assert a["jobcast.subscribers"] == 1
            assert a["jobcast.messages.delivered"] == 1
        assert sorted(attrs(f)["jobcast.job.seq"] for f in fanouts) == [2, 3, 4, 5], "queued is seq 1; each update one more"
        assert all(s.end_time_unix_nano >= s.start_time_unix_nano > 0 for s in spans)
        assert all(by_id.get(s.parent_span_id) is not None for s in spans if s.parent_span_id)
    finally:
        stop(serve, receiver)


def test_a_demo_job_runs_and_fans_out_in_the_trace_of_its_post(tmp_path):
    receiver = Receiver()
    serve, port = start_serve("--otlp-endpoint", receiver.url,
                              env=dict(os.environ, OTEL_BSP_SCHEDULE_DELAY="100"))
    try:
        # The caller's own trace: POST /jobs continues it.
        caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        job_id = run_job(port, {"kind": "demo", "input": {"steps": 3, "stepMs": 50}}, {"traceparent": caller})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(s.name == "run demo" for s in receiver.spans):
            time.sleep(0.1)
        spans = [s for s in receiver.spans if s.trace_id == bytes.fromhex("0af7651916cd43dd8448eb211c80319c")]
        names = [s.name for s in spans]
        create = next(s for s in spans if s.name == "POST /jobs")
        assert create.parent_span_id == bytes.fromhex("b7ad6b7169203331"), "the caller's span is its parent"
        run = [s for s in spans if s.name == "run demo"]
        assert len(run) == 1, names
        assert attrs(run[0])["jobcast.job.id"] == job_id
        # The run is under the request that queued it (directly or through its hand-over).
        ancestors, at = set(), run[0]
        while at.parent_span_id:
            ancestors.add(at.parent_span_id)
            at = next((s for s in spans if s.span_id == at.parent_span_id), None)
            if at is None:
                break
        assert create.span_id in ancestors, names
        fanouts = [s for s in spans if s.name == "fan-out"]
        assert fanouts and all(f.parent_span_id == run[0].span_id for f in fanouts), names
        assert attrs(fanouts[-1])["jobcast.subscribers"] == 1
    finally:
        stop(serve, receiver)
