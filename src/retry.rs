//! Retry timing and rate limiting shared by the postback, the webhook
//! deliveries and the management API.

use std::time::{Duration, SystemTime};

use governor::clock::{Clock, MonotonicClock};
use governor::{Quota, RateLimiter};

/// A direct (un-keyed) `governor` limiter on the std monotonic clock, so no
/// calibration or timer thread is started, and wall-clock jumps do not matter.
pub type Limiter = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    MonotonicClock,
    governor::middleware::NoOpMiddleware<std::time::Instant>,
>;

/// A limiter for `quota`.
pub fn limiter(quota: Quota) -> Limiter {
    RateLimiter::direct_with_clock(quota, MonotonicClock)
}

/// `Ok` when the limiter has a cell now, else how long until it will.
pub fn check(limiter: &Limiter) -> Result<(), Duration> {
    limiter
        .check()
        .map_err(|not_until| not_until.wait_time_from(MonotonicClock.now()))
}

/// `Retry-After` as delta-seconds or an HTTP date (RFC 9110 §10.2.3).
/// A date in the past means "now"; unparseable values are ignored.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Wait after `errors` consecutive failures: `min(errors × step, max)`
/// (the Server Density v2 forwarder's rule with configurable step and cap).
pub fn linear(errors: u32, step: Duration, max: Duration) -> Duration {
    step.saturating_mul(errors).min(max)
}

/// Exponential back-off with full jitter: `random(0, min(cap, base × 2^attempt))`,
/// `unit` being a uniform random number in `[0, 1)`.
pub fn full_jitter(attempt: u32, base: Duration, cap: Duration, unit: f64) -> Duration {
    let ceiling = base
        .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
        .min(cap);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_http_date() {
        let now = httpdate::parse_http_date("Wed, 25 Nov 2026 10:00:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after("Wed, 25 Nov 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 25 Nov 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn linear_grows_then_caps() {
        let (step, max) = (Duration::from_secs(20), Duration::from_secs(90));
        let got: Vec<u64> = (0..7).map(|n| linear(n, step, max).as_secs()).collect();
        assert_eq!(got, [0, 20, 40, 60, 80, 90, 90]);
        assert_eq!(linear(u32::MAX, step, max), max);
    }

    #[test]
    fn full_jitter_stays_under_the_ceiling() {
        let (base, cap) = (Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(full_jitter(3, base, cap, 0.0), Duration::ZERO);
        assert_eq!(full_jitter(3, base, cap, 0.5), Duration::from_secs(4));
        assert_eq!(full_jitter(10, base, cap, 0.5), Duration::from_secs(30));
        assert_eq!(full_jitter(u32::MAX, base, cap, 1.0), cap);
    }
}
