//! A function's execution environments: warm processes reused most
//! recently used first, more started for concurrent invocations up to the
//! function's concurrency, each invocation framed in the log by
//! CloudWatch's `START`, `END` and `REPORT` lines.

use super::api::Outcome;
use super::sandbox::{Answered, Failure, Launch, Sandbox};
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Concurrent invocations of one function by default (`--max-concurrency`).
pub const DEFAULT_MAX_CONCURRENCY: usize = 10;

/// One function as the emulator runs it.
pub struct Function {
    launch: Launch,
    /// The function's `Timeout`.
    timeout: Duration,
    /// `MemorySize`, reported in `REPORT` lines.
    memory_mb: u32,
    /// Warm processes, each with the code generation it started on.
    idle: Mutex<Vec<(u64, Sandbox)>>,
    permits: Semaphore,
    /// Bumped when the code changes: a process of an older generation
    /// finishes its invocation and is then retired.
    generation: AtomicU64,
}

/// A new request id, shaped as Lambda's (a UUID v4).
pub fn request_id() -> String {
    let mut b = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = crate::protocol::hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl Function {
    /// A function with no process yet: the first invocation starts one.
    pub fn new(
        launch: Launch,
        timeout: Duration,
        memory_mb: u32,
        max_concurrency: usize,
    ) -> Function {
        Function {
            launch,
            timeout,
            memory_mb,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(max_concurrency.max(1)),
            generation: AtomicU64::new(0),
        }
    }

    /// The folder its code is in.
    pub fn code_dir(&self) -> &std::path::Path {
        &self.launch.dir
    }

    /// The function's logical id.
    pub fn logical_id(&self) -> &str {
        &self.launch.logical_id
    }

    /// The ids of the processes kept warm now.
    pub fn warm_pids(&self) -> Vec<u32> {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.iter().filter_map(|(_, s)| s.pid()).collect()
    }

    /// Processes kept warm now.
    pub fn warm(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Runs one invocation on a warm process (the most recently used) or a
    /// new one; waits for a free slot when the function is at its
    /// concurrency. Returns the request id and what came of it.
    pub async fn invoke(&self, event: Bytes) -> (String, Answered) {
        let id = request_id();
        let Ok(_permit) = self.permits.acquire().await else {
            return (id, Err(Failure::Exited("the function is shut down".into())));
        };
        let logical_id = &self.launch.logical_id;
        let warm = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let started = Instant::now();
        let (generation, mut sandbox, init) = match warm {
            Some((g, s)) => (g, s, None),
            None => match Sandbox::start(&self.launch).await {
                Ok(s) => (self.generation.load(Ordering::SeqCst), s, Some(started)),
                Err(e) => {
                    tracing::error!(function = %logical_id, error = %e, "could not start the function's process");
                    return (id, Err(Failure::Exited(format!("could not start: {e}"))));
                }
            },
        };
        tracing::info!(target: "function", function = %logical_id, "START RequestId: {id} Version: $LATEST");
        let answered = sandbox
            .invoke(&id, &self.launch.function_arn, event, self.timeout)
            .await;
        let took = started.elapsed();
        if let Err(Failure::InitTimedOut(t)) = &answered {
            tracing::warn!(target: "function", function = %logical_id, request_id = %id, "INIT_REPORT Init Duration: {:.2} ms Phase: init Status: timeout", t.as_secs_f64() * 1000.0);
        }
        if let Err(Failure::TimedOut(t)) = &answered {
            tracing::warn!(target: "function", function = %logical_id, request_id = %id, "Task timed out after {:.2} seconds", t.as_secs_f64());
        }
        if let Err(Failure::Exited(why)) = &answered {
            tracing::warn!(target: "function", function = %logical_id, request_id = %id, "the runtime exited during the invocation: {why}");
        }
        if let Ok(Outcome::InitError(body)) = &answered {
            tracing::error!(target: "function", function = %logical_id, request_id = %id, "the handler could not load: {}", String::from_utf8_lossy(body));
        }
        tracing::info!(target: "function", function = %logical_id, "END RequestId: {id}");
        let ms = took.as_secs_f64() * 1000.0;
        let init_note = init
            .map(|_| " (cold start)".to_string())
            .unwrap_or_default();
        tracing::info!(
            target: "function",
            function = %logical_id,
            "REPORT RequestId: {id} Duration: {ms:.2} ms Billed Duration: {} ms Memory Size: {} MB{init_note}",
            ms.ceil() as u64,
            self.memory_mb
        );
        if sandbox.healthy() && generation == self.generation.load(Ordering::SeqCst) {
            self.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((generation, sandbox));
        } else {
            sandbox.stop().await;
        }
        (id, answered)
    }

    /// Stops every warm process (at shutdown, or when the code changed).
    pub async fn retire(&self) {
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
        for (_, mut s) in idle {
            s.stop().await;
        }
    }

    /// The code changed: warm processes stop now, those in an invocation
    /// once it is answered, and the next invocation starts on the new code.
    pub async fn code_changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.retire().await;
    }
}
