//! Watches the bytes a client sends, below the WebSocket library, for the two
//! things the library cannot tell us about a close frame:
//!
//! - **Close code 1014** ("Bad Gateway", registered with IANA in 2016) is a
//!   code a client may send, but tungstenite treats it as unknown and answers
//!   1002. The watcher rewrites it to 1000 in place (only the low byte
//!   differs), so the close handshake completes cleanly, and records that the
//!   client really sent 1014, which `$disconnect` reports.
//! - **Invalid UTF-8 in a close reason** and in a text frame come out of the
//!   library as the same error; the watcher checks the reason itself, so the
//!   1007 we answer says which it was.
//!
//! Every other byte passes through untouched. The cost is a header parse per
//! frame; payloads are skipped by length, except a close frame's (125 bytes
//! at most).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const SENT_1014: u8 = 1;
const BAD_CLOSE_REASON: u8 = 2;

/// What the watcher saw, shared with the connection's task.
#[derive(Debug, Default)]
pub(super) struct Seen(AtomicU8);

impl Seen {
    fn mark(&self, flag: u8) {
        self.0.fetch_or(flag, Ordering::Relaxed);
    }

    fn has(&self, flag: u8) -> bool {
        self.0.load(Ordering::Relaxed) & flag != 0
    }

    /// The client's close frame carried 1014 (the library saw 1000).
    pub(super) fn sent_1014(&self) -> bool {
        self.has(SENT_1014)
    }

    /// The client's close frame carried a reason that is not UTF-8.
    pub(super) fn bad_close_reason(&self) -> bool {
        self.has(BAD_CLOSE_REASON)
    }
}

/// A client's close frame as it streams past.
struct CloseFrame {
    mask: [u8; 4],
    at: usize,
    code_high: u8,
    reason: [u8; 123],
    reason_len: usize,
}

impl CloseFrame {
    fn byte(&mut self, b: &mut u8, seen: &Seen) {
        let plain = *b ^ self.mask[self.at % 4];
        match self.at {
            0 => self.code_high = plain,
            1 => {
                if u16::from_be_bytes([self.code_high, plain]) == 1014 {
                    // 1000 and 1014 share the high byte (0x03).
                    *b = 0xE8 ^ self.mask[1];
                    seen.mark(SENT_1014);
                }
            }
            _ => {
                if let Some(slot) = self.reason.get_mut(self.reason_len) {
                    *slot = plain;
                    self.reason_len += 1;
                }
            }
        }
        self.at += 1;
    }

    fn end(&self, seen: &Seen) {
        if std::str::from_utf8(&self.reason[..self.reason_len]).is_err() {
            seen.mark(BAD_CLOSE_REASON);
        }
    }
}

enum State {
    /// Collecting a frame header (2 to 14 bytes).
    Header { buf: [u8; 14], have: usize },
    /// Inside a payload: how much is left, and the close frame being read.
    Payload {
        left: u64,
        close: Option<Box<CloseFrame>>,
    },
}

impl State {
    fn header() -> State {
        State::Header {
            buf: [0; 14],
            have: 0,
        }
    }
}

/// The full header length once its first two bytes are known.
fn header_len(second: u8) -> usize {
    let ext = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    2 + ext + mask
}

/// Follows the client's frames through a byte stream.
struct Parser {
    state: State,
}

