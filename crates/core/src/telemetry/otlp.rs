//! OTLP/HTTP with protobuf: the `ExportTraceServiceRequest` encoding of the
//! finished spans (opentelemetry-proto's trace/v1 and collector/trace/v1
//! messages, written by hand: a few fields of a stable schema), and the
//! task that batches and posts them.

use super::{SpanData, Value};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Where and how spans are exported.
#[derive(Clone, Debug)]
pub struct OtlpConfig {
    /// The full URL spans are posted to (…/v1/traces).
    pub traces_url: String,
    /// Extra request headers (`OTEL_EXPORTER_OTLP_HEADERS`), e.g. an API key.
    pub headers: Vec<(String, String)>,
    /// `service.name` of every span (`OTEL_SERVICE_NAME`).
    pub service_name: String,
    /// More resource attributes (`OTEL_RESOURCE_ATTRIBUTES`).
    pub resource: Vec<(String, String)>,
    /// Longest wait before a batch is sent (`OTEL_BSP_SCHEDULE_DELAY`, ms; default 1 s).
    pub delay: Duration,
    /// Spans per request at most (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, default 512).
    pub batch: usize,
    /// Spans waiting at most; beyond, new ones are dropped (`OTEL_BSP_MAX_QUEUE_SIZE`, default 2048).
    pub queue: usize,
    /// How long one export may take (`OTEL_EXPORTER_OTLP_TIMEOUT`, ms; default 10 s).
    pub timeout: Duration,
}

