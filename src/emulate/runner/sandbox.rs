//! One execution environment: a function's process, started with
//! Lambda's environment and its own Runtime API, serving one invocation at
//! a time and staying warm between them. Every line it prints goes to the
//! emulator's log with the function's logical id and the request id it was
//! printed during. A process that outlives its invocation's `Timeout`, or
//! exits during one, is stopped and the sandbox is not used again.

use super::api::{Invocation, Outcome, RuntimeApi};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// How to start a function's process.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The function's logical id, in every log line.
    pub logical_id: String,
    /// The program and its arguments.
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The working directory (`LAMBDA_TASK_ROOT`).
    pub dir: PathBuf,
    /// The environment on top of the caller's (Lambda's variables, the
    /// template's, `--env-vars`).
    pub env: BTreeMap<String, String>,
    /// The ARN an invocation names.
    pub function_arn: String,
    /// How long a new process has to ask for work ([`INIT_LIMIT`]).
    pub init_limit: Duration,
}

/// How long a new process has to load its handler and ask for work.
pub const INIT_LIMIT: Duration = Duration::from_secs(10);

/// Why an invocation has no answer from the function itself.
#[derive(Debug, PartialEq)]
pub enum Failure {
    /// Past the function's `Timeout`: the process was stopped.
    TimedOut(Duration),
    /// A new process did not ask for work within the init limit.
    InitTimedOut(Duration),
    /// The process ended during the invocation (or before taking it).
    Exited(String),
}

/// What one invocation came to.
pub type Answered = Result<Outcome, Failure>;

/// A running process and its Runtime API.
pub struct Sandbox {
    api: RuntimeApi,
    child: Child,
    init_limit: Duration,
    /// The request id lines are printed under (none between invocations).
    current: Arc<Mutex<Option<String>>>,
    /// Whether it may take another invocation.
    healthy: bool,
}

/// Lines longer than this are cut (with a note), so a process that prints
/// without newlines cannot grow the emulator's memory.
const MAX_LINE_BYTES: usize = 256 * 1024;

async fn forward(
    stream: impl AsyncRead + Unpin,
    logical_id: String,
    current: Arc<Mutex<Option<String>>>,
) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = match (&mut reader)
            .take(MAX_LINE_BYTES as u64)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let cut = n == MAX_LINE_BYTES && buf.last() != Some(&b'\n');
        let text = String::from_utf8_lossy(&buf);
        let line = text.trim_end_matches(['\n', '\r']);
        let request_id = current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_default();
        if cut {
            tracing::info!(target: "function", function = %logical_id, request_id, "{line} [line cut at 256 KiB]");
        } else {
            tracing::info!(target: "function", function = %logical_id, request_id, "{line}");
        }
    }
}

impl Sandbox {
    /// Starts the process; it then asks its Runtime API for work.
    pub async fn start(launch: &Launch) -> std::io::Result<Sandbox> {
        let api = RuntimeApi::start().await?;
        let mut cmd = Command::new(&launch.program);
        cmd.args(&launch.args)
            .current_dir(&launch.dir)
            .envs(&launch.env)
            .env("AWS_LAMBDA_RUNTIME_API", api.address())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let mut child = cmd.spawn()?;
        let current = Arc::new(Mutex::new(None));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward(
                out,
                launch.logical_id.clone(),
                Arc::clone(&current),
            ));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward(
                err,
                launch.logical_id.clone(),
                Arc::clone(&current),
            ));
        }
        Ok(Sandbox {
            api,
            child,
            init_limit: launch.init_limit,
            current,
            healthy: true,
        })
    }

    /// The process's id (for its memory, in `jobcast bench runtimes`).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether the sandbox may take another invocation.
    pub fn healthy(&self) -> bool {
        self.healthy
    }

    /// Runs one invocation: `event` in, the function's answer out, within
    /// `timeout` counted from when the process takes the event. A process
    /// still starting has [`INIT_LIMIT`] to take it, as Lambda's init phase.
    pub async fn invoke(
        &mut self,
        request_id: &str,
        function_arn: &str,
        event: Bytes,
        timeout: Duration,
    ) -> Answered {
        let (tx, mut rx) = oneshot::channel();
        let (taken_tx, taken) = oneshot::channel();
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(request_id.to_string());
        self.api.invoke(Invocation {
            request_id: request_id.to_string(),
            timeout,
            function_arn: function_arn.to_string(),
            event,
            reply: tx,
            taken: taken_tx,
        });
        let exited = |status: std::io::Result<std::process::ExitStatus>| {
            Failure::Exited(match status {
                Ok(s) => describe_exit(s),
                Err(e) => e.to_string(),
            })
        };
        // First the process takes the event (at once when warm) ...
        let early = tokio::select! {
            _ = taken => None,
            r = &mut rx => Some(r.map_err(|_| Failure::Exited("the Runtime API closed".into()))),
            status = self.child.wait() => Some(Err(exited(status))),
            _ = tokio::time::sleep(self.init_limit) => Some(Err(Failure::InitTimedOut(self.init_limit))),
        };
        // ... then it has its Timeout to answer.
        let answered = match early {
            Some(done) => done,
            None => tokio::select! {
                r = rx => r.map_err(|_| Failure::Exited("the Runtime API closed".into())),
                status = self.child.wait() => Err(exited(status)),
                _ = tokio::time::sleep(timeout) => Err(Failure::TimedOut(timeout)),
            },
        };
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = None;
        match &answered {
            Ok(Outcome::InitError(_)) | Err(_) => {
                self.healthy = false;
                self.stop().await;
            }
            Ok(_) => {}
        }
        answered
    }

    /// Stops the process and everything it started.
    pub async fn stop(&mut self) {
        self.healthy = false;
        if let Some(pid) = self.child.id() {
            // SAFETY: kill only sends a signal to the process group we started.
            unsafe {
                libc::kill(-(pid as i32), libc::SIGKILL);
            }
        }
        let _ = self.child.kill().await;
    }
}

/// `exit status 3`, or `signal: 9 (SIGKILL)`, as Lambda words a runtime's end.
fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("signal: {sig}"),
        _ => status.to_string(),
    }
}
