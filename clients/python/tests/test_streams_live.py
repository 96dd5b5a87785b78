"""Streams from the library against a live ``jobcast serve``: the
token-streaming example worker, watched over WebSocket and polled."""

import json
import sys
import time
import urllib.request

from websockets.sync.client import connect

from conftest import ROOT

EXAMPLE = ROOT / "clients" / "python" / "examples" / "stream_tokens.py"


def chunks_until_end(websocket_url, job_id, token, streams, timeout=30):
    """The chunks of each stream, in order, and the terminal snapshot."""
    got = {name: [] for name in streams}
    with connect(websocket_url, open_timeout=10) as ws:
        ws.send(json.dumps({"action": "subscribe", "jobId": job_id, "token": token,
                            "streams": {name: 0 for name in streams}}))
        deadline = time.monotonic() + timeout
        final = None
        while time.monotonic() < deadline:
            m = json.loads(ws.recv(timeout=max(deadline - time.monotonic(), 0.1)))
            if m["type"] == "chunks":
                held = got[m["stream"]]
                # Drop what is already held; a gap would be a lost chunk.
                assert m["from"] <= len(held), (m["from"], len(held))
                held.extend(m["chunks"][len(held) - m["from"]:])
            elif m["type"] == "progress" and m["status"] in ("succeeded", "failed", "cancelled"):
                final = m
            if final and all(len(got[n]) >= final.get("streams", {}).get(n, 0) for n in streams):
                return got, final
    raise AssertionError(f"the job did not end: {got}")


def test_the_token_example_streams_its_answer_live_and_to_pollers(serve):
    s = serve("--kind", f"answer=command:{sys.executable} {EXAMPLE}")
    job = s.create("answer", {"prompt": "why?", "tokenMs": 5})
    got, final = chunks_until_end(job["websocketUrl"], job["jobId"], job["token"], ["tokens", "log"])
    text = "".join(got["tokens"])
    assert text.startswith("Long jobs outlive the request") and text.endswith("survives a reload.")
    assert final["status"] == "succeeded"
    assert final["streams"]["tokens"] == len(got["tokens"]) == final["result"]["tokens"]
    assert got["log"] == ["prompt: why?"]
    # A few requests carried every token: gathered, not one request each.
    with urllib.request.urlopen(f"{s.url}/metrics") as r:
        metrics = r.read().decode()
    updates = next(float(line.split()[1]) for line in metrics.splitlines()
                   if line.startswith("jobcast_worker_updates_total "))
    assert updates <= len(got["tokens"]) / 3, (updates, len(got["tokens"]))
    # The same chunks, polled.
    url = f"{s.url}/jobs/{job['jobId']}/streams/tokens?from=0"
    with urllib.request.urlopen(url) as r:
        page = json.load(r)
    assert page["chunks"] == got["tokens"] and page["complete"] is True
