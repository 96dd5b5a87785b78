//! Where "now" comes from. Expiry, deadlines and retention read the time
//! through a [`Clock`], so a test can stand at any instant it chooses and
//! nothing it asserts depends on the day it runs.

use chrono::{DateTime, TimeZone, Utc};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// A clock shared by the parts of one process.
pub type SharedClock = Arc<dyn Clock>;

/// The system's wall clock: what every host uses outside tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The wall clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that moves with tokio's time: the wall time when it was made,
/// plus the tokio time elapsed since. Under `tokio::time::pause()` it
/// stands still until tokio's time advances, so the timers a host sleeps
/// on (coalescing windows, sweeps, heartbeat deadlines) and the times it
/// stores move together, as far and as fast as a test decides.
#[derive(Debug)]
pub struct TokioClock {
    wall: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock starting at `wall` now. Made inside a tokio runtime.
    pub fn starting_at(wall: DateTime<Utc>) -> Arc<TokioClock> {
        Arc::new(TokioClock {
            wall,
            start: tokio::time::Instant::now(),
        })
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now().duration_since(self.start);
        self.wall + chrono::Duration::from_std(elapsed).unwrap_or(chrono::TimeDelta::MAX)
    }
}

/// A clock that moves only when told to, to the millisecond.
#[derive(Debug)]
pub struct ManualClock {
    millis: AtomicI64,
}

impl ManualClock {
    /// A clock standing at `at`.
    pub fn at(at: DateTime<Utc>) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            millis: AtomicI64::new(at.timestamp_millis()),
        })
    }

    /// Moves the clock to `at` (backwards too).
    pub fn set(&self, at: DateTime<Utc>) {
        self.millis.store(at.timestamp_millis(), Ordering::SeqCst);
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.millis.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        let ms = self.millis.load(Ordering::SeqCst);
        Utc.timestamp_millis_opt(ms)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_moves_with_paused_time() {
        let start: DateTime<Utc> = "2030-01-01T00:00:00Z".parse().unwrap();
        let clock = TokioClock::starting_at(start);
        assert_eq!(clock.now(), start);
        tokio::time::advance(std::time::Duration::from_secs(90)).await;
        assert_eq!(clock.now(), start + chrono::Duration::seconds(90));
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        assert_eq!(clock.now(), start + chrono::Duration::milliseconds(90_250));
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start: DateTime<Utc> = "2030-01-01T00:00:00Z".parse().unwrap();
        let clock = ManualClock::at(start);
        assert_eq!(clock.now(), start);
        clock.advance(std::time::Duration::from_millis(1500));
        assert_eq!(clock.now(), start + chrono::Duration::milliseconds(1500));
        clock.set(start);
        assert_eq!(clock.now(), start);
    }
}
