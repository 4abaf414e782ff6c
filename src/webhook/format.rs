//! Request bodies, one shape per destination type (all JSON).

use serde_json::{Value, json};

use super::{Destination, Format, Kind, Message};
use crate::alert::Severity;
use crate::timefmt::rfc3339;

/// Discord rejects `content` over this many characters.
const DISCORD_MAX: usize = 2000;

/// The one line a chat message shows: `[FIRING critical] …`, `[RESOLVED] …`, `[TEST] …`.
pub fn headline(m: &Message) -> String {
    match (&m.kind, &m.alert) {
        (Kind::Firing, Some(a)) => format!("[FIRING {}] {}", a.severity.as_str(), m.text),
        (Kind::Resolved, _) => format!("[RESOLVED] {}", m.text),
        _ => format!("[TEST] {}", m.text),
    }
}

/// The JSON body for `dest`.
pub fn render(m: &Message, dest: &Destination) -> Vec<u8> {
    let text = headline(m);
    let body = match dest.format {
        Format::Generic => generic(m, &dest.name),
        Format::Slack | Format::Gchat => json!({ "text": text }),
        Format::Discord => json!({ "content": truncate_chars(&text, DISCORD_MAX) }),
        Format::Teams => json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [{ "type": "TextBlock", "text": text, "wrap": true }]
                }
            }]
        }),
        Format::Pagerduty => pagerduty(m, dest, &text),
    };
    serde_json::to_vec(&body).expect("JSON values serialise")
}

fn generic(m: &Message, name: &str) -> Value {
    let alert = m.alert.as_ref().map(|a| {
        let labels: serde_json::Map<String, Value> = a
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        json!({
            "rule": a.rule,
            "severity": a.severity.as_str(),
            "status": a.status.as_str(),
            "metric": a.metric,
            "labels": labels,
            "value": a.value,
            "threshold": a.threshold,
            "started_at": rfc3339(a.started_at),
            "resolved_at": a.resolved_at.map(rfc3339),
            "fingerprint": a.fingerprint,
        })
    });
    json!({
        "type": m.kind.as_str(),
        "id": m.id,
        "timestamp": rfc3339(m.timestamp),
        "name": name,
        "text": m.text,
        "host": m.host,
        "alert": alert,
    })
}

fn pagerduty(m: &Message, dest: &Destination, text: &str) -> Value {
    let (action, dedup, severity) = match &m.alert {
        Some(a) => (
            if m.kind == Kind::Resolved {
                "resolve"
            } else {
                "trigger"
            },
            a.fingerprint.clone(),
            match a.severity {
                Severity::Critical => "critical",
                Severity::Warning => "warning",
            },
        ),
        None => ("trigger", format!("hostbeat-test-{}", m.id), "info"),
    };
    json!({
        "routing_key": dest.token.as_ref().map(|t| t.expose()).unwrap_or_default(),
        "event_action": action,
        "dedup_key": dedup,
        "payload": { "summary": text, "source": m.host, "severity": severity },
    })
}

