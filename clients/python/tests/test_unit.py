"""The library on its own, against local stand-ins for jobcast."""

import json
import time

import pytest

from jobcast_worker import Job, JobEnded, JobcastError
from conftest import free_port


def message(url, **extra):
    m = {"type": "job", "jobId": "job_1", "kind": "export", "input": {"table": "orders"},
         "createdAt": "2026-12-02T10:00:00Z", "attempt": 2, "workerToken": "wt",
         "updateUrl": url, "heartbeatTimeoutSeconds": 300}
    m.update(extra)
    return m


def test_from_message_takes_a_dict_json_text_or_bytes():
    m = message("http://127.0.0.1:9/jobs/job_1/updates")
    for form in (m, json.dumps(m), json.dumps(m).encode()):
        job = Job.from_message(form)
        assert (job.id, job.kind, job.attempt, job.heartbeat_timeout_seconds) == ("job_1", "export", 2, 300)
        assert job.input == {"table": "orders"}


def test_from_message_names_what_is_missing():
    with pytest.raises(ValueError, match="workerToken, updateUrl"):
        Job.from_message({"jobId": "job_1"})
    with pytest.raises(ValueError, match="JSON"):
        Job.from_message("{not json")
    with pytest.raises(ValueError, match="object"):
        Job.from_message("[1]")


def test_calls_send_the_contract_bodies_with_the_worker_token(recorder):
    r = recorder([(200, {}, {"jobId": "job_1", "seq": 2, "status": "running"})])
    job = Job.from_message(message(r.url + "/jobs/job_1/updates"))
    job.progress(percent=5, message="reading")
    job.progress()
    job.heartbeat()
    job.succeed({"rows": 3})
    job.fail("bad_input", "no such table")
    sent = [json.loads(q["body"]) for q in r.wait_for(5)]
    assert sent == [
        {"status": "running", "percent": 5, "message": "reading"},
        {"status": "running"},
        {},
        {"status": "succeeded", "result": {"rows": 3}},
        {"status": "failed", "message": "no such table",
         "error": {"code": "bad_input", "message": "no such table"}},
    ]
    q = r.requests[0]
    assert q["path"] == "/jobs/job_1/updates"
    assert q["headers"]["Authorization"] == "Bearer wt"
    assert q["headers"]["Content-Type"] == "application/json"


def test_429_and_5xx_are_retried_honouring_retry_after(recorder):
    r = recorder([
        (503, {"Retry-After": "1"}, {"status": 503, "code": "unavailable"}),
        (429, {"Retry-After": "0"}, {"status": 429, "code": "throttled"}),
        (200, {}, {"jobId": "job_1", "seq": 2, "status": "running"}),
    ])
    job = Job.from_message(message(r.url + "/u"))
    started = time.monotonic()
    assert job.progress(percent=1)["seq"] == 2
    assert len(r.requests) == 3
    assert time.monotonic() - started >= 0.9, "waited as Retry-After asked"


def test_a_4xx_is_never_retried(recorder):
    r = recorder([(422, {}, {"status": 422, "code": "invalid_update", "detail": "percent went down"})])
    job = Job.from_message(message(r.url + "/u"))
    with pytest.raises(JobcastError) as e:
        job.progress(percent=1)
    assert e.value.status == 422
    assert e.value.code == "invalid_update"
    assert "percent went down" in str(e.value)
    time.sleep(0.2)
    assert len(r.requests) == 1


def test_a_terminal_409_raises_job_ended_with_the_snapshot(recorder):
    snapshot = {"type": "progress", "jobId": "job_1", "seq": 3, "status": "cancelled"}
    r = recorder([(409, {}, {"status": 409, "code": "terminal", "snapshot": snapshot})])
    job = Job.from_message(message(r.url + "/u"))
    assert not job.cancelled
    with pytest.raises(JobEnded) as e:
        job.heartbeat()
    assert e.value.snapshot == snapshot
    assert job.cancelled and job.ended
    assert len(r.requests) == 1


