//! Alert rules: the `[[alert]]` schema, its validation and the compiled form.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::Severity;
use super::template;
use crate::metrics;

/// Which side of the thresholds is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    #[default]
    Above,
    Below,
}

/// How a window of recent values becomes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    #[default]
    Avg,
    Min,
    Max,
}

/// What happens to an alert whose series stops reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoData {
    /// Leave the state as it is.
    #[default]
    Keep,
    /// Fire (at the highest configured level) if not firing already.
    Alert,
    /// Resolve a firing alert and forget the series.
    Resolve,
}

/// One `[[alert]]` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    /// A catalogue name (`hostbeat metrics`).
    pub metric: String,
    /// Label matchers with `*` and `?` globs, e.g. `{ mount = "/" }`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub condition: Condition,
    pub warn: Option<f64>,
    pub crit: Option<f64>,
    /// Leave the alert only beyond this level (hysteresis).
    pub clear: Option<f64>,
    /// The condition must hold this long before the alert fires.
    #[serde(
        default,
        rename = "for",
        deserialize_with = "crate::config::duration::deserialize_opt"
    )]
    pub for_: Option<Duration>,
    /// The clear condition must hold this long before the alert resolves.
    #[serde(default, deserialize_with = "crate::config::duration::deserialize_opt")]
    pub clear_for: Option<Duration>,
    /// Evaluate an aggregate of the values over this window.
    #[serde(default, deserialize_with = "crate::config::duration::deserialize_opt")]
    pub over: Option<Duration>,
    pub aggregate: Option<Aggregate>,
    /// Notify again at this interval while firing.
    #[serde(default, deserialize_with = "crate::config::duration::deserialize_opt")]
    pub repeat: Option<Duration>,
    pub notify_resolved: Option<bool>,
    #[serde(default)]
    pub no_data: NoData,
    pub summary: Option<String>,
    /// Destinations by name; default: every alert hook.
    pub webhooks: Option<Vec<String>>,
}

/// The summary used when a rule has none.
pub const DEFAULT_SUMMARY: &str = "{{rule}} on {{host}}: {{series}} is {{value}} (threshold {{threshold}})";

impl RuleSpec {
    /// Every problem with this rule alone, as (field, message).
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        if self.name.trim().is_empty() {
            v.push(("name", "is required".into()));
        }
        match metrics::lookup(&self.metric) {
            None if metrics::custom_parts(&self.metric).is_some() => {
                if let Some(key) = self.labels.keys().next() {
                    v.push(("labels", format!("custom metrics have no labels, not {key:?}")));
                }
            }
            None => v.push((
                "metric",
                format!(
                    "unknown metric {:?} (see `hostbeat metrics`; custom metrics are plugin.GROUP.METRIC)",
                    self.metric
                ),
            )),
            Some(def) => {
                for key in self.labels.keys() {
                    if def.label != Some(key.as_str()) {
                        let has = def
                            .label
                            .map_or("no labels".to_owned(), |l| format!("only the label {l:?}"));
                        v.push(("labels", format!("{} has {has}, not {key:?}", self.metric)));
                    }
                }
            }
        }
        let levels: Vec<f64> = [self.warn, self.crit].into_iter().flatten().collect();
        if levels.is_empty() {
            v.push(("warn", "set warn, crit or both".into()));
        }
        if [self.warn, self.crit, self.clear]
            .iter()
            .flatten()
            .any(|x| !x.is_finite())
        {
            v.push(("crit", "levels must be finite numbers".into()));
        }
        let above = self.condition == Condition::Above;
        if let (Some(w), Some(c)) = (self.warn, self.crit)
            && ((above && w >= c) || (!above && w <= c))
        {
            let want = if above { "below" } else { "above" };
            v.push((
                "warn",
                format!("must be {want} crit for condition {:?}", self.condition),
            ));
        }
        if let (Some(clear), Some(first)) = (self.clear, self.first_level()) {
            if above && clear > first {
                v.push((
                    "clear",
                    format!("must not be above the lowest level ({first}) for condition above"),
                ));
            }
            if !above && clear < first {
                v.push((
                    "clear",
                    format!("must not be below the highest level ({first}) for condition below"),
                ));
            }
        }
        if self.aggregate.is_some() && self.over.is_none() {
            v.push(("aggregate", "needs over (the window to aggregate)".into()));
        }
        if self.over.is_some_and(|d| d.is_zero()) {
            v.push(("over", "must be more than 0".into()));
        }
        if self.repeat.is_some_and(|d| d.is_zero()) {
            v.push(("repeat", "must be more than 0".into()));
        }
        if let Some(s) = &self.summary
            && let Err(e) = template::check(s)
        {
            v.push(("summary", e));
        }
        if let Some(w) = &self.webhooks
            && w.iter().any(|n| n.trim().is_empty())
        {
            v.push(("webhooks", "names must not be empty".into()));
        }
        v
    }

    /// The level an alert enters first: warn if set, else crit.
    fn first_level(&self) -> Option<f64> {
        self.warn.or(self.crit)
    }
}

/// A validated, compiled rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub metric: Cow<'static, str>,
    /// `(label, glob)`.
    pub matchers: Vec<(String, String)>,
    pub condition: Condition,
    pub warn: Option<f64>,
    pub crit: Option<f64>,
    /// Distance from a level back to where it is left (from `clear`).
    pub gap: f64,
    pub for_: Duration,
    pub clear_for: Duration,
    pub over: Option<(Duration, Aggregate)>,
    pub repeat: Option<Duration>,
    pub notify_resolved: bool,
    pub no_data: NoData,
    pub summary: String,
    pub webhooks: Option<Vec<String>>,
}

