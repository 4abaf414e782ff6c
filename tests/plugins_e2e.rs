//! Exec plugins end to end: the real daemon runs five plugins (JSON, lines
//! leaving a child behind, one that hangs past its timeout, one that prints
//! garbage, one that exits non-zero) and posts to a real receiver on
//! 127.0.0.1.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::{Config, Daemon, Receiver, toml_str};

/// Writes an executable `#!/bin/sh` script.
fn script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_str().unwrap().to_owned()
}

fn plugin(name: &str, command: &str, args: &[&str], timeout: &str) -> String {
    let args: Vec<String> = args.iter().map(|a| toml_str(a)).collect();
    format!(
        "\n[[plugin]]\nname = {}\ncommand = {}\nargs = [{}]\ntimeout = {}\n",
        toml_str(name),
        toml_str(command),
        args.join(", "),
        toml_str(timeout)
    )
}

/// A plugin that starts a child, then hangs: both pids go to `pids`.
fn hanging(dir: &Path, pids: &Path) -> String {
    let path = script(
        dir,
        "hang.sh",
        "sleep 30 &\necho $! >> \"$1\"\necho $$ >> \"$1\"\nexec sleep 30",
    );
    plugin("hang", &path, &[pids.to_str().unwrap()], "300ms") + "interval = \"1h\"\n"
}

/// The pids listed in `file` (one per line) that still run (zombies are
/// gone for this purpose: they no longer run, and init reaps them).
fn running(file: &Path) -> Vec<u32> {
    let pids = std::fs::read_to_string(file).unwrap_or_default();
    pids.lines()
        .filter_map(|l| l.trim().parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
                .unwrap_or(false)
        })
        .collect()
}

/// Zombie children of `parent`.
fn zombies_of(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let f: Vec<&str> = rest.split(' ').collect();
        if f.len() > 2 && f[0] == "Z" && f[1] == parent.to_string() {
            found.push(pid);
        }
    }
    found
}