def test_an_unreachable_jobcast_is_retried_then_reported():
    url = f"http://127.0.0.1:{free_port()}/jobs/job_1/updates"
    job = Job.from_message(message(url), retries=2, backoff=0.01)
    with pytest.raises(JobcastError) as e:
        job.progress(percent=1)
    assert e.value.status is None
    assert "unreachable" in str(e.value)


def test_heartbeats_run_in_the_background_while_a_block_runs(recorder):
    r = recorder([(200, {}, {"jobId": "job_1", "seq": 2, "status": "running"})])
    job = Job.from_message(message(r.url + "/u"))
    with job.heartbeats(every=0.05):
        time.sleep(0.3)
    n = len(r.requests)
    assert n >= 3
    assert all(json.loads(q["body"]) == {} for q in r.requests)
    time.sleep(0.2)
    assert len(r.requests) == n, "stopped with the block"


RUNNING = (200, {}, {"jobId": "job_1", "seq": 2, "status": "running"})


def bodies(r, n):
    return [json.loads(q["body"]) for q in r.wait_for(n)]


def test_min_interval_holds_progress_and_sends_the_newest_when_the_interval_is_up(recorder):
    r = recorder([RUNNING])
    job = Job.from_message(message(r.url + "/u"), min_interval=0.3)
    assert job.progress(percent=1, message="a")["seq"] == 2, "the first call goes out at once"
    assert job.progress(percent=2, message="b") is None
    assert job.progress(message="c") is None, "held: its percent is the one held before"
    time.sleep(0.1)
    assert len(r.requests) == 1
    assert bodies(r, 2) == [
        {"status": "running", "percent": 1, "message": "a"},
        {"status": "running", "percent": 2, "message": "c"},
    ]
    time.sleep(0.4)
    assert len(r.requests) == 2, "nothing held, nothing more sent"
    assert job.progress(percent=3)["seq"] == 2, "past the interval: at once again"


def test_held_progress_goes_out_with_flush_heartbeat_and_the_end(recorder):
    r = recorder([RUNNING])
    job = Job.from_message(message(r.url + "/u"), min_interval=60)
    job.progress(percent=10)
    assert job.flush() is None, "nothing held"
    job.progress(percent=20)
    assert job.flush()["seq"] == 2
    job.progress(percent=30)
    job.heartbeat()
    job.progress(percent=40)
    job.succeed({"rows": 3})
    job2 = Job.from_message(message(r.url + "/u"), min_interval=60)
    job2.progress(percent=50)
    job2.progress(percent=60)
    job2.fail("bad_input", "no such table")
    assert bodies(r, 6) == [
        {"status": "running", "percent": 10},
        {"status": "running", "percent": 20},
        {"status": "running", "percent": 30},
        {"status": "succeeded", "result": {"rows": 3}},
        {"status": "running", "percent": 50},
        {"status": "failed", "message": "no such table", "percent": 60,
         "error": {"code": "bad_input", "message": "no such table"}},
    ]


def test_an_error_met_by_held_progress_is_raised_by_the_next_call(recorder):
    r = recorder([RUNNING, (422, {}, {"status": 422, "code": "invalid_update", "detail": "percent went down"})])
    job = Job.from_message(message(r.url + "/u"), min_interval=0.1)
    job.progress(percent=50)
    assert job.progress(percent=40) is None
    r.wait_for(2)
    time.sleep(0.05)
    with pytest.raises(JobcastError) as e:
        job.progress(percent=60)
    assert e.value.code == "invalid_update"
    assert len(r.requests) == 2, "the call that raised sent nothing"


def test_the_job_messages_traceparent_goes_back_with_every_call(recorder):
    r = recorder([(200, {}, {"jobId": "job_1", "seq": 2, "status": "running"})])
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    job = Job.from_message(message(r.url + "/jobs/job_1/updates", traceparent=traceparent))
    assert job.traceparent == traceparent
    job.progress(percent=5)
    job.heartbeat()
    job.succeed()
    assert [q["headers"].get("traceparent") for q in r.wait_for(3)] == [traceparent] * 3
    untraced = Job.from_message(message(r.url + "/jobs/job_1/updates"))
    assert untraced.traceparent is None
    untraced.progress(percent=5)
    assert "traceparent" not in r.wait_for(4)[-1]["headers"]
