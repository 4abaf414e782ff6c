//! Delivery of payloads to the receiver: one task that owns the durable
//! spool, the `governor` limiter (the single gate for every attempt, retries
//! included) and the retry policy.

pub mod client;
pub mod policy;
pub mod spool;

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use governor::Quota;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use client::{Client, ClientError};
use policy::Verdict;
use spool::{Spool, SpoolStats};

use crate::config::Config;
use crate::payload::{Payload, unix_secs};
use crate::retry::Limiter;

/// `burst` attempts, then one per `min_interval`.
pub fn limiter(min_interval: Duration, burst: u32) -> Limiter {
    let quota = Quota::with_period(min_interval.max(Duration::from_millis(1)))
        .expect("period is non-zero")
        .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
    crate::retry::limiter(quota)
}

/// Counters of the delivery task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub delivered: u64,
    pub failed_attempts: u64,
    /// Rejected for good by the receiver (400/413).
    pub rejected: u64,
    /// What the spool's bounds and checks removed.
    pub spool: SpoolStats,
    /// Payloads waiting.
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub min_interval: Duration,
    pub burst: u32,
    pub backoff: Duration,
    pub backoff_max: Duration,
    pub spool_dir: PathBuf,
    pub max_bytes: u64,
    pub max_age: Duration,
    /// How long a written payload may wait for its 2xx before it is flushed
    /// to the disk.
    pub grace: Duration,
}

impl From<&Config> for Settings {
    fn from(c: &Config) -> Self {
        Settings {
            min_interval: c.postback.min_interval,
            burst: c.postback.burst,
            backoff: c.postback.backoff,
            backoff_max: c.postback.backoff_max,
            spool_dir: c.agent.state_dir.join("spool"),
            max_bytes: c.spool.max_bytes.0,
            max_age: c.spool.max_age,
            grace: c.spool.grace,
        }
    }
}

/// What the delivery task is sent.
#[derive(Debug)]
pub enum Msg {
    /// A new payload, with the run id that names its spool file.
    Payload(Payload, Arc<str>),
    /// New receiver settings (SIGHUP): the spool stays.
    Reconfigure(Box<Client>, Box<Settings>),
}

fn now_secs() -> u64 {
    unix_secs(SystemTime::now())
}

/// Delivers payloads from `rx` until it closes, publishing to `status`;
/// returns the counters.
pub async fn run(
    client: Client,
    settings: Settings,
    mut rx: mpsc::Receiver<Msg>,
    status: Arc<Mutex<Status>>,
) -> Stats {
    let mut d = Delivery::new(client, settings, status);
    d.publish(None);
    // The POST in flight runs beside the mailbox, so a payload built
    // meanwhile is taken at once, however slow the receiver.
    let mut in_flight: Option<(spool::Item, Payload, Pending)> = None;
    // When payloads not yet taken by the receiver must be flushed to the disk.
    let mut persist_at: Option<Instant> = None;
    loop {
        let wake = (in_flight.is_none() && !d.spool.is_empty()).then(|| d.not_before.max(d.limiter_at));
        // Delivered in time: nothing to flush, no timer to wake for.
        if d.spool.has_pending() || in_flight.as_ref().is_some_and(|(item, ..)| item.is_pending()) {
            persist_at.get_or_insert_with(|| Instant::now() + d.settings.grace);
        } else {
            persist_at = None;
        }
        tokio::select! {
            biased;
            msg = rx.recv() => match msg {
                Some(Msg::Payload(p, run)) => {
                    d.spool.push(p, &run, now_secs());
                    if d.settings.grace.is_zero() {
                        d.spool.persist(None);
                    }
                    d.publish(None);
                }
                Some(Msg::Reconfigure(client, settings)) => d.reconfigure(*client, *settings),
                None => break,
            },
            () = sleep_until_opt(persist_at) => {
                persist_at = None;
                d.spool.persist(in_flight.as_mut().map(|(item, ..)| item));
                d.publish(None);
            }
            attempt = wait_for(&mut in_flight) => {
                let (item, p, _) = in_flight.take().expect("an attempt was in flight");
                d.finish(item, p, attempt);
            }
            () = sleep_until_opt(wake) => {
                if let Some((item, p)) = d.next() {
                    let client = d.client.clone();
                    let body = p.form_body();
                    in_flight = Some((item, p, Box::pin(async move { client.post(body).await })));
                }
            }
        }
    }
    // Whatever was not delivered waits in the spool for the next run, flushed.
    d.spool.persist(in_flight.as_mut().map(|(item, ..)| item));
    d.stats.queued = d.spool.len();
    d.stats.spool = d.spool.stats;
    d.stats
}

