//! The evaluator: `(state, rule, series, now) -> notifications`, one state
//! machine per rule and series: ok → pending → firing(warning|critical) → ok.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::rule::{Aggregate, NoData, Rule};
use super::{Alert, Now, Severity, Status, fingerprint, template};
use crate::metrics::Series;
use crate::timefmt::{from_millis, to_millis};

/// A transition worth telling someone about.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub alert: Alert,
    /// The rule's summary, rendered.
    pub summary: String,
    /// Destinations by name; `None`: every alert hook.
    pub webhooks: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Ok,
    Pending {
        since: Instant,
    },
    Firing {
        severity: Severity,
        started_at: std::time::SystemTime,
        last_sent: Instant,
        /// Since when the value has been in the clear zone.
        clearing_since: Option<Instant>,
    },
}

/// One series of one rule.
#[derive(Debug, Clone)]
struct SeriesState {
    labels: Vec<(String, String)>,
    fingerprint: String,
    phase: Phase,
    window: VecDeque<(Instant, f64)>,
    /// The value last judged.
    last: Option<f64>,
}

/// The state of one rule: its series, keyed by label value (`""` when unlabelled).
#[derive(Debug, Clone, Default)]
pub struct RuleState {
    series: HashMap<String, SeriesState>,
    /// Whether the set of firing alerts (or a severity) changed since last asked.
    changed: bool,
}

/// The severity when firing, for change detection.
fn firing_level(p: &Phase) -> Option<Severity> {
    match p {
        Phase::Firing { severity, .. } => Some(*severity),
        _ => None,
    }
}

impl RuleState {
    /// Alerts currently firing, with their latest severity.
    pub fn firing(&self) -> impl Iterator<Item = (&str, Severity)> {
        self.series.iter().filter_map(|(k, s)| match s.phase {
            Phase::Firing { severity, .. } => Some((k.as_str(), severity)),
            _ => None,
        })
    }
}

/// Advances `state` for one sample: `series` are every series of the sample
/// (the rule picks its own). Series the rule knew but the sample lacks are
/// handled by the rule's `no_data`.
pub fn step<'a>(
    rule: &Rule,
    state: &mut RuleState,
    series: impl IntoIterator<Item = &'a Series>,
    now: Now,
    host: &str,
) -> Vec<Notification> {
    let mut out = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for s in series {
        if s.name != rule.metric || !rule.matches(s.label.as_ref()) {
            continue;
        }
        let key = s.label.as_ref().map_or("", |(_, v)| v.as_str());
        seen.push(key);
        let st = match state.series.get_mut(key) {
            Some(st) => st,
            None => {
                let labels: Vec<(String, String)> = s
                    .label
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect();
                let fp = fingerprint(&rule.name, &rule.metric, &labels);
                state.series.entry(key.to_owned()).or_insert(SeriesState {
                    labels,
                    fingerprint: fp,
                    phase: Phase::Ok,
                    window: VecDeque::new(),
                    last: None,
                })
            }
        };
        let value = windowed(rule, st, s.value, now.mono);
        st.last = Some(value);
        let before = firing_level(&st.phase);
        observe(rule, st, value, now, host, &mut out);
        state.changed |= firing_level(&st.phase) != before;
    }
    if seen.len() < state.series.len() {
        let mut gone = Vec::new();
        for (key, st) in state
            .series
            .iter_mut()
            .filter(|(k, _)| !seen.contains(&k.as_str()))
        {
            if no_data(rule, st, now, host, &mut out) {
                gone.push(key.clone());
            }
        }
        for key in gone {
            state.series.remove(&key);
        }
    }
    out
}

/// The value to judge: the sample's, or the window's aggregate.
fn windowed(rule: &Rule, st: &mut SeriesState, value: f64, now: Instant) -> f64 {
    let Some((over, agg)) = rule.over else {
        return value;
    };
    st.window.push_back((now, value));
    while st
        .window
        .front()
        .is_some_and(|(t, _)| now.duration_since(*t) > over)
    {
        st.window.pop_front();
    }
    let values = st.window.iter().map(|(_, v)| *v);
    match agg {
        Aggregate::Avg => values.sum::<f64>() / st.window.len() as f64,
        Aggregate::Min => values.fold(f64::INFINITY, f64::min),
        Aggregate::Max => values.fold(f64::NEG_INFINITY, f64::max),
    }
}

