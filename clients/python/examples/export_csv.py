"""A worker that exports a CSV and hands it over as a file: the bytes go
straight to storage (serve's directory locally, S3 in AWS), the browser
gets a download link. Run it as a kind:

    jobcast serve --kind "export=command:python3 clients/python/examples/export_csv.py"

and start a job with {"kind": "export", "input": {"rows": 100000}}.
"""
import csv
import sys
import tempfile
from pathlib import Path

# Runs from a checkout without installing the library first.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobcast_worker import Job, JobEnded  # noqa: E402

job = Job.from_env(min_interval=0.2)
rows = int(job.input.get("rows", 10_000))
try:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "export.csv"
        with path.open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["id", "name", "amount"])
            for i in range(rows):
                out.writerow([i, f"customer {i}", f"{(i * 37) % 1000}.{i % 100:02d}"])
                if i % 5000 == 0:
                    job.progress(percent=90 * i / rows, message=f"{i}/{rows} rows")
        job.progress(percent=90, message="uploading")
        job.upload("export.csv", path, content_type="text/csv")   # streamed from disk
        job.succeed({"rows": rows}, files=["export.csv"])
except JobEnded:
    pass  # cancelled, or ended elsewhere: stop quietly
