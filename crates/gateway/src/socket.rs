//! One task per live connection: reads client frames and turns them into
//! `MESSAGE` events, enforces the idle and lifetime limits, closes with the
//! code API Gateway would use, and runs `$disconnect` exactly once at the end.
//! A separate writer task drains the bounded outbound queue.

use super::Shared;
use super::events::ConnectionMeta;
use super::inbound::{Seen, Watched};
use super::outbox::{CloseOnDrop, Next, Outbox, Stop};
use super::ratelimit::Bucket;
use super::registry::{ConnHandle, SLOW_CONSUMER_CLOSE, Slot};
use crate::metrics::Metrics;
use crate::push::Payload;
use crate::push::Pusher as _;
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest as WsEvent;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

type Ws = WebSocketStream<Watched<TokioIo<Upgraded>>>;
type Sink = SplitSink<Ws, Message>;

/// How long a close handshake may take before the socket is simply dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// After a server-initiated close: how long, and how many bytes, the server
/// keeps reading (and discarding) what the client still sends.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// Why and how a connection ended.
struct Ending {
    code: u16,
    reason: String,
    /// Whether we still send a close frame (false when the client already
    /// closed, or the transport is gone).
    send_close: bool,
    /// Whether messages already queued go out before the close frame (not
    /// for a slow consumer, whose full queue is the reason it is closed).
    drain: bool,
}

impl Ending {
    fn server(code: u16, reason: &str) -> Ending {
        Ending {
            code,
            reason: reason.to_string(),
            send_close: true,
            drain: true,
        }
    }

    fn abnormal(reason: &str) -> Ending {
        Ending {
            code: 1006,
            reason: reason.to_string(),
            send_close: false,
            drain: false,
        }
    }
}

fn payload_message(p: Payload) -> Message {
    match p {
        // SAFETY: a `Text` holds UTF-8 only, checked where it was made.
        Payload::Text(t) => {
            Message::Text(unsafe { Utf8Bytes::from_bytes_unchecked(t.into_bytes()) })
        }
        Payload::Binary(b) => Message::Binary(b),
    }
}

/// Most bytes of queued messages written with one flush (one syscall).
/// Small, because the socket's write buffer keeps its capacity.
const BATCH_BYTES: usize = 4096;

/// Writes queued payloads until stopped. It holds only what it needs (the
/// connection's queue and the counters), not the gateway's shared state. Whatever is already queued when a
/// message is taken goes out with it in one flush, so a burst of updates
/// costs one syscall instead of one each. Returns the sink when it is
/// still usable for a close frame (not stopped in the middle of a write).
/// However it ends, later posts to the connection are answered `Gone`.
async fn writer(
    mut sink: Sink,
    handle: Arc<ConnHandle>,
    failed: CancellationToken,
    metrics: Arc<Metrics>,
) -> Option<Sink> {
    let outbox = handle.outbox();
    let _closed = CloseOnDrop(outbox);
    loop {
        let first = match outbox.next().await {
            Next::Send(p) => p,
            Next::Stop(Stop::Now) => return Some(sink),
            Next::Stop(Stop::AfterQueue) => return write_queued(sink, outbox, &metrics).await,
        };
        let mut sent = 0u64;
        let write = async {
            let mut bytes = first.len();
            sink.feed(payload_message(first)).await?;
            sent += 1;
            while bytes < BATCH_BYTES {
                let Some(next) = outbox.pop() else { break };
                bytes += next.len();
                sink.feed(payload_message(next)).await?;
                sent += 1;
            }
            sink.flush().await
        };
        tokio::select! {
            biased;
            r = write => {
                if r.is_err() {
                    failed.cancel();
                    return None;
                }
                metrics.messages_out(sent);
            }
            _ = outbox.stopped_now() => return None,
        }
    }
}

/// Writes what is queued now (not what arrives meanwhile) in one flush.
async fn write_queued(mut sink: Sink, outbox: &Outbox, metrics: &Metrics) -> Option<Sink> {
    let queued = outbox.len();
    for _ in 0..queued {
        let Some(p) = outbox.pop() else { break };
        sink.feed(payload_message(p)).await.ok()?;
    }
    sink.flush().await.ok()?;
    metrics.messages_out(queued as u64);
    Some(sink)
}

