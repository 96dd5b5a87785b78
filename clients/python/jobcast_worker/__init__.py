"""Report the progress of a jobcast job from a worker, with the standard library only.

A worker receives a *job message* (from SQS, a Lambda event, an HTTP POST or,
under ``jobcast serve --kind KIND=command:…``, its standard input) and reports
through the job's ``updateUrl``::

    from jobcast_worker import Job
    job = Job.from_message(message)
    job.progress(percent=50, message="half way")
    job.succeed({"url": "s3://bucket/out.csv"})

With ``min_interval`` (seconds), progress reported faster than that is
merged and sent at most once per interval, the newest state last: fewer
updates, so fewer pushes, invocations and table writes.

Files larger than a message go straight to storage: ``job.upload("report.csv",
"/tmp/report.csv")`` asks jobcast where, then sends the bytes there (streamed
from the path); ``job.succeed({...}, files=["report.csv"])`` attaches it, and
browsers get a download link.

What the job produces goes to its streams: ``job.append("tokens", "Hel")``
or ``job.log("resized 40/100")``. Chunks are gathered for ``chunk_interval``
seconds (0.1 by default) and sent together, with the next update when one
goes out first, and always before the job ends; ``flush()`` sends at once.

Throttling (429), server errors (5xx) and connection errors are retried with
exponential backoff, honouring ``Retry-After``; other 4xx answers are never
retried. Once the job has ended (cancelled by its client, or expired), every
call raises :class:`JobEnded` carrying the final snapshot: the signal to stop.
"""

from __future__ import annotations

import json
import mimetypes
import os
import re
import random
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Mapping, Optional, Union

__all__ = ["Job", "JobEnded", "JobcastError", "RETRYABLE"]
__version__ = "0.1.0"

#: HTTP statuses worth another try.
RETRYABLE = frozenset({429, 500, 502, 503, 504})

_REQUIRED = ("jobId", "workerToken", "updateUrl")

_STREAM_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}\Z")
#: Chunks gathered up to this many bytes go out at once (one update
#: carries at most 64 KiB of them).
APPEND_SEND_BYTES = 48 * 1024
#: The most bytes of chunks one update may carry.
APPEND_MAX_BYTES = 64 * 1024


