//! `command:<shell command>` (`serve` only): runs the command once per job
//! with the job message on standard input and in `JOBCAST_JOB`. A command
//! that exits non-zero before its job has ended ends it `failed`
//! `worker_exited`, naming the exit status and the last line it wrote to
//! standard error. Its output goes to serve's log, tagged with the job.

use super::{Deliver, DispatchError, JobMessage};
use crate::publish::Publisher;
use async_trait::async_trait;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub struct CommandTarget {
    command: String,
    publisher: Publisher,
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl CommandTarget {
    pub fn new(
        command: String,
        publisher: Publisher,
        tasks: TaskTracker,
        stop: CancellationToken,
    ) -> CommandTarget {
        CommandTarget {
            command,
            publisher,
            tasks,
            stop,
        }
    }
}

/// Keeps the last non-empty line of a stream while logging each line.
async fn drain_lines(
    stream: impl tokio::io::AsyncRead + Unpin,
    job_id: String,
    stream_name: &'static str,
) -> Option<String> {
    let mut lines = BufReader::new(stream).lines();
    let mut last = None;
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(job_id, stream = stream_name, "worker: {line}");
        if !line.trim().is_empty() {
            last = Some(line);
        }
    }
    last
}

#[async_trait]
impl Deliver for CommandTarget {
    async fn deliver(&self, message: &JobMessage, body: &str) -> Result<(), DispatchError> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&self.command)
            .env("JOBCAST_JOB", body)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| DispatchError::Fatal(format!("cannot start `{}`: {e}", self.command)))?;
        let job_id = message.job_id.clone();
        tracing::info!(job_id, pid = child.id(), command = %self.command, "started the job's worker command");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let body = body.to_string();
        let publisher = self.publisher.clone();
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            if let Some(mut stdin) = stdin {
                // A worker that never reads its input is fine: ignore EPIPE.
                let _ = stdin.write_all(body.as_bytes()).await;
                let _ = stdin.write_all(b"\n").await;
                drop(stdin);
            }
            let out = stdout.map(|s| tokio::spawn(drain_lines(s, job_id.clone(), "stdout")));
            let err = stderr.map(|s| tokio::spawn(drain_lines(s, job_id.clone(), "stderr")));
            let status = tokio::select! {
                s = child.wait() => s,
                _ = stop.cancelled() => {
                    if let Some(pid) = child.id() {
                        // SAFETY: signals the process group this child leads.
                        unsafe { libc::kill(-(pid as i32), libc::SIGTERM) };
                    }
                    let _ = child.wait().await;
                    return;
                }
            };
            if let Some(o) = out {
                let _ = o.await;
            }
            let last_err = match err {
                Some(e) => e.await.ok().flatten(),
                None => None,
            };
            match status {
                Ok(status) => settle_exit(&publisher, &job_id, status, last_err).await,
                Err(e) => tracing::error!(job_id, error = %e, "lost track of the worker command"),
            }
        });
        Ok(())
    }
}

/// After the worker command exits: nothing on success, or when its job has
/// already ended; otherwise the job fails `worker_exited`, with the last
/// line the command wrote to stderr.
async fn settle_exit(
    publisher: &Publisher,
    job_id: &str,
    status: std::process::ExitStatus,
    last_err: Option<String>,
) {
    if status.success() {
        tracing::info!(job_id, "worker command exited 0");
        return;
    }
    let how = match (
        status.code(),
        std::os::unix::process::ExitStatusExt::signal(&status),
    ) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "ended abnormally".to_string(),
    };
    let detail = match last_err {
        Some(line) => format!("the worker command {how}: {line}"),
        None => format!("the worker command {how}"),
    };
    match publisher.store().get_job(job_id).await {
        Ok(Some(j)) if j.snapshot.status.is_terminal() => {
            tracing::info!(job_id, "worker command {how} after its job ended");
        }
        _ => {
            tracing::warn!(job_id, "{detail}");
            super::fail_job(publisher, job_id, "worker_exited", detail).await;
        }
    }
}
