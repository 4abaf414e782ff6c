//! What a postback response means and when the next attempt may go:
//! pure functions of status, headers and counts.

use std::time::{Duration, SystemTime};

use crate::retry::parse_retry_after;

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
}
