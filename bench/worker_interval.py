"""How many updates a worker reporting from a tight loop sends, with and
without the Python library's min_interval: one job per setting, a progress
call every 10 ms for 10 s, against `jobcast serve` (target/release/jobcast).

    python3 -m venv .venv && .venv/bin/pip install ./clients/python
    cargo build --release && .venv/bin/python bench/worker_interval.py
"""
import json, subprocess, sys, time, threading, urllib.request, http.server, os
from jobcast_worker import Job
import socket
with socket.socket() as s_:
    s_.bind(("127.0.0.1", 0)); port = s_.getsockname()[1]
got = []
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        got.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200); self.send_header("Content-Length","0"); self.end_headers()
    def log_message(self,*a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
env = dict(os.environ, JOBCAST_WEBHOOK_SECRET="x"*32, RUST_LOG="warn")
p = subprocess.Popen(["target/release/jobcast","serve","--listen",f"127.0.0.1:{port}","--kind",f"export=http://127.0.0.1:{srv.server_address[1]}/w"], env=env)
time.sleep(1.5)
def req(method, path, body=None):
    r = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode() if body else None, method=method, headers={"Content-Type":"application/json"})
    return json.loads(urllib.request.urlopen(r).read())
for mi in (0, 0.25, 0.5, 1.0):
    n0 = len(got); req("POST","/jobs",{"kind":"export","input":{}})
    while len(got) == n0: time.sleep(0.01)
    job = Job.from_message(got[-1], min_interval=mi)
    calls = 0; start = time.monotonic()
    while time.monotonic() - start < 10:
        calls += 1; job.progress(percent=min(100, calls/10), message=f"row {calls}"); time.sleep(0.01)
    job.succeed()
    v = req("GET", f"/jobs/{job.id}")
    print(f"min_interval={mi}s calls={calls} updates={v['seq']-1}")
p.terminate()
