//! Token buckets: `rate` events per second with bursts up to `rate`.

use std::sync::Mutex;
use std::time::Instant;

/// A bucket owned by one task (a connection's reader): no lock.
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn new(per_second: u32) -> Bucket {
        let rate = f64::from(per_second.max(1));
        Bucket {
            rate,
            tokens: rate,
            at: Instant::now(),
        }
    }

    /// Takes a token if one is available; refills continuously.
    pub fn try_take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A bucket shared by many tasks (every `@connections` request).
pub struct TokenBucket {
    bucket: Mutex<Bucket>,
}

impl TokenBucket {
    pub fn new(per_second: u32) -> TokenBucket {
        TokenBucket {
            bucket: Mutex::new(Bucket::new(per_second)),
        }
    }

    /// Takes a token if one is available.
    pub fn try_acquire(&self) -> bool {
        match self.bucket.lock() {
            Ok(mut b) => b.try_take(),
            Err(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_refuses() {
        let b = TokenBucket::new(5);
        assert!((0..5).all(|_| b.try_acquire()));
        assert!(!b.try_acquire());
        let mut own = Bucket::new(3);
        assert!((0..3).all(|_| own.try_take()));
        assert!(!own.try_take());
    }
}
