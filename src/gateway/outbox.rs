//! A connection's outbound queue: bounded, shared by everyone who posts to
//! the connection and drained by its writer task.
//!
//! It holds no memory until something is queued, and gives back what a
//! burst made it grow once the writer has drained it: most connections sit
//! idle most of the time, and their queue should cost them nothing.

use crate::push::Payload;
use std::collections::VecDeque;
use std::sync::Mutex;
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

#[derive(Default)]
struct Queue {
    items: VecDeque<Payload>,
    closed: bool,
}

pub(super) struct Outbox {
    queue: Mutex<Queue>,
    ready: Notify,
    limit: usize,
}

impl Outbox {
    /// A queue of at most `limit` payloads (at least one).
    pub(super) fn new(limit: usize) -> Outbox {
        Outbox {
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            limit: limit.max(1),
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

    /// Waits for the next payload.
    pub(super) async fn next(&self) -> Payload {
        loop {
            if let Some(p) = self.pop() {
                return p;
            }
            // A push between the pop above and this wait leaves a permit,
            // so the wait returns at once: nothing is missed.
            self.ready.notified().await;
        }
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

    #[tokio::test]
    async fn a_waiting_writer_wakes_for_a_push_from_another_task() {
        let o = Arc::new(Outbox::new(8));
        let waiter = tokio::spawn({
            let o = Arc::clone(&o);
            async move { body(o.next().await) }
        });
        tokio::task::yield_now().await;
        assert!(o.push(text("late")).is_ok());
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await;
        assert_eq!(got.ok().and_then(|r| r.ok()).as_deref(), Some("late"));
    }
}
