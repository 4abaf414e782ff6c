//! `GET /metrics` in the Prometheus text exposition format (0.0.4), served
//! from the last sample (a scrape never collects): every catalogue metric
//! with its label, custom metrics, the alert states and hostbeat's own
//! health. Names follow Prometheus conventions and pass `promtool check
//! metrics`: `net.rx_bytes_per_s{iface=eth0}` is
//! `hostbeat_net_rx_bytes_per_second{iface="eth0"}`, kB become bytes and
//! ms seconds, `_count` is `_number`; `plugin.G.M` is
//! `hostbeat_plugin_value{plugin="G",metric="M"}`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::alert::{AlertView, Severity};
use crate::metrics::{self, Series};

/// What one sample leaves for the scrapes until the next.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub series: Vec<Series>,
    pub taken_at: SystemTime,
    /// The payload's `hostbeat.seq` for this sample.
    pub seq: u64,
    /// How long collecting and building the payload took.
    pub cost: Duration,
}

/// hostbeat's own counters at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Health {
    pub postbacks_delivered: u64,
    pub postback_failed_attempts: u64,
    pub postbacks_rejected: u64,
    pub postbacks_dropped: u64,
    pub spool_queued: u64,
    /// Webhook delivery attempts by outcome.
    pub webhook_outcomes: Vec<(&'static str, u64)>,
}

/// The Prometheus family and the factor for a catalogue metric.
pub fn family(name: &str) -> (String, f64) {
    let mut scale = 1.0;
    let mut n = name.replace('.', "_");
    for (from, to, factor) in [
        ("_kb_per_s", "_bytes_per_second", 1024.0),
        ("_per_s", "_per_second", 1.0),
        ("_ms", "_seconds", 0.001),
        ("_s", "_seconds", 1.0),
        ("_pct", "_percent", 1.0),
        // `_count` belongs to histograms and summaries.
        ("_count", "_number", 1.0),
    ] {
        if let Some(stem) = n.strip_suffix(from) {
            n = format!("{stem}{to}");
            scale = factor;
            break;
        }
    }
    (format!("hostbeat_{n}"), scale)
}