impl OtlpConfig {
    /// From `endpoint` (a flag, the base URL as `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// takes it) or the standard variables: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
    /// (the full URL), `OTEL_EXPORTER_OTLP_ENDPOINT` (+ `/v1/traces`),
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` (http/protobuf only), the headers,
    /// the service name and the batch settings. None: no endpoint, or
    /// `OTEL_SDK_DISABLED=true`, or `OTEL_TRACES_EXPORTER=none`.
    pub fn from_env(
        endpoint: Option<&str>,
        default_service: &str,
    ) -> Result<Option<OtlpConfig>, String> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
        {
            return Ok(None);
        }
        let (setting, given, traces_url) = match (
            endpoint,
            var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            var("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(e), _, _) => (
                "--otlp-endpoint",
                e.to_string(),
                format!("{}/v1/traces", e.trim_end_matches('/')),
            ),
            (None, Some(full), _) => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", full.clone(), full),
            (None, None, Some(base)) => (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                base.clone(),
                format!("{}/v1/traces", base.trim_end_matches('/')),
            ),
            (None, None, None) => return Ok(None),
        };
        if reqwest::Url::parse(&traces_url)
            .map(|u| !matches!(u.scheme(), "http" | "https") || u.host().is_none())
            .unwrap_or(true)
        {
            return Err(format!(
                "{setting}={given}: expected the collector's http:// or https:// URL, e.g. http://127.0.0.1:4318"
            ));
        }
        let protocol = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"));
        if let Some(p) = protocol
            && p != "http/protobuf"
        {
            return Err(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={p}: jobcast exports OTLP over HTTP with protobuf; set http/protobuf (a collector's port 4318)"
            ));
        }
        let pairs = |s: Option<String>| -> Vec<(String, String)> {
            s.map(|s| {
                s.split(',')
                    .filter_map(|kv| {
                        let (k, v) = kv.split_once('=')?;
                        let decode = |x: &str| {
                            percent_encoding::percent_decode_str(x.trim())
                                .decode_utf8_lossy()
                                .into_owned()
                        };
                        Some((decode(k), decode(v)))
                    })
                    .collect()
            })
            .unwrap_or_default()
        };
        let ms = |k: &str, default: u64| -> Result<Duration, String> {
            match var(k) {
                None => Ok(Duration::from_millis(default)),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .map(Duration::from_millis)
                    .ok_or_else(|| format!("{k}={v}: expected milliseconds, above 0")),
            }
        };
        let count = |k: &str, default: usize| -> Result<usize, String> {
            match var(k) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{k}={v}: expected a positive number")),
            }
        };
        Ok(Some(OtlpConfig {
            traces_url,
            headers: pairs(
                var("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
                    .or_else(|| var("OTEL_EXPORTER_OTLP_HEADERS")),
            ),
            service_name: var("OTEL_SERVICE_NAME").unwrap_or_else(|| default_service.to_string()),
            resource: pairs(var("OTEL_RESOURCE_ATTRIBUTES")),
            delay: ms("OTEL_BSP_SCHEDULE_DELAY", 1000)?,
            batch: count("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)?,
            queue: count("OTEL_BSP_MAX_QUEUE_SIZE", 2048)?,
            timeout: ms("OTEL_EXPORTER_OTLP_TIMEOUT", 10_000)?,
        }))
    }
}

pub(super) enum Command {
    Span(Box<SpanData>),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Starts the exporting task; the sender finished spans go to.
pub(super) fn spawn_exporter(
    config: OtlpConfig,
    exported: Arc<AtomicU64>,
) -> Result<tokio::sync::mpsc::Sender<Command>, String> {
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| "traces need a tokio runtime".to_string())?;
    let http = reqwest::Client::builder()
        .timeout(config.timeout)
        .build()
        .map_err(|e| format!("OTLP client: {e}"))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Command>(config.queue);
    handle.spawn(async move {
        let mut batch: Vec<SpanData> = Vec::new();
        let mut tick = tokio::time::interval(config.delay);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Command::Span(s)) => {
                        batch.push(*s);
                        if batch.len() >= config.batch {
                            send(&http, &config, &mut batch, &exported).await;
                        }
                    }
                    Some(Command::Flush(done)) => {
                        // Everything queued before the flush is in `batch` or behind it.
                        while let Ok(cmd) = rx.try_recv() {
                            match cmd {
                                Command::Span(s) => batch.push(*s),
                                Command::Flush(d) => { let _ = d.send(()); }
                            }
                        }
                        send(&http, &config, &mut batch, &exported).await;
                        let _ = done.send(());
                    }
                    None => {
                        send(&http, &config, &mut batch, &exported).await;
                        return;
                    }
                },
                _ = tick.tick() => send(&http, &config, &mut batch, &exported).await,
            }
        }
    });
    Ok(tx)
}

async fn send(
    http: &reqwest::Client,
    config: &OtlpConfig,
    batch: &mut Vec<SpanData>,
    exported: &AtomicU64,
) {
    while !batch.is_empty() {
        let take = batch.len().min(config.batch);
        let spans: Vec<SpanData> = batch.drain(..take).collect();
        let body = encode_request(&config.service_name, &config.resource, &spans);
        let mut req = http
            .post(&config.traces_url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body);
        for (k, v) in &config.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => {
                exported.fetch_add(spans.len() as u64, Ordering::Relaxed);
            }
            Ok(r) => {
                tracing::warn!(status = r.status().as_u16(), url = %config.traces_url, spans = spans.len(), "the OTLP endpoint refused spans")
            }
            Err(e) => {
                tracing::warn!(url = %config.traces_url, spans = spans.len(), error = %crate::aws::causes(&e), "could not export spans")
            }
        }
    }
}

/// Protocol buffers, the little of it the request needs.
struct Pb(Vec<u8>);

impl Pb {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn key(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire));
    }
    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    fn string(&mut self, field: u32, s: &str) {
        self.bytes(field, s.as_bytes());
    }
    fn message(&mut self, field: u32, write: impl FnOnce(&mut Pb)) {
        let mut inner = Pb(Vec::new());
        write(&mut inner);
        self.bytes(field, &inner.0);
    }
    fn uint(&mut self, field: u32, v: u64) {
        self.key(field, 0);
        self.varint(v);
    }
    fn fixed64(&mut self, field: u32, v: u64) {
        self.key(field, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn fixed32(&mut self, field: u32, v: u32) {
        self.key(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// common.v1.KeyValue at `field`.
    fn attribute(&mut self, field: u32, key: &str, value: &Value) {
        self.message(field, |kv| {
            kv.string(1, key);
            kv.message(2, |any| match value {
                Value::Str(s) => any.string(1, s),
                Value::Bool(b) => any.uint(2, u64::from(*b)),
                Value::Int(n) => any.uint(3, *n as u64),
            });
        });
    }
}

/// The body of one export: `collector.trace.v1.ExportTraceServiceRequest`
/// with one resource (this service) and one scope (`jobcast`).
pub fn encode_request(service: &str, resource: &[(String, String)], spans: &[SpanData]) -> Vec<u8> {
    let mut req = Pb(Vec::new());
    // ResourceSpans resource_spans = 1
    req.message(1, |rs| {
        // Resource resource = 1
        rs.message(1, |r| {
            r.attribute(1, "service.name", &Value::Str(service.to_string()));
            r.attribute(1, "telemetry.sdk.name", &Value::Str("jobcast".into()));
            r.attribute(1, "telemetry.sdk.language", &Value::Str("rust".into()));
            r.attribute(
                1,
                "telemetry.sdk.version",
                &Value::Str(env!("CARGO_PKG_VERSION").into()),
            );
            for (k, v) in resource {
                if k != "service.name" {
                    r.attribute(1, k, &Value::Str(v.clone()));
                }
            }
        });
        // ScopeSpans scope_spans = 2
        rs.message(2, |ss| {
            ss.message(1, |scope| {
                scope.string(1, "jobcast");
                scope.string(2, env!("CARGO_PKG_VERSION"));
            });
            for s in spans {
                ss.message(2, |sp| {
                    sp.bytes(1, &s.context.trace_id);
                    sp.bytes(2, &s.context.span_id);
                    if let Some(p) = &s.parent {
                        sp.bytes(4, p);
                    }
                    sp.string(5, &s.name);
                    sp.uint(6, s.kind as u64);
                    sp.fixed64(7, s.start_unix_nanos);
                    sp.fixed64(8, s.end_unix_nanos.max(s.start_unix_nanos));
                    for (k, v) in &s.attributes {
                        sp.attribute(9, k, v);
                    }
                    // Status status = 15: ERROR with the reason, else unset.
                    if let Some(why) = &s.error {
                        sp.message(15, |st| {
                            st.string(2, why);
                            st.uint(3, 2);
                        });
                    }
                    // flags = 16: the W3C trace flags (sampled).
                    sp.fixed32(16, u32::from(s.context.sampled));
                });
            }
        });
    });
    req.0
}

#[cfg(test)]
mod tests {
    use super::super::{SpanContext, SpanKind};
    use super::*;

    #[test]
    fn settings_are_checked_with_the_fix_named() {
        let e = OtlpConfig::from_env(Some("notaurl"), "jobcast").unwrap_err();
        assert!(
            e.contains("--otlp-endpoint=notaurl") && e.contains("http://"),
            "{e}"
        );
        let c = OtlpConfig::from_env(Some("http://127.0.0.1:4318/"), "svc")
            .unwrap()
            .unwrap();
        assert_eq!(c.traces_url, "http://127.0.0.1:4318/v1/traces");
        assert_eq!(c.service_name, "svc");
        assert!(c.delay > Duration::ZERO && c.batch > 0 && c.queue > 0);
        assert!(c.timeout > Duration::ZERO);
    }

    #[test]
    fn varints_and_a_span_encode_as_protobuf_does() {
        let mut p = Pb(Vec::new());
        p.varint(300);
        assert_eq!(p.0, [0xac, 0x02]);
        let span = SpanData {
            context: SpanContext {
                trace_id: [1; 16],
                span_id: [2; 8],
                sampled: true,
            },
            parent: Some([3; 8]),
            name: "POST /jobs".into(),
            kind: SpanKind::Server,
            start_unix_nanos: 1,
            end_unix_nanos: 2,
            attributes: vec![("jobcast.job.seq", Value::Int(7))],
            error: None,
        };
        let body = encode_request("jobcast", &[], &[span]);
        // The span's ids and name are in it, length-delimited.
        let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
        assert!(
            has(&[0x0a, 16, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]),
            "trace id, field 1"
        );
        assert!(has(&[0x12, 8, 2, 2, 2, 2, 2, 2, 2, 2]), "span id, field 2");
        assert!(
            has(&[0x22, 8, 3, 3, 3, 3, 3, 3, 3, 3]),
            "parent span id, field 4"
        );
        assert!(has(b"\x2a\x0aPOST /jobs"), "name, field 5");
        assert!(has(&[0x30, 2]), "kind SERVER, field 6");
        assert!(has(&[0x18, 7]), "int attribute 7, AnyValue field 3");
    }
}