impl Rule {
    /// Compiles a spec; `None` if it does not validate.
    pub fn compile(spec: &RuleSpec) -> Option<Rule> {
        if !spec.validate().is_empty() {
            return None;
        }
        let metric = match metrics::lookup(&spec.metric) {
            Some(def) => Cow::Borrowed(def.name),
            None => Cow::Owned(spec.metric.clone()),
        };
        Some(Rule {
            name: spec.name.clone(),
            metric,
            matchers: spec.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            condition: spec.condition,
            warn: spec.warn,
            crit: spec.crit,
            gap: match (spec.clear, spec.first_level()) {
                (Some(c), Some(f)) => (f - c).abs(),
                _ => 0.0,
            },
            for_: spec.for_.unwrap_or_default(),
            clear_for: spec.clear_for.unwrap_or_default(),
            over: spec.over.map(|d| (d, spec.aggregate.unwrap_or_default())),
            repeat: spec.repeat,
            notify_resolved: spec.notify_resolved.unwrap_or(true),
            no_data: spec.no_data,
            summary: spec.summary.clone().unwrap_or_else(|| DEFAULT_SUMMARY.to_owned()),
            webhooks: spec.webhooks.clone(),
        })
    }

    /// The threshold of a level.
    pub fn threshold(&self, s: Severity) -> f64 {
        let t = match s {
            Severity::Warning => self.warn.or(self.crit),
            Severity::Critical => self.crit.or(self.warn),
        };
        t.unwrap_or(0.0)
    }

    /// The highest configured level.
    pub fn top(&self) -> Severity {
        if self.crit.is_some() {
            Severity::Critical
        } else {
            Severity::Warning
        }
    }

    fn beyond(&self, v: f64, level: f64) -> bool {
        match self.condition {
            Condition::Above => v > level,
            Condition::Below => v < level,
        }
    }

    /// The level a value enters from below it.
    pub fn enters(&self, v: f64) -> Option<Severity> {
        if self.crit.is_some_and(|c| self.beyond(v, c)) {
            Some(Severity::Critical)
        } else if self.warn.is_some_and(|w| self.beyond(v, w)) {
            Some(Severity::Warning)
        } else {
            None
        }
    }

    /// Whether a value keeps an alert at level `s` (hysteresis: `gap` past the threshold).
    pub fn holds(&self, v: f64, s: Severity) -> bool {
        let t = self.threshold(s);
        let back = match self.condition {
            Condition::Above => t - self.gap,
            Condition::Below => t + self.gap,
        };
        self.beyond(v, back)
    }

    /// Whether a series label value passes this rule's matchers.
    pub fn matches(&self, label: Option<&(&'static str, String)>) -> bool {
        self.matchers.iter().all(|(k, pattern)| match label {
            Some((lk, lv)) if lk == k => glob(pattern, lv),
            _ => false,
        })
    }
}

/// `*` (any run) and `?` (any one character) matching.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RuleSpec {
        RuleSpec {
            name: "disk".into(),
            metric: "disk.used_pct".into(),
            crit: Some(90.0),
            ..RuleSpec::default()
        }
    }

    #[test]
    fn globs() {
        for (p, t, want) in [
            ("eth*", "eth0", true),
            ("eth*", "wlan0", false),
            ("*", "", true),
            ("/", "/", true),
            ("/", "/boot", false),
            ("sd?", "sda", true),
            ("sd?", "sda1", false),
            ("*a*b", "xaxxb", true),
        ] {
            assert_eq!(glob(p, t), want, "{p} {t}");
        }
    }

    #[test]
    fn validation_lists_every_problem() {
        let bad = RuleSpec {
            name: "".into(),
            metric: "disk.used".into(),
            ..RuleSpec::default()
        };
        let fields: Vec<_> = bad.validate().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["name", "metric", "warn"]);

        let mut s = spec();
        s.labels.insert("iface".into(), "eth*".into());
        s.warn = Some(95.0);
        s.clear = Some(99.0);
        s.aggregate = Some(Aggregate::Max);
        s.summary = Some("{{nope}}".into());
        let fields: Vec<_> = s.validate().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["labels", "warn", "clear", "aggregate", "summary"]);
        assert!(spec().validate().is_empty());
    }

    #[test]
    fn levels_and_hysteresis() {
        let mut s = spec();
        s.clear = Some(80.0);
        let r = Rule::compile(&s).unwrap();
        assert_eq!(r.enters(91.0), Some(Severity::Critical));
        assert_eq!(r.enters(89.0), None);
        assert!(r.holds(89.0, Severity::Critical));
        assert!(!r.holds(80.0, Severity::Critical));

        let below = RuleSpec {
            name: "mem".into(),
            metric: "mem.available_bytes".into(),
            condition: Condition::Below,
            warn: Some(200.0),
            crit: Some(100.0),
            clear: Some(250.0),
            ..RuleSpec::default()
        };
        assert!(below.validate().is_empty(), "{:?}", below.validate());
        let r = Rule::compile(&below).unwrap();
        assert_eq!(r.enters(50.0), Some(Severity::Critical));
        assert_eq!(r.enters(150.0), Some(Severity::Warning));
        assert!(r.holds(240.0, Severity::Warning));
        assert!(!r.holds(250.0, Severity::Warning));
        assert!(r.holds(140.0, Severity::Critical), "gap 50 past crit");
    }

    #[test]
    fn matchers() {
        let mut s = spec();
        s.labels.insert("mount".into(), "/".into());
        let r = Rule::compile(&s).unwrap();
        assert!(r.matches(Some(&("mount", "/".into()))));
        assert!(!r.matches(Some(&("mount", "/boot".into()))));
        assert!(
            Rule::compile(&spec())
                .unwrap()
                .matches(Some(&("mount", "/boot".into())))
        );
    }
}
