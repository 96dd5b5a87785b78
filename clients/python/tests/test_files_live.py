"""Files from the library against a live ``jobcast serve``: the example
export worker uploads a CSV, the job's snapshot links it, and the link
downloads exactly the bytes the worker wrote."""

import csv
import hashlib
import io
import sys
import time
import urllib.request

import pytest

from conftest import ROOT
from jobcast_worker import Job, JobcastError

EXAMPLE = ROOT / "clients" / "python" / "examples" / "export_csv.py"


def wait_terminal(s, job_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, view = s.request("GET", f"/jobs/{job_id}")
        assert status == 200, view
        if view["status"] in ("succeeded", "failed", "cancelled"):
            return view
        time.sleep(0.1)
    raise AssertionError("the job did not end")


def test_the_export_example_uploads_a_csv_that_downloads_intact(serve, tmp_path):
    s = serve("--files-dir", str(tmp_path), "--kind", f"export=command:{sys.executable} {EXAMPLE}")
    job = s.create("export", {"rows": 20000})
    view = wait_terminal(s, job["jobId"])
    assert view["status"] == "succeeded", view
    assert view["result"] == {"rows": 20000}
    [f] = view["files"]
    assert (f["name"], f["contentType"]) == ("export.csv", "text/csv")
    with urllib.request.urlopen(f["url"]) as r:
        body = r.read()
        assert r.headers["Content-Disposition"] == 'attachment; filename="export.csv"'
    assert len(body) == f["size"]
    rows = list(csv.reader(io.StringIO(body.decode())))
    assert rows[0] == ["id", "name", "amount"] and len(rows) == 20001
    assert rows[-1][0] == "19999"


def test_upload_from_bytes_and_a_path_then_attach(serve, recorder, tmp_path):
    inbox = recorder()
    s = serve("--files-dir", str(tmp_path / "store"), "--kind", f"work={inbox.url}/work")
    job_id = s.create("work")["jobId"]
    job = Job.from_message(inbox.wait_for(1)[0]["body"])
    assert job.files_url == f"{s.url}/jobs/{job_id}/files"
    data = bytes(range(256)) * 4096  # 1 MiB, every byte value
    src = tmp_path / "blob.bin"
    src.write_bytes(data)
    assert job.upload("blob.bin", src) == {"name": "blob.bin", "size": len(data),
                                           "contentType": "application/octet-stream"}
    job.upload("notes.txt", b"hello")
    job.succeed({"ok": True}, files=["blob.bin", "notes.txt"])
    view = wait_terminal(s, job_id)
    urls = {f["name"]: f["url"] for f in view["files"]}
    with urllib.request.urlopen(urls["blob.bin"]) as r:
        assert hashlib.sha256(r.read()).digest() == hashlib.sha256(data).digest()
    with urllib.request.urlopen(urls["notes.txt"]) as r:
        assert r.read() == b"hello"


def test_attaching_a_file_never_uploaded_is_refused(serve, recorder, tmp_path):
    inbox = recorder()
    s = serve("--files-dir", str(tmp_path), "--kind", f"work={inbox.url}/work")
    s.create("work")
    job = Job.from_message(inbox.wait_for(1)[0]["body"])
    with pytest.raises(JobcastError) as e:
        job.succeed(files=["missing.csv"])
    assert e.value.status == 422 and e.value.code == "file_missing"

