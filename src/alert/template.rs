//! Summary templates: `{{host}} {{rule}} {{severity}} {{value}} {{threshold}}
//! {{metric}} {{labels.NAME}}`, plus `{{series}}` (`metric{label=value}`) and
//! `{{status}}`.

use super::Alert;

const NAMES: &[&str] = &[
    "host",
    "rule",
    "severity",
    "status",
    "value",
    "threshold",
    "metric",
    "series",
];

/// Splits a template into literal text and placeholder names.
fn parts(t: &str) -> Result<Vec<(&str, bool)>, String> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find("{{") {
        out.push((&rest[..open], false));
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| format!("unclosed {{{{ in {t:?}"))?;
        out.push((after[..close].trim(), true));
        rest = &after[close + 2..];
    }
    out.push((rest, false));
    Ok(out)
}

/// Whether every placeholder is known.
pub fn check(t: &str) -> Result<(), String> {
    for (name, placeholder) in parts(t)? {
        let known = NAMES.contains(&name) || name.strip_prefix("labels.").is_some_and(|l| !l.is_empty());
        if placeholder && !known {
            return Err(format!(
                "unknown placeholder {{{{{name}}}}}; use host, rule, severity, status, value, threshold, metric, series or labels.NAME"
            ));
        }
    }
    Ok(())
}

/// A number as people read it: up to 2 decimals, no trailing zeros.
pub fn number(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_owned() }
}

/// Renders a checked template; unknown labels render empty.
pub fn render(t: &str, a: &Alert, host: &str) -> String {
    let Ok(parts) = parts(t) else { return t.to_owned() };
    let mut out = String::with_capacity(t.len() + 32);
    for (text, placeholder) in parts {
        if !placeholder {
            out.push_str(text);
            continue;
        }
        match text {
            "host" => out.push_str(host),
            "rule" => out.push_str(&a.rule),
            "severity" => out.push_str(a.severity.as_str()),
            "status" => out.push_str(a.status.as_str()),
            "value" => out.push_str(&a.value.map_or_else(|| "no data".to_owned(), number)),
            "threshold" => out.push_str(&number(a.threshold)),
            "metric" => out.push_str(&a.metric),
            "series" => out.push_str(&a.series()),
            other => {
                let label = other.strip_prefix("labels.").unwrap_or_default();
                if let Some((_, v)) = a.labels.iter().find(|(k, _)| k == label) {
                    out.push_str(v);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Severity, Status};
    use std::time::SystemTime;

    fn alert() -> Alert {
        Alert {
            rule: "disk-full".into(),
            severity: Severity::Critical,
            status: Status::Firing,
            metric: "disk.used_pct".into(),
            labels: vec![("mount".into(), "/".into())],
            value: Some(93.456),
            threshold: 90.0,
            started_at: SystemTime::UNIX_EPOCH,
            resolved_at: None,
            fingerprint: "f".into(),
        }
    }

    #[test]
    fn renders_every_placeholder() {
        let t = "{{host}} {{rule}} {{severity}} {{status}} {{value}} {{threshold}} {{metric}} {{labels.mount}} {{series}} {{labels.x}}|";
        assert!(check(t).is_ok());
        assert_eq!(
            render(t, &alert(), "web1"),
            "web1 disk-full critical firing 93.46 90 disk.used_pct / disk.used_pct{mount=/} |"
        );
        let mut a = alert();
        a.value = None;
        assert_eq!(render("{{ value }}", &a, "h"), "no data");
    }

    #[test]
    fn rejects_unknown_and_unclosed() {
        assert!(check("{{nope}}").is_err());
        assert!(check("{{host").is_err());
        assert!(check("{{labels.}}").is_err());
        assert!(check("plain text").is_ok());
    }

    #[test]
    fn numbers() {
        assert_eq!(number(90.0), "90");
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(-0.001), "0");
        assert_eq!(number(1234.567), "1234.57");
    }
}
