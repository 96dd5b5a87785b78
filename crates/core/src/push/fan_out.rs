//! Delivering a batch one post at a time, as the Management API must: the
//! posts of many connections in flight at once (as many as [`Pace`]
//! plans), each connection's own messages one after another so they arrive
//! in order, 429s and 5xx retried with backoff, and the number in flight
//! halved when a 429 comes back. Every pusher that reaches connections by
//! request (AWS, another `serve` process, a delayed registry) delivers
//! through this.

use super::pace::{self, Pace};
use super::{Delivered, Parcel, Payload, PushError};
use crate::retry::backoff;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a batch is posted.
#[derive(Clone, Debug, PartialEq)]
pub struct PaceOptions {
    /// Connections posted to at once, at least (fewer only after 429s).
    pub concurrency: usize,
    /// Connections posted to at once at most, when the observed round trip
    /// calls for more than `concurrency` to finish within `fan_out_target`.
    /// Equal to `concurrency`: a fixed number.
    pub max_concurrency: usize,
    /// The time a batch aims to be delivered within (or half a Lambda's
    /// time left, when less).
    pub fan_out_target: Duration,
    /// Attempts per message for retryable errors (429, 5xx), first included.
    pub max_attempts: u32,
    /// First backoff; doubles each attempt, full jitter, capped by `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for PaceOptions {
    fn default() -> PaceOptions {
        PaceOptions {
            concurrency: 64,
            max_concurrency: 256,
            fan_out_target: Duration::from_millis(100),
            max_attempts: 5,
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// Posts batches with options and a [`Pace`] shared by every pusher of one
/// host, so what one batch learned of round trips and 429s serves the next.
#[derive(Clone, Debug)]
pub struct Paced {
    pace: Arc<Pace>,
    options: PaceOptions,
}

impl Default for Paced {
    fn default() -> Paced {
        Paced::new(PaceOptions::default())
    }
}

/// What became of one connection's messages.
struct Posted {
    conn: String,
    delivered: usize,
    retries: usize,
    /// Answered 410: the rest of its messages were not sent.
    gone: bool,
    /// The error that ended its messages early.
    failed: Option<PushError>,
    /// Some attempt was answered 429.
    throttled: bool,
}

/// Each connection of `parcels` with its messages in order: the parcels'
/// order, then each parcel's.
fn by_connection(parcels: &[Parcel]) -> Vec<(String, Vec<Payload>)> {
    if let [one] = parcels {
        return one
            .connections
            .iter()
            .map(|c| (c.clone(), one.payloads.clone()))
            .collect();
    }
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<(String, Vec<Payload>)> = Vec::new();
    for parcel in parcels {
        for conn in &parcel.connections {
            let at = *index.entry(conn.as_str()).or_insert_with(|| {
                out.push((conn.clone(), Vec::new()));
                out.len() - 1
            });
            out[at].1.extend(parcel.payloads.iter().cloned());
        }
    }
    out
}

impl Paced {
    pub fn new(options: PaceOptions) -> Paced {
        let max = options.max_concurrency.max(options.concurrency);
        Paced {
            pace: Arc::new(Pace::new(max)),
            options,
        }
    }

    /// What has been learned so far.
    pub fn pace(&self) -> &Arc<Pace> {
        &self.pace
    }

    pub fn options(&self) -> &PaceOptions {
        &self.options
    }

    /// Delivers `parcels` through `post`, one connection's messages in
    /// order, many connections at once.
    pub async fn deliver<F, Fut>(&self, parcels: &[Parcel], post: F) -> Delivered
    where
        F: Fn(String, Payload) -> Fut,
        Fut: Future<Output = Result<(), PushError>>,
    {
        let started = Instant::now();
        let work = by_connection(parcels);
        let target = pace::budget(self.options.fan_out_target, started);
        let mut limit = self.pace.plan(work.len(), self.options.concurrency, target);
        let mut done = Delivered {
            in_flight: Some(limit),
            ..Delivered::default()
        };
        let mut throttled_any = false;
        let mut last_cut = started;
        let mut waiting = work.into_iter();
        let mut running = FuturesUnordered::new();
        loop {
            while running.len() < limit {
                let Some((conn, payloads)) = waiting.next() else {
                    break;
                };
                running.push(self.post_all(conn, payloads, &post));
            }
            let Some(posted) = running.next().await else {
                break;
            };
            // One cut per round trip: the posts already out saw the same limit.
            if posted.throttled && last_cut.elapsed() >= self.pace.latency() {
                throttled_any = true;
                limit = self.pace.throttled(limit.min(running.len() + 1));
                last_cut = Instant::now();
            }
            done.messages += posted.delivered;
            done.retried += posted.retries;
            if posted.gone {
                done.gone.push(posted.conn);
            } else if let Some(e) = posted.failed {
                done.failed.push((posted.conn, e));
            }
        }
        if !throttled_any {
            self.pace.clean();
        }
        done.round_trip = Some(self.pace.latency());
        done
    }

    /// One connection's messages, in order; stops at a 410 or an error
    /// that retries did not cure.
    async fn post_all<F, Fut>(&self, conn: String, payloads: Vec<Payload>, post: &F) -> Posted
    where
        F: Fn(String, Payload) -> Fut,
        Fut: Future<Output = Result<(), PushError>>,
    {
        let mut posted = Posted {
            conn,
            delivered: 0,
            retries: 0,
            gone: false,
            failed: None,
            throttled: false,
        };
        for payload in payloads {
            match self.post_one(&mut posted, payload, post).await {
                Ok(()) => posted.delivered += 1,
                Err(PushError::Gone) => {
                    posted.gone = true;
                    break;
                }
                Err(e) => {
                    posted.failed = Some(e);
                    break;
                }
            }
        }
        posted
    }

    async fn post_one<F, Fut>(
        &self,
        posted: &mut Posted,
        payload: Payload,
        post: &F,
    ) -> Result<(), PushError>
    where
        F: Fn(String, Payload) -> Fut,
        Fut: Future<Output = Result<(), PushError>>,
    {
        let mut attempt = 0u32;
        loop {
            let sent = Instant::now();
            let answer = post(posted.conn.clone(), payload.clone()).await;
            match answer {
                Ok(()) | Err(PushError::Gone) => {
                    self.pace.observe(sent.elapsed());
                    return answer;
                }
                Err(error) => {
                    posted.throttled |= error == PushError::LimitExceeded;
                    if !error.is_retryable() || attempt + 1 >= self.options.max_attempts {
                        return Err(error);
                    }
                    let wait =
                        backoff(attempt, self.options.base_backoff, self.options.max_backoff);
                    if pace::past_deadline(wait, Instant::now()) {
                        return Err(error);
                    }
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    posted.retries += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn text(s: &str) -> Payload {
        Payload::text(s.to_string())
    }

    fn parcel(conns: &[&str], payloads: &[&str]) -> Parcel {
        Parcel {
            connections: conns.iter().map(|c| c.to_string()).collect(),
            payloads: payloads.iter().map(|p| text(p)).collect(),
        }
    }

    #[tokio::test]
    async fn each_connection_gets_its_messages_in_parcel_order() {
        let seen = Mutex::new(Vec::<(String, String)>::new());
        let paced = Paced::new(PaceOptions {
            concurrency: 4,
            ..PaceOptions::default()
        });
        let parcels = [
            parcel(&["a", "b"], &["log 0", "log 1"]),
            parcel(&["b", "c"], &["tokens 0"]),
            parcel(&["a", "b", "c", "gone"], &["snapshot"]),
        ];
        let done = paced
            .deliver(&parcels, |conn, payload| {
                let r = if conn == "gone" {
                    Err(PushError::Gone)
                } else {
                    let Payload::Text(t) = payload else {
                        return std::future::ready(Err(PushError::BadRequest("binary".into())));
                    };
                    if let Ok(mut s) = seen.lock() {
                        s.push((conn, t.to_string()));
                    }
                    Ok(())
                };
                std::future::ready(r)
            })
            .await;
        assert_eq!(done.messages, 9);
        assert_eq!(done.gone, vec!["gone".to_string()]);
        let seen = seen.into_inner().unwrap_or_default();
        let of = |c: &str| -> Vec<String> {
            seen.iter()
                .filter(|(conn, _)| conn == c)
                .map(|(_, t)| t.clone())
                .collect()
        };
        assert_eq!(of("a"), ["log 0", "log 1", "snapshot"]);
        assert_eq!(of("b"), ["log 0", "log 1", "tokens 0", "snapshot"]);
        assert_eq!(of("c"), ["tokens 0", "snapshot"]);
    }

    #[tokio::test]
    async fn a_failed_message_stops_that_connection_only() {
        let paced = Paced::new(PaceOptions {
            max_attempts: 2,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            ..PaceOptions::default()
        });
        let parcels = [parcel(&["bad", "good"], &["one", "two"])];
        let done = paced
            .deliver(&parcels, |conn, _| {
                std::future::ready(if conn == "bad" {
                    Err(PushError::Unavailable("503".into()))
                } else {
                    Ok(())
                })
            })
            .await;
        assert_eq!(done.messages, 2);
        assert_eq!(done.retried, 1);
        assert_eq!(done.failed.len(), 1);
        assert_eq!(done.failed[0].0, "bad");
    }
}