/// Drives one upgraded connection to its end and runs `$disconnect`.
pub(super) async fn run(
    shared: Arc<Shared>,
    ws: Ws,
    seen: Arc<Seen>,
    meta: ConnectionMeta,
    handle: Arc<ConnHandle>,
    slot: Slot,
) {
    tracing::debug!(connection_id = %meta.connection_id, source_ip = %meta.source_ip, "connection opened");
    let (sink, mut stream) = ws.split();
    let writer_failed = CancellationToken::new();
    let writer_task = tokio::spawn(writer(
        sink,
        Arc::clone(&handle),
        writer_failed.clone(),
        Arc::clone(&shared.metrics),
    ));
    let ending = read_loop(&shared, &meta, &handle, &mut stream, &writer_failed, &seen).await;

    handle.outbox().request_stop(if ending.drain {
        Stop::AfterQueue
    } else {
        Stop::Now
    });
    // Boxed: a connection spends its life in the read loop above, and the
    // closing steps' state would otherwise sit in every connection's task.
    Box::pin(close(shared, meta, stream, writer_task, ending, slot)).await;
}

/// Ends a connection: lets the writer finish (or stops it), sends our close
/// frame or the echo of the client's, lingers, and runs `$disconnect`.
async fn close(
    shared: Arc<Shared>,
    meta: ConnectionMeta,
    mut stream: SplitStream<Ws>,
    mut writer_task: tokio::task::JoinHandle<Option<Sink>>,
    ending: Ending,
    slot: Slot,
) {
    let sink = match timeout(CLOSE_GRACE, &mut writer_task).await {
        Ok(Ok(sink)) => sink,
        // A write the client never drains: stop it, so the socket is not
        // held open by a writer nobody waits for.
        _ => {
            writer_task.abort();
            None
        }
    };
    if let Some(mut sink) = sink {
        let lingering = ending.send_close;
        let frame = ending.send_close.then(|| CloseFrame {
            code: CloseCode::from(ending.code),
            reason: Utf8Bytes::from(ending.reason.clone()),
        });
        let closing = async {
            match frame {
                Some(f) => {
                    let _ = sink.send(Message::Close(Some(f))).await;
                    // Wait for the client's close reply so it sees a clean close.
                    while let Some(Ok(m)) = stream.next().await {
                        if m.is_close() {
                            break;
                        }
                    }
                }
                // The client closed: flush the echo of its close frame.
                None => {
                    let _ = sink.close().await;
                }
            }
        };
        let _ = timeout(CLOSE_GRACE, closing).await;
        if lingering && let Ok(mut ws) = sink.reunite(stream) {
            linger(ws.get_mut()).await;
        }
    }

    drop(slot);
    finish(&shared, &meta, ending.code, &ending.reason).await;
}

