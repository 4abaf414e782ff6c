//! The sampling thread: collects on a fixed schedule and hands each payload
//! to the async side. Blocking `/proc` reads stay off the runtime, and the
//! schedule is anchored to the start so no drift accumulates.

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::collect::{Collector, Sample};
use crate::custom::Groups;
use crate::payload::{Builder, Payload};

/// Time from the priming sample to the first real one (rates need two).
pub const WARMUP: Duration = Duration::from_secs(1);

/// Deadline of tick `k`: `start + warmup + k × interval`.
pub fn deadline(start: Instant, warmup: Duration, interval: Duration, k: u32) -> Instant {
    start + warmup + interval * k
}

/// The first tick index whose deadline is after `now` (skips ticks missed
/// while a sample ran long or the machine was suspended: no burst follows).
pub fn next_tick(start: Instant, warmup: Duration, interval: Duration, now: Instant) -> u32 {
    let since = now.saturating_duration_since(start + warmup);
    let done = since.as_nanos() / interval.as_nanos().max(1);
    u32::try_from(done + 1).unwrap_or(u32::MAX)
}

/// One collected sample and its payload.
#[derive(Debug)]
pub struct Tick {
    pub sample: Sample,
    pub payload: Payload,
    /// Time spent collecting and serialising.
    pub cost: Duration,
}

/// What the sampler thread is told.
#[derive(Debug)]
enum Control {
    Stop,
    /// Ping the systemd watchdog at half this period, from now on.
    Watchdog(Duration),
    /// New interval and payload identity (SIGHUP); the schedule restarts now.
    Reconfigure {
        interval: Duration,
        agent_key: String,
        hostname: String,
    },
}

/// Handle to the running sampler thread; dropping it stops the thread.
#[derive(Debug)]
pub struct Sampler {
    control: std_mpsc::Sender<Control>,
    _thread: JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling every `interval`, the first tick [`WARMUP`] (or
    /// `interval`, if shorter) after a priming sample.
    pub fn spawn(
        mut collector: Collector,
        mut builder: Builder,
        mut interval: Duration,
        custom: Arc<Mutex<Groups>>,
        tx: mpsc::Sender<Tick>,
    ) -> std::io::Result<Self> {
        let (control, orders) = std_mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sampler".into())
            .spawn(move || {
                let mut start = Instant::now();
                collector.sample();
                let mut warmup = WARMUP.min(interval);
                let mut k = 0;
                let mut ping_every: Option<Duration> = None;
                let mut next_ping = Instant::now();
                loop {
                    let due = deadline(start, warmup, interval, k);
                    if let Some(every) = ping_every
                        && Instant::now() >= next_ping
                    {
                        let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                        next_ping = Instant::now() + every;
                    }
                    let wake = if ping_every.is_some() {
                        due.min(next_ping)
                    } else {
                        due
                    };
                    match orders.recv_timeout(wake.saturating_duration_since(Instant::now())) {
                        Err(std_mpsc::RecvTimeoutError::Timeout) if Instant::now() < due => continue,
                        Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                        Ok(Control::Reconfigure {
                            interval: new,
                            agent_key,
                            hostname,
                        }) => {
                            builder.reconfigure(agent_key, hostname);
                            interval = new;
                            (start, warmup, k) = (Instant::now(), Duration::ZERO, 1);
                            continue;
                        }
                        Ok(Control::Watchdog(period)) => {
                            ping_every = Some(period / 2);
                            next_ping = Instant::now();
                            continue;
                        }
                        Ok(Control::Stop) | Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                    let began = Instant::now();
                    let mut sample = collector.sample();
                    sample.custom = custom.lock().unwrap_or_else(|e| e.into_inner()).snapshot(began);
                    let payload = builder.build(&sample);
                    let tick = Tick {
                        sample,
                        payload,
                        cost: began.elapsed(),
                    };
                    match tx.try_send(tick) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(t)) => {
                            tracing::warn!(seq = t.payload.seq, "daemon busy: sample dropped")
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                    k = next_tick(start, warmup, interval, Instant::now()).max(k + 1);
                }
            })?;
        Ok(Sampler {
            control,
            _thread: thread,
        })
    }

    /// Applies a new interval and payload identity.
    pub fn reconfigure(&self, interval: Duration, agent_key: String, hostname: String) {
        let _ = self.control.send(Control::Reconfigure {
            interval,
            agent_key,
            hostname,
        });
    }

    /// Pings the systemd watchdog from this loop at half of `period`, so a
    /// stuck sampler gets the service restarted; from when the daemon said
    /// READY=1.
    pub fn arm_watchdog(&self, period: Duration) {
        let _ = self.control.send(Control::Watchdog(period));
    }

    /// Asks the thread to stop after its current sample.
    pub fn stop(&self) {
        let _ = self.control.send(Control::Stop);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_anchored_to_start() {
        let t0 = Instant::now();
        let (w, i) = (Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(deadline(t0, w, i, 0), t0 + w);
        assert_eq!(deadline(t0, w, i, 3), t0 + w + i * 3);
        // a sample that finished 2 s late still aims at the next planned deadline
        assert_eq!(next_tick(t0, w, i, t0 + w + Duration::from_secs(2)), 1);
        // 2.5 intervals missed (suspend): skip to the next future tick, no burst
        assert_eq!(next_tick(t0, w, i, t0 + w + i * 5 / 2), 3);
        // before the first deadline
        assert_eq!(next_tick(t0, w, i, t0), 1);
    }
}
