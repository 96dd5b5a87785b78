//! Pushing what a job produces: the chunks an append added go to the
//! subscribers that asked for their stream, through the same fan-out as
//! snapshots, as `chunks` messages of at most 128 KiB.

use super::{PublishReport, Publisher};
use crate::protocol::{MAX_MESSAGE_BYTES, ServerMessage};
use crate::push::Payload;
use crate::store::streams::{Appended, chunk_bytes};
use serde_json::Value;

/// Bytes of a `chunks` message besides its chunks: the envelope, the ids,
/// the commas. Generous, so a message never passes the limit.
const ENVELOPE_BYTES: usize = 256;

/// The `chunks` messages for chunks `from` … of `stream`: consecutive, each
/// within 128 KiB, none holding two streams. At least one message, empty
/// when there are no chunks (the answer to a `replay` with nothing new).
pub fn chunk_payloads(job_id: &str, stream: &str, from: u64, chunks: &[Value]) -> Vec<Payload> {
    let budget = MAX_MESSAGE_BYTES.saturating_sub(ENVELOPE_BYTES + job_id.len() + stream.len());
    let mut out = Vec::new();
    let mut start = 0usize;
    while start < chunks.len() || out.is_empty() {
        let mut end = start;
        let mut size = 0usize;
        while end < chunks.len() {
            let b = chunk_bytes(&chunks[end]) as usize + 1;
            if end > start && size + b > budget {
                break;
            }
            size += b;
            end += 1;
        }
        let msg = ServerMessage::Chunks {
            job_id,
            stream,
            from: from + start as u64,
            chunks: &chunks[start..end],
        };
        out.push(Payload::text(msg.to_json()));
        if end == start {
            break;
        }
        start = end;
    }
    out
}

impl Publisher {
    /// Appends chunks to a job's streams (all or none) and pushes them.
    /// With `reported`, the append is also the worker's report (see
    /// [`crate::store::Store::append_chunks`]).
    pub async fn append(
        &self,
        job_id: &str,
        appends: &[crate::store::streams::StreamAppend],
        reported: Option<Option<i64>>,
    ) -> Result<crate::store::streams::AppendOutcome, crate::store::StoreError> {
        let out = self
            .store
            .append_chunks(job_id, appends, chrono::Utc::now(), reported)
            .await?;
        self.push_chunks(job_id, &out.appended).await;
        Ok(out)
    }

    /// Pushes what an append added to each subscriber that asked for the
    /// stream (one lookup per stream); a gone connection loses its
    /// subscription as with snapshots.
    pub async fn push_chunks(&self, job_id: &str, appended: &[Appended]) -> PublishReport {
        let mut report = PublishReport::default();
        for a in appended {
            let conns = match self.store.stream_subscribers(job_id, &a.stream).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(job_id, stream = %a.stream, error = %e, "could not look up a stream's subscribers");
                    continue;
                }
            };
            if conns.is_empty() {
                continue;
            }
            for payload in chunk_payloads(job_id, &a.stream, a.from, &a.chunks) {
                let r = self.fan_out(job_id, conns.clone(), payload).await;
                report.delivered += r.delivered;
                report.gone += r.gone;
                report.retried += r.retried;
                report.failed.extend(r.failed);
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(p: &Payload) -> Value {
        match p {
            Payload::Text(t) => serde_json::from_str(t.as_str()).unwrap_or_default(),
            Payload::Binary(_) => Value::Null,
        }
    }

    #[test]
    fn chunks_split_under_128_kib_in_order() {
        let chunks: Vec<Value> = (0..5)
            .map(|i| json!(format!("{i}{}", "x".repeat(40_000))))
            .collect();
        let payloads = chunk_payloads("job_1", "log", 10, &chunks);
        assert_eq!(payloads.len(), 2);
        let mut next = 10;
        for p in &payloads {
            assert!(p.len() <= MAX_MESSAGE_BYTES);
            let v = parse(p);
            assert_eq!(
                (v["type"].as_str(), v["stream"].as_str()),
                (Some("chunks"), Some("log"))
            );
            assert_eq!(v["from"], next);
            next += v["chunks"].as_array().map_or(0, Vec::len) as u64;
        }
        assert_eq!(next, 15);
        let empty = chunk_payloads("job_1", "log", 7, &[]);
        assert_eq!(
            parse(&empty[0]),
            json!({"type": "chunks", "jobId": "job_1", "stream": "log", "from": 7, "chunks": []})
        );
    }
}