#[test]
fn plugins_merge_into_payload_and_alerts_and_leave_no_process() {
    let rx = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pids = d.join("hang.pids");
    let json = script(d, "json.sh", r#"printf '{"queue": 7, "state": "ok"}'"#);
    // It also leaves a child behind, which goes when it exits.
    let left = d.join("left.pids");
    let lines = script(
        d,
        "lines.sh",
        "sleep 30 >/dev/null 2>&1 &\necho $! >> \"$1\"\nprintf '# a comment\\nconnections 42\\nmode primary\\n'",
    );
    let garbage = script(d, "garbage.sh", "echo '{not json'");
    let fails = script(d, "fails.sh", "echo 'x 1'; exit 3");

    let mut extra = String::new();
    extra += &plugin("json", &json, &[], "2s");
    extra += &(plugin("lines", &lines, &[left.to_str().unwrap()], "2s") + "interval = \"1h\"\n");
    extra += &hanging(d, &pids);
    extra += &plugin("garbage", &garbage, &[], "2s");
    extra += &plugin("fails", &fails, &[], "2s");
    extra += &format!(
        "\n[[webhook]]\nname = \"hook\"\nurl = {}\n\n[[alert]]\nname = \"queue\"\nmetric = \"plugin.json.queue\"\ncrit = 5\nwebhooks = [\"hook\"]\n",
        toml_str(&rx.url("/hook"))
    );
    let config = Config::new(rx.url("/postback/"))
        .min_interval("100ms")
        .interval("500ms");
    let config = Config { extra, ..config };
    let mut daemon = Daemon::spawn(&config);

    // A payload taken after every plugin ran once (they start with the agent).
    let reqs = rx
        .wait_until(Duration::from_secs(20), |reqs| {
            reqs.iter()
                .filter(|r| r.path() == "/postback/")
                .any(|r| r.json()["plugins"]["lines"].is_object() && r.json()["plugins"]["json"].is_object())
        })
        .unwrap_or_else(|| panic!("no payload with both plugins; log:\n{}", daemon.stderr()));
    let payload = reqs
        .iter()
        .filter(|r| r.path() == "/postback/")
        .map(|r| r.json())
        .find(|j| j["plugins"]["lines"].is_object() && j["plugins"]["json"].is_object())
        .unwrap();
    assert_eq!(
        payload["plugins"],
        serde_json::json!({
            "json": {"queue": 7, "state": "ok"},
            "lines": {"connections": 42, "mode": "primary"},
        }),
        "exactly the two working plugins"
    );

    // The alert on a plugin metric fires.
    let hooks = rx
        .wait_until(Duration::from_secs(20), |reqs| {
            reqs.iter().any(|r| r.path() == "/hook")
        })
        .unwrap_or_else(|| panic!("no webhook for plugin.json.queue; log:\n{}", daemon.stderr()));
    let hook = hooks.iter().find(|r| r.path() == "/hook").unwrap();
    let body = String::from_utf8_lossy(&hook.body).into_owned();
    assert!(body.contains("plugin.json.queue"), "{body}");

    // Failures are logged, naming the plugin and why.
    let log_has = |needle: &str| daemon.wait_stderr(needle, Duration::from_secs(10));
    assert!(
        log_has("still running after 300ms: killed"),
        "{}",
        daemon.stderr()
    );
    assert!(log_has("bad output"), "{}", daemon.stderr());
    assert!(log_has("exited with exit status: 3"), "{}", daemon.stderr());

    // The hanging plugin (it ran once, at start) and its child were killed
    // at the timeout; the plugin was reaped.
    let listed = std::fs::read_to_string(&pids).unwrap();
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert_eq!(running(&pids), Vec::<u32>::new(), "plugin processes left running");
    let listed = std::fs::read_to_string(&left).unwrap();
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert_eq!(
        running(&left),
        Vec::<u32>::new(),
        "a plugin's leftover child runs"
    );
    // Plugins run every 500 ms: a child that just exited is a zombie until
    // the runtime reaps it, so only one that stays one is a leak.
    let before = zombies_of(daemon.pid());
    std::thread::sleep(Duration::from_secs(1));
    let kept: Vec<u32> = zombies_of(daemon.pid())
        .into_iter()
        .filter(|z| before.contains(z))
        .collect();
    assert!(kept.is_empty(), "zombies not reaped within 1 s: {kept:?}");

    daemon.signal(libc::SIGTERM);
    assert!(
        daemon.wait_exit(Duration::from_secs(5)).is_some(),
        "SIGTERM ends the daemon"
    );
}

/// `POST /metrics/{group}` with the API token and a JSON body.
fn push(addr: std::net::SocketAddr, group: &str, body: &str) -> common::HttpResponse {
    common::http_request(
        addr,
        "POST",
        &format!("/metrics/{group}"),
        &[
            ("Authorization", "Bearer push-test-token"),
            ("Content-Type", "application/json"),
        ],
        Some(body.as_bytes()),
    )
    .expect("an HTTP response")
}

#[test]
fn pushed_metrics_merge_until_their_ttl_and_bad_bodies_are_refused() {
    let rx = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let json = script(dir.path(), "json.sh", r#"printf '{"v": 1}'"#);
    let extra = format!(
        "\n[api]\nlisten = \"127.0.0.1:0\"\ntoken = \"push-test-token\"\npush_ttl = \"1s\"\n{}\
         \n[[webhook]]\nname = \"hook\"\nurl = {}\n\n[[alert]]\nname = \"jobs\"\nmetric = \"plugin.batch.failed\"\ncrit = 0\nwebhooks = [\"hook\"]\n",
        plugin("owned", &json, &[], "2s"),
        toml_str(&rx.url("/hook"))
    );
    let config = Config::new(rx.url("/postback/"))
        .min_interval("100ms")
        .interval("300ms");
    let mut daemon = Daemon::spawn(&Config { extra, ..config });
    let api = daemon.wait_api_addr(Duration::from_secs(10));

    // Without the token: 401.
    let anon = common::http_request(
        api,
        "POST",
        "/metrics/batch",
        &[("Content-Type", "application/json")],
        Some(b"{\"failed\": 1}"),
    )
    .unwrap();
    assert_eq!(anon.status, 401);

    // Every problem of a bad body is listed.
    let bad = push(
        api,
        "batch",
        r#"{"ok": 1, "a b": 2, "list": [1], "nested": {"x": 1}, "nothing": null}"#,
    );
    assert_eq!(bad.status, 400, "{}", bad.text());
    let errors = bad.json()["errors"].as_array().unwrap().clone();
    assert_eq!(errors.len(), 4, "{errors:?}");
    for name in ["a b", "list", "nested", "nothing"] {
        assert!(
            errors
                .iter()
                .any(|e| e["message"].as_str().unwrap().contains(name)),
            "{name}: {errors:?}"
        );
    }
    assert_eq!(push(api, "batch", "[1, 2]").status, 400);
    assert_eq!(push(api, "batch", "{not json").status, 400);
    let bad = push(api, "bad.group", r#"{"x": true}"#);
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.json()["errors"].as_array().unwrap().len(),
        2,
        "{}",
        bad.text()
    );
    assert_eq!(
        push(api, "owned", r#"{"x": 1}"#).status,
        409,
        "a [[plugin]]'s group"
    );

    // Accepted: merged into the next payloads and the catalogue (the alert fires).
    let ok = push(api, "batch", r#"{"failed": 3, "last": "nightly"}"#);
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(
        ok.json()["result"]["metrics"],
        serde_json::json!(["failed", "last"])
    );
    let pushed_at = std::time::Instant::now();
    let with = |r: &common::Request| r.path() == "/postback/" && r.json()["plugins"]["batch"].is_object();
    let reqs = rx
        .wait_until(Duration::from_secs(10), |reqs| reqs.iter().any(with))
        .unwrap_or_else(|| panic!("no payload with the pushed group; log:\n{}", daemon.stderr()));
    let payload = reqs.iter().find(|r| with(r)).unwrap().json();
    assert_eq!(
        payload["plugins"]["batch"],
        serde_json::json!({"failed": 3, "last": "nightly"})
    );
    assert!(
        rx.wait_until(Duration::from_secs(10), |reqs| reqs
            .iter()
            .any(|r| r.path() == "/hook"))
            .is_some(),
        "no alert on plugin.batch.failed; log:\n{}",
        daemon.stderr()
    );

    // Expired after the TTL: later payloads go without it.
    let seen = rx.requests().len();
    let later = rx
        .wait_until(Duration::from_secs(10), |reqs| {
            reqs[seen..]
                .iter()
                .any(|r| r.path() == "/postback/" && r.at > pushed_at + Duration::from_millis(1500))
        })
        .expect("payloads go on");
    let last = later
        .iter()
        .rev()
        .find(|r| r.path() == "/postback/")
        .unwrap()
        .json();
    assert!(
        last["plugins"]["batch"].is_null(),
        "expired group still sent: {}",
        last["plugins"]
    );
    assert!(
        last["plugins"]["owned"].is_object(),
        "the plugin's group stays: {}",
        last["plugins"]
    );
    daemon.terminate();
}
