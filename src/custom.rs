//! Custom metrics: what exec plugins print and what is pushed to
//! `POST /metrics/{group}`, merged into the payload as `plugins.GROUP` and
//! into the metric catalogue as `plugin.GROUP.METRIC` (numbers only).
//!
//! Parsing is pure (bytes in, metrics or every problem out); [`Groups`]
//! holds the latest values of every group with their expiry.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// Longest group or metric name.
pub const MAX_NAME: usize = 128;

/// Most metrics one group may hold.
pub const MAX_METRICS: usize = 1000;

/// One custom value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Text(String),
}

/// The metrics of one group, by name.
pub type Metrics = BTreeMap<String, Value>;

/// Whether `name` may name a group or a metric: 1 to [`MAX_NAME`] ASCII
/// letters, digits, `_`, `-` or `.` (groups: no `.`), not starting with `.`.
pub fn valid_name(name: &str, dots: bool) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && !name.ends_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (dots && b == b'.'))
}

/// Parses a plugin's output: a JSON object `{metric: number | string}`, or
/// lines `metric value` (blank lines and `#` comments skipped; a value that
/// is not a number is kept as text). Returns every problem on failure.
pub fn parse_output(out: &[u8]) -> Result<Metrics, Vec<String>> {
    let text = std::str::from_utf8(out).map_err(|_| vec!["output is not UTF-8".to_owned()])?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(trimmed).map_err(|e| vec![format!("output is not a JSON object: {e}")])?;
        return from_json(object);
    }
    from_lines(text)
}

/// Metrics from a JSON object (a pushed body, or a plugin's output).
pub fn from_json(object: serde_json::Map<String, serde_json::Value>) -> Result<Metrics, Vec<String>> {
    let mut metrics = Metrics::new();
    let mut problems = Vec::new();
    for (name, v) in object {
        let value = match v {
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(f) if f.is_finite() => Ok(Value::Number(f)),
                _ => Err(format!("{name:?}: {n} is out of range")),
            },
            serde_json::Value::String(s) => Ok(Value::Text(s)),
            other => Err(format!(
                "{name:?}: must be a number or a string, not {}",
                json_kind(&other)
            )),
        };
        match value {
            Ok(value) => insert(&mut metrics, &mut problems, name, value),
            Err(problem) => {
                problems.extend(name_problem(&name));
                problems.push(problem);
            }
        }
    }
    finish(metrics, problems)
}

fn from_lines(text: &str) -> Result<Metrics, Vec<String>> {
    let mut metrics = Metrics::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once(char::is_whitespace) else {
            problems.push(format!("line {}: {line:?} is not \"metric value\"", i + 1));
            continue;
        };
        let value = value.trim();
        let value = match value.parse::<f64>() {
            Ok(f) if f.is_finite() => Value::Number(f),
            _ => Value::Text(value.to_owned()),
        };
        insert(&mut metrics, &mut problems, name.to_owned(), value);
    }
    finish(metrics, problems)
}

fn insert(metrics: &mut Metrics, problems: &mut Vec<String>, name: String, value: Value) {
    if let Some(problem) = name_problem(&name) {
        problems.push(problem);
    } else if metrics.insert(name.clone(), value).is_some() {
        problems.push(format!("{name:?} appears twice"));
    }
}

fn name_problem(name: &str) -> Option<String> {
    (!valid_name(name, true))
        .then(|| format!("{name:?} is not a metric name (1 to {MAX_NAME} letters, digits, '_', '-', '.')"))
}

fn finish(metrics: Metrics, mut problems: Vec<String>) -> Result<Metrics, Vec<String>> {
    if metrics.len() > MAX_METRICS {
        problems.push(format!("{} metrics, at most {MAX_METRICS}", metrics.len()));
    }
    if metrics.is_empty() && problems.is_empty() {
        problems.push("no metrics".into());
    }
    match problems.is_empty() {
        true => Ok(metrics),
        false => Err(problems),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
    }
}

/// One group as a sample carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: String,
    pub metrics: Arc<Metrics>,
}

/// The latest metrics of every group, each until it expires.
#[derive(Debug, Default)]
pub struct Groups {
    groups: BTreeMap<String, (Arc<Metrics>, Option<Instant>)>,
    /// Names of the configured plugins: not open to pushes.
    plugins: Vec<String>,
}

