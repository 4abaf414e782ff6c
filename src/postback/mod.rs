//! Delivery of payloads to the receiver: one task that owns the queue, the
//! `governor` limiter (the single gate for every attempt, retries included)
//! and the retry policy.

pub mod client;
pub mod policy;
pub mod queue;

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, MonotonicClock};
use governor::{Quota, RateLimiter};
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use client::{Client, ClientError};
use policy::Verdict;
use queue::Queue;

use crate::config::Postback;
use crate::payload::Payload;

/// A direct (un-keyed) limiter on the std monotonic clock, so no calibration
/// or timer thread is started.
pub type Limiter = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    MonotonicClock,
    governor::middleware::NoOpMiddleware<std::time::Instant>,
>;

/// One attempt per `min_interval`, no burst.
pub fn limiter(min_interval: Duration) -> Limiter {
    let quota = Quota::with_period(min_interval.max(Duration::from_millis(1)))
        .expect("period is non-zero")
        .allow_burst(NonZeroU32::MIN);
    RateLimiter::direct_with_clock(quota, MonotonicClock)
}

/// Counters of the delivery task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub delivered: u64,
    pub failed_attempts: u64,
    /// Rejected for good by the receiver (400/413).
    pub rejected: u64,
    /// Dropped because the queue was full.
    pub overflowed: u64,
    /// Still queued when the task ended.
    pub queued: usize,
}

/// What the delivery task last did, for `GET /status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub last_attempt_ms: Option<u64>,
    /// `delivered`, `rejected`, `unauthorized`, `throttled` or `failed`.
    pub last_outcome: Option<&'static str>,
    pub last_status: Option<u16>,
    pub stats: Stats,
    /// Sample time of the oldest queued payload, Unix ms.
    pub oldest_queued_ms: Option<u64>,
}

/// The delivery task's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub min_interval: Duration,
    pub backoff: Duration,
    pub backoff_max: Duration,
    pub queue_max: usize,
}

impl From<&Postback> for Settings {
    fn from(p: &Postback) -> Self {
        Settings {
            min_interval: p.min_interval,
            backoff: p.backoff,
            backoff_max: p.backoff_max,
            queue_max: p.queue_max,
        }
    }
}

/// Delivers payloads from `rx` until it closes, publishing to `status`;
/// returns the counters.
pub async fn run(
    client: Client,
    settings: Settings,
    mut rx: mpsc::Receiver<Payload>,
    status: Arc<Mutex<Status>>,
) -> Stats {
    let mut d = Delivery::new(client, settings, status);
    loop {
        let wake = (!d.queue.is_empty()).then(|| d.not_before.max(d.limiter_at));
        tokio::select! {
            biased;
            msg = rx.recv() => match msg {
                Some(p) => d.enqueue(p),
                None => break,
            },
            () = sleep_until_opt(wake) => d.try_send().await,
        }
    }
    d.stats.queued = d.queue.len();
    d.stats
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct Delivery {
    status: Arc<Mutex<Status>>,
    client: Client,
    settings: Settings,
    limiter: Limiter,
    queue: Queue,
    /// No attempt before this (back-off, Retry-After).
    not_before: Instant,
    /// When the limiter said the next cell is free.
    limiter_at: Instant,
    errors: u32,
    stats: Stats,
}

impl Delivery {
    fn new(client: Client, settings: Settings, status: Arc<Mutex<Status>>) -> Self {
        let now = Instant::now();
        Delivery {
            status,
            client,
            limiter: limiter(settings.min_interval),
            queue: Queue::new(settings.queue_max),
            settings,
            not_before: now,
            limiter_at: now,
            errors: 0,
            stats: Stats::default(),
        }
    }

    fn enqueue(&mut self, p: Payload) {
        let dropped = self.queue.push(p);
        self.count_overflow(dropped);
        self.publish(None);
    }

    /// Publishes the counters, and the outcome of an attempt if there was one.
    fn publish(&mut self, attempt: Option<(&'static str, Option<u16>)>) {
        self.stats.queued = self.queue.len();
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((outcome, status)) = attempt {
            s.last_attempt_ms = Some(crate::timefmt::to_millis(std::time::SystemTime::now()));
            s.last_outcome = Some(outcome);
            s.last_status = status;
        }
        s.stats = self.stats;
        s.oldest_queued_ms = self.queue.oldest_time().map(|t| t * 1000);
    }

    fn count_overflow(&mut self, dropped: usize) {
        if dropped > 0 {
            self.stats.overflowed += dropped as u64;
            tracing::warn!(
                dropped,
                total_dropped = self.stats.overflowed,
                queue_max = self.settings.queue_max,
                "postback queue full: oldest payloads dropped"
            );
        }
    }

    /// One slot: asks the limiter, then sends the next payload.
    async fn try_send(&mut self) {
        if let Err(not_until) = self.limiter.check() {
            let wait = not_until.wait_time_from(MonotonicClock.now());
            self.limiter_at = Instant::now() + wait;
            return;
        }
        let Some(p) = self.queue.pop() else { return };
        let attempt = self.client.post(&p).await;
        let status = attempt.status.map_or_else(|| "-".to_owned(), |s| s.to_string());
        let outcome = match attempt.verdict {
            Verdict::Delivered => "delivered",
            Verdict::Rejected => "rejected",
            Verdict::Unauthorized => "unauthorized",
            Verdict::Throttled(_) => "throttled",
            Verdict::Failed => "failed",
        };
        match attempt.verdict {
            Verdict::Delivered => {
                let queued = self.queue.len();
                if self.errors > 0 {
                    tracing::info!(
                        seq = p.seq,
                        queued,
                        failed_attempts = self.errors,
                        "postback recovered"
                    );
                } else if self.stats.delivered == 0 {
                    tracing::info!(seq = p.seq, %status, "first payload delivered");
                } else {
                    tracing::debug!(seq = p.seq, %status, queued, "payload delivered");
                }
                self.errors = 0;
                self.stats.delivered += 1;
            }
            Verdict::Rejected => {
                self.errors = 0;
                self.stats.rejected += 1;
                tracing::error!(
                    seq = p.seq,
                    %status,
                    rejected = self.stats.rejected,
                    response = %attempt.detail,
                    "receiver rejected the payload for good; dropped"
                );
            }
            verdict => self.retry_later(p, verdict, &status, &attempt.detail),
        }
        self.publish(Some((outcome, attempt.status)));
    }

    fn retry_later(&mut self, p: Payload, verdict: Verdict, status: &str, detail: &str) {
        self.errors = self.errors.saturating_add(1);
        self.stats.failed_attempts += 1;
        let backoff = crate::retry::linear(self.errors, self.settings.backoff, self.settings.backoff_max);
        let wait = match verdict {
            Verdict::Throttled(Some(retry_after)) => retry_after,
            _ => backoff,
        };
        self.not_before = Instant::now() + wait;
        let seq = p.seq;
        let dropped = self.queue.requeue(p);
        self.count_overflow(dropped);
        let queued = self.queue.len();
        let retry_in = format!("{:.1}s", wait.as_secs_f64());
        match verdict {
            Verdict::Unauthorized => tracing::error!(
                seq, status, queued, retry_in, response = %detail,
                "receiver refused the credentials: check postback.token (or token_file, HOSTBEAT_POSTBACK_TOKEN), postback.agent_key and postback.forwarded_host"
            ),
            Verdict::Throttled(_) => {
                tracing::warn!(seq, status, queued, retry_in, "receiver asked to slow down (429)")
            }
            _ => {
                tracing::warn!(seq, status, queued, retry_in, error = %detail, "postback failed; will retry")
            }
        }
    }
}
