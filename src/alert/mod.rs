//! Local alerting: rules (`[[alert]]`), the pure evaluator state machine and
//! summary templates. No I/O, no clock of its own: time comes in as [`Now`].

pub mod eval;
pub mod rule;
pub mod template;

use std::time::{Instant, SystemTime};

pub use eval::{AlertView, Evaluator, FiringRecord, Notification};
pub use rule::{Rule, RuleSpec};

/// The two alert levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    /// `warning` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// The inverse of [`Severity::as_str`].
    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// Whether a notification opens or closes an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Firing,
    Resolved,
}

impl Status {
    /// `firing` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// The moment of an evaluation: monotonic time for periods, wall time for
/// the timestamps notifications carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub mono: Instant,
    pub wall: SystemTime,
}

impl Now {
    /// The real clocks.
    pub fn real() -> Self {
        Now {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// One alert as notifications describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub rule: String,
    pub severity: Severity,
    pub status: Status,
    pub metric: String,
    /// The series' label, e.g. `("mount", "/")`.
    pub labels: Vec<(String, String)>,
    /// `None` when the series stopped reporting (`no_data = "alert"`).
    pub value: Option<f64>,
    pub threshold: f64,
    pub started_at: SystemTime,
    pub resolved_at: Option<SystemTime>,
    /// Stable per rule and series: the dedup key.
    pub fingerprint: String,
}

impl Alert {
    /// `metric{label=value}`.
    pub fn series(&self) -> String {
        Self::series_name(&self.metric, &self.labels)
    }

    /// `metric{label=value}` for any metric and labels.
    pub fn series_name(metric: &str, labels: &[(String, String)]) -> String {
        let mut s = metric.to_owned();
        if !labels.is_empty() {
            let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push('{');
            s.push_str(&l.join(","));
            s.push('}');
        }
        s
    }
}

/// Stable identity of a rule's series: hex MD5 of rule name, metric and labels.
pub fn fingerprint(rule: &str, metric: &str, labels: &[(String, String)]) -> String {
    let mut key = format!("{rule}\0{metric}");
    for (k, v) in labels {
        key.push('\0');
        key.push_str(k);
        key.push('=');
        key.push_str(v);
    }
    crate::payload::md5_hex(key.as_bytes())
}
