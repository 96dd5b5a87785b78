//! A connection's outbound queue: bounded, shared by everyone who posts to
//! the connection and drained by its writer task.
//!
//! It holds no memory until something is queued, and gives back what a
//! burst made it grow once the writer has drained it: most connections sit
//! idle most of the time, and their queue should cost them nothing.
//!
//! It also carries the request for the writer to end, so the writer waits
//! on one thing, and a message costs it no lock beyond the queue's own.

use crate::push::Payload;
use futures_util::task::AtomicWaker;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::Poll;
use tokio::sync::Notify;

/// Capacity kept after the queue empties; a burst beyond it is given back.
const KEPT_CAPACITY: usize = 16;

/// Why a payload was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refused {
    /// The queue holds its limit: the client is not reading.
    Full,
    /// The writer is gone: the connection is ending.
    Closed,
}

/// How the writer is asked to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stop {
    /// Once what is queued at that moment has gone out, so a message posted
    /// (or a reply owed) before a server-initiated close arrives before its
    /// close frame.
    AfterQueue = 1,
    /// Now; what is still queued is dropped, and a write in progress is
    /// abandoned.
    Now = 2,
}

/// What the writer does next.
pub(super) enum Next {
    Send(Payload),
    Stop(Stop),
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Payload>,
    closed: bool,
}

pub(super) struct Outbox {
    queue: Mutex<Queue>,
    ready: Notify,
    limit: usize,
    /// 0 while running, else a `Stop` as u8.
    stop: AtomicU8,
    /// Wakes a write in progress when `Stop::Now` arrives.
    stop_waker: AtomicWaker,
}

impl Outbox {
    /// A queue of at most `limit` payloads (at least one).
    pub(super) fn new(limit: usize) -> Outbox {
        Outbox {
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            limit: limit.max(1),
            stop: AtomicU8::new(0),
            stop_waker: AtomicWaker::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // A panic while holding the lock cannot leave the queue half
        // updated (every change is one VecDeque call), so a poisoned lock
        // is still a usable queue.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a payload for the writer, without waiting.
    pub(super) fn push(&self, payload: Payload) -> Result<(), Refused> {
        {
            let mut q = self.lock();
            if q.closed {
                return Err(Refused::Closed);
            }
            if q.items.len() >= self.limit {
                return Err(Refused::Full);
            }
            q.items.push_back(payload);
        }
        self.ready.notify_one();
        Ok(())
    }

    /// The oldest queued payload, if any.
    pub(super) fn pop(&self) -> Option<Payload> {
        let mut q = self.lock();
        let p = q.items.pop_front();
        if q.items.is_empty() && q.items.capacity() > KEPT_CAPACITY {
            q.items = VecDeque::new();
        }
        p
    }

    /// Asks the writer to end; the more urgent request wins.
    pub(super) fn request_stop(&self, how: Stop) {
        self.stop.fetch_max(how as u8, Ordering::AcqRel);
        self.ready.notify_one();
        self.stop_waker.wake();
    }

    fn stop_requested(&self) -> Option<Stop> {
        match self.stop.load(Ordering::Acquire) {
            0 => None,
            1 => Some(Stop::AfterQueue),
            _ => Some(Stop::Now),
        }
    }

    /// Waits for the next payload, or for the request to end.
    pub(super) async fn next(&self) -> Next {
        loop {
            if let Some(how) = self.stop_requested() {
                return Next::Stop(how);
            }
            if let Some(p) = self.pop() {
                return Next::Send(p);
            }
            // A push (or a stop) between the checks above and this wait
            // leaves a permit, so the wait returns at once: nothing is missed.
            self.ready.notified().await;
        }
    }

    /// Completes once `Stop::Now` is requested.
    pub(super) async fn stopped_now(&self) {
        std::future::poll_fn(|cx| {
            if self.stop_requested() == Some(Stop::Now) {
                return Poll::Ready(());
            }
            self.stop_waker.register(cx.waker());
            match self.stop_requested() {
                Some(Stop::Now) => Poll::Ready(()),
                _ => Poll::Pending,
            }
        })
        .await
    }

    /// How many payloads are queued now.
    pub(super) fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// The writer is gone: later pushes are refused, and what is still
    /// queued is dropped.
    pub(super) fn close(&self) {
        let mut q = self.lock();
        q.closed = true;
        q.items = VecDeque::new();
    }
}

/// Closes the outbox when dropped, so that every way a writer ends tells
/// posters the connection is gone.
pub(super) struct CloseOnDrop<'a>(pub(super) &'a Outbox);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn text(s: &str) -> Payload {
        Payload::text(s.to_string())
    }