impl Groups {
    /// The configured plugins change: their names are reserved, and the
    /// groups of plugins no longer configured go.
    pub fn set_plugins(&mut self, names: Vec<String>) {
        for old in std::mem::replace(&mut self.plugins, names) {
            self.groups.remove(&old);
        }
    }

    /// Whether `group` belongs to a configured plugin.
    pub fn is_plugin(&self, group: &str) -> bool {
        self.plugins.iter().any(|p| p == group)
    }

    /// Replaces a group's metrics; `expires`: when they stop counting.
    pub fn set(&mut self, group: &str, metrics: Metrics, expires: Option<Instant>) {
        self.groups.insert(group.to_owned(), (Arc::new(metrics), expires));
    }

    /// Drops a group (its plugin failed, or was removed).
    pub fn remove(&mut self, group: &str) {
        self.groups.remove(group);
    }

    /// The groups not expired at `now`, by name; forgets the expired ones.
    pub fn snapshot(&mut self, now: Instant) -> Vec<Group> {
        self.groups.retain(|_, (_, exp)| exp.is_none_or(|e| e > now));
        self.groups
            .iter()
            .map(|(name, (metrics, _))| Group {
                name: name.clone(),
                metrics: metrics.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn num(m: &Metrics, k: &str) -> f64 {
        match m.get(k) {
            Some(Value::Number(f)) => *f,
            other => panic!("{k}: {other:?}"),
        }
    }

    #[test]
    fn json_objects_hold_numbers_and_strings() {
        let m = parse_output(br#"  {"queue.depth": 12, "ratio": 0.5, "state": "ok"}"#).unwrap();
        assert_eq!(num(&m, "queue.depth"), 12.0);
        assert_eq!(num(&m, "ratio"), 0.5);
        assert_eq!(m["state"], Value::Text("ok".into()));
    }

    #[test]
    fn lines_hold_metric_and_value() {
        let m = parse_output(b"# comment\nconnections 42\n\nlatency_ms  3.5\nmode primary\n").unwrap();
        assert_eq!(num(&m, "connections"), 42.0);
        assert_eq!(num(&m, "latency_ms"), 3.5);
        assert_eq!(m["mode"], Value::Text("primary".into()));
    }

    #[test]
    fn every_problem_is_listed() {
        let e = from_json(
            serde_json::from_str(r#"{"a": [1], "b c": 1, "d": null, "ok": 1, "e": {"x": 1}, "f g": true}"#)
                .unwrap(),
        )
        .unwrap_err();
        assert_eq!(e.len(), 6, "{e:?}");
        assert!(e.iter().any(|p| p.contains("\"f g\" is not a metric name")));
        assert!(
            e.iter()
                .any(|p| p.contains("\"f g\": must be a number or a string, not a boolean"))
        );
        assert!(
            e.iter()
                .any(|p| p.contains("\"a\": must be a number or a string, not an array"))
        );
        assert!(e.iter().any(|p| p.contains("\"b c\" is not a metric name")));
        let e = parse_output(b"lonely\nx 1\nx 2\n").unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains("line 1"), "{e:?}");
        assert!(e[1].contains("\"x\" appears twice"), "{e:?}");
    }

    #[test]
    fn garbage_is_refused() {
        assert!(parse_output(b"{not json").is_err());
        assert!(parse_output(b"\xff\xfe").is_err());
        assert!(parse_output(b"").unwrap_err()[0].contains("no metrics"));
        assert!(parse_output(b"[1, 2]").is_err());
        assert!(parse_output(b"x inf\n").is_ok_and(|m| m["x"] == Value::Text("inf".into())));
    }

    #[test]
    fn names() {
        assert!(valid_name("db-1_main", false));
        assert!(!valid_name("db.main", false));
        assert!(valid_name("queue.depth", true));
        assert!(!valid_name(".x", true));
        assert!(!valid_name("x.", true));
        assert!(!valid_name("", true));
        assert!(!valid_name("a b", true));
        assert!(!valid_name(&"x".repeat(MAX_NAME + 1), true));
    }

    #[test]
    fn groups_expire() {
        let now = Instant::now();
        let mut g = Groups::default();
        g.set(
            "pushed",
            parse_output(b"x 1").unwrap(),
            Some(now + Duration::from_secs(5)),
        );
        g.set("plugin", parse_output(b"y 2").unwrap(), None);
        assert_eq!(g.snapshot(now).len(), 2);
        let later = g.snapshot(now + Duration::from_secs(5));
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].name, "plugin");
        g.remove("plugin");
        assert!(g.snapshot(now).is_empty());
    }
}