/// At most `max` characters, with `…` when cut.
fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Alert, Status};
    use crate::secret::Secret;
    use crate::webhook::{AuthType, DestinationSpec};
    use std::time::{Duration, SystemTime};

    fn dest(format: Format) -> Destination {
        let spec = DestinationSpec {
            name: Some("ops".into()),
            url: Some("https://example.test/hook".into()),
            format: Some(format),
            auth_type: Some(AuthType::Bearer),
            token: Some(Secret::new("rk-123")),
            ..DestinationSpec::default()
        };
        Destination::from_spec(&spec, "x").unwrap()
    }

    fn message(kind: Kind) -> Message {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_600_800);
        Message {
            kind,
            id: "id-1".into(),
            timestamp: t,
            host: "web1".into(),
            text: "disk on web1: disk.used_pct{mount=/} is 95 (threshold 90)".into(),
            alert: Some(Alert {
                rule: "disk".into(),
                severity: Severity::Critical,
                status: if kind == Kind::Resolved {
                    Status::Resolved
                } else {
                    Status::Firing
                },
                metric: "disk.used_pct".into(),
                labels: vec![("mount".into(), "/".into())],
                value: Some(95.0),
                threshold: 90.0,
                started_at: t,
                resolved_at: (kind == Kind::Resolved).then_some(t + Duration::from_secs(60)),
                fingerprint: "fp".into(),
            }),
        }
    }

    fn body(kind: Kind, format: Format) -> Value {
        serde_json::from_slice(&render(&message(kind), &dest(format))).unwrap()
    }

    #[test]
    fn generic_shape() {
        let b = body(Kind::Resolved, Format::Generic);
        assert_eq!(b["type"], "alert.resolved");
        assert_eq!(b["id"], "id-1");
        assert_eq!(b["timestamp"], "2026-11-25T10:00:00Z");
        assert_eq!(b["name"], "ops");
        assert_eq!(b["host"], "web1");
        let a = &b["alert"];
        assert_eq!(a["rule"], "disk");
        assert_eq!(a["severity"], "critical");
        assert_eq!(a["status"], "resolved");
        assert_eq!(a["labels"]["mount"], "/");
        assert_eq!(a["value"], 95.0);
        assert_eq!(a["threshold"], 90.0);
        assert_eq!(a["started_at"], "2026-11-25T10:00:00Z");
        assert_eq!(a["resolved_at"], "2026-11-25T10:01:00Z");
        assert_eq!(a["fingerprint"], "fp");
        let test = Message {
            kind: Kind::Test,
            alert: None,
            ..message(Kind::Test)
        };
        let t: Value = serde_json::from_slice(&render(&test, &dest(Format::Generic))).unwrap();
        assert_eq!(t["type"], "test");
        assert!(t["alert"].is_null());
    }

    #[test]
    fn chat_shapes() {
        let s = body(Kind::Firing, Format::Slack);
        assert!(
            s["text"]
                .as_str()
                .unwrap()
                .starts_with("[FIRING critical] disk on web1")
        );
        assert_eq!(s.as_object().unwrap().len(), 1);
        assert!(body(Kind::Firing, Format::Gchat)["text"].is_string());
        assert!(body(Kind::Firing, Format::Discord)["content"].is_string());
        let t = body(Kind::Resolved, Format::Teams);
        assert_eq!(t["type"], "message");
        let card = &t["attachments"][0];
        assert_eq!(card["contentType"], "application/vnd.microsoft.card.adaptive");
        assert_eq!(card["content"]["type"], "AdaptiveCard");
        assert_eq!(card["content"]["version"], "1.4");
        assert!(
            card["content"]["body"][0]["text"]
                .as_str()
                .unwrap()
                .starts_with("[RESOLVED]")
        );
        assert_eq!(card["content"]["body"][0]["wrap"], true);
    }

    #[test]
    fn discord_content_is_capped() {
        let mut m = message(Kind::Firing);
        m.text = "x".repeat(5000);
        let b: Value = serde_json::from_slice(&render(&m, &dest(Format::Discord))).unwrap();
        assert_eq!(b["content"].as_str().unwrap().chars().count(), DISCORD_MAX);
    }

    #[test]
    fn pagerduty_shares_the_dedup_key() {
        let f = body(Kind::Firing, Format::Pagerduty);
        let r = body(Kind::Resolved, Format::Pagerduty);
        assert_eq!(f["routing_key"], "rk-123");
        assert_eq!(f["event_action"], "trigger");
        assert_eq!(r["event_action"], "resolve");
        assert_eq!(f["dedup_key"], r["dedup_key"]);
        assert_eq!(f["payload"]["source"], "web1");
        assert_eq!(f["payload"]["severity"], "critical");
        assert!(f["payload"]["summary"].is_string());
    }
}
