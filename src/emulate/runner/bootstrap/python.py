# The Python runtime of `jobcast emulate`: imports the handler named by
# _HANDLER (package.module.function) from LAMBDA_TASK_ROOT and serves
# invocations from AWS_LAMBDA_RUNTIME_API, one at a time, as Lambda's
# Python runtime does. Standard library only.
import http.client
import importlib
import json
import os
import sys
import time
import traceback

HOST, _, PORT = os.environ["AWS_LAMBDA_RUNTIME_API"].partition(":")
BASE = "/2018-06-01/runtime"
# One kept-alive connection to the Runtime API.
CONNECTION = http.client.HTTPConnection(HOST, int(PORT or 80))


def request(method, path, body=None, headers=None):
    CONNECTION.request(method, BASE + path, body=body, headers=headers or {})
    res = CONNECTION.getresponse()
    return res.headers, res.read()
ROOT = os.environ.get("LAMBDA_TASK_ROOT", os.getcwd())
HANDLER = os.environ.get("_HANDLER", "app.handler")


def post(path, body, error_type=None):
    data = json.dumps(body).encode() if not isinstance(body, bytes) else body
    headers = {"Content-Type": "application/json"}
    if error_type:
        headers["Lambda-Runtime-Function-Error-Type"] = error_type
    request("POST", path, data, headers)


def shape(exc, error_type=None):
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
        self.aws_request_id = headers.get("Lambda-Runtime-Aws-Request-Id")
        self.invoked_function_arn = headers.get("Lambda-Runtime-Invoked-Function-Arn")
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
        request_id = headers.get("Lambda-Runtime-Aws-Request-Id")
        context = Context(headers, int(headers.get("Lambda-Runtime-Deadline-Ms", "0")))
        try:
            value = fn(event, context)
        except Exception as exc:  # the handler's own error
            body = shape(exc)
            print("[ERROR] %s: %s" % (body["errorType"], body["errorMessage"]), file=sys.stderr)
            post("/invocation/%s/error" % request_id, body, body["errorType"])
            continue
        post("/invocation/%s/response" % request_id, json.dumps(value).encode())


main()
