//! What a postback response means and when the next attempt may go:
//! pure functions of status, headers and counts.

use std::time::{Duration, SystemTime};

/// The meaning of one attempt's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: done.
    Delivered,
    /// 400 or 413: the receiver will never take this payload; drop it.
    Rejected,
    /// 401 or 403: credentials are wrong; keep the payload and retry.
    Unauthorized,
    /// 429: retry no sooner than `Retry-After` (back-off when absent).
    Throttled(Option<Duration>),
    /// Anything else (5xx, 3xx, other 4xx, network errors): retry with back-off.
    Failed,
}

/// Classifies an HTTP status; `retry_after` is the raw header, `now` the wall clock.
pub fn classify(status: u16, retry_after: Option<&str>, now: SystemTime) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        400 | 413 => Verdict::Rejected,
        401 | 403 => Verdict::Unauthorized,
        429 => Verdict::Throttled(retry_after.and_then(|v| parse_retry_after(v, now))),
        _ => Verdict::Failed,
    }
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
pub fn backoff(errors: u32, step: Duration, max: Duration) -> Duration {
    step.saturating_mul(errors).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let cases = [
            (200, None, Verdict::Delivered),
            (204, None, Verdict::Delivered),
            (400, None, Verdict::Rejected),
            (413, None, Verdict::Rejected),
            (401, None, Verdict::Unauthorized),
            (403, None, Verdict::Unauthorized),
            (429, Some("2"), Verdict::Throttled(Some(Duration::from_secs(2)))),
            (429, Some("soon"), Verdict::Throttled(None)),
            (429, None, Verdict::Throttled(None)),
            (500, None, Verdict::Failed),
            (503, Some("5"), Verdict::Failed),
            (301, None, Verdict::Failed),
            (404, None, Verdict::Failed),
        ];
        for (status, ra, want) in cases {
            assert_eq!(classify(status, ra, now), want, "{status}");
        }
    }

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
    fn backoff_grows_then_caps() {
        let (step, max) = (Duration::from_secs(20), Duration::from_secs(90));
        let got: Vec<u64> = (0..7).map(|n| backoff(n, step, max).as_secs()).collect();
        assert_eq!(got, [0, 20, 40, 60, 80, 90, 90]);
        assert_eq!(backoff(u32::MAX, step, max), max);
    }
}