/// The exposition text.
pub fn render(scrape: Option<&Scrape>, alerts: &[AlertView], health: &Health) -> String {
    let mut out = String::with_capacity(8 * 1024);
    if let Some(s) = scrape {
        // Catalogue metrics, one family per name, in catalogue order.
        let mut by_name: BTreeMap<&str, Vec<&Series>> = BTreeMap::new();
        let mut custom: Vec<(&str, &str, f64)> = Vec::new();
        for series in &s.series {
            match metrics::custom_parts(&series.name) {
                Some((group, metric)) => custom.push((group, metric, series.value)),
                None => by_name.entry(&series.name).or_default().push(series),
            }
        }
        for def in metrics::CATALOGUE {
            let Some(rows) = by_name.get(def.name) else {
                continue;
            };
            let (fam, scale) = family(def.name);
            head(&mut out, &fam, def.help, "gauge");
            for r in rows {
                let labels: Vec<(&str, &str)> = r.label.iter().map(|(k, v)| (*k, v.as_str())).collect();
                sample(&mut out, &fam, &labels, r.value * scale);
            }
        }
        if !custom.is_empty() {
            let fam = "hostbeat_plugin_value";
            head(
                &mut out,
                fam,
                "custom metrics: plugins and pushed groups (numbers)",
                "gauge",
            );
            for (group, metric, value) in custom {
                sample(&mut out, fam, &[("plugin", group), ("metric", metric)], value);
            }
        }
        let since_epoch = s.taken_at.duration_since(UNIX_EPOCH).unwrap_or_default();
        head(
            &mut out,
            "hostbeat_sample_timestamp_seconds",
            "when the last sample was taken",
            "gauge",
        );
        sample(
            &mut out,
            "hostbeat_sample_timestamp_seconds",
            &[],
            since_epoch.as_secs_f64(),
        );
        head(
            &mut out,
            "hostbeat_sample_seq",
            "hostbeat.seq of the last sample's payload",
            "gauge",
        );
        sample(&mut out, "hostbeat_sample_seq", &[], s.seq as f64);
        head(
            &mut out,
            "hostbeat_sample_duration_seconds",
            "time to collect and build the last sample",
            "gauge",
        );
        sample(
            &mut out,
            "hostbeat_sample_duration_seconds",
            &[],
            s.cost.as_secs_f64(),
        );
    }

    head(
        &mut out,
        "hostbeat_alert_state",
        "alert series by state (1 for the current one): ok, pending, warning, critical",
        "gauge",
    );
    for a in alerts {
        let series = crate::alert::Alert::series_name(&a.metric, &a.labels);
        let current = match (a.state, a.severity) {
            ("firing", Some(Severity::Critical)) => "critical",
            ("firing", _) => "warning",
            (other, _) => other,
        };
        for state in ["ok", "pending", "warning", "critical"] {
            let labels = [
                ("rule", a.rule.as_str()),
                ("series", series.as_str()),
                ("state", state),
            ];
            sample(
                &mut out,
                "hostbeat_alert_state",
                &labels,
                f64::from(u8::from(state == current)),
            );
        }
    }

    for (fam, help, value) in [
        (
            "hostbeat_postbacks_delivered_total",
            "payloads the receiver took (2xx)",
            health.postbacks_delivered,
        ),
        (
            "hostbeat_postback_failed_attempts_total",
            "postback attempts that failed and will be retried",
            health.postback_failed_attempts,
        ),
        (
            "hostbeat_postbacks_rejected_total",
            "payloads the receiver refused for good (400, 413)",
            health.postbacks_rejected,
        ),
        (
            "hostbeat_postbacks_dropped_total",
            "payloads the spool dropped (size, age, corrupt)",
            health.postbacks_dropped,
        ),
    ] {
        head(&mut out, fam, help, "counter");
        sample(&mut out, fam, &[], value as f64);
    }
    head(
        &mut out,
        "hostbeat_spool_payloads",
        "payloads waiting for delivery",
        "gauge",
    );
    sample(
        &mut out,
        "hostbeat_spool_payloads",
        &[],
        health.spool_queued as f64,
    );
    head(
        &mut out,
        "hostbeat_webhook_deliveries_total",
        "webhook delivery attempts by outcome",
        "counter",
    );
    for (outcome, n) in &health.webhook_outcomes {
        sample(
            &mut out,
            "hostbeat_webhook_deliveries_total",
            &[("outcome", outcome)],
            *n as f64,
        );
    }
    out
}

fn head(out: &mut String, family: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {family} {}", escape(help, false));
    let _ = writeln!(out, "# TYPE {family} {kind}");
}

fn sample(out: &mut String, family: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(family);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape(v, true));
        }
        out.push('}');
    }
    let _ = match value {
        v if v.is_nan() => writeln!(out, " NaN"),
        v if v.is_infinite() => writeln!(out, " {}Inf", if v > 0.0 { "+" } else { "-" }),
        v => writeln!(out, " {v}"),
    };
}

/// Help text escapes `\` and newlines; label values also `"`.
fn escape(s: &str, quotes: bool) -> String {
    let mut e = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => e.push_str("\\\\"),
            '\n' => e.push_str("\\n"),
            '"' if quotes => e.push_str("\\\""),
            c => e.push(c),
        }
    }
    e
}