/// An attempt under way.
type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = client::Attempt> + Send>>;

/// The outcome of the attempt in flight; never ready when there is none.
async fn wait_for(in_flight: &mut Option<(spool::Item, Payload, Pending)>) -> client::Attempt {
    match in_flight {
        Some((_, _, pending)) => pending.await,
        None => std::future::pending().await,
    }
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
    spool: Spool,
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
            limiter: limiter(settings.min_interval, settings.burst),
            spool: Spool::open(
                &settings.spool_dir,
                settings.max_bytes,
                settings.max_age,
                now_secs(),
            ),
            settings,
            not_before: now,
            limiter_at: now,
            errors: 0,
            stats: Stats::default(),
        }
    }

    fn reconfigure(&mut self, client: Client, settings: Settings) {
        if (settings.min_interval, settings.burst) != (self.settings.min_interval, self.settings.burst) {
            // A fresh limiter would allow a POST at once: spend its first
            // cell, so the next attempt keeps at least the new spacing.
            self.limiter = limiter(settings.min_interval, settings.burst);
            for _ in 0..settings.burst {
                let _ = crate::retry::check(&self.limiter);
            }
            self.limiter_at = Instant::now() + settings.min_interval;
        }
        self.spool
            .set_bounds(settings.max_bytes, settings.max_age, now_secs());
        self.client = client;
        self.settings = settings;
        self.publish(None);
        tracing::info!(queued = self.spool.len(), "postback settings reloaded");
    }

    /// Publishes the counters, and the outcome of an attempt if there was one.
    fn publish(&mut self, attempt: Option<(&'static str, Option<u16>)>) {
        self.stats.queued = self.spool.len();
        self.stats.spool = self.spool.stats;
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((outcome, status)) = attempt {
            s.last_attempt_ms = Some(crate::timefmt::to_millis(SystemTime::now()));
            s.last_outcome = Some(outcome);
            s.last_status = status;
        }
        s.stats = self.stats;
        s.oldest_queued_ms = self.spool.oldest_time().map(|t| t * 1000);
    }

    /// One slot: asks the limiter, then takes the next payload to send.
    fn next(&mut self) -> Option<(spool::Item, Payload)> {
        if let Err(wait) = crate::retry::check(&self.limiter) {
            self.limiter_at = Instant::now() + wait;
            return None;
        }
        self.spool.pop(now_secs())
    }

    /// Acts on the outcome of one attempt.
    fn finish(&mut self, item: spool::Item, p: Payload, attempt: client::Attempt) {
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
                self.spool.ack(&item);
                let queued = self.spool.len();
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
                self.spool.ack(&item);
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
            verdict => self.retry_later(item, p, verdict, &status, &attempt.detail),
        }
        self.publish(Some((outcome, attempt.status)));
    }

    fn retry_later(&mut self, item: spool::Item, p: Payload, verdict: Verdict, status: &str, detail: &str) {
        self.errors = self.errors.saturating_add(1);
        self.stats.failed_attempts += 1;
        let backoff = crate::retry::linear(self.errors, self.settings.backoff, self.settings.backoff_max);
        let wait = match verdict {
            Verdict::Throttled(Some(retry_after)) => retry_after,
            _ => backoff,
        };
        self.not_before = Instant::now() + wait;
        let seq = p.seq;
        self.spool.requeue(item, p, now_secs());
        let queued = self.spool.len();
        let oldest_age_s = self.spool.oldest_time().map(|t| now_secs().saturating_sub(t));
        let retry_in = format!("{:.1}s", wait.as_secs_f64());
        match verdict {
            Verdict::Unauthorized => tracing::error!(
                seq, status, queued, ?oldest_age_s, retry_in, response = %detail,
                "receiver refused the credentials: check postback.token (or token_file, HOSTBEAT_POSTBACK_TOKEN), postback.agent_key and postback.forwarded_host"
            ),
            Verdict::Throttled(_) => {
                tracing::warn!(
                    seq,
                    status,
                    queued,
                    ?oldest_age_s,
                    retry_in,
                    "receiver asked to slow down (429)"
                )
            }
            _ => {
                tracing::warn!(seq, status, queued, ?oldest_age_s, retry_in, error = %detail, "postback failed; will retry")
            }
        }
    }
}
