//! The Prometheus endpoint end to end: the real daemon, a real receiver on
//! 127.0.0.1, a scrape checked by `promtool check metrics` and against the
//! payload of the same sample.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Config, Daemon, Receiver, http_request, toml_str};

/// `family{labels}` → value, from an exposition text.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// `promtool check metrics` over `text`: Ok, or what it printed. `None`
/// when promtool is not installed (scripts/test.sh installs it, and sets
/// HOSTBEAT_REQUIRE_PROMTOOL so a missing one fails there).
fn promtool(text: &str) -> Option<Result<(), String>> {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var_os("HOSTBEAT_REQUIRE_PROMTOOL").is_none(),
                "promtool is required (Debian package prometheus)"
            );
            eprintln!("promtool not installed: exposition not checked by it");
            return None;
        }
        Err(e) => panic!("running promtool: {e}"),
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(match out.status.success() && said.trim().is_empty() {
        true => Ok(()),
        false => Err(format!("{}: {said}", out.status)),
    })
}

#[test]
fn metrics_endpoint_passes_promtool_and_matches_the_payload() {
    let rx = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("queue.sh");
    std::fs::write(&plugin, "#!/bin/sh\nprintf '{\"queue\": 7, \"mode\": \"x\"}'\n").unwrap();
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let extra = format!(
        "\n[prometheus]\nlisten = \"127.0.0.1:0\"\n\n[[plugin]]\nname = \"jobs\"\ncommand = {}\n\
         \n[[alert]]\nname = \"mem\"\nmetric = \"mem.used_pct\"\ncrit = 0\n",
        toml_str(plugin.to_str().unwrap())
    );
    let config = Config::new(rx.url("/postback/"))
        .min_interval("100ms")
        .interval("500ms");
    let mut daemon = Daemon::spawn(&Config { extra, ..config });
    let addr = daemon.wait_listening("prometheus endpoint listening", Duration::from_secs(10));

    // A scrape taken once the plugin ran and the alert fired.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (resp, text) = loop {
        let resp = http_request(addr, "GET", "/metrics", &[], None).expect("a response");
        let text = resp.text();
        if text.contains("hostbeat_plugin_value") && text.contains("state=\"critical\"} 1") {
            break (resp, text);
        }
        assert!(
            Instant::now() < deadline,
            "scrape never complete:\n{text}\nlog:\n{}",
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    if let Some(verdict) = promtool(&text) {
        verdict.unwrap_or_else(|e| panic!("promtool check metrics: {e}\n{text}"));
    }

    // The payload of the same sample carries the same values.
    let s = samples(&text);
    let seq = s["hostbeat_sample_seq"] as u64;
    let reqs = rx
        .wait_until(Duration::from_secs(10), |reqs| {
            reqs.iter()
                .any(|r| r.path() == "/postback/" && r.try_seq() == Some(seq))
        })
        .unwrap_or_else(|| panic!("no payload with seq {seq}"));
    let p = reqs
        .iter()
        .find(|r| r.path() == "/postback/" && r.try_seq() == Some(seq))
        .unwrap()
        .json();
    let close = |a: f64, b: f64, tol: f64| (a - b).abs() <= tol;
    let num = |v: &serde_json::Value| {
        v.as_f64()
            .or_else(|| v.as_str().and_then(|t| t.parse().ok()))
            .unwrap_or_else(|| panic!("{v} is not a number"))
    };
    assert_eq!(s["hostbeat_load_1"], num(&p["system.load.1"]));
    assert!(close(
        s["hostbeat_mem_total_bytes"] / 1_048_576.0,
        num(&p["memPhysTotal"]),
        1e-6
    ));
    assert_eq!(s["hostbeat_system_uptime_seconds"], num(&p["system.uptime"]));
    assert!(close(
        s["hostbeat_cpu_idle_percent"],
        num(&p["cpuStats"]["ALL"]["%idle"]),
        0.006
    ));
    assert_eq!(
        s["hostbeat_plugin_value{plugin=\"jobs\",metric=\"queue\"}"],
        num(&p["plugins"]["jobs"]["queue"])
    );
    let root = p["diskUsage"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r[5] == "/"));
    if let Some(row) = root {
        let used = num(&row[4].as_str().unwrap().trim_end_matches('%').into());
        assert!(close(
            s["hostbeat_disk_used_percent{mount=\"/\"}"].ceil(),
            used,
            0.0
        ));
    }
    assert_eq!(
        s["hostbeat_alert_state{rule=\"mem\",series=\"mem.used_pct\",state=\"critical\"}"],
        1.0
    );
    assert!(s.contains_key("hostbeat_postbacks_delivered_total"));
    assert!(s.contains_key("hostbeat_spool_payloads"));
    assert!(s.contains_key("hostbeat_webhook_deliveries_total{outcome=\"delivered\"}"));
    assert!(s["hostbeat_sample_duration_seconds"] > 0.0);

    // The receiver saw the payload before the daemon read its reply: the
    // delivered counter follows on a later scrape.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = http_request(addr, "GET", "/metrics", &[], None).unwrap().text();
        if samples(&text)["hostbeat_postbacks_delivered_total"] >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no delivery counted:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Only GET /metrics.
    assert_eq!(
        http_request(addr, "GET", "/other", &[], None).unwrap().status,
        404
    );
    assert_eq!(
        http_request(addr, "POST", "/metrics", &[], Some(b"x"))
            .unwrap()
            .status,
        405
    );
    daemon.terminate();
}