    fn body(p: Payload) -> String {
        match p {
            Payload::Text(t) => t.to_string(),
            Payload::Binary(_) => String::from("<binary>"),
        }
    }

    #[test]
    fn keeps_order_and_refuses_beyond_the_limit() {
        let o = Outbox::new(2);
        assert_eq!(o.push(text("a")), Ok(()));
        assert_eq!(o.push(text("b")), Ok(()));
        assert_eq!(o.push(text("c")), Err(Refused::Full));
        assert_eq!(o.len(), 2);
        assert_eq!(o.pop().map(body).as_deref(), Some("a"));
        assert_eq!(o.push(text("c")), Ok(()));
        assert_eq!(o.pop().map(body).as_deref(), Some("b"));
        assert_eq!(o.pop().map(body).as_deref(), Some("c"));
        assert!(o.pop().is_none());
    }

    #[test]
    fn holds_no_memory_when_idle_and_gives_back_a_burst() {
        let o = Outbox::new(1024);
        assert_eq!(o.lock().items.capacity(), 0);
        for i in 0..500 {
            assert!(o.push(text(&i.to_string())).is_ok());
        }
        assert!(o.lock().items.capacity() >= 500);
        while o.pop().is_some() {}
        assert_eq!(o.lock().items.capacity(), 0);
    }

    #[test]
    fn closed_refuses_and_drops_what_was_queued() {
        let o = Outbox::new(4);
        assert!(o.push(text("a")).is_ok());
        drop(CloseOnDrop(&o));
        assert_eq!(o.len(), 0);
        assert_eq!(o.push(text("b")), Err(Refused::Closed));
    }

    fn sent(n: Next) -> String {
        match n {
            Next::Send(p) => body(p),
            Next::Stop(how) => format!("{how:?}"),
        }
    }

    #[tokio::test]
    async fn a_stop_comes_before_what_is_queued_and_now_wins() {
        let o = Outbox::new(8);
        assert!(o.push(text("a")).is_ok());
        o.request_stop(Stop::AfterQueue);
        assert_eq!(sent(o.next().await), "AfterQueue");
        // The writer then sends what is queued itself.
        assert_eq!(o.pop().map(body).as_deref(), Some("a"));
        o.request_stop(Stop::Now);
        o.request_stop(Stop::AfterQueue);
        assert_eq!(sent(o.next().await), "Now");
        tokio::time::timeout(std::time::Duration::from_secs(5), o.stopped_now())
            .await
            .expect("stopped_now completes once Now is requested");
    }

    #[tokio::test]
    async fn a_write_in_progress_hears_stop_now() {
        let o = Arc::new(Outbox::new(8));
        let waiter = tokio::spawn({
            let o = Arc::clone(&o);
            async move { o.stopped_now().await }
        });
        tokio::task::yield_now().await;
        o.request_stop(Stop::AfterQueue);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        o.request_stop(Stop::Now);
        let done = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await;
        assert!(matches!(done, Ok(Ok(()))));
    }

    #[tokio::test]
    async fn a_waiting_writer_wakes_for_a_push_from_another_task() {
        let o = Arc::new(Outbox::new(8));
        let waiter = tokio::spawn({
            let o = Arc::clone(&o);
            async move { sent(o.next().await) }
        });
        tokio::task::yield_now().await;
        assert!(o.push(text("late")).is_ok());
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await;
        assert_eq!(got.ok().and_then(|r| r.ok()).as_deref(), Some("late"));
    }
}