/// The level a firing alert at `cur` moves to for value `v`; `None` in the clear zone.
fn target(rule: &Rule, cur: Severity, v: f64) -> Option<Severity> {
    match rule.enters(v) {
        Some(s) if s >= cur => Some(s),
        _ if rule.holds(v, cur) => Some(cur),
        _ if cur == Severity::Critical && rule.warn.is_some() && rule.holds(v, Severity::Warning) => {
            Some(Severity::Warning)
        }
        _ => None,
    }
}

fn observe(rule: &Rule, st: &mut SeriesState, v: f64, now: Now, host: &str, out: &mut Vec<Notification>) {
    match st.phase.clone() {
        Phase::Ok | Phase::Pending { .. } => {
            let Some(sev) = rule.enters(v) else {
                st.phase = Phase::Ok;
                return;
            };
            let since = match st.phase {
                Phase::Pending { since } => since,
                _ => now.mono,
            };
            if now.mono.duration_since(since) >= rule.for_ {
                fire(rule, st, sev, Some(v), now, host, out);
            } else {
                st.phase = Phase::Pending { since };
            }
        }
        Phase::Firing {
            severity,
            started_at,
            last_sent,
            clearing_since,
        } => match target(rule, severity, v) {
            None => {
                let since = clearing_since.unwrap_or(now.mono);
                if now.mono.duration_since(since) >= rule.clear_for {
                    resolve(rule, st, severity, started_at, Some(v), now, host, out);
                } else {
                    st.phase = Phase::Firing {
                        severity,
                        started_at,
                        last_sent,
                        clearing_since: Some(since),
                    };
                }
            }
            Some(t) => {
                let changed = t != severity;
                let due = rule
                    .repeat
                    .is_some_and(|r| now.mono.duration_since(last_sent) >= r);
                let last_sent = if changed || due {
                    out.push(note(rule, st, Status::Firing, t, Some(v), started_at, None, host));
                    now.mono
                } else {
                    last_sent
                };
                st.phase = Phase::Firing {
                    severity: t,
                    started_at,
                    last_sent,
                    clearing_since: None,
                };
            }
        },
    }
}

/// A series the sample lacks; returns whether to forget it.
fn no_data(rule: &Rule, st: &mut SeriesState, now: Now, host: &str, out: &mut Vec<Notification>) -> bool {
    match (rule.no_data, &st.phase) {
        (NoData::Keep, _) => false,
        (NoData::Alert, Phase::Firing { .. }) => false,
        (NoData::Alert, _) => {
            fire(rule, st, rule.top(), None, now, host, out);
            false
        }
        (
            NoData::Resolve,
            Phase::Firing {
                severity, started_at, ..
            },
        ) => {
            let (severity, started_at) = (*severity, *started_at);
            resolve(rule, st, severity, started_at, None, now, host, out);
            true
        }
        (NoData::Resolve, _) => true,
    }
}

fn fire(
    rule: &Rule,
    st: &mut SeriesState,
    sev: Severity,
    v: Option<f64>,
    now: Now,
    host: &str,
    out: &mut Vec<Notification>,
) {
    st.phase = Phase::Firing {
        severity: sev,
        started_at: now.wall,
        last_sent: now.mono,
        clearing_since: None,
    };
    out.push(note(rule, st, Status::Firing, sev, v, now.wall, None, host));
}

#[allow(clippy::too_many_arguments)]
fn resolve(
    rule: &Rule,
    st: &mut SeriesState,
    sev: Severity,
    started_at: std::time::SystemTime,
    v: Option<f64>,
    now: Now,
    host: &str,
    out: &mut Vec<Notification>,
) {
    st.phase = Phase::Ok;
    if rule.notify_resolved {
        out.push(note(
            rule,
            st,
            Status::Resolved,
            sev,
            v,
            started_at,
            Some(now.wall),
            host,
        ));
    }
}

