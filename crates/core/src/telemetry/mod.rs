//! OpenTelemetry traces, off unless an OTLP endpoint is configured.
//!
//! One trace follows a job: the `POST /jobs` request (or the caller's own
//! trace, from its `traceparent` header), its hand-over to the kind's
//! target, each worker update (the worker libraries send the job message's
//! `traceparent` back with every update) and each fan-out to subscribers.
//! Spans are exported over OTLP/HTTP with protobuf (`otlp`), batched, by a
//! background task; a full queue drops spans rather than slow a request.
//!
//! Off, every call here is one load of a global and a branch: no clock read,
//! no allocation, no task.

mod otlp;

pub use otlp::{OtlpConfig, encode_request};

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// A span's identity and its trace's (W3C trace context).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

impl SpanContext {
    /// Parses a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex flags>`);
    /// None for anything else, all-zero ids included.
    pub fn from_traceparent(header: &str) -> Option<SpanContext> {
        let parts: Vec<&str> = header.trim().split('-').collect();
        let [version, trace, span, flags] = parts.as_slice() else {
            // Later versions may append fields; version 00 has exactly four.
            if parts.len() > 4 && parts[0] != "00" && parts[0] != "ff" && parts[0].len() == 2 {
                return SpanContext::from_traceparent(&parts[..4].join("-"));
            }
            return None;
        };
        if version.len() != 2
            || *version == "ff"
            || trace.len() != 32
            || span.len() != 16
            || flags.len() != 2
        {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        hex_into(trace, &mut trace_id)?;
        hex_into(span, &mut span_id)?;
        let mut flag = [0u8; 1];
        hex_into(flags, &mut flag)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(SpanContext {
            trace_id,
            span_id,
            sampled: flag[0] & 1 == 1,
        })
    }

    /// The W3C `traceparent` naming this span as the parent.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.span_id),
            u8::from(self.sampled)
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_into(s: &str, out: &mut [u8]) -> Option<()> {
    if s.len() != out.len() * 2
        || !s
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    {
        return None;
    }
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(())
}

/// What a span is to its trace (OTLP's `SpanKind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
}

/// An attribute's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s)
    }
}
impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Int(n)
    }
}
impl From<u64> for Value {
    fn from(n: u64) -> Value {
        Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}
impl From<usize> for Value {
    fn from(n: usize) -> Value {
        Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}
impl From<u16> for Value {
    fn from(n: u16) -> Value {
        Value::Int(n.into())
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

/// A finished span, as it is exported.
#[derive(Clone, Debug)]
pub struct SpanData {
    pub context: SpanContext,
    pub parent: Option<[u8; 8]>,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: Vec<(&'static str, Value)>,
    /// Set when the operation failed.
    pub error: Option<String>,
}

/// A span being recorded; exported when [`Span::end`] is called (or when
/// dropped). Inert when tracing is off.
pub struct Span {
    data: Option<SpanData>,
}

impl Span {
    /// A span that records nothing.
    pub fn none() -> Span {
        Span { data: None }
    }

    /// Its context, for children and for `traceparent`; None when off.
    pub fn context(&self) -> Option<SpanContext> {
        self.data.as_ref().map(|d| d.context)
    }

    /// Sets an attribute (nothing when off).
    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(d) = &mut self.data {
            d.attributes.push((key, value.into()));
        }
    }

    /// Marks the span failed.
    pub fn fail(&mut self, why: impl Into<String>) {
        if let Some(d) = &mut self.data {
            d.error = Some(why.into());
        }
    }

    /// Ends the span and hands it to the exporter.
    pub fn end(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if let Some(mut d) = self.data.take() {
            d.end_unix_nanos = now_nanos();
            if let Some(t) = tracer() {
                t.export(d);
            }
        }
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        self.finish();
    }
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The process's tracer: where finished spans go.
pub struct Tracer {
    queue: tokio::sync::mpsc::Sender<otlp::Command>,
    /// Spans dropped because the export queue was full.
    pub dropped: AtomicU64,
    /// Spans handed to the exporter.
    pub exported: Arc<AtomicU64>,
}

static TRACER: OnceLock<Tracer> = OnceLock::new();

/// The installed tracer; None while tracing is off.
pub fn tracer() -> Option<&'static Tracer> {
    TRACER.get()
}

/// Whether spans are being recorded.
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// Starts exporting to `config`'s endpoint (once per process; a second call
/// is refused). Needs a tokio runtime.
pub fn install(config: OtlpConfig) -> Result<(), String> {
    let exported = Arc::new(AtomicU64::new(0));
    let queue = otlp::spawn_exporter(config, Arc::clone(&exported))?;
    TRACER
        .set(Tracer {
            queue,
            dropped: AtomicU64::new(0),
            exported,
        })
        .map_err(|_| "tracing is already set up in this process".to_string())
}

/// Installs a tracer from the standard OpenTelemetry environment
/// (`OTEL_EXPORTER_OTLP_ENDPOINT` and the rest, see [`OtlpConfig::from_env`]),
/// or from `endpoint` when given; leaves tracing off without either.
pub fn install_from_env(endpoint: Option<&str>, default_service: &str) -> Result<bool, String> {
    match OtlpConfig::from_env(endpoint, default_service)? {
        Some(config) => {
            tracing::info!(endpoint = %config.traces_url, service = %config.service_name, "exporting traces over OTLP/HTTP");
            install(config).map(|()| true)
        }
        None => Ok(false),
    }
}

impl Tracer {
    fn export(&self, span: SpanData) {
        if self
            .queue
            .try_send(otlp::Command::Span(Box::new(span)))
            .is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sends every finished span now and waits until the endpoint answered (a
/// Lambda function calls it before its invocation ends: a frozen sandbox
/// sends nothing).
pub async fn flush() {
    if let Some(t) = tracer() {
        let (done, wait) = tokio::sync::oneshot::channel();
        if t.queue.send(otlp::Command::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// Starts a span: a child of `parent`, or of the current span, else the
/// root of a new trace. Inert when tracing is off.
pub fn start(name: impl Into<String>, kind: SpanKind, parent: Option<SpanContext>) -> Span {
    if !enabled() {
        return Span::none();
    }
    let parent = parent.or_else(current);
    let (trace_id, sampled) = match parent {
        Some(p) => (p.trace_id, p.sampled),
        None => (rand::random::<[u8; 16]>(), true),
    };
    if !sampled {
        return Span::none();
    }
    Span {
        data: Some(SpanData {
            context: SpanContext {
                trace_id,
                span_id: nonzero_span_id(),
                sampled,
            },
            parent: parent.map(|p| p.span_id),
            name: name.into(),
            kind,
            start_unix_nanos: now_nanos(),
            end_unix_nanos: 0,
            attributes: Vec::new(),
            error: None,
        }),
    }
}

/// A child of the current span; records nothing outside a traced request
/// (a timer's or a background task's work starts no trace of its own).
pub fn child(name: impl Into<String>, kind: SpanKind) -> Span {
    match current() {
        Some(parent) => start(name, kind, Some(parent)),
        None => Span::none(),
    }
}

fn nonzero_span_id() -> [u8; 8] {
    loop {
        let id = rand::random::<[u8; 8]>();
        if id != [0; 8] {
            return id;
        }
    }
}

tokio::task_local! {
    static CURRENT: SpanContext;
}

/// The span the running task works under, if any.
pub fn current() -> Option<SpanContext> {
    if !enabled() {
        return None;
    }
    CURRENT.try_with(|c| *c).ok()
}

/// Runs `fut` with `span` as the current span (its children's parent);
/// as it is when `span` records nothing.
pub async fn within<F: Future>(span: &Span, fut: F) -> F::Output {
    match span.context() {
        Some(c) => CURRENT.scope(c, fut).await,
        None => fut.await,
    }
}

/// The `traceparent` to hand on to a worker: the current span's.
pub fn current_traceparent() -> Option<String> {
    current().map(|c| c.traceparent())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_refuses_what_w3c_refuses() {
        let h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = SpanContext::from_traceparent(h).expect("valid");
        assert!(c.sampled);
        assert_eq!(c.traceparent(), h);
        let unsampled = SpanContext::from_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        )
        .unwrap();
        assert!(!unsampled.sampled);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
            "not a traceparent at all",
        ] {
            assert_eq!(SpanContext::from_traceparent(bad), None, "{bad}");
        }
        // A later version with more fields: the first four are read.
        let later = SpanContext::from_traceparent(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        )
        .unwrap();
        assert_eq!(later.span_id, c.span_id);
    }

    #[test]
    fn off_records_nothing() {
        // No tracer is installed in the unit tests.
        let mut s = start("x", SpanKind::Server, None);
        s.set("k", 1i64);
        assert_eq!(s.context(), None);
        assert_eq!(current(), None);
    }
}
