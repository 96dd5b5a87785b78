//! How many posts a fan-out keeps in flight.
//!
//! A post's round trip is microseconds to a local `serve` and tens of
//! milliseconds to AWS. With a fixed number in flight, a fan-out to S
//! subscribers takes `ceil(S / in_flight)` round trips, and in a Lambda each
//! of them is billed. So the number is planned per fan-out from what has been
//! seen: enough posts in flight to finish within the target time at the
//! observed round trip, never below the configured floor, and never above a
//! ceiling that every 429 halves and every clean fan-out raises again
//! (additive-increase, multiplicative-decrease, as TCP does).
//!
//! When the host has a deadline (a Lambda invocation's), the target shrinks
//! to a share of the time left, and retries that would end too close to the
//! deadline are given up so the invocation can still report.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `fut` with `deadline` as the time every publish inside it must
/// finish by (a Lambda invocation's end).
pub async fn within<F: Future>(deadline: Instant, fut: F) -> F::Output {
    DEADLINE.scope(deadline, fut).await
}

/// The deadline of the publish running now, if its host set one.
pub fn deadline() -> Option<Instant> {
    DEADLINE.try_with(|d| *d).ok()
}

/// Time kept back before a deadline: a retry that would end later is not made.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(500);

/// What a host's publishers have learned about the posts they make. Shared
/// by every publisher one host builds.
#[derive(Debug)]
pub struct Pace {
    /// Smoothed round trip of a post, in microseconds (0: none seen yet).
    latency_us: AtomicU64,
    /// Most posts in flight allowed after 429s.
    ceiling: AtomicUsize,
    max: usize,
}

impl Pace {
    /// A pace that never allows more than `max` posts in flight.
    pub fn new(max: usize) -> Pace {
        let max = max.max(1);
        Pace {
            latency_us: AtomicU64::new(0),
            ceiling: AtomicUsize::new(max),
            max,
        }
    }

    /// The smoothed round trip of a post (zero before the first).
    pub fn latency(&self) -> Duration {
        Duration::from_micros(self.latency_us.load(Ordering::Relaxed))
    }

    /// The most posts in flight the 429s seen so far allow.
    pub fn ceiling(&self) -> usize {
        self.ceiling.load(Ordering::Relaxed)
    }

    /// Folds one post's round trip into the smoothed latency (weight 1/8).
    pub fn observe(&self, round_trip: Duration) {
        let sample = u64::try_from(round_trip.as_micros()).unwrap_or(u64::MAX);
        let _ = self
            .latency_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if old == 0 {
                    sample.max(1)
                } else {
                    (old * 7 + sample) / 8
                })
            });
    }

    /// In flight for a fan-out to `subscribers`: enough to finish within
    /// `target` at the smoothed latency, at least `floor`, at most the
    /// ceiling, never more than there are subscribers.
    pub fn plan(&self, subscribers: usize, floor: usize, target: Duration) -> usize {
        let latency = self.latency_us.load(Ordering::Relaxed) as u128;
        let target = target.as_micros().max(1);
        let wanted = (subscribers as u128 * latency).div_ceil(target);
        let wanted = usize::try_from(wanted).unwrap_or(usize::MAX);
        wanted
            .max(floor)
            .min(self.ceiling())
            .min(subscribers)
            .max(1)
    }

    /// A 429 was answered while `in_flight` posts were out: the ceiling
    /// becomes half of that. Returns the new limit.
    pub fn throttled(&self, in_flight: usize) -> usize {
        let halved = (in_flight / 2).max(1);
        let _ = self
            .ceiling
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                Some(c.min(halved))
            });
        halved
    }

    /// A fan-out ended without a 429: the ceiling grows by a quarter (at
    /// least one), up to the maximum.
    pub fn clean(&self) {
        let max = self.max;
        let _ = self
            .ceiling
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                Some((c + (c / 4).max(1)).min(max))
            });
    }
}

/// The time a fan-out aims to finish within: `target`, or less when the
/// deadline leaves less (half the time left, so the rest of the invocation
/// still fits).
pub fn budget(target: Duration, now: Instant) -> Duration {
    match deadline() {
        Some(d) => target.min(d.saturating_duration_since(now) / 2),
        None => target,
    }
}

/// True when a retry after `wait` would end too close to the deadline.
pub fn past_deadline(wait: Duration, now: Instant) -> bool {
    deadline().is_some_and(|d| now + wait + DEADLINE_MARGIN > d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn unseen_latency_keeps_the_floor() {
        let pace = Pace::new(512);
        assert_eq!(pace.plan(1000, 64, 250 * MS), 64);
        assert_eq!(pace.plan(10, 64, 250 * MS), 10);
    }

    #[test]
    fn aws_latency_raises_in_flight_to_meet_the_target() {
        let pace = Pace::new(512);
        pace.observe(30 * MS);
        // 1,000 × 30 ms / 250 ms = 120 in flight: 9 round trips, 270 ms.
        assert_eq!(pace.plan(1000, 64, 250 * MS), 120);
        // Bounded by the maximum.
        assert_eq!(pace.plan(100_000, 64, 250 * MS), 512);
    }

    #[test]
    fn latency_is_smoothed() {
        let pace = Pace::new(512);
        pace.observe(8 * MS);
        pace.observe(16 * MS);
        assert_eq!(pace.latency(), 9 * MS);
    }

    #[test]
    fn a_429_halves_and_clean_fan_outs_recover() {
        let pace = Pace::new(512);
        pace.observe(30 * MS);
        assert_eq!(pace.throttled(120), 60);
        assert_eq!(pace.plan(1000, 64, 250 * MS), 60);
        assert_eq!(pace.throttled(60), 30);
        // A later, larger cut never raises the ceiling.
        pace.throttled(400);
        assert_eq!(pace.ceiling(), 30);
        pace.clean();
        assert_eq!(pace.ceiling(), 37);
        for _ in 0..30 {
            pace.clean();
        }
        assert_eq!(pace.ceiling(), 512);
    }

    #[tokio::test]
    async fn a_deadline_shrinks_the_budget_and_stops_late_retries() {
        let now = Instant::now();
        assert_eq!(budget(250 * MS, now), 250 * MS);
        assert!(!past_deadline(Duration::from_secs(60), now));
        within(now + 300 * MS, async {
            assert_eq!(budget(250 * MS, now), 150 * MS);
            assert!(past_deadline(Duration::ZERO, now));
        })
        .await;
        within(now + Duration::from_secs(10), async {
            assert!(!past_deadline(Duration::from_secs(1), now));
            assert!(past_deadline(Duration::from_millis(9_600), now));
        })
        .await;
    }
}