#[allow(clippy::too_many_arguments)]
fn note(
    rule: &Rule,
    st: &SeriesState,
    status: Status,
    severity: Severity,
    value: Option<f64>,
    started_at: std::time::SystemTime,
    resolved_at: Option<std::time::SystemTime>,
    host: &str,
) -> Notification {
    let alert = Alert {
        rule: rule.name.clone(),
        severity,
        status,
        metric: rule.metric.to_string(),
        labels: st.labels.clone(),
        value,
        threshold: rule.threshold(severity),
        started_at,
        resolved_at,
        fingerprint: st.fingerprint.clone(),
    };
    let summary = template::render(&rule.summary, &alert, host);
    Notification {
        alert,
        summary,
        webhooks: rule.webhooks.clone(),
    }
}

/// One alert series as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertView {
    pub rule: String,
    pub metric: String,
    pub labels: Vec<(String, String)>,
    /// `ok`, `pending` or `firing`.
    pub state: &'static str,
    pub severity: Option<Severity>,
    pub started_at: Option<std::time::SystemTime>,
    pub value: Option<f64>,
    pub fingerprint: String,
}

/// A firing alert as kept across restarts (`state_dir/alerts.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FiringRecord {
    pub rule: String,
    pub metric: String,
    /// The series' label value (`""` when unlabelled).
    pub key: String,
    pub labels: Vec<(String, String)>,
    pub severity: String,
    pub started_at_ms: u64,
}

/// Every rule with its state, evaluated together against each sample.
#[derive(Debug, Clone, Default)]
pub struct Evaluator {
    rules: Vec<(Rule, RuleState)>,
    host: String,
}

