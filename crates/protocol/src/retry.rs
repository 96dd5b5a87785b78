//! Waiting between attempts: the one backoff every retry loop uses (the
//! publisher's posts, webhook deliveries, worker hand-overs, the store's
//! throttled batches, the Rust worker client).

use rand::Rng;
use std::time::Duration;

/// Full-jitter exponential backoff: a random delay in `[0, min(cap, base * 2^attempt)]`.
pub fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.saturating_mul(1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX));
    let ceiling = exp.min(cap);
    let millis = ceiling.as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(0..=millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_the_growing_ceiling_and_the_cap() {
        let base = Duration::from_millis(10);
        let cap = Duration::from_millis(500);
        for attempt in 0..40 {
            let ceiling = (base * 2u32.saturating_pow(attempt.min(30))).min(cap);
            for _ in 0..20 {
                assert!(backoff(attempt, base, cap) <= ceiling);
            }
        }
    }
}
