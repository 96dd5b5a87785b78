//! Streams: what a job produces while it runs (log lines, partial results,
//! a model's tokens), as named, append-only sequences of chunks kept with
//! the job (CONTRACT section 10). The rules every store enforces the same
//! way live here; each store keeps the chunks of one append to one stream
//! together, so a range is read in a few items.

use serde_json::Value;
use std::collections::BTreeMap;

pub use crate::protocol::{
    MAX_APPEND_BYTES, MAX_STREAM_BYTES, MAX_STREAM_CHUNKS, MAX_STREAMS, chunk_bytes,
    valid_stream_name as valid_name,
};

/// The chunks one request appends to one stream, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamAppend {
    pub stream: String,
    pub chunks: Vec<Value>,
    /// Their size together ([`chunk_bytes`] of each).
    pub bytes: u64,
}

impl StreamAppend {
    pub fn new(stream: impl Into<String>, chunks: Vec<Value>) -> StreamAppend {
        let bytes = chunks.iter().map(chunk_bytes).sum();
        StreamAppend {
            stream: stream.into(),
            chunks,
            bytes,
        }
    }
}

/// What an append records besides its chunks, in the same write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppendOptions {
    /// The append is also the worker's report (it came alone): the worker
    /// counts as seen and the job's deadline becomes the given one (none:
    /// liveness is off), as a heartbeat would set it.
    pub reported: Option<Option<i64>>,
    /// Coalescing holds its chunks: each stream keeps the first index not
    /// pushed yet ([`super::JobRecord::held`]) until a push releases it.
    pub hold: bool,
    /// Keep when it came ([`super::Recent`]), as updates do.
    pub track_recent: bool,
}

/// `held` after an append placed chunks at `from` in `stream`: a mark
/// already there (older chunks still held) stays.
pub fn hold(held: &mut BTreeMap<String, u64>, stream: &str, from: u64) {
    held.entry(stream.to_string()).or_insert(from);
}

/// The marks left after chunks below `pushed[stream]` were pushed, given
/// each stream's length: a mark below what was pushed moves up to it, and
/// one with nothing left to hold is dropped.
pub fn released(
    held: &BTreeMap<String, u64>,
    lengths: &BTreeMap<String, u64>,
    pushed: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    held.iter()
        .filter_map(|(stream, &from)| {
            let from = from.max(pushed.get(stream).copied().unwrap_or(0));
            let length = lengths.get(stream).copied().unwrap_or(0);
            (from < length).then(|| (stream.clone(), from))
        })
        .collect()
}

/// Chunks of one stream as they were appended: `chunks[0]` is chunk `from`.
#[derive(Clone, Debug, PartialEq)]
pub struct Appended {
    pub stream: String,
    pub from: u64,
    pub chunks: Vec<Value>,
}

/// What an append did: where each stream's chunks landed, and every
/// stream's length after it.
#[derive(Clone, Debug, PartialEq)]
pub struct AppendOutcome {
    pub appended: Vec<Appended>,
    pub lengths: BTreeMap<String, u64>,
    /// The job after the append (its seq and status are what they were).
    pub job: super::JobRecord,
}

/// A range of one stream, read from `from`: `next` is the index to ask
/// for next (`from` + the chunks returned).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChunkPage {
    pub from: u64,
    pub chunks: Vec<Value>,
    pub next: u64,
}

/// The first chunks of `chunks` that make a page: at most `limit`, and
/// stopping before `max_bytes` (but never empty when there is a chunk).
pub fn take_page<'a>(
    chunks: impl IntoIterator<Item = &'a Value>,
    limit: usize,
    max_bytes: usize,
) -> Vec<Value> {
    let mut page = Vec::new();
    let mut size = 0usize;
    for c in chunks.into_iter().take(limit) {
        let b = chunk_bytes(c) as usize;
        if !page.is_empty() && size + b > max_bytes {
            break;
        }
        size += b;
        page.push(c.clone());
    }
    page
}

/// What an append would make of the streams it finds (`lengths`, `bytes`
/// per stream), checked before anything is written: too many streams, or
/// a stream past its chunk or byte limit, refuses the whole append.
pub fn plan(
    job_id: &str,
    lengths: &BTreeMap<String, u64>,
    bytes: &BTreeMap<String, u64>,
    appends: &[StreamAppend],
) -> Result<Vec<(u64, u64)>, super::StoreError> {
    let mut names: Vec<&str> = lengths.keys().map(String::as_str).collect();
    let mut planned = Vec::with_capacity(appends.len());
    for a in appends {
        if !names.contains(&a.stream.as_str()) {
            names.push(&a.stream);
        }
        let len = lengths.get(&a.stream).copied().unwrap_or(0);
        let size = bytes.get(&a.stream).copied().unwrap_or(0);
        let full = |limit| super::StoreError::StreamFull {
            job_id: job_id.to_string(),
            stream: a.stream.clone(),
            limit,
        };
        if len + a.chunks.len() as u64 > MAX_STREAM_CHUNKS {
            return Err(full(MAX_STREAM_CHUNKS));
        }
        if size + a.bytes > MAX_STREAM_BYTES {
            return Err(full(MAX_STREAM_BYTES));
        }
        planned.push((len, size));
    }
    if names.len() > MAX_STREAMS {
        return Err(super::StoreError::TooManyStreams {
            job_id: job_id.to_string(),
            limit: MAX_STREAMS,
        });
    }
    Ok(planned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        for good in ["log", "tokens", "a", "a0_-b", &"x".repeat(32)] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "Log", "0log", "_x", "lo g", "ü", &"x".repeat(33)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn held_marks_keep_the_oldest_and_move_up_as_chunks_are_pushed() {
        let mut held = BTreeMap::new();
        hold(&mut held, "log", 10);
        hold(&mut held, "log", 12);
        hold(&mut held, "tokens", 3);
        assert_eq!(
            held,
            BTreeMap::from([("log".into(), 10), ("tokens".into(), 3)])
        );
        let lengths = BTreeMap::from([("log".into(), 14), ("tokens".into(), 5)]);
        // Pushed up to 12 of log (two more came since) and all of tokens.
        let pushed = BTreeMap::from([("log".into(), 12), ("tokens".into(), 5)]);
        assert_eq!(
            released(&held, &lengths, &pushed),
            BTreeMap::from([("log".into(), 12)])
        );
        // A push of less than is held changes nothing.
        let stale = BTreeMap::from([("log".into(), 4)]);
        assert_eq!(released(&held, &lengths, &stale), held);
    }

    #[test]
    fn sizes_count_compact_json() {
        let a = StreamAppend::new(
            "log",
            vec![Value::from("héllo"), serde_json::json!({"a": 1})],
        );
        assert_eq!(a.bytes, 8 + 7);
    }
}