impl Evaluator {
    /// An evaluator for `rules`, naming `host` in summaries.
    pub fn new(rules: Vec<Rule>, host: impl Into<String>) -> Self {
        Evaluator {
            rules: rules.into_iter().map(|r| (r, RuleState::default())).collect(),
            host: host.into(),
        }
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Evaluates every rule against one sample's series.
    pub fn evaluate(&mut self, series: &[Series], now: Now) -> Vec<Notification> {
        let mut by_name: HashMap<&str, Vec<&Series>> = HashMap::new();
        for s in series {
            by_name.entry(s.name.as_ref()).or_default().push(s);
        }
        let mut out = Vec::new();
        for (rule, state) in &mut self.rules {
            let mine = by_name.get(rule.metric.as_ref()).map_or(&[][..], Vec::as_slice);
            out.extend(step(rule, state, mine.iter().copied(), now, &self.host));
        }
        out
    }

    /// Number of rules.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Every series of every rule with its state, by rule then series.
    pub fn states(&self) -> Vec<AlertView> {
        let mut out = Vec::new();
        for (rule, state) in &self.rules {
            let mut keys: Vec<&String> = state.series.keys().collect();
            keys.sort();
            for key in keys {
                let st = &state.series[key];
                let (name, severity, started_at) = match st.phase {
                    Phase::Ok => ("ok", None, None),
                    Phase::Pending { .. } => ("pending", None, None),
                    Phase::Firing {
                        severity, started_at, ..
                    } => ("firing", Some(severity), Some(started_at)),
                };
                out.push(AlertView {
                    rule: rule.name.clone(),
                    metric: rule.metric.to_string(),
                    labels: st.labels.clone(),
                    state: name,
                    severity,
                    started_at,
                    value: st.last,
                    fingerprint: st.fingerprint.clone(),
                });
            }
        }
        out
    }

    /// Whether any alert started, stopped or changed severity since the last call.
    pub fn take_changed(&mut self) -> bool {
        self.rules
            .iter_mut()
            .fold(false, |any, (_, s)| std::mem::take(&mut s.changed) | any)
    }

    /// The firing alerts, to keep across a restart.
    pub fn snapshot(&self) -> Vec<FiringRecord> {
        let mut out = Vec::new();
        for (rule, state) in &self.rules {
            for (key, st) in &state.series {
                if let Phase::Firing {
                    severity, started_at, ..
                } = st.phase
                {
                    out.push(FiringRecord {
                        rule: rule.name.clone(),
                        metric: rule.metric.to_string(),
                        key: key.clone(),
                        labels: st.labels.clone(),
                        severity: severity.as_str().to_owned(),
                        started_at_ms: to_millis(started_at),
                    });
                }
            }
        }
        out.sort_by(|a, b| (&a.rule, &a.key).cmp(&(&b.rule, &b.key)));
        out
    }

    /// Marks the recorded alerts firing again (no notification: they were
    /// sent before the restart). Records of rules that no longer exist, or
    /// now watch another metric, are ignored.
    pub fn restore(&mut self, records: &[FiringRecord], now: Now) {
        for r in records {
            let Some(severity) = Severity::parse(&r.severity) else {
                continue;
            };
            let Some((rule, state)) = self.rules.iter_mut().find(|(rule, _)| rule.name == r.rule) else {
                continue;
            };
            if rule.metric != r.metric {
                continue;
            }
            state.series.insert(
                r.key.clone(),
                SeriesState {
                    labels: r.labels.clone(),
                    fingerprint: fingerprint(&rule.name, &rule.metric, &r.labels),
                    phase: Phase::Firing {
                        severity,
                        started_at: from_millis(r.started_at_ms),
                        last_sent: now.mono,
                        clearing_since: None,
                    },
                    window: VecDeque::new(),
                    last: None,
                },
            );
        }
    }

    /// `(rule, series key, severity)` of every firing alert.
    pub fn firing(&self) -> Vec<(&str, &str, Severity)> {
        self.rules
            .iter()
            .flat_map(|(r, s)| s.firing().map(move |(k, sev)| (r.name.as_str(), k, sev)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::RuleSpec;
    use std::time::{Duration, SystemTime};

    /// A clock at `t` seconds after a fixed origin.
    struct Clock(Instant);

    impl Clock {
        fn at(&self, t: u64) -> Now {
            Now {
                mono: self.0 + Duration::from_secs(t),
                wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_600_800 + t),
            }
        }
    }

    fn rule(f: impl FnOnce(&mut RuleSpec)) -> Rule {
        let mut s = RuleSpec {
            name: "disk".into(),
            metric: "disk.used_pct".into(),
            crit: Some(90.0),
            ..RuleSpec::default()
        };
        f(&mut s);
        assert!(s.validate().is_empty(), "{:?}", s.validate());
        Rule::compile(&s).unwrap()
    }

    fn disk(mount: &str, v: f64) -> Series {
        Series {
            name: "disk.used_pct".into(),
            label: Some(("mount", mount.into())),
            value: v,
        }
    }

    /// Feeds `(t, value)` for mount `/`; returns `(t, status, severity)` of each notification.
    fn run(r: &Rule, points: &[(u64, Option<f64>)]) -> Vec<(u64, &'static str, &'static str)> {
        let clock = Clock(Instant::now());
        let mut st = RuleState::default();
        let mut got = Vec::new();
        for &(t, v) in points {
            let series: Vec<Series> = v.map(|v| disk("/", v)).into_iter().collect();
            for n in step(r, &mut st, &series, clock.at(t), "h") {
                got.push((t, n.alert.status.as_str(), n.alert.severity.as_str()));
            }
        }
        got
    }

    fn every(step_s: u64, values: &[f64]) -> Vec<(u64, Option<f64>)> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as u64 * step_s, Some(*v)))
            .collect()
    }

    #[test]
    fn fires_at_once_and_resolves() {
        let r = rule(|_| {});
        assert_eq!(
            run(&r, &every(10, &[50.0, 95.0, 96.0, 50.0, 40.0])),
            [(10, "firing", "critical"), (30, "resolved", "critical")]
        );
    }

    #[test]
    fn for_needs_the_condition_to_hold() {
        let r = rule(|s| s.for_ = Some(Duration::from_secs(25)));
        // a blip shorter than `for` never fires
        assert!(run(&r, &every(10, &[95.0, 95.0, 50.0, 95.0, 95.0])).is_empty());
        assert_eq!(
            run(&r, &every(10, &[95.0, 95.0, 95.0, 95.0])),
            [(30, "firing", "critical")]
        );
    }

