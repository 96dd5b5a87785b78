# The Python runtime of `jobcast emulate`: imports the handler named by
# _HANDLER (package.module.function) from LAMBDA_TASK_ROOT and serves
# invocations from AWS_LAMBDA_RUNTIME_API, one at a time, as Lambda's
# Python runtime does. Standard library only.
import importlib
import json
import os
import _socket  # the C module: socket.py would add enum, selectors and more
import sys
import time

HOST, _, PORT = os.environ["AWS_LAMBDA_RUNTIME_API"].partition(":")
BASE = "/2018-06-01/runtime"
# One kept-alive connection to the Runtime API, spoken over a plain socket:
# the runtime sends one request at a time and the API (emulate's own)
# answers each with a Content-Length. http.client (and the email package it
# imports) would cost a warm process about 6 MiB, socket.py half of one.
_sock = None
_buffered = b""


def _recv_until(predicate):
    global _buffered
    while not predicate():
        chunk = _sock.recv(65536)
        if not chunk:
            raise ConnectionError("the Runtime API closed the connection")
        _buffered += chunk


def request(method, path, body=b"", headers=None):
    """One request; the response's headers (lower-case names) and body."""
    global _sock, _buffered
    if _sock is None:
        _sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        _sock.connect((HOST, int(PORT or 80)))
        _sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        _buffered = b""
    head = "%s %s%s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n" % (method, BASE, path, HOST, len(body))
    for name, value in (headers or {}).items():
        head += "%s: %s\r\n" % (name, value)
    try:
        _sock.sendall(head.encode("latin-1") + b"\r\n" + body)
        _recv_until(lambda: b"\r\n\r\n" in _buffered)
        end = _buffered.index(b"\r\n\r\n")
        lines = _buffered[:end].decode("latin-1").split("\r\n")
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        size = end + 4 + int(fields.get("content-length", "0"))
        _recv_until(lambda: len(_buffered) >= size)
    except OSError:
        _sock.close()
        _sock = None
        raise
    data, _buffered = _buffered[end + 4:size], _buffered[size:]
    # A refused body (413) is left unread, so the API ends the connection:
    # the next request starts a new one.
    if lines[0].split(" ")[1:2] == ["413"] or fields.get("connection") == "close":
        _sock.close()
        _sock = None
    return fields, data


ROOT = os.environ.get("LAMBDA_TASK_ROOT", os.getcwd())
HANDLER = os.environ.get("_HANDLER", "app.handler")


def post(path, body, error_type=None):
    data = json.dumps(body).encode() if not isinstance(body, bytes) else body
    headers = {"Content-Type": "application/json"}
    if error_type:
        headers["Lambda-Runtime-Function-Error-Type"] = error_type
    request("POST", path, data, headers)


def answer(path, body, error_type=None):
    """Sends an invocation's answer. The API may refuse one (over 6 MB) and
    drop the connection while it is still being written; it has then failed
    the invocation itself, and the next request opens a new connection."""
    try:
        post(path, body, error_type)
    except OSError as exc:
        print("the Runtime API refused the answer: %s" % exc, file=sys.stderr)


def shape(exc, error_type=None):
    import traceback  # only when something failed

    return {
        "errorType": error_type or type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_exception(type(exc), exc, exc.__traceback__),
    }


def init_error(exc, error_type):
    body = shape(exc, error_type)
    print("[ERROR] %s: %s" % (body["errorType"], body["errorMessage"]), file=sys.stderr)
    post("/init/error", body, body["errorType"])
    sys.exit(1)


def load():
    module_name, _, function_name = HANDLER.rpartition(".")
    if not module_name:
        init_error(ValueError("Bad handler %r: expected module.function" % HANDLER),
                   "Runtime.MalformedHandlerName")
    sys.path.insert(0, ROOT)
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except SyntaxError as exc:
        init_error(exc, "Runtime.UserCodeSyntaxError")
    except ImportError as exc:
        init_error(exc, "Runtime.ImportModuleError")
    except Exception as exc:  # the module raised while loading
        init_error(exc, "Runtime.ImportModuleError")
    fn = getattr(module, function_name, None)
    if not callable(fn):
        init_error(AttributeError("Handler %r missing on module %r" % (function_name, module_name)),
                   "Runtime.HandlerNotFound")
    return fn


class Context:
    def __init__(self, headers, deadline_ms):
        self.aws_request_id = headers.get("lambda-runtime-aws-request-id")
        self.invoked_function_arn = headers.get("lambda-runtime-invoked-function-arn")
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(0, int(self._deadline_ms - time.time() * 1000))


def main():
    fn = load()
    while True:
        headers, body = request("GET", "/invocation/next")
        event = json.loads(body or b"null")
        request_id = headers.get("lambda-runtime-aws-request-id")
        context = Context(headers, int(headers.get("lambda-runtime-deadline-ms", "0")))
        try:
            data = json.dumps(fn(event, context)).encode()
        except Exception as exc:  # the handler's own error, or an answer JSON cannot hold
            body = shape(exc)
            print("[ERROR] %s: %s" % (body["errorType"], body["errorMessage"]), file=sys.stderr)
            answer("/invocation/%s/error" % request_id, body, body["errorType"])
            continue
        answer("/invocation/%s/response" % request_id, data)


main()
