//! Pushing what a job produces: the chunks an append added (and those
//! coalescing held) go to the subscribers that asked for their stream, in
//! the same delivery as the snapshot they come with, as `chunks` messages
//! of at most 128 KiB.

use super::Publisher;
use crate::protocol::{MAX_MESSAGE_BYTES, ServerMessage};
use crate::push::{Parcel, Payload};
use crate::store::streams::{Appended, chunk_bytes};
use crate::store::{JobRecord, StoreError};
use serde_json::Value;
use std::collections::BTreeMap;

/// Bytes read from the store per page of a held range.
const MAX_PAGE_BYTES: usize = 1024 * 1024;

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

/// One stream's chunks due for a push: `from` … `to` - 1, with the chunks
/// when an append just made exactly them (otherwise read from the store).
struct Due<'a> {
    stream: &'a str,
    from: u64,
    to: u64,
    chunks: Option<&'a [Value]>,
}

/// Each stream's due range: what `own` appended, widened to cover what
/// coalescing holds of it.
fn due<'a>(job: &'a JobRecord, own: &'a [Appended]) -> Vec<Due<'a>> {
    let mut out: Vec<Due<'a>> = own
        .iter()
        .map(|a| Due {
            stream: &a.stream,
            from: a.from,
            to: a.from + a.chunks.len() as u64,
            chunks: Some(&a.chunks),
        })
        .collect();
    for (stream, &from) in &job.held {
        let to = job.snapshot.streams.get(stream).copied().unwrap_or(0);
        match out.iter_mut().find(|d| d.stream == stream) {
            Some(d) if d.from <= from && to <= d.to => {}
            Some(d) => {
                (d.from, d.to, d.chunks) = (d.from.min(from), d.to.max(to), None);
            }
            None if from < to => out.push(Due {
                stream,
                from,
                to,
                chunks: None,
            }),
            None => {}
        }
    }
    out
}

impl Publisher {
    /// The `chunks` parcels due for `job`: per stream, its subscribers that
    /// asked for it and the messages holding the chunks `own` appended and
    /// any held; and how far each held stream is then pushed. A stream
    /// nobody asked for costs one lookup and no read.
    pub(super) async fn chunk_parcels(
        &self,
        job: &JobRecord,
        own: &[Appended],
    ) -> Result<(Vec<Parcel>, BTreeMap<String, u64>), StoreError> {
        let job_id = job.snapshot.job_id.as_str();
        let mut parcels = Vec::new();
        let mut pushed = BTreeMap::new();
        for d in due(job, own) {
            pushed.insert(d.stream.to_string(), d.to);
            let connections = self.store.stream_subscribers(job_id, d.stream).await?;
            if connections.is_empty() {
                continue;
            }
            let payloads = match d.chunks {
                Some(chunks) => chunk_payloads(job_id, d.stream, d.from, chunks),
                None => {
                    let chunks = self.read_range(job_id, d.stream, d.from, d.to).await?;
                    chunk_payloads(job_id, d.stream, d.from, &chunks)
                }
            };
            parcels.push(Parcel {
                connections,
                payloads,
            });
        }
        Ok((parcels, pushed))
    }

    /// Chunks `from` … `to` - 1 of a stream, read page by page.
    async fn read_range(
        &self,
        job_id: &str,
        stream: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<Value>, StoreError> {
        let mut chunks = Vec::new();
        let mut next = from;
        while next < to {
            let want = usize::try_from(to - next).unwrap_or(usize::MAX).min(1000);
            let page = self
                .store
                .read_chunks(job_id, stream, next, want, MAX_PAGE_BYTES)
                .await?;
            if page.chunks.is_empty() {
                break;
            }
            next = page.next;
            chunks.extend(page.chunks);
        }
        Ok(chunks)
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