    #[test]
    fn hysteresis_notifies_once() {
        let r = rule(|s| s.clear = Some(80.0));
        let flapping = every(10, &[91.0, 89.0, 91.0, 89.0, 91.0, 89.0, 85.0, 81.0]);
        assert_eq!(run(&r, &flapping), [(0, "firing", "critical")]);
        assert_eq!(
            run(&r, &every(10, &[91.0, 89.0, 80.0])),
            [(0, "firing", "critical"), (20, "resolved", "critical")]
        );
        // without clear the same oscillation flaps
        assert_eq!(run(&rule(|_| {}), &every(10, &[91.0, 89.0, 91.0])).len(), 3);
    }

    #[test]
    fn clear_for_delays_the_resolve() {
        let r = rule(|s| s.clear_for = Some(Duration::from_secs(20)));
        let got = run(&r, &every(10, &[95.0, 50.0, 50.0, 95.0, 50.0, 50.0, 50.0]));
        assert_eq!(got, [(0, "firing", "critical"), (60, "resolved", "critical")]);
    }

    #[test]
    fn repeat_while_firing() {
        let r = rule(|s| s.repeat = Some(Duration::from_secs(60)));
        let got = run(&r, &every(10, &[95.0; 14]));
        let times: Vec<u64> = got.iter().map(|g| g.0).collect();
        assert_eq!(times, [0, 60, 120]);
    }

    #[test]
    fn escalation_and_de_escalation() {
        let r = rule(|s| s.warn = Some(80.0));
        let got = run(&r, &every(10, &[85.0, 95.0, 96.0, 85.0, 70.0]));
        assert_eq!(
            got,
            [
                (0, "firing", "warning"),
                (10, "firing", "critical"),
                (30, "firing", "warning"),
                (40, "resolved", "warning")
            ]
        );
    }

    #[test]
    fn below_condition() {
        let r = rule(|s| {
            s.metric = "mem.available_bytes".into();
            s.condition = crate::alert::rule::Condition::Below;
            s.crit = Some(100.0);
        });
        let clock = Clock(Instant::now());
        let mut st = RuleState::default();
        let low = Series {
            name: "mem.available_bytes".into(),
            label: None,
            value: 50.0,
        };
        let n = step(&r, &mut st, [&low], clock.at(0), "h");
        assert_eq!(n.len(), 1);
        assert!(n[0].alert.labels.is_empty());
    }

    #[test]
    fn no_data_policies() {
        let gap = [(0, Some(95.0)), (10, None), (20, None), (30, Some(50.0))];
        assert_eq!(
            run(&rule(|_| {}), &gap),
            [(0, "firing", "critical"), (30, "resolved", "critical")]
        );
        assert_eq!(
            run(&rule(|s| s.no_data = NoData::Resolve), &gap),
            [(0, "firing", "critical"), (10, "resolved", "critical")]
        );
        let quiet = [(0, Some(50.0)), (10, None), (20, None), (30, Some(50.0))];
        assert_eq!(
            run(&rule(|s| s.no_data = NoData::Alert), &quiet),
            [(10, "firing", "critical"), (30, "resolved", "critical")]
        );
        assert!(run(&rule(|_| {}), &quiet).is_empty());
    }

    #[test]
    fn window_aggregation() {
        let avg = rule(|s| s.over = Some(Duration::from_secs(30)));
        // one spike in a 30 s window averages below 90
        assert!(run(&avg, &every(10, &[50.0, 50.0, 100.0, 50.0, 50.0])).is_empty());
        assert_eq!(
            run(&avg, &every(10, &[100.0, 100.0, 100.0, 80.0])),
            [(0, "firing", "critical")]
        );
        let max = rule(|s| {
            s.over = Some(Duration::from_secs(30));
            s.aggregate = Some(Aggregate::Max);
        });
        // the spike keeps the max above 90 until it leaves the window
        assert_eq!(
            run(&max, &every(10, &[100.0, 50.0, 50.0, 50.0, 50.0])),
            [(0, "firing", "critical"), (40, "resolved", "critical")]
        );
        let min = rule(|s| {
            s.over = Some(Duration::from_secs(20));
            s.aggregate = Some(Aggregate::Min);
        });
        assert_eq!(
            run(&min, &every(10, &[50.0, 95.0, 95.0, 95.0, 95.0])),
            [(30, "firing", "critical")]
        );
    }