impl Parser {
    fn feed(&mut self, mut bytes: &mut [u8], seen: &Seen) {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Header { buf, have } => {
                    let need = if *have < 2 { 2 } else { header_len(buf[1]) };
                    let take = (need - *have).min(bytes.len());
                    buf[*have..*have + take].copy_from_slice(&bytes[..take]);
                    *have += take;
                    bytes = &mut bytes[take..];
                    if *have >= 2 && *have == header_len(buf[1]) {
                        self.state = Self::payload_of(&buf[..*have]);
                    }
                }
                State::Payload { left, close } => {
                    let take = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len());
                    let (now, rest) = bytes.split_at_mut(take);
                    if let Some(c) = close.as_mut() {
                        for b in now.iter_mut() {
                            c.byte(b, seen);
                        }
                    }
                    *left -= take as u64;
                    bytes = rest;
                    if *left == 0 {
                        if let Some(c) = close {
                            c.end(seen);
                        }
                        self.state = State::header();
                    }
                }
            }
        }
    }

    /// The state after a complete header.
    fn payload_of(h: &[u8]) -> State {
        let len = match h[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
            127 => u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
            n => u64::from(n),
        };
        if len == 0 {
            return State::header();
        }
        let mut mask = [0; 4];
        if h[1] & 0x80 != 0 {
            mask.copy_from_slice(&h[h.len() - 4..]);
        }
        // A close frame with a code (2..=125 bytes); anything longer is a
        // protocol error the library reports itself.
        let close = (h[0] & 0x0f == 0x8 && (2..=125).contains(&len)).then(|| {
            Box::new(CloseFrame {
                mask,
                at: 0,
                code_high: 0,
                reason: [0; 123],
                reason_len: 0,
            })
        });
        State::Payload { left: len, close }
    }
}

/// A transport whose inbound bytes pass through the watcher.
pub(super) struct Watched<S> {
    inner: S,
    parser: Parser,
    seen: Arc<Seen>,
}

impl<S> Watched<S> {
    pub(super) fn new(inner: S) -> (Watched<S>, Arc<Seen>) {
        let seen = Arc::new(Seen::default());
        let watched = Watched {
            inner,
            parser: Parser {
                state: State::header(),
            },
            seen: Arc::clone(&seen),
        };
        (watched, seen)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            this.parser
                .feed(&mut buf.filled_mut()[before..], &this.seen);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        let mut out = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn unmask(frame: &[u8]) -> Vec<u8> {
        let mask = &frame[2..6];
        frame[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect()
    }

    /// Feeds `bytes` in pieces of `step`, as reads may split them.
    fn feed(bytes: &mut [u8], step: usize) -> Arc<Seen> {
        let seen = Arc::new(Seen::default());
        let mut p = Parser {
            state: State::header(),
        };
        for chunk in bytes.chunks_mut(step) {
            p.feed(chunk, &seen);
        }
        seen
    }

    #[test]
    fn close_1014_becomes_1000_and_is_remembered_however_the_bytes_are_split() {
        for step in [1, 2, 3, 7, 64] {
            let text = masked(0x1, b"{\"action\":\"ping\"}");
            let close = masked(0x8, &[0x03, 0xF6, b'b', b'y', b'e']);
            let mut stream = [text.clone(), close].concat();
            let seen = feed(&mut stream, step);
            assert!(seen.sent_1014());
            assert!(!seen.bad_close_reason());
            let (t, c) = stream.split_at(text.len());
            assert_eq!(t, &text[..], "other frames pass untouched");
            assert_eq!(unmask(c), vec![0x03, 0xE8, b'b', b'y', b'e']);
        }
    }

    #[test]
    fn other_codes_pass_untouched() {
        for code in [1000u16, 1001, 1012, 1013, 1015, 3000, 4999] {
            let [hi, lo] = code.to_be_bytes();
            let original = masked(0x8, &[hi, lo]);
            let mut stream = original.clone();
            let seen = feed(&mut stream, 5);
            assert_eq!(stream, original);
            assert!(!seen.sent_1014());
        }
    }

    #[test]
    fn a_bad_close_reason_is_noticed_and_a_bad_text_frame_is_not_taken_for_one() {
        let mut bad_reason = masked(0x8, &[0x03, 0xE8, 0xce, 0xba, 0xff]);
        assert!(feed(&mut bad_reason, 1).bad_close_reason());
        let mut bad_text = masked(0x1, &[0xff, 0xfe]);
        bad_text.extend(masked(0x8, &[0x03, 0xE8, b'o', b'k']));
        assert!(!feed(&mut bad_text, 4).bad_close_reason());
    }

    #[test]
    fn long_frames_are_skipped_by_length() {
        let mut big = vec![0x81, 0x80 | 126, 0x01, 0x00, 1, 2, 3, 4];
        big.extend(vec![0u8; 256]);
        big.extend(masked(0x8, &[0x03, 0xF6]));
        assert!(feed(&mut big, 100).sent_1014());
    }
}
