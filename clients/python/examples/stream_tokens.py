"""A worker that streams its answer token by token, as a language model
would: a stand-in for one, with nothing to download. Run it as a kind:

    jobcast serve --kind "answer=command:python3 clients/python/examples/stream_tokens.py"

and start a job with {"kind": "answer", "input": {"prompt": "..."}}.
"""
import sys
import time
from pathlib import Path

# Runs from a checkout without installing the library first.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobcast_worker import Job, JobEnded  # noqa: E402

ANSWER = (
    "Long jobs outlive the request that starts them: API Gateway cuts every "
    "request at thirty seconds. So the request answers at once with a job id, "
    "a worker does the work, and the page learns how far it got, and what it "
    "produced, over a WebSocket that survives a reload."
)

job = Job.from_env()
words = ANSWER.split(" ")
pause = job.input.get("tokenMs", 40) / 1000
try:
    job.log(f"prompt: {job.input.get('prompt', '')}")
    job.progress(message="answering")                      # running, with the log line
    for i, word in enumerate(words):
        time.sleep(pause)                                  # the model thinking
        job.append("tokens", word if i == 0 else " " + word)
    job.succeed({"tokens": len(words)})                    # sends what is left first
except JobEnded as ended:
    print(f"stopping: the job is {ended.snapshot['status']}", file=sys.stderr)