    #[test]
    fn notify_resolved_false() {
        let r = rule(|s| s.notify_resolved = Some(false));
        assert_eq!(run(&r, &every(10, &[95.0, 50.0])), [(0, "firing", "critical")]);
    }

    #[test]
    fn series_are_independent_with_stable_fingerprints() {
        let r = rule(|_| {});
        let clock = Clock(Instant::now());
        let mut st = RuleState::default();
        let n = step(
            &r,
            &mut st,
            &[disk("/", 95.0), disk("/boot", 10.0)],
            clock.at(0),
            "h",
        );
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].alert.labels, [("mount".to_owned(), "/".to_owned())]);
        let fp = n[0].alert.fingerprint.clone();
        let n = step(
            &r,
            &mut st,
            &[disk("/", 50.0), disk("/boot", 95.0)],
            clock.at(10),
            "h",
        );
        assert_eq!(n.len(), 2);
        let resolved = n.iter().find(|x| x.alert.status == Status::Resolved).unwrap();
        let fired = n.iter().find(|x| x.alert.status == Status::Firing).unwrap();
        assert_eq!(resolved.alert.fingerprint, fp, "same series, same fingerprint");
        assert_ne!(fired.alert.fingerprint, fp);
        assert_eq!(fired.alert.labels[0].1, "/boot");
    }

    #[test]
    fn firing_alerts_survive_a_restart() {
        let clock = Clock(Instant::now());
        let mut before = Evaluator::new(vec![rule(|_| {})], "h");
        let fired = before.evaluate(&[disk("/", 95.0)], clock.at(0));
        let records = before.snapshot();
        assert_eq!(records.len(), 1);
        assert!(before.take_changed());
        assert!(!before.take_changed());
        let json = serde_json::to_string(&records).unwrap();

        // the restarted agent does not fire again, and resolves with the same identity
        let mut after = Evaluator::new(vec![rule(|_| {})], "h");
        after.restore(
            &serde_json::from_str::<Vec<FiringRecord>>(&json).unwrap(),
            clock.at(100),
        );
        assert!(after.evaluate(&[disk("/", 95.0)], clock.at(110)).is_empty());
        let resolved = after.evaluate(&[disk("/", 10.0)], clock.at(120));
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].alert.status, Status::Resolved);
        assert_eq!(resolved[0].alert.fingerprint, fired[0].alert.fingerprint);
        assert_eq!(resolved[0].alert.started_at, fired[0].alert.started_at);

        // a rule that was removed or re-pointed forgets its records
        let mut other = Evaluator::new(vec![rule(|s| s.metric = "disk.inodes_used_pct".into())], "h");
        other.restore(&records, clock.at(100));
        assert!(other.snapshot().is_empty());
    }

    #[test]
    fn matchers_pick_series() {
        let r = rule(|s| {
            s.labels.insert("mount".into(), "/b*".into());
        });
        let clock = Clock(Instant::now());
        let mut ev = Evaluator::new(vec![r], "h");
        let n = ev.evaluate(&[disk("/", 99.0), disk("/boot", 99.0)], clock.at(0));
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].alert.labels[0].1, "/boot");
        assert_eq!(
            n[0].summary,
            "disk on h: disk.used_pct{mount=/boot} is 99 (threshold 90)"
        );
        assert_eq!(ev.firing(), [("disk", "/boot", Severity::Critical)]);
        let states = ev.states();
        assert_eq!(states.len(), 1, "only matching series are tracked");
        assert_eq!((states[0].state, states[0].value), ("firing", Some(99.0)));
    }
}
