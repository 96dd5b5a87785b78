//! Header names as the client spelled them. API Gateway hands `$connect`
//! its `headers` and `multiValueHeaders` under the names the client sent
//! (`Host`, `Sec-WebSocket-Key`, `Authorization`), so a handler reading
//! `event.headers.Authorization` works in AWS. hyper lower-cases every name
//! and keeps no record of the original, so the spelling is read from the
//! request head itself: a [`HeadTap`] below hyper copies the bytes a
//! connection reads until its handshake has been answered, and
//! [`HeaderCase::from_head`] finds the handshake's head among them.

use serde_json::Value;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes kept of what a connection read: a handshake's head is the last
/// request read, so only the tail matters. API Gateway refuses request
/// heads over 10 KiB; this keeps three times that.
const KEEP_BYTES: usize = 32 * 1024;

/// Header names spelled as sent, in the order they came.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderCase(Vec<String>);

impl HeaderCase {
    /// The names of the request head for `method target` found last in
    /// `read` (the bytes a connection read, oldest first). Empty when the
    /// head is not there whole.
    pub fn from_head(read: &[u8], method: &str, target: &str) -> HeaderCase {
        let line = format!("{method} {target} HTTP/1.1\r\n");
        let Some(start) = rfind(read, line.as_bytes()) else {
            return HeaderCase::default();
        };
        let rest = &read[start + line.len()..];
        let Some(end) = find(rest, b"\r\n\r\n") else {
            return HeaderCase::default();
        };
        let mut names: Vec<String> = Vec::new();
        for field in rest[..end].split(|&b| b == b'\n') {
            let Some(colon) = field.iter().position(|&b| b == b':') else {
                continue;
            };
            let Ok(name) = std::str::from_utf8(&field[..colon]) else {
                continue;
            };
            let name = name.trim();
            if !name.is_empty() && !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                names.push(name.to_string());
            }
        }
        HeaderCase(names)
    }

    /// How the client spelled `name` (compared without case), or `name`
    /// itself when it did not send it.
    pub fn spelling<'a>(&'a self, name: &'a str) -> &'a str {
        self.0
            .iter()
            .find(|n| n.eq_ignore_ascii_case(name))
            .map_or(name, String::as_str)
    }

    /// Renames the keys of an event's `headers` and `multiValueHeaders`
    /// to the client's spelling.
    pub fn restore(&self, event: &mut Value) {
        if self.0.is_empty() {
            return;
        }
        for key in ["headers", "multiValueHeaders"] {
            if let Some(Value::Object(map)) = event.get_mut(key) {
                let taken = std::mem::take(map);
                for (name, value) in taken {
                    map.insert(self.spelling(&name).to_string(), value);
                }
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// What a tapped connection has read so far (its last [`KEEP_BYTES`]).
#[derive(Debug, Default)]
pub struct HeadLog {
    read: Mutex<Option<Vec<u8>>>,
}

impl HeadLog {
    /// An empty log, ready for one connection's first request head.
    pub fn new() -> Arc<HeadLog> {
        Arc::new(HeadLog {
            read: Mutex::new(Some(Vec::new())),
        })
    }

    fn record(&self, bytes: &[u8]) {
        let Ok(mut guard) = self.read.lock() else {
            return;
        };
        let Some(buf) = guard.as_mut() else { return };
        buf.extend_from_slice(bytes);
        if buf.len() > 2 * KEEP_BYTES {
            let cut = buf.len() - KEEP_BYTES;
            buf.drain(..cut);
        }
    }

    /// The spelling of the head of `method target`, read last; recording
    /// stops here (the connection is a WebSocket from now on).
    pub fn finish(&self, method: &str, target: &str) -> HeaderCase {
        let Ok(mut guard) = self.read.lock() else {
            return HeaderCase::default();
        };
        guard
            .take()
            .map(|read| HeaderCase::from_head(&read, method, target))
            .unwrap_or_default()
    }
}

/// An I/O stream that copies what it reads into a [`HeadLog`], until the
/// log is finished.
pub struct HeadTap<T> {
    inner: T,
    log: Option<Arc<HeadLog>>,
}

impl<T> HeadTap<T> {
    /// Taps `inner` when `log` is given; passes through otherwise.
    pub fn new(inner: T, log: Option<Arc<HeadLog>>) -> HeadTap<T> {
        HeadTap { inner, log }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HeadTap<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(log)) = (&polled, &self.log) {
            log.record(&buf.filled()[before..]);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeadTap<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HEADS: &str = "POST /jobs HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}\
        GET /dev?jobId=j HTTP/1.1\r\nHost: localhost\r\nSec-WebSocket-Key: k\r\n\
        authorization: Bearer x\r\nX-Custom-ID: 1\r\nx-custom-id: 2\r\n\r\n\x01\x05";

    #[test]
    fn the_last_head_for_the_target_gives_the_spelling() {
        let case = HeaderCase::from_head(HEADS.as_bytes(), "GET", "/dev?jobId=j");
        assert_eq!(case.spelling("host"), "Host");
        assert_eq!(case.spelling("sec-websocket-key"), "Sec-WebSocket-Key");
        assert_eq!(case.spelling("authorization"), "authorization");
        assert_eq!(case.spelling("x-custom-id"), "X-Custom-ID");
        assert_eq!(case.spelling("content-length"), "content-length");
        // A head cut short, or another target: nothing known.
        let cut = &HEADS.as_bytes()[..HEADS.len() - 20];
        assert_eq!(
            HeaderCase::from_head(cut, "GET", "/dev?jobId=j"),
            HeaderCase::default()
        );
        assert_eq!(
            HeaderCase::from_head(HEADS.as_bytes(), "GET", "/other"),
            HeaderCase::default()
        );
    }

    #[test]
    fn an_event_gets_the_clients_names_back() {
        let case = HeaderCase::from_head(HEADS.as_bytes(), "GET", "/dev?jobId=j");
        let mut event = json!({
            "headers": {"host": "localhost", "sec-websocket-key": "k", "x-forwarded-for": "1"},
            "multiValueHeaders": {"host": ["localhost"]},
            "body": null
        });
        case.restore(&mut event);
        assert_eq!(
            event["headers"],
            json!({"Host": "localhost", "Sec-WebSocket-Key": "k", "x-forwarded-for": "1"})
        );
        assert_eq!(event["multiValueHeaders"], json!({"Host": ["localhost"]}));
    }

    #[test]
    fn a_log_keeps_the_tail_and_stops_when_finished() {
        let log = HeadLog::new();
        log.record(&vec![b'x'; 3 * KEEP_BYTES]);
        log.record(HEADS.as_bytes());
        let case = log.finish("GET", "/dev?jobId=j");
        assert_eq!(case.spelling("host"), "Host");
        log.record(b"more");
        assert_eq!(log.finish("GET", "/dev?jobId=j"), HeaderCase::default());
    }
}
