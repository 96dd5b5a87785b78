"""The library against a live ``jobcast serve``: a worker written with it
runs jobs that a WebSocket client and a webhook receiver watch."""

import hashlib
import hmac
import json
import sys
import textwrap
import time

import pytest
from websockets.sync.client import connect

from jobcast_worker import Job, JobEnded
from conftest import WEBHOOK_SECRET

WORKER = textwrap.dedent("""
    from jobcast_worker import Job

    job = Job.from_env()
    rows = job.input["rows"]
    for n in range(1, rows + 1):
        job.progress(percent=100 * n / rows, message=f"row {n} of {rows}")
    job.succeed({"rows": rows, "table": job.input["table"]})
""")


def follow(websocket_url, timeout=20):
    """Every progress message of a job until it ends."""
    seen = []
    with connect(websocket_url, open_timeout=10) as ws:
        ws.send(json.dumps({"action": "sync"}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = json.loads(ws.recv(timeout=max(deadline - time.monotonic(), 0.1)))
            if m.get("type") != "progress":
                continue
            seen.append(m)
            if m["status"] in ("succeeded", "failed", "cancelled"):
                return seen
    raise AssertionError(f"the job did not end: {seen}")


def applied(seen):
    """What a client shows: each message newer than the last one applied."""
    out = []
    for m in seen:
        if not out or m["seq"] > out[-1]["seq"]:
            out.append(m)
    return out


def test_a_command_worker_runs_a_job_to_succeeded_watched_live(serve, recorder, tmp_path):
    worker = tmp_path / "export_worker.py"
    worker.write_text(WORKER)
    s = serve("--kind", f"export=command:{sys.executable} {worker}")
    hook = recorder()
    job = s.create("export", {"table": "orders", "rows": 4}, callback_url=hook.url + "/hook")
    seen = follow(job["websocketUrl"])
    shown = applied(seen)
    assert [m["seq"] for m in shown] == [1, 2, 3, 4, 5, 6]
    assert [m["percent"] for m in shown] == [0, 25, 50, 75, 100, 100]
    assert shown[2]["message"] == "row 2 of 4"
    final = shown[-1]
    assert final["status"] == "succeeded"
    assert final["result"] == {"rows": 4, "table": "orders"}

    got = hook.wait_for(1)
    assert len(got) == 1
    body = got[0]["body"]
    assert json.loads(body)["seq"] == 6
    t, v1 = (part.split("=", 1)[1] for part in got[0]["headers"]["Jobcast-Signature"].split(","))
    want = hmac.new(WEBHOOK_SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(v1, want)


def test_cancel_reaches_a_worker_as_job_ended(serve, recorder):
    inbox = recorder()
    s = serve("--kind", f"manual={inbox.url}/work")
    created = s.create("manual", {"n": 1})
    job = Job.from_message(inbox.wait_for(1)[0]["body"])
    assert job.id == created["jobId"] and job.attempt == 1 and job.input == {"n": 1}
    first = job.progress(percent=10, message="started")
    assert first["seq"] == 2
    assert job.heartbeat()["seq"] == 2, "a heartbeat makes no new snapshot"
    status, snap = s.request("DELETE", f"/jobs/{job.id}", token=created["token"])
    assert status == 202 and snap["status"] == "cancelled"
    with pytest.raises(JobEnded) as e:
        job.progress(percent=20)
    assert e.value.snapshot["status"] == "cancelled"
    assert job.cancelled


def test_fail_ends_the_job_with_the_error(serve, recorder):
    inbox = recorder()
    s = serve("--kind", f"manual={inbox.url}/work")
    s.create("manual")
    job = Job.from_message(inbox.wait_for(1)[0]["body"])
    job.progress(percent=40)
    job.fail("no_such_table", "table orders does not exist")
    status, view = s.request("GET", f"/jobs/{job.id}")
    assert status == 200
    assert view["status"] == "failed"
    assert view["error"] == {"code": "no_such_table", "message": "table orders does not exist"}
    assert view["percent"] == 40


def test_a_worker_that_goes_quiet_is_lost(serve, recorder):
    inbox = recorder()
    s = serve("--kind", f"manual={inbox.url}/work", "--heartbeat-timeout", "1s")
    s.create("manual")
    job = Job.from_message(inbox.wait_for(1)[0]["body"])
    assert job.heartbeat_timeout_seconds == 1
    job.progress(percent=5)
    deadline = time.monotonic() + 10
    view = {}
    while time.monotonic() < deadline:
        _, view = s.request("GET", f"/jobs/{job.id}")
        if view["status"] != "running":
            break
        time.sleep(0.2)
    assert view["status"] == "failed"
    assert view["error"]["code"] == "worker_lost"
    with pytest.raises(JobEnded):
        job.progress(percent=50)
    assert not job.cancelled and job.ended


def test_min_interval_turns_a_tight_loop_into_a_few_updates(serve, recorder):
    inbox = recorder()
    s = serve("--kind", f"manual={inbox.url}/work")
    created = s.create("manual")
    job = Job.from_message(inbox.wait_for(1)[0]["body"], min_interval=0.25)
    calls = 100
    for n in range(1, calls + 1):
        job.progress(percent=n, message=f"row {n}")
        time.sleep(0.01)
    time.sleep(0.4)  # the interval is up: the newest held progress is out
    _, view = s.request("GET", f"/jobs/{job.id}")
    assert (view["percent"], view["message"]) == (100, "row 100")
    updates = view["seq"] - 1
    assert 2 <= updates <= 12, f"{calls} calls became {updates} updates"
    job.succeed({"rows": calls})
    seen = applied(follow(created["websocketUrl"]))
    assert seen[-1]["status"] == "succeeded" and seen[-1]["seq"] == updates + 2
    with pytest.raises(JobEnded):
        job.progress(percent=100)  # not held: the job has ended
