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

/// The longest environment string Linux takes (`MAX_ARG_STRLEN`, 32
/// pages): a longer `JOBCAST_JOB=…` makes the spawn fail with E2BIG.
const MAX_ENV_STRING: usize = 32 * 4096;

/// Whether the message also goes in `JOBCAST_JOB`: when `NAME=value` and
/// its terminating NUL fit in one environment string. Standard input
/// always carries it, whatever its size.
fn fits_environment(body: &str) -> bool {
    "JOBCAST_JOB=".len() + body.len() < MAX_ENV_STRING
}

/// The shell words that make a command more than one simple command, or
/// make `exec` wrong in front of it.
const NOT_EXECABLE_FIRST: [&str; 27] = [
    "if", "then", "else", "elif", "fi", "do", "done", "case", "esac", "while", "until", "for",
    "in", "{", "}", "!", "[[", "function", "select", "time", ":", ".", "break", "continue", "eval",
    "exec", "exit",
];
const SHELL_BUILTINS: [&str; 10] = [
    "export", "readonly", "return", "set", "shift", "times", "trap", "unset", "cd", "wait",
];

/// `exec COMMAND` when the command is one simple command (no `;`, `&`,
/// `|`, parentheses, braces, backquotes or newline outside quotes, no
/// leading assignment, builtin or reserved word): the shell then becomes
/// the worker, so the pid `serve` logs and signals is the worker's own.
/// None for anything else, which runs under `sh -c` as written.
fn exec_form(command: &str) -> Option<String> {
    let (mut single, mut double, mut escaped) = (false, false, false);
    let mut previous = ' ';
    for c in command.chars() {
        let before = std::mem::replace(&mut previous, c);
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            // `2>&1`, `<&0`: a redirection, not a control operator.
            '&' if matches!(before, '>' | '<') && !single && !double => {}
            '\\' if !single => escaped = true,
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            ';' | '&' | '|' | '(' | ')' | '`' | '\n' | '{' | '}' if !single && !double => {
                return None;
            }
            _ => {}
        }
    }
    if single || double || escaped {
        return None;
    }
    let first = command.split_whitespace().next()?;
    let assignment = first
        .split_once('=')
        .is_some_and(|(name, _)| !name.is_empty() && !name.contains(['"', '\'', '$', '/']));
    if assignment || NOT_EXECABLE_FIRST.contains(&first) || SHELL_BUILTINS.contains(&first) {
        return None;
    }
    Some(format!("exec {command}"))
}

/// Signals every process of the group `pid` leads; false once none is left.
fn signal_group(pid: u32, signal: libc::c_int) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: signals the process group our child leads (a negative pid);
    // no memory is involved.
    unsafe { libc::kill(-pid, signal) == 0 }
}

/// Ends what is left of a worker's process group once its leader has
/// exited: SIGTERM, then SIGKILL after a grace, so nothing the worker
/// started goes on reporting for a job nobody supervises.
async fn end_group(pid: u32, job_id: &str) {
    if !signal_group(pid, libc::SIGTERM) {
        return;
    }
    tracing::warn!(
        job_id,
        pgid = pid,
        "the worker command left processes behind: ending them"
    );
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if !signal_group(pid, 0) {
            return;
        }
    }
    signal_group(pid, libc::SIGKILL);
}

#[async_trait]
impl Deliver for CommandTarget {
    async fn deliver(&self, message: &JobMessage, body: &str) -> Result<(), DispatchError> {
        let script = exec_form(&self.command);
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script.as_deref().unwrap_or(&self.command))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if fits_environment(body) {
            cmd.env("JOBCAST_JOB", body);
        } else {
            cmd.env_remove("JOBCAST_JOB");
        }
        let spawned = match cmd.spawn() {
            // The environment as a whole is over the system's limit
            // (ARG_MAX): standard input alone carries the message.
            Err(e) if e.raw_os_error() == Some(libc::E2BIG) => {
                cmd.env_remove("JOBCAST_JOB");
                cmd.spawn()
            }
            other => other,
        };
        let mut child = spawned
            .map_err(|e| DispatchError::Fatal(format!("cannot start `{}`: {e}", self.command)))?;
        let job_id = message.job_id.clone();
        let pid = child.id().unwrap_or_default();
        if script.is_some() {
            tracing::info!(job_id, pid, command = %self.command, "started the job's worker command");
        } else {
            tracing::info!(
                job_id,
                pid,
                command = %self.command,
                "started the job's worker command under sh -c (pid is the shell's; its process group is the job's)"
            );
        }
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let body = body.to_string();
        let publisher = self.publisher.clone();
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            let feed = async move {
                if let Some(mut stdin) = stdin {
                    // A worker that never reads its input is fine: ignore EPIPE.
                    let _ = stdin.write_all(body.as_bytes()).await;
                    let _ = stdin.write_all(b"\n").await;
                }
            };
            // Fed beside the wait: a message larger than the pipe's buffer
            // must not hold up noticing that the worker has gone.
            let feeding = tokio::spawn(feed);
            let out = stdout.map(|s| tokio::spawn(drain_lines(s, job_id.clone(), "stdout")));
            let err = stderr.map(|s| tokio::spawn(drain_lines(s, job_id.clone(), "stderr")));
            let status = tokio::select! {
                s = child.wait() => s,
                _ = stop.cancelled() => {
                    signal_group(pid, libc::SIGTERM);
                    let _ = child.wait().await;
                    feeding.abort();
                    return;
                }
            };
            feeding.abort();
            end_group(pid, &job_id).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_simple_command_is_execd_and_anything_else_runs_as_written() {
        for simple in [
            "python3 worker.py",
            "node w.js > out.log 2>&1",
            r#"python3 -c 'import sys; print(1 & 2)'"#,
            r#"sh "a;b.sh""#,
            "./bin/worker --flag=$HOME",
        ] {
            assert_eq!(
                exec_form(simple),
                Some(format!("exec {simple}")),
                "{simple}"
            );
        }
        for compound in [
            "cd dir && python3 w.py",
            "echo a; echo b",
            "python3 w.py | tee log",
            "python3 w.py &",
            "(python3 w.py)",
            "FOO=1 python3 w.py",
            "exit 3",
            "cd /tmp",
            "if true; then w; fi",
            "echo `date`",
            "echo 'unclosed",
            "",
        ] {
            assert_eq!(exec_form(compound), None, "{compound}");
        }
    }

    #[test]
    fn the_environment_carries_the_message_while_it_fits() {
        assert!(fits_environment(&"x".repeat(100_000)));
        assert!(!fits_environment(&"x".repeat(131_060)));
    }
}