def _chunk_bytes(chunk: Any) -> int:
    return len(json.dumps(chunk, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


class JobcastError(Exception):
    """jobcast refused an update, or could not be reached after every retry.

    ``status`` is the HTTP status (``None`` when jobcast was unreachable) and
    ``problem`` the RFC 9457 problem document jobcast answered with.
    """

    def __init__(self, message: str, status: Optional[int] = None,
                 problem: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.status = status
        self.problem = problem or {}

    @property
    def code(self) -> Optional[str]:
        return self.problem.get("code")


class JobEnded(JobcastError):
    """The job has already ended (``409 terminal``); ``snapshot`` is its final state."""

    def __init__(self, message: str, snapshot: Dict[str, Any],
                 problem: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(message, 409, problem)
        self.snapshot = snapshot

    @property
    def cancelled(self) -> bool:
        return self.snapshot.get("status") == "cancelled"


class Job:
    """One job handed to this worker, and the calls that report on it."""

    def __init__(self, job_id: str, update_url: str, worker_token: str, *,
                 kind: Optional[str] = None, input: Any = None, attempt: int = 1,
                 heartbeat_timeout_seconds: int = 0, created_at: Optional[str] = None,
                 traceparent: Optional[str] = None, retries: int = 6, timeout: float = 30.0,
                 backoff: float = 0.5, max_backoff: float = 30.0,
                 min_interval: float = 0.0, chunk_interval: float = 0.1) -> None:
        self.id = job_id
        self.update_url = update_url
        self.kind = kind
        self.input = input
        self.attempt = attempt
        self.heartbeat_timeout_seconds = heartbeat_timeout_seconds
        self.created_at = created_at
        #: The W3C trace context jobcast handed the job over in (when its traces
        #: are on). Every update carries it back, so they join the trace its
        #: ``POST /jobs`` began; start your own spans under it to join too.
        self.traceparent = traceparent
        self.retries = retries
        self.timeout = timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        #: The last accepted ``{"jobId", "seq", "status"}``, or the final snapshot once ended.
        self.last: Optional[Dict[str, Any]] = None
        #: Seconds between two progress updates sent; 0 sends every call.
        self.min_interval = max(float(min_interval or 0.0), 0.0)
        #: Seconds chunks are gathered before they go out (0: each call sends).
        self.chunk_interval = max(float(chunk_interval or 0.0), 0.0)
        #: Each stream's length after the last update that appended to it.
        self.streams: Dict[str, int] = {}
        self._token = worker_token
        self._ended: Optional[JobEnded] = None
        self._pending: Dict[str, list] = {}
        self._pending_bytes = 0
        self._chunk_timer: Optional[threading.Timer] = None
        # Calls on one job go out one at a time, held progress included.
        self._lock = threading.RLock()
        self._held: Optional[Dict[str, Any]] = None
        self._sent_at: Optional[float] = None
        self._timer: Optional[threading.Timer] = None
        self._late_error: Optional[JobcastError] = None
        # This worker's own terminal update was accepted: later calls go out
        # at once, to learn the final snapshot from jobcast's 409.
        self._finished = False

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, kind={self.kind!r}, attempt={self.attempt})"

    # -- building -------------------------------------------------------------

    @classmethod
    def from_message(cls, message: Union[str, bytes, Mapping[str, Any]], **options: Any) -> "Job":
        """A job from its job message: a dict, or its JSON text (an SQS body, stdin)."""
        if isinstance(message, (bytes, bytearray)):
            message = message.decode("utf-8")
        if isinstance(message, str):
            try:
                message = json.loads(message)
            except ValueError as e:
                raise ValueError(f"a job message is JSON, and this is not: {e}") from None
        if not isinstance(message, Mapping):
            raise ValueError("a job message is a JSON object")
        missing = [k for k in _REQUIRED if not isinstance(message.get(k), str) or not message.get(k)]
        if missing:
            raise ValueError(
                "not a jobcast job message: missing " + ", ".join(missing)
                + " (pass the whole message jobcast sent, e.g. an SQS record's body)")
        return cls(
            message["jobId"], message["updateUrl"], message["workerToken"],
            kind=message.get("kind"), input=message.get("input"),
            attempt=int(message.get("attempt") or 1),
            heartbeat_timeout_seconds=int(message.get("heartbeatTimeoutSeconds") or 0),
            created_at=message.get("createdAt"),
            traceparent=message.get("traceparent") if isinstance(message.get("traceparent"), str) else None,
            **options)

    @classmethod
    def from_env(cls, **options: Any) -> "Job":
        """The job of a ``command:`` worker: ``JOBCAST_JOB``, else standard input."""
        text = os.environ.get("JOBCAST_JOB") or sys.stdin.read()
        return cls.from_message(text, **options)

    # -- reporting ------------------------------------------------------------

    def progress(self, percent: Optional[float] = None,
                 message: Optional[str] = None) -> Optional[Dict[str, Any]]:
        """Reports progress (the job becomes ``running``). An omitted message is cleared.

        With ``min_interval``, a call less than that after the previous
        progress sent is held and returns ``None``: the newest held progress
        goes out when the interval is up, or with :meth:`flush`,
        :meth:`heartbeat` or the job's end. An error that sending it met is
        raised by the next call."""
        body: Dict[str, Any] = {"status": "running"}
        if percent is not None:
            body["percent"] = percent
        if message is not None:
            body["message"] = message
        with self._lock:
            self._raise_late()
            if self._held is not None and "percent" not in body and "percent" in self._held:
                body["percent"] = self._held["percent"]
            now = time.monotonic()
            wait = 0.0 if self._sent_at is None else self._sent_at + self.min_interval - now
            if wait <= 0 or self._finished:
                self._drop_held()
                self._sent_at = now
                return self._send(body)
            self._held = body
            if self._timer is None:
                self._timer = threading.Timer(wait, self._send_held)
                self._timer.daemon = True
                self._timer.start()
            return None

    def append(self, stream: str, chunks: Any) -> None:
        """Adds chunks (one, or a list of them: any JSON) to one of the job's
        streams. They go out within ``chunk_interval``, with the next update
        if one is sent first, and always before the job ends. An error that
        sending them met is raised by the next call."""
        if not isinstance(stream, str) or not _STREAM_NAME.match(stream):
            raise ValueError(f"{stream!r} is not a stream name: [a-z][a-z0-9_-]{{0,31}}")
        items = list(chunks) if isinstance(chunks, (list, tuple)) else [chunks]
        if not items:
            return
        sizes = [_chunk_bytes(c) for c in items]
        if max(sizes) > APPEND_MAX_BYTES:
            raise ValueError(f"a chunk is at most {APPEND_MAX_BYTES} bytes of JSON")
        with self._lock:
            self._raise_late()
            for chunk, size in zip(items, sizes):
                if self._pending_bytes + size > APPEND_MAX_BYTES:
                    self._send_pending()
                self._pending.setdefault(stream, []).append(chunk)
                self._pending_bytes += size
            if self._pending_bytes >= APPEND_SEND_BYTES or self.chunk_interval == 0:
                self._send_pending()
            elif self._chunk_timer is None:
                self._chunk_timer = threading.Timer(self.chunk_interval, self._send_pending_late)
                self._chunk_timer.daemon = True
                self._chunk_timer.start()

    def log(self, line: Any) -> None:
        """Adds one line to the job's ``log`` stream (``append("log", line)``)."""
        self.append("log", str(line))

    def flush(self) -> Optional[Dict[str, Any]]:
        """Sends held progress and gathered chunks now; ``None`` when nothing
        is held."""
        with self._lock:
            self._raise_late()
            body = self._drop_held()
            if body is None:
                if not self._pending:
                    return None
                return self._send({})
            self._sent_at = time.monotonic()
            return self._send(body)

    def heartbeat(self) -> Dict[str, Any]:
        """Tells jobcast the worker is alive, without a new snapshot (held
        progress, if any, goes out instead: it counts as a heartbeat too)."""
        with self._lock:
            if self._held is not None:
                return self.flush() or {}
            return self._send({})

    @property
    def files_url(self) -> str:
        """Where this job's uploads are asked for: beside its update URL."""
        base = self.update_url.rstrip("/")
        if base.endswith("/updates"):
            base = base[: -len("/updates")]
        return base + "/files"

    def upload(self, name: str, data: Union[bytes, bytearray, str, "os.PathLike[str]"],
               content_type: Optional[str] = None) -> Dict[str, Any]:
        """Uploads a file of the job: ``data`` is the bytes, or a path whose
        file is streamed (never read whole). Asks jobcast where to send it,
        then sends it there, both retried like any update. Attach it with
        ``succeed(..., files=[name])`` (or any update's ``files``)."""
        if isinstance(data, (bytes, bytearray)):
            size, path = len(data), None
        else:
            path = os.fspath(data)
            size = os.path.getsize(path)
        if content_type is None:
            content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        ask = json.dumps({"name": name, "contentType": content_type, "size": size}).encode("utf-8")
        answer = self._call(self.files_url, ask, "POST", {"Content-Type": "application/json"},
                            f"upload of {name} for job {self.id}")
        headers = dict(answer.get("headers") or {})
        headers["Content-Length"] = str(size)

        def body():
            return bytes(data) if path is None else open(path, "rb")

        self._call(answer["uploadUrl"], body, answer.get("method", "PUT"), headers,
                   f"upload of {name} for job {self.id}", auth=False)
        return {"name": name, "size": size, "contentType": content_type}

    def succeed(self, result: Any = None, message: Optional[str] = None,
                files: Optional[list] = None) -> Dict[str, Any]:
        """Ends the job ``succeeded`` (percent 100), with an optional result
        and the names of uploaded files it attaches."""
        body: Dict[str, Any] = {"status": "succeeded"}
        if result is not None:
            body["result"] = result
        if message is not None:
            body["message"] = message
        if files:
            body["files"] = [f["name"] if isinstance(f, Mapping) else str(f) for f in files]
        with self._lock:
            self._drop_held()
            return self._send(body)

    def fail(self, code: str, message: str) -> Dict[str, Any]:
        """Ends the job ``failed`` with ``error {code, message}`` (at the
        percent of any progress still held)."""
        body: Dict[str, Any] = {"status": "failed", "message": message,
                                "error": {"code": code, "message": message}}
        with self._lock:
            held = self._drop_held()
            if held is not None and "percent" in held:
                body["percent"] = held["percent"]
            return self._send(body)

    @property
    def cancelled(self) -> bool:
        """True once an update learned that the job was cancelled."""
        return self._ended is not None and self._ended.cancelled

    @property
    def ended(self) -> bool:
        """True once an update learned that the job had already ended."""
        return self._ended is not None

    @contextmanager
    def heartbeats(self, every: Optional[float] = None) -> Iterator["Job"]:
        """Heartbeats in a background thread while the block runs (for steps
        longer than the heartbeat timeout). Every third of the timeout unless
        ``every`` says otherwise; does nothing when liveness is off."""
        interval = every if every is not None else self.heartbeat_timeout_seconds / 3
        if not interval or interval <= 0:
            yield self
            return
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(interval):
                try:
                    self.heartbeat()
                except JobcastError:
                    return

        t = threading.Thread(target=beat, name=f"jobcast-heartbeat-{self.id}", daemon=True)
        t.start()
        try:
            yield self
        finally:
            stop.set()
            t.join(timeout=self.timeout)

    # -- held progress --------------------------------------------------------

    def _drop_held(self) -> Optional[Dict[str, Any]]:
        """Takes the held progress and stops its timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        body, self._held = self._held, None
        return body

    def _send_held(self) -> None:
        """The timer's end: sends what is held, keeping an error for the next call."""
        with self._lock:
            self._timer = None
            body, self._held = self._held, None
            if body is None:
                return
            self._sent_at = time.monotonic()
            try:
                self._send(body)
            except JobcastError as e:
                self._late_error = e

    # -- gathered chunks ------------------------------------------------------

    def _take_pending(self) -> Optional[Dict[str, list]]:
        if self._chunk_timer is not None:
            self._chunk_timer.cancel()
            self._chunk_timer = None
        if not self._pending:
            return None
        pending, self._pending, self._pending_bytes = self._pending, {}, 0
        return pending

    def _send_pending(self) -> None:
        if self._pending:
            self._send({})

    def _send_pending_late(self) -> None:
        """The chunk timer's end: sends what was gathered, keeping an error
        for the next call."""
        with self._lock:
            self._chunk_timer = None
            try:
                self._send_pending()
            except JobcastError as e:
                self._late_error = e

    def _raise_late(self) -> None:
        if self._ended is not None:
            raise self._ended
        error, self._late_error = self._late_error, None
        if error is not None:
            raise error

    # -- transport ------------------------------------------------------------

    def _send(self, body: Dict[str, Any]) -> Dict[str, Any]:
        # Gathered chunks go with whatever is sent (before it, on the server).
        pending = self._take_pending()
        if pending is not None:
            body = dict(body, append=pending)
        data = json.dumps(body).encode("utf-8")
        attempt = 0
        while True:
            status, headers, answer, reason = self._post(data)
            if status == 200:
                self.last = answer if isinstance(answer, dict) else {}
                self.streams.update(self.last.get("streams") or {})
                if self.last.get("status") in ("succeeded", "failed", "cancelled"):
                    self._finished = True
                return self.last
            if status == 409 and isinstance(answer, dict) and answer.get("code") == "terminal":
                snapshot = answer.get("snapshot") or {}
                self._ended = JobEnded(
                    f"job {self.id} already ended {snapshot.get('status', '')}".strip(),
                    snapshot, answer)
                self.last = snapshot
                raise self._ended
            retryable = status is None or status in RETRYABLE
            if not retryable or attempt >= self.retries:
                problem = answer if isinstance(answer, dict) else {}
                detail = problem.get("detail") or reason
                where = f"{status}" if status is not None else "unreachable"
                raise JobcastError(f"update of job {self.id} refused ({where}): {detail}",
                                   status, problem)
            time.sleep(self._delay(attempt, headers))
            attempt += 1

    def _call(self, url: str, data: Any, method: str, headers: Dict[str, str], what: str,
              auth: bool = True) -> Dict[str, Any]:
        """One request retried like an update; ``data`` is bytes or a
        function giving a fresh body (a file) for each attempt."""
        attempt = 0
        while True:
            body = data() if callable(data) else data
            try:
                status, answer_headers, answer, reason = self._request(
                    url, body, method, headers, auth)
            finally:
                if hasattr(body, "close"):
                    body.close()
            if status is not None and 200 <= status < 300:
                return answer if isinstance(answer, dict) else {}
            if status == 409 and isinstance(answer, dict) and answer.get("code") == "terminal":
                snapshot = answer.get("snapshot") or {}
                self._ended = JobEnded(f"job {self.id} already ended", snapshot, answer)
                raise self._ended
            retryable = status is None or status in RETRYABLE
            if not retryable or attempt >= self.retries:
                problem = answer if isinstance(answer, dict) else {}
                detail = problem.get("detail") or reason
                where = f"{status}" if status is not None else "unreachable"
                raise JobcastError(f"{what} refused ({where}): {detail}", status, problem)
            time.sleep(self._delay(attempt, answer_headers))
            attempt += 1

    def _delay(self, attempt: int, headers: Mapping[str, str]) -> float:
        retry_after = (headers or {}).get("Retry-After") or (headers or {}).get("retry-after")
        if retry_after:
            try:
                return min(max(float(retry_after), 0.0), self.max_backoff)
            except ValueError:
                pass
        ceiling = min(self.max_backoff, self.backoff * (2 ** attempt))
        return random.uniform(ceiling / 2, ceiling)

    def _post(self, data: bytes):
        return self._request(self.update_url, data, "POST",
                             {"Content-Type": "application/json"}, True)

    def _request(self, url: str, data: Any, method: str, headers: Mapping[str, str],
                 auth: bool):
        headers = dict(headers)
        headers["User-Agent"] = f"jobcast-worker-python/{__version__}"
        if auth:
            headers["Authorization"] = f"Bearer {self._token}"
            if self.traceparent:
                headers["traceparent"] = self.traceparent
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as res:
                return res.status, dict(res.headers), _json(res.read()), res.reason
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers or {}), _json(e.read()), e.reason
        except (urllib.error.URLError, OSError) as e:
            return None, {}, None, str(getattr(e, "reason", e))


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8")) if raw else None
    except ValueError:
        return None