/// The lingering close (RFC 6455 7.1.1): once our close frame is out, stop
/// writing (FIN) and read and discard what the client still sends until it
/// closes, for a bounded time. Closing with unread bytes in the receive
/// buffer makes the kernel answer with a reset, and clients that honour a
/// reset before reading what they have received (asyncio streams, Windows)
/// would never see the close frame: an oversized frame left mostly unread is
/// exactly that case.
async fn linger<S>(io: &mut S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = timeout(CLOSE_GRACE, io.shutdown()).await;
    let drain = async {
        // On the heap, and only now: a buffer in this future would sit in
        // every idle connection's task.
        let mut buf = vec![0u8; 8192];
        let mut total = 0;
        while total < LINGER_BYTES {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = timeout(LINGER, drain).await;
}

/// Forgets a connection and runs its `$disconnect`: the one place that does,
/// so it happens exactly once per connection.
pub(super) async fn finish(shared: &Shared, meta: &ConnectionMeta, code: u16, reason: &str) {
    shared.registry.remove(&meta.connection_id);
    // Boxed: held across the handler's await, the event would otherwise
    // make room for itself in every connection's task.
    let event = Box::new(meta.disconnect_event(code, reason));
    shared.app.disconnect((*event).clone()).await;
    // Observers hear of it once the handler has run.
    let _ = shared.lifecycle.send(*event);
    shared
        .metrics
        .disconnects_total
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::debug!(connection_id = %meta.connection_id, code, reason, "connection closed");
}

async fn read_loop(
    shared: &Arc<Shared>,
    meta: &ConnectionMeta,
    handle: &ConnHandle,
    stream: &mut SplitStream<Ws>,
    writer_failed: &CancellationToken,
    seen: &Seen,
) -> Ending {
    let cfg = &shared.config;
    let lifetime = sleep_until(Instant::now() + cfg.max_lifetime);
    tokio::pin!(lifetime);
    let idle = sleep_until(Instant::now() + cfg.idle_timeout);
    tokio::pin!(idle);
    let mut budget = cfg.client_messages_per_second.map(Bucket::new);
    // Made once: each one registers its waker on its first poll only.
    let close_requested = handle.close_token().cancelled();
    tokio::pin!(close_requested);
    let write_failed = writer_failed.cancelled();
    tokio::pin!(write_failed);
    loop {
        let frame = tokio::select! {
            biased;
            _ = &mut close_requested => {
                let req = handle.close_request();
                return match req {
                    Some(r) => Ending {
                        drain: r.code != SLOW_CONSUMER_CLOSE,
                        ..Ending::server(r.code, &r.reason)
                    },
                    None => Ending::server(1001, "Going away"),
                };
            }
            _ = &mut lifetime => return Ending::server(1001, "Going away: connection lifetime reached"),
            _ = &mut idle => return Ending::server(1001, "Going away: idle timeout"),
            _ = &mut write_failed => return Ending::abnormal("write to client failed"),
            f = stream.next() => f,
        };
        let msg = match frame {
            None => return Ending::abnormal("connection lost without a close frame"),
            Some(Ok(m)) => m,
            Some(Err(e)) => return error_ending(e, seen),
        };
        handle.touch(meta.clock.now());
        idle.as_mut().reset(Instant::now() + cfg.idle_timeout);
        if matches!(msg, Message::Text(_) | Message::Binary(_))
            && let Some(b) = budget.as_mut()
            && !b.try_take()
        {
            return over_rate(shared);
        }
        match msg {
            Message::Text(text) => {
                shared.metrics.message_in();
                let text = text.as_str();
                let event = meta.message_event(&shared.app.route_key(text), text);
                if shared.app.ordered() {
                    answer_message(shared, &meta.connection_id, event).await;
                } else {
                    let (shared, id) = (Arc::clone(shared), meta.connection_id.clone());
                    tokio::spawn(async move { answer_message(&shared, &id, event).await });
                }
            }
            Message::Binary(_) => {
                shared.metrics.message_in();
                return Ending::server(1003, "binary frames are not supported; send text");
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            Message::Close(frame) => return peer_closed(frame, seen),
        }
    }
}

/// Runs one message through the app and sends its answer, if any, back
/// on the connection.
/// (jobcast's own routes answer through `@connections` and return nothing,
/// so their path allocates nothing here.) The event moves into the app's
/// future before anything is awaited, so a connection's task does not
/// carry room for one while it waits for the next frame.
fn answer_message<'a>(
    shared: &'a Shared,
    connection_id: &'a str,
    event: WsEvent,
) -> impl std::future::Future<Output = ()> + Send + 'a {
    let answer = shared.app.message(event);
    async move {
        if let Some(reply) = answer.await {
            let _ = shared
                .registry
                .post(connection_id, crate::push::Payload::text(reply))
                .await;
        }
    }
}

/// A client over its message rate: counted, and closed with 1008.
fn over_rate(shared: &Shared) -> Ending {
    let metrics = &shared.metrics;
    metrics.message_in();
    metrics
        .rate_limit_closes_total
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ending::server(
        1008,
        &format!(
            "rate limit: more than {} messages per second",
            shared.config.client_messages_per_second.unwrap_or_default()
        ),
    )
}

/// The client closed: its code and reason, as `$disconnect` reports them.
fn peer_closed(frame: Option<CloseFrame>, seen: &Seen) -> Ending {
    let (code, reason) = match frame {
        // The watcher let 1014 through as 1000; report what was sent.
        Some(f) if seen.sent_1014() && u16::from(f.code) == 1000 => (1014, f.reason.to_string()),
        Some(f) => (u16::from(f.code), f.reason.to_string()),
        None => (1005, String::new()),
    };
    Ending {
        code,
        reason,
        send_close: false,
        drain: false,
    }
}

fn error_ending(e: WsError, seen: &Seen) -> Ending {
    match e {
        // The frame limit (32 KiB) is the smaller one: a frame over it is
        // reported as such, a message over 128 KiB (in fragments) as a message.
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size })
            if max_size == crate::protocol::MAX_FRAME_BYTES =>
        {
            Ending::server(
                1009,
                &format!("frame too big: {size} bytes, limit {max_size}"),
            )
        }
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => Ending::server(
            1009,
            &format!("message too big: {size} bytes, limit {max_size}"),
        ),
        WsError::Capacity(c) => Ending::server(1009, &format!("message too big: {c}")),
        WsError::Utf8(_) if seen.bad_close_reason() => {
            Ending::server(1007, "invalid UTF-8 in close reason")
        }
        WsError::Utf8(_) => Ending::server(1007, "invalid UTF-8 in text frame"),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            Ending::abnormal("connection lost without a close frame")
        }
        WsError::Protocol(p) => Ending::server(1002, &format!("protocol error: {p}")),
        WsError::ConnectionClosed | WsError::AlreadyClosed => Ending::abnormal("connection closed"),
        other => Ending::abnormal(&format!("transport error: {other}")),
    }
}