/// Serves `GET /metrics` on `listener` until the task is aborted.
pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<crate::daemon::Shared>) {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let text = |status: StatusCode, body: &'static str| {
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            body,
        )
            .into_response()
    };
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(
                |axum::extract::State(shared): axum::extract::State<Arc<crate::daemon::Shared>>| async move {
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                        shared.prometheus_text(),
                    )
                        .into_response()
                },
            ),
        )
        .fallback(
            move || async move { text(StatusCode::NOT_FOUND, "not found: the metrics are at /metrics\n") },
        )
        .method_not_allowed_fallback(
            move || async move { text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n") },
        )
        .with_state(shared);
    crate::api::serve_router(listener, app, "prometheus endpoint").await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn families_follow_prometheus_conventions() {
        assert_eq!(
            family("cpu.usage_pct"),
            ("hostbeat_cpu_usage_percent".into(), 1.0)
        );
        assert_eq!(
            family("diskio.read_kb_per_s"),
            ("hostbeat_diskio_read_bytes_per_second".into(), 1024.0)
        );
        assert_eq!(
            family("diskio.await_ms"),
            ("hostbeat_diskio_await_seconds".into(), 0.001)
        );
        assert_eq!(
            family("system.uptime_s"),
            ("hostbeat_system_uptime_seconds".into(), 1.0)
        );
        assert_eq!(
            family("mem.total_bytes"),
            ("hostbeat_mem_total_bytes".into(), 1.0)
        );
        assert_eq!(family("load.1"), ("hostbeat_load_1".into(), 1.0));
        for def in metrics::CATALOGUE {
            let (fam, _) = family(def.name);
            assert!(
                fam.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                "{fam}"
            );
            assert!(!fam.ends_with("_count") && !fam.ends_with("_total"), "{fam}");
            for abbrev in ["_s", "_ms", "_kb", "_b", "_m", "_h", "_d"] {
                assert!(
                    !fam.ends_with(abbrev) && !fam.contains(&format!("{abbrev}_")),
                    "{fam}"
                );
            }
        }
    }

    #[test]
    fn renders_series_custom_metrics_alerts_and_health() {
        let series = vec![
            Series {
                name: Cow::Borrowed("load.1"),
                label: None,
                value: 0.5,
            },
            Series {
                name: Cow::Borrowed("disk.used_pct"),
                label: Some(("mount", "/va\"r".into())),
                value: 42.0,
            },
            Series {
                name: Cow::Owned("plugin.redis.clients".into()),
                label: None,
                value: 7.0,
            },
        ];
        let scrape = Scrape {
            series,
            taken_at: UNIX_EPOCH + Duration::from_secs(1_795_600_800),
            seq: 9,
            cost: Duration::from_millis(2),
        };
        let alerts = vec![AlertView {
            rule: "disk".into(),
            metric: "disk.used_pct".into(),
            labels: vec![("mount".into(), "/".into())],
            state: "firing",
            severity: Some(Severity::Critical),
            started_at: None,
            value: Some(42.0),
            fingerprint: "f".into(),
        }];
        let health = Health {
            postbacks_delivered: 3,
            webhook_outcomes: vec![("delivered", 2)],
            ..Health::default()
        };
        let text = render(Some(&scrape), &alerts, &health);
        for line in [
            "# TYPE hostbeat_load_1 gauge",
            "hostbeat_load_1 0.5",
            "hostbeat_disk_used_percent{mount=\"/va\\\"r\"} 42",
            "hostbeat_plugin_value{plugin=\"redis\",metric=\"clients\"} 7",
            "hostbeat_sample_seq 9",
            "hostbeat_sample_timestamp_seconds 1795600800",
            "hostbeat_alert_state{rule=\"disk\",series=\"disk.used_pct{mount=/}\",state=\"critical\"} 1",
            "hostbeat_alert_state{rule=\"disk\",series=\"disk.used_pct{mount=/}\",state=\"ok\"} 0",
            "# TYPE hostbeat_postbacks_delivered_total counter",
            "hostbeat_postbacks_delivered_total 3",
            "hostbeat_webhook_deliveries_total{outcome=\"delivered\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        // Every family has HELP and TYPE once, before its samples.
        let mut seen = std::collections::HashSet::new();
        for l in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            assert!(seen.insert(l.split(' ').nth(2).unwrap().to_owned()), "{l}");
        }
    }
}
