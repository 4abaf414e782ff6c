//! End-to-end tests of webhook delivery: the real `hostbeat` binary (daemon
//! and `webhook test`) posts to real HTTP/1.1 receivers on 127.0.0.1 (see
//! `common/mod.rs`). The contract is `shared/protocol/webhooks.md`.
//!
//! Every test has its own receiver(s), tempdir and daemon, so they run in
//! parallel. Signatures are checked with an independent HMAC computed by
//! python3.

mod common;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Daemon, Receiver, Reply, Request, hostbeat_command, parse_rfc3339};
use serde_json::Value;

const HOST: &str = "e2e-host";
/// The Standard Webhooks specification's example secret.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Slack allowed below a timing lower bound (scheduling, clock reads).
const SLACK: Duration = Duration::from_millis(50);
/// How long any single wait may take before the test gives up.
const PATIENCE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Config building
// ---------------------------------------------------------------------------

/// A TOML basic string (JSON string syntax is valid TOML for these values).
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("string serialises")
}

/// One `[[webhook]]` table; fields keep their insertion order.
#[derive(Debug, Clone)]
struct Hook {
    fields: Vec<(String, String)>,
}

impl Hook {
    /// A destination with fast tuning and the example secret.
    fn new(name: &str, url: &str) -> Hook {
        Hook { fields: Vec::new() }
            .s("name", name)
            .s("url", url)
            .s("secret", SECRET)
            .s("timeout", "2s")
            .s("retry_for", "24h")
            .s("backoff", "100ms")
            .s("backoff_max", "500ms")
            .raw("max_per_minute", "600")
    }

    /// Sets a raw TOML value (replacing an earlier one).
    fn raw(mut self, key: &str, value: &str) -> Hook {
        self.fields.retain(|(k, _)| k != key);
        self.fields.push((key.to_string(), value.to_string()));
        self
    }

    /// Sets a string value.
    fn s(self, key: &str, value: &str) -> Hook {
        self.raw(key, &q(value))
    }

    fn without(mut self, key: &str) -> Hook {
        self.fields.retain(|(k, _)| k != key);
        self
    }

    fn toml(&self) -> String {
        let mut out = String::from("[[webhook]]\n");
        for (k, v) in &self.fields {
            out.push_str(&format!("{k} = {v}\n"));
        }
        out.push('\n');
        out
    }
}

/// The `mem-used` rule: `mem.used_pct above crit` (crit = 0 fires on the
/// first sample, crit = 1000 never holds), plus raw `extra` lines.
fn alert(crit: u32, extra: &str) -> String {
    format!("[[alert]]\nname = \"mem-used\"\nmetric = \"mem.used_pct\"\ncrit = {crit}\n{extra}\n")
}

/// A tempdir holding a config file and a state_dir, kept across restarts.
struct Setup {
    _dir: tempfile::TempDir,
    state_dir: PathBuf,
    config_path: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let state_dir = dir.path().join("state");
        std::fs::create_dir_all(&state_dir).expect("create state dir");
        let config_path = dir.path().join("hostbeat.toml");
        Setup {
            _dir: dir,
            state_dir,
            config_path,
        }
    }

    /// Writes `[agent]` plus the given webhooks and alert tables.
    fn write(&self, hooks: &[Hook], alerts: &str) {
        let mut text = format!(
            "[agent]\nhostname = {}\ninterval = \"300ms\"\nstate_dir = {}\n\n",
            q(HOST),
            q(&self.state_dir.to_string_lossy())
        );
        for h in hooks {
            text.push_str(&h.toml());
        }
        text.push_str(alerts);
        std::fs::write(&self.config_path, text).expect("write config");
    }

    fn daemon(&self) -> Daemon {
        Daemon::spawn_file(&self.config_path)
    }

    /// `hostbeat webhook test NAME -c FILE`: (status, stdout, stderr).
    fn webhook_test(&self, name: &str) -> (ExitStatus, String, String) {
        let out = hostbeat_command()
            .args(["webhook", "test", name, "-c"])
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .output()
            .expect("run hostbeat webhook test");
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

// ---------------------------------------------------------------------------
// Looking at requests
// ---------------------------------------------------------------------------

fn hdr<'a>(r: &'a Request, name: &str) -> &'a str {
    r.header(name)
        .unwrap_or_else(|| panic!("request has no {name} header: {}", show(r)))
}

fn wid(r: &Request) -> &str {
    hdr(r, "webhook-id")
}

fn json(r: &Request) -> Value {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&r.body)))
}

fn show(r: &Request) -> String {
    format!(
        "{} {} -> {} webhook-id={:?} body={}",
        r.method,
        r.target,
        r.status_sent,
        r.header("webhook-id"),
        String::from_utf8_lossy(&r.body)
    )
}

fn show_all(reqs: &[Request]) -> String {
    let Some(first) = reqs.first() else {
        return "  (no requests)".into();
    };
    reqs.iter()
        .enumerate()
        .map(|(i, r)| {
            format!(
                "  #{i} +{} ms: {}",
                r.at.duration_since(first.at).as_millis(),
                show(r)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn on_path(reqs: &[Request], path: &str) -> Vec<Request> {
    reqs.iter().filter(|r| r.path() == path).cloned().collect()
}

fn with_id(reqs: &[Request], id: &str) -> Vec<Request> {
    reqs.iter()
        .filter(|r| r.header("webhook-id") == Some(id))
        .cloned()
        .collect()
}

/// Waits for the requests on `path` to satisfy `pred`; panics after `timeout`.
fn wait_path(
    rx: &Receiver,
    path: &str,
    timeout: Duration,
    what: &str,
    mut pred: impl FnMut(&[Request]) -> bool,
) -> Vec<Request> {
    match rx.wait_until(timeout, |all| pred(&on_path(all, path))) {
        Some(all) => on_path(&all, path),
        None => panic!(
            "timed out after {timeout:?} waiting for {what} on {path}; receiver got:\n{}\nreceiver errors: {:?}",
            show_all(&rx.requests()),
            rx.errors()
        ),
    }
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn unix_now_f() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// Wall-clock seconds at which `r` arrived.
fn arrival_unix(r: &Request) -> f64 {
    unix_now_f() - r.at.elapsed().as_secs_f64()
}

fn rfc3339_field(v: &Value, what: &str) -> f64 {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"));
    parse_rfc3339(s).unwrap_or_else(|| panic!("{what} is not RFC 3339: {s:?}"))
}

// ---------------------------------------------------------------------------
// Signatures, checked independently with python3
// ---------------------------------------------------------------------------

const PY_SIGN: &str = r#"
import base64, hashlib, hmac, sys
head, body = sys.stdin.buffer.read().split(b"\n", 1)
secret, msg_id, ts = head.decode().split(" ")
assert secret.startswith("whsec_"), secret
key = base64.b64decode(secret[len("whsec_"):], validate=True)
mac = hmac.new(key, msg_id.encode() + b"." + ts.encode() + b"." + body, hashlib.sha256).digest()
sys.stdout.write("v1," + base64.b64encode(mac).decode())
"#;

/// `v1,` + base64(HMAC-SHA256(key, "{id}.{ts}.{body}")) as python3 computes it.
/// Everything goes in on stdin (never argv: the daemon's payload lists
/// process command lines).
fn python_signature(secret: &str, id: &str, ts: &str, body: &[u8]) -> String {
    for part in [secret, id, ts] {
        assert!(!part.contains([' ', '\n']), "{part:?}");
    }
    let mut input = format!("{secret} {id} {ts}\n").into_bytes();
    input.extend_from_slice(body);
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(PY_SIGN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed to verify signatures independently");
    child
        .stdin
        .take()
        .expect("stdin piped")
        .write_all(&input)
        .expect("write to python3");
    let out = child.wait_with_output().expect("python3 output");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("python3 prints ASCII")
}

/// Checks the Standard Webhooks headers of `r` against `secret`: a UUID
/// `webhook-id`, a `webhook-timestamp` of the attempt, and a signature over
/// the exact body bytes.
fn assert_signed(r: &Request, secret: &str) {
    let id = wid(r);
    assert!(is_uuid(id), "webhook-id {id:?} is not a UUID");
    let ts = hdr(r, "webhook-timestamp");
    assert!(
        !ts.is_empty() && ts.bytes().all(|b| b.is_ascii_digit()),
        "webhook-timestamp {ts:?} is not unix seconds"
    );
    let secs: f64 = ts.parse().expect("digits parse");
    let arrived = arrival_unix(r);
    assert!(
        (secs - arrived).abs() <= 3.0,
        "webhook-timestamp {ts} is not the time of the attempt (arrived at {arrived:.3})"
    );
    let expected = python_signature(secret, id, ts, &r.body);
    let header = hdr(r, "webhook-signature");
    let sigs: Vec<&str> = header.split(' ').collect();
    assert!(
        sigs.contains(&expected.as_str()),
        "webhook-signature {header:?} does not verify; python3 computes {expected:?} over id {id:?}, timestamp {ts:?} and {} body bytes",
        r.body.len()
    );
}

// ---------------------------------------------------------------------------
// Where credentials may appear
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Allowed<'a> {
    /// Only in this (lowercase) header (its exact value is checked by the caller).
    Header(&'a str),
    /// Only as the value of this query parameter, exactly once.
    Query(&'a str),
    /// Only as this top-level JSON string field of the body (pagerduty routing_key).
    BodyField(&'a str),
}

/// Asserts `secret` occurs in `r` only where `allowed` says: checks every
/// header name and value, the request target (raw and decoded) and the body.
fn assert_only(r: &Request, secret: &str, allowed: &[Allowed<'_>]) {
    let header_ok = |k: &str| allowed.iter().any(|a| matches!(a, Allowed::Header(h) if *h == k));
    let query_param = allowed.iter().find_map(|a| match a {
        Allowed::Query(p) => Some(*p),
        _ => None,
    });
    let body_field = allowed.iter().find_map(|a| match a {
        Allowed::BodyField(f) => Some(*f),
        _ => None,
    });
    for (k, v) in &r.headers {
        if header_ok(k) {
            continue;
        }
        assert!(
            !k.contains(secret) && !v.contains(secret),
            "credential {secret:?} leaked in header {k}: {v:?} (allowed only: {allowed:?})"
        );
    }
    assert!(
        !r.path().contains(secret),
        "credential {secret:?} in the path {:?}",
        r.target
    );
    let query = r.query();
    for (k, _) in &query {
        assert!(
            !k.contains(secret),
            "credential in a query parameter name: {:?}",
            r.target
        );
    }
    match query_param {
        Some(p) => {
            let hits: Vec<&(String, String)> = query.iter().filter(|(_, v)| v.contains(secret)).collect();
            assert_eq!(
                hits,
                [&(p.to_string(), secret.to_string())],
                "the credential must be the one value of ?{p}= (target {:?})",
                r.target
            );
        }
        None => assert!(
            !r.target.contains(secret) && !query.iter().any(|(_, v)| v.contains(secret)),
            "credential {secret:?} leaked in the target {:?}",
            r.target
        ),
    }
    let body = String::from_utf8_lossy(&r.body).into_owned();
    let escaped = serde_json::to_string(secret).expect("serialises");
    let escaped = &escaped[1..escaped.len() - 1];
    let occurrences = body.matches(secret).count()
        + if escaped != secret {
            body.matches(escaped).count()
        } else {
            0
        };
    match body_field {
        Some(f) => {
            assert_eq!(json(r)[f], secret, "body field {f} should be the credential");
            assert_eq!(
                occurrences, 1,
                "the credential must appear once in the body, as {f}: {body}"
            );
        }
        None => assert_eq!(occurrences, 0, "credential {secret:?} leaked in the body: {body}"),
    }
    let encoded: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    if encoded != secret {
        assert!(
            !body.contains(&encoded),
            "URL-encoded credential leaked in the body: {body}"
        );
    }
}

/// Asserts none of `secrets` appears in `text`.
fn assert_absent(text: &str, secrets: &[&str], what: &str) {
    for s in secrets {
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(s)).collect();
        assert!(lines.is_empty(), "{s:?} appears in {what}:\n{}", lines.join("\n"));
    }
}

// ---------------------------------------------------------------------------
// 0. The contract's config example loads
// ---------------------------------------------------------------------------

#[test]
fn contract_config_example_is_accepted() {
    // The brief's example, verbatim but for the port and state_dir: every
    // field in its documented (snake_case) spelling.
    let rx = Receiver::start();
    let setup = Setup::new();
    let text = format!(
        r#"[agent]
hostname = "e2e-host"
interval = "300ms"
state_dir = {state_dir}

[[webhook]]
name = "hook"
url = {url}
type = "generic"
auth_type = "bearer"
token = "tok-SECRET-1"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
timeout = "2s"
retry_for = "24h"
backoff = "100ms"
backoff_max = "500ms"
max_per_minute = 600

[[alert]]
name = "mem-used"
metric = "mem.used_pct"
crit = 0
"#,
        state_dir = q(&setup.state_dir.to_string_lossy()),
        url = q(&rx.url("/hook")),
    );
    std::fs::write(&setup.config_path, text).expect("write config");
    let out = hostbeat_command()
        .args(["check-config", "-c"])
        .arg(&setup.config_path)
        .output()
        .expect("run hostbeat check-config");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "the contract's example config is rejected ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The other documented spellings: user_name/password (basic), header_name, query_param.
    let variants = [
        "auth_type = \"basic\"\nuser_name = \"u\"\npassword = \"p-SECRET\"\n",
        "auth_type = \"header\"\nheader_name = \"X-Api-Key\"\ntoken = \"t\"\n",
        "auth_type = \"querystring\"\nquery_param = \"token\"\ntoken = \"t\"\n",
        "authType = \"bearer\"\ntoken = \"t\"\n",
    ];
    for auth in variants {
        let text = format!(
            "[agent]\nstate_dir = {}\n\n[[webhook]]\nname = \"hook\"\nurl = {}\n{auth}",
            q(&setup.state_dir.to_string_lossy()),
            q(&rx.url("/hook"))
        );
        std::fs::write(&setup.config_path, &text).expect("write config");
        let out = hostbeat_command()
            .args(["check-config", "-c"])
            .arg(&setup.config_path)
            .output()
            .expect("run hostbeat check-config");
        assert!(
            out.status.success(),
            "rejected:\n{text}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ---------------------------------------------------------------------------
// 1. Auth types
// ---------------------------------------------------------------------------

const BASIC_USER: &str = "hb-user-SECRET-7";
const BASIC_PASS: &str = "p-SECRET-9:x";
/// base64("hb-user-SECRET-7:p-SECRET-9:x"), computed independently
/// (`printf %s 'hb-user-SECRET-7:p-SECRET-9:x' | base64`).
const BASIC_B64: &str = "aGItdXNlci1TRUNSRVQtNzpwLVNFQ1JFVC05Ong=";
const BEARER_TOKEN: &str = "tok-SECRET-bearer-1";
const AUTHHEADER_TOKEN: &str = "tok-SECRET-authheader-2";
const HEADER_TOKEN: &str = "tok-SECRET-header-3";
/// Needs URL encoding: `/`, `+`, `&`, `=` and a space.
const QUERY_TOKEN: &str = "tok-SECRET/q+4&x=y z";

/// One destination per auth type, on paths `/auth/<type>` of `rx`.
fn auth_hooks(rx: &Receiver) -> Vec<Hook> {
    vec![
        Hook::new("none", &rx.url("/auth/none")).s("auth_type", "none"),
        Hook::new("basic", &rx.url("/auth/basic"))
            .s("auth_type", "basic")
            .s("user_name", BASIC_USER)
            .s("password", BASIC_PASS),
        Hook::new("bearer", &rx.url("/auth/bearer"))
            .s("auth_type", "bearer")
            .s("token", BEARER_TOKEN),
        // The API spelling of the field is accepted too.
        Hook::new("authheader", &rx.url("/auth/authheader"))
            .s("authType", "authheader")
            .s("token", AUTHHEADER_TOKEN),
        Hook::new("header", &rx.url("/auth/header"))
            .s("auth_type", "header")
            .s("header_name", "X-Hook-Key")
            .s("token", HEADER_TOKEN),
        Hook::new("querystring", &rx.url("/auth/querystring?existing=kept"))
            .s("auth_type", "querystring")
            .s("query_param", "hook_tok")
            .s("token", QUERY_TOKEN),
    ]
}

const ALL_CREDENTIALS: [&str; 7] = [
    BASIC_USER,
    BASIC_PASS,
    BASIC_B64,
    BEARER_TOKEN,
    AUTHHEADER_TOKEN,
    HEADER_TOKEN,
    QUERY_TOKEN,
];

/// Checks the request a destination of auth type `name` (see
/// [`auth_hooks`]) sent: its credential where the contract puts it and
/// nowhere else, and no other destination's credential at all.
fn assert_auth(name: &str, r: &Request) {
    assert_eq!(r.method, "POST", "{}", show(r));
    let mine: Vec<&str> = match name {
        "none" => {
            assert_eq!(r.header("authorization"), None, "auth none sent Authorization");
            assert_eq!(
                r.query_string(),
                None,
                "auth none changed the query: {}",
                r.target
            );
            vec![]
        }
        "basic" => {
            assert_eq!(
                r.header("authorization"),
                Some(format!("Basic {BASIC_B64}").as_str())
            );
            assert_only(r, BASIC_B64, &[Allowed::Header("authorization")]);
            assert_only(r, BASIC_USER, &[]);
            assert_only(r, BASIC_PASS, &[]);
            vec![BASIC_USER, BASIC_PASS, BASIC_B64]
        }
        "bearer" => {
            assert_eq!(
                r.header("authorization"),
                Some(format!("Bearer {BEARER_TOKEN}").as_str())
            );
            assert_only(r, BEARER_TOKEN, &[Allowed::Header("authorization")]);
            vec![BEARER_TOKEN]
        }
        "authheader" => {
            assert_eq!(r.header("authorization"), Some(AUTHHEADER_TOKEN));
            assert_only(r, AUTHHEADER_TOKEN, &[Allowed::Header("authorization")]);
            vec![AUTHHEADER_TOKEN]
        }
        "header" => {
            assert_eq!(r.header("x-hook-key"), Some(HEADER_TOKEN));
            assert_eq!(
                r.header("authorization"),
                None,
                "auth header also sent Authorization"
            );
            assert_eq!(r.header("x-api-key"), None, "header_name ignored: X-Api-Key sent");
            assert_only(r, HEADER_TOKEN, &[Allowed::Header("x-hook-key")]);
            vec![HEADER_TOKEN]
        }
        "querystring" => {
            assert_eq!(
                r.header("authorization"),
                None,
                "auth querystring also sent Authorization"
            );
            let query = r.query();
            assert_eq!(
                query,
                [
                    ("existing".to_string(), "kept".to_string()),
                    ("hook_tok".to_string(), QUERY_TOKEN.to_string())
                ],
                "query of {:?}: the existing query kept, the token appended as hook_tok",
                r.target
            );
            // URL-encoded: none of the token's reserved characters raw.
            let raw = r.query_string().unwrap_or_default();
            assert!(
                !raw.contains('/') && !raw.contains(' ') && raw.matches('&').count() == 1,
                "token not URL-encoded in {:?}",
                r.target
            );
            assert_only(r, QUERY_TOKEN, &[Allowed::Query("hook_tok")]);
            vec![QUERY_TOKEN]
        }
        other => unreachable!("{other}"),
    };
    for c in ALL_CREDENTIALS {
        if !mine.contains(&c) {
            assert_only(r, c, &[]);
        }
    }
    assert_signed(r, SECRET);
}

#[test]
fn auth_types_via_webhook_test_command() {
    let rx = Receiver::start();
    let setup = Setup::new();
    setup.write(&auth_hooks(&rx), "");
    for name in ["none", "basic", "bearer", "authheader", "header", "querystring"] {
        let before = rx.requests().len();
        let (status, stdout, stderr) = setup.webhook_test(name);
        assert!(
            status.success(),
            "webhook test {name} failed ({status}):\n{stdout}\n{stderr}"
        );
        let reqs = rx.wait_for(before + 1, PATIENCE);
        assert_eq!(
            reqs.len(),
            before + 1,
            "one request per test send:\n{}",
            show_all(&reqs)
        );
        let r = &reqs[before];
        assert_eq!(r.path(), format!("/auth/{name}"));
        assert_eq!(r.status_sent, 200);

        // The printed line names the delivery.
        let line = stdout.trim();
        let prefix = format!("{name}: delivered, HTTP 200 in ");
        let suffix = format!(" ms (webhook-id {})", wid(r));
        assert!(
            line.starts_with(&prefix)
                && line.ends_with(&suffix)
                && line[prefix.len()..line.len() - suffix.len()]
                    .bytes()
                    .all(|b| b.is_ascii_digit()),
            "stdout {line:?} is not `{prefix}N{suffix}`"
        );

        // A test notification.
        let body = json(r);
        assert_eq!(body["type"], "test", "{body}");
        assert_eq!(body["id"], wid(r));
        assert_eq!(body["name"], name);
        assert_eq!(body["host"], HOST);
        assert!(
            body["alert"].is_null(),
            "test notifications carry no alert: {body}"
        );
        assert!(
            hdr(r, "content-type").starts_with("application/json"),
            "content-type {:?}",
            r.header("content-type")
        );

        assert_auth(name, r);
        assert_absent(&stdout, &ALL_CREDENTIALS, "`webhook test` stdout");
        assert_absent(&stderr, &ALL_CREDENTIALS, "`webhook test` stderr");
    }
    assert!(rx.errors().is_empty(), "{:?}", rx.errors());
}

#[test]
fn auth_types_on_a_real_alert() {
    let rx = Receiver::start();
    let setup = Setup::new();
    setup.write(&auth_hooks(&rx), &alert(0, ""));
    let mut daemon = setup.daemon();
    let names = ["none", "basic", "bearer", "authheader", "header", "querystring"];
    let reqs = rx
        .wait_until(PATIENCE, |all| {
            names
                .iter()
                .all(|n| !on_path(all, &format!("/auth/{n}")).is_empty())
        })
        .unwrap_or_else(|| {
            panic!(
                "not every destination got the alert within {PATIENCE:?}:\n{}",
                show_all(&rx.requests())
            )
        });
    daemon.assert_running();
    for name in names {
        let r = &on_path(&reqs, &format!("/auth/{name}"))[0];
        let body = json(r);
        assert_eq!(body["type"], "alert.firing", "{name}: {body}");
        assert_eq!(body["name"], name);
        assert_eq!(body["id"], wid(r));
        assert_auth(name, r);
    }
    let (status, _) = daemon.terminate();
    assert!(status.success(), "daemon exit {status}");
    assert_absent(&daemon.stderr(), &ALL_CREDENTIALS, "daemon stderr");
    assert_absent(&daemon.stdout(), &ALL_CREDENTIALS, "daemon stdout");
    assert!(rx.errors().is_empty(), "{:?}", rx.errors());
}

// ---------------------------------------------------------------------------
// 2. Body formats
// ---------------------------------------------------------------------------

const PD_ROUTING_KEY: &str = "R0UTING-KEY-SECRET-0123456789ab";
const MARK: &str = "MARK-7f3";

#[test]
fn body_formats_for_a_firing_alert() {
    let rx = Receiver::start();
    let setup = Setup::new();
    let formats = ["generic", "slack", "discord", "gchat", "teams", "pagerduty"];
    let mut hooks: Vec<Hook> = formats
        .iter()
        .map(|f| Hook::new(f, &rx.url(&format!("/fmt/{f}"))).s("type", f))
        .collect();
    hooks[5] = hooks[5]
        .clone()
        .s("auth_type", "header")
        .s("token", PD_ROUTING_KEY);
    let summary = format!(
        "summary = {}\n",
        q(&format!("{MARK} {{{{rule}}}} on {{{{host}}}}"))
    );
    setup.write(&hooks, &alert(0, &summary));
    let mut daemon = setup.daemon();
    let reqs = rx
        .wait_until(PATIENCE, |all| {
            formats
                .iter()
                .all(|f| !on_path(all, &format!("/fmt/{f}")).is_empty())
        })
        .unwrap_or_else(|| {
            panic!(
                "not every format got the alert within {PATIENCE:?}:\n{}",
                show_all(&rx.requests())
            )
        });
    daemon.assert_running();
    let text = format!("{MARK} mem-used on {HOST}");
    let one = |f: &str| on_path(&reqs, &format!("/fmt/{f}"))[0].clone();
    for f in formats {
        let r = one(f);
        assert_eq!(r.method, "POST");
        assert!(
            hdr(&r, "content-type").starts_with("application/json"),
            "{f}: content-type {:?}",
            r.header("content-type")
        );
        assert_signed(&r, SECRET);
    }
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {v}"))
            .keys()
            .cloned()
            .collect();
        k.sort();
        k
    };

    // generic
    let r = one("generic");
    let g = json(&r);
    assert_eq!(
        keys(&g),
        ["alert", "host", "id", "name", "text", "timestamp", "type"],
        "{g}"
    );
    assert_eq!(g["type"], "alert.firing");
    assert_eq!(g["id"], wid(&r));
    assert_eq!(g["name"], "generic");
    assert_eq!(g["host"], HOST);
    assert!(
        g["text"].as_str().is_some_and(|t| t.contains(&text)),
        "generic text {} lacks the rule's summary {text:?}",
        g["text"]
    );
    let ts = rfc3339_field(&g["timestamp"], "timestamp");
    assert!(
        (ts - arrival_unix(&r)).abs() < 30.0,
        "timestamp {} is not about now",
        g["timestamp"]
    );
    let a = &g["alert"];
    assert_eq!(
        keys(a),
        [
            "fingerprint",
            "labels",
            "metric",
            "resolved_at",
            "rule",
            "severity",
            "started_at",
            "status",
            "threshold",
            "value"
        ],
        "{a}"
    );
    assert_eq!(a["rule"], "mem-used");
    assert_eq!(a["severity"], "critical");
    assert_eq!(a["status"], "firing");
    assert_eq!(a["metric"], "mem.used_pct");
    assert_eq!(a["labels"], serde_json::json!({}));
    let value = a["value"]
        .as_f64()
        .unwrap_or_else(|| panic!("value {}", a["value"]));
    assert!(value > 0.0 && value <= 100.0, "mem.used_pct value {value}");
    assert_eq!(a["threshold"].as_f64(), Some(0.0), "threshold {}", a["threshold"]);
    let started = rfc3339_field(&a["started_at"], "started_at");
    assert!(
        started <= ts + 1.0 && ts - started < 30.0,
        "started_at {} vs timestamp {}",
        a["started_at"],
        g["timestamp"]
    );
    assert!(
        a["resolved_at"].is_null(),
        "firing alert with resolved_at {}",
        a["resolved_at"]
    );
    let fingerprint = a["fingerprint"].as_str().unwrap_or_default().to_string();
    assert!(!fingerprint.is_empty(), "fingerprint {}", a["fingerprint"]);

    // slack: {"text"} (blocks optional)
    let s = json(&one("slack"));
    assert!(
        keys(&s).iter().all(|k| k == "text" || k == "blocks") && s["text"].is_string(),
        "slack body {s}"
    );
    assert!(
        s["text"].as_str().unwrap().contains(&text),
        "slack text {}",
        s["text"]
    );

    // gchat: {"text"}
    let c = json(&one("gchat"));
    assert_eq!(keys(&c), ["text"], "gchat body {c}");
    assert!(
        c["text"].as_str().unwrap_or_default().contains(&text),
        "gchat text {}",
        c["text"]
    );

    // discord: {"content"} of at most 2000 characters
    let d = json(&one("discord"));
    assert_eq!(keys(&d), ["content"], "discord body {d}");
    let content = d["content"].as_str().unwrap_or_default();
    assert!(content.contains(&text), "discord content {content:?}");
    assert!(content.chars().count() <= 2000);

    // teams: the Workflows adaptive card
    let t = json(&one("teams"));
    let card_text = t["attachments"][0]["content"]["body"][0]["text"].clone();
    assert!(
        card_text.as_str().unwrap_or_default().contains(&text),
        "teams card text {card_text}"
    );
    assert_eq!(
        t,
        serde_json::json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [{"type": "TextBlock", "text": card_text, "wrap": true}]
                }
            }]
        })
    );

    // pagerduty: Events v2 trigger, deduplicated on the alert's fingerprint
    let pr = one("pagerduty");
    let p = json(&pr);
    assert_eq!(
        keys(&p),
        ["dedup_key", "event_action", "payload", "routing_key"],
        "pagerduty body {p}"
    );
    assert_eq!(p["routing_key"], PD_ROUTING_KEY);
    assert_eq!(p["event_action"], "trigger");
    assert_eq!(
        p["dedup_key"],
        fingerprint.as_str(),
        "dedup_key is the fingerprint"
    );
    assert!(
        p["payload"]["summary"]
            .as_str()
            .unwrap_or_default()
            .contains(&text),
        "pagerduty summary {}",
        p["payload"]["summary"]
    );
    assert_eq!(p["payload"]["source"], HOST);
    assert_eq!(p["payload"]["severity"], "critical");
    // The routing key: in X-Api-Key (auth header) and as routing_key, nowhere else.
    assert_eq!(pr.header("x-api-key"), Some(PD_ROUTING_KEY));
    assert_only(
        &pr,
        PD_ROUTING_KEY,
        &[Allowed::Header("x-api-key"), Allowed::BodyField("routing_key")],
    );
    for f in &formats[..5] {
        assert_only(&one(f), PD_ROUTING_KEY, &[]);
    }

    daemon.terminate();
    assert_absent(&daemon.stderr(), &[PD_ROUTING_KEY], "daemon stderr");
    assert!(rx.errors().is_empty(), "{:?}", rx.errors());
}

// ---------------------------------------------------------------------------
// 3. Signatures
// ---------------------------------------------------------------------------

#[test]
fn python_verifier_matches_the_standard_webhooks_reference() {
    // The example from the Standard Webhooks reference libraries, so the
    // verifier itself is known to be right.
    assert_eq!(
        python_signature(
            SECRET,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            br#"{"test": 2432232314}"#
        ),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
}

#[test]
fn signature_verifies_with_the_configured_secret() {
    let rx = Receiver::start();
    let setup = Setup::new();
    setup.write(
        &[Hook::new("hook", &rx.url("/hook")).s("type", "generic")],
        &alert(0, ""),
    );
    let mut daemon = setup.daemon();
    let reqs = rx.wait_for(1, PATIENCE);
    daemon.assert_running();
    let r = &reqs[0];
    assert_signed(r, SECRET);
    let body = json(r);
    assert_eq!(body["id"], wid(r), "webhook-id is the body's id");
    // A signature over other bytes does not verify: the check is real.
    let mut tampered = r.clone();
    tampered.body.push(b' ');
    assert_ne!(
        python_signature(SECRET, wid(r), hdr(r, "webhook-timestamp"), &tampered.body),
        hdr(r, "webhook-signature")
    );
    daemon.terminate();
    assert_absent(&daemon.stderr(), &[SECRET, &SECRET[6..]], "daemon stderr");
}

#[test]
fn generated_secret_is_stored_and_signs() {
    let rx = Receiver::start();
    let setup = Setup::new();
    setup.write(
        &[Hook::new("hook", &rx.url("/hook"))
            .s("type", "generic")
            .without("secret")],
        &alert(0, ""),
    );
    let mut daemon = setup.daemon();
    let reqs = rx.wait_for(1, PATIENCE);
    daemon.assert_running();

    // The one state file under state_dir/webhooks holds the secret.
    let dir = setup.state_dir.join("webhooks");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(files.len(), 1, "state files: {files:?}");
    let state: Value =
        serde_json::from_slice(&std::fs::read(&files[0]).expect("read state")).expect("state file is JSON");
    let secret = state["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("no \"secret\" in {}: {state}", files[0].display()))
        .to_string();
    assert!(secret.starts_with("whsec_"), "generated secret {secret:?}");

    let r = &reqs[0];
    assert_signed(r, &secret);
    assert_eq!(json(r)["id"], wid(r));

    // `webhook test` signs with the same stored secret.
    let (status, stdout, stderr) = setup.webhook_test("hook");
    assert!(status.success(), "webhook test: {status}\n{stdout}\n{stderr}");
    let t = wait_path(&rx, "/hook", PATIENCE, "the test send", |r| {
        r.iter().any(|r| json(r)["type"] == "test")
    });
    let t = t.iter().find(|r| json(r)["type"] == "test").expect("found");
    assert_signed(t, &secret);

    daemon.terminate();
    assert_absent(&daemon.stderr(), &[&secret, &secret[6..]], "daemon stderr");
    assert_absent(&stdout, &[&secret, &secret[6..]], "`webhook test` stdout");
    assert_absent(&stderr, &[&secret, &secret[6..]], "`webhook test` stderr");
}

// ---------------------------------------------------------------------------
// 4.–7. Delivery outcomes
// ---------------------------------------------------------------------------

#[test]
fn retried_after_500_with_the_same_id_and_body() {
    let rx = Receiver::start();
    rx.script(vec![Reply::status(500)]);
    let setup = Setup::new();
    setup.write(
        &[Hook::new("hook", &rx.url("/hook")).s("type", "generic")],
        &alert(0, ""),
    );
    let mut daemon = setup.daemon();
    let reqs = rx.wait_for(2, PATIENCE);
    daemon.assert_running();
    let (first, second) = (&reqs[0], &reqs[1]);
    assert_eq!(first.status_sent, 500);
    assert_eq!(second.status_sent, 200);
    assert_eq!(
        wid(second),
        wid(first),
        "a retry keeps the webhook-id:\n{}",
        show_all(&reqs)
    );
    assert_eq!(second.body, first.body, "a retry sends the same body");
    assert_eq!(json(second)["type"], "alert.firing");
    assert_signed(first, SECRET);
    assert_signed(second, SECRET);
    // Delivered: that notification is not sent again.
    let more = rx.wait_until(Duration::from_millis(1500), |all| all.len() > 2);
    assert!(
        more.is_none(),
        "requests after the 200:\n{}",
        show_all(&rx.requests())
    );
    daemon.terminate();
}

#[test]
fn retry_after_is_honoured_on_429() {
    let rx = Receiver::start();
    rx.script(vec![Reply::status(429).header("Retry-After", "1")]);
    let setup = Setup::new();
    setup.write(
        &[Hook::new("hook", &rx.url("/hook")).s("type", "generic")],
        &alert(0, ""),
    );
    let mut daemon = setup.daemon();
    let reqs = rx.wait_for(2, PATIENCE);
    daemon.assert_running();
    let (first, second) = (&reqs[0], &reqs[1]);
    assert_eq!(first.status_sent, 429);
    assert_eq!(wid(second), wid(first), "{}", show_all(&reqs));
    assert_eq!(second.body, first.body);
    assert_eq!(second.status_sent, 200);
    let replied = first.replied_at.expect("the 429 was answered");
    let gap = second.at.duration_since(replied);
    assert!(
        gap + SLACK >= Duration::from_secs(1),
        "retried {gap:?} after `429 Retry-After: 1` (backoff_max is 500ms, so Retry-After must win)"
    );
    assert_signed(second, SECRET);
    daemon.terminate();
}

#[test]
fn not_retried_after_404() {
    let rx = Receiver::start();
    rx.script(vec![Reply::status(404)]);
    let setup = Setup::new();
    setup.write(
        &[Hook::new("hook", &rx.url("/hook")).s("type", "generic")],
        &alert(0, "repeat = \"300ms\"\n"),
    );
    let mut daemon = setup.daemon();
    let reqs = rx.wait_for(1, PATIENCE);
    let first = reqs[0].clone();
    assert_eq!(first.status_sent, 404);
    let id = wid(&first).to_string();
    // Watch for ~2 s: later notifications (repeat) still arrive, since a
    // 404 does not disable the destination, but the 404'd one never again.
    let watch_until = Instant::now() + Duration::from_secs(2);
    let all = rx
        .wait_until(PATIENCE, |all| Instant::now() >= watch_until && all.len() >= 3)
        .unwrap_or_else(|| panic!("repeats stopped after a 404:\n{}", show_all(&rx.requests())));
    daemon.assert_running();
    assert_eq!(
        with_id(&all, &id).len(),
        1,
        "the 404'd notification was retried:\n{}",
        show_all(&all)
    );
    for r in &all[1..] {
        assert_eq!(r.status_sent, 200);
        assert_eq!(json(r)["type"], "alert.firing");
    }
    daemon.terminate();
}

#[test]
fn gone_410_disables_the_destination_while_its_url_is_unchanged() {
    let gone = Receiver::start();
    let control = Receiver::start();
    gone.script(vec![Reply::status(410)]);
    let setup = Setup::new();
    let hooks = |gone_path: &str| {
        vec![
            Hook::new("gone", &gone.url(gone_path)).s("type", "generic"),
            Hook::new("control", &control.url("/control")).s("type", "generic"),
        ]
    };
    let rule = alert(0, "repeat = \"300ms\"\n");
    setup.write(&hooks("/gone"), &rule);
    let mut daemon = setup.daemon();
    let g = gone.wait_for(1, PATIENCE);
    assert_eq!(g[0].status_sent, 410);
    let t_gone = g[0].replied_at.expect("answered");

    // The control destination keeps getting (repeat) notifications; the
    // disabled one gets none of them.
    let after = |reqs: &[Request], t: Instant| reqs.iter().filter(|r| r.at > t).count();
    control
        .wait_until(PATIENCE, |r| after(r, t_gone) >= 4)
        .unwrap_or_else(|| panic!("no repeats to the control:\n{}", show_all(&control.requests())));
    assert!(
        gone.wait_until(Duration::from_millis(500), |r| r.len() > 1)
            .is_none(),
        "deliveries after 410 Gone:\n{}",
        show_all(&gone.requests())
    );
    daemon.assert_running();
    daemon.terminate();

    // Still disabled after a restart with the same url.
    let mut daemon = setup.daemon();
    let restarted = Instant::now();
    control
        .wait_until(PATIENCE, |r| after(r, restarted) >= 3)
        .unwrap_or_else(|| {
            panic!(
                "no notifications after restart:\n{}",
                show_all(&control.requests())
            )
        });
    assert!(
        gone.wait_until(Duration::from_millis(500), |r| r.len() > 1)
            .is_none(),
        "deliveries after a restart with the url that answered 410:\n{}",
        show_all(&gone.requests())
    );
    daemon.terminate();

    // A new url enables it again.
    setup.write(&hooks("/moved"), &rule);
    let mut daemon = setup.daemon();
    let moved = wait_path(&gone, "/moved", PATIENCE, "a delivery to the new url", |r| {
        !r.is_empty()
    });
    assert_eq!(moved[0].status_sent, 200);
    assert_eq!(on_path(&gone.requests(), "/gone").len(), 1);
    daemon.assert_running();
    daemon.terminate();
}

// ---------------------------------------------------------------------------
// 8.–9. Restarts
// ---------------------------------------------------------------------------

#[test]
fn pending_notification_survives_a_restart() {
    let rx = Receiver::start();
    rx.script(vec![Reply::status(503); 500]);
    let setup = Setup::new();
    let hook = [Hook::new("hook", &rx.url("/hook")).s("type", "generic")];
    setup.write(&hook, &alert(0, ""));
    let mut daemon = setup.daemon();
    // At least one retry: the notification is pending.
    let reqs = rx.wait_for(2, PATIENCE);
    let original = reqs[0].clone();
    let id = wid(&original).to_string();
    assert_eq!(json(&original)["type"], "alert.firing");
    assert!(
        reqs.iter().all(|r| wid(r) == id && r.status_sent == 503),
        "{}",
        show_all(&reqs)
    );
    let (status, _) = daemon.terminate();
    assert!(status.success(), "daemon exit {status}");
    let before_restart = rx.requests().len();

    rx.clear_script();
    setup.write(&hook, &alert(1000, ""));
    let mut daemon = setup.daemon();
    let all = rx
        .wait_until(PATIENCE, |all| {
            all[before_restart..]
                .iter()
                .any(|r| r.header("webhook-id") == Some(id.as_str()) && r.status_sent == 200)
        })
        .unwrap_or_else(|| {
            panic!(
                "the pending notification {id} was not delivered after the restart:\n{}",
                show_all(&rx.requests())
            )
        });
    daemon.assert_running();
    let delivered = all[before_restart..]
        .iter()
        .find(|r| wid(r) == id)
        .expect("found above");
    assert_eq!(delivered.status_sent, 200);
    assert_eq!(delivered.body, original.body, "resumed with the same body");
    assert_signed(delivered, SECRET);
    // Delivered once: not sent again.
    std::thread::sleep(Duration::from_millis(700));
    let after = rx.requests();
    assert_eq!(
        with_id(&after[before_restart..], &id).len(),
        1,
        "{}",
        show_all(&after)
    );
    daemon.terminate();
}

#[test]
fn firing_then_resolved_across_a_restart() {
    let rx = Receiver::start();
    let setup = Setup::new();
    let hook = [Hook::new("hook", &rx.url("/hook")).s("type", "generic")];
    setup.write(&hook, &alert(0, ""));
    let mut daemon = setup.daemon();
    let reqs = rx.wait_for(1, PATIENCE);
    let firing = json(&reqs[0]);
    assert_eq!(firing["type"], "alert.firing", "{firing}");
    let (status, _) = daemon.terminate();
    assert!(status.success(), "daemon exit {status}");

    setup.write(&hook, &alert(1000, ""));
    let mut daemon = setup.daemon();
    let all = rx
        .wait_until(PATIENCE, |all| {
            all.iter().any(|r| json(r)["type"] == "alert.resolved")
        })
        .unwrap_or_else(|| {
            panic!(
                "no alert.resolved after restarting with crit = 1000:\n{}",
                show_all(&rx.requests())
            )
        });
    daemon.assert_running();
    let r = all
        .iter()
        .find(|r| json(r)["type"] == "alert.resolved")
        .expect("found above");
    let resolved = json(r);
    let (fa, ra) = (&firing["alert"], &resolved["alert"]);
    assert_eq!(resolved["id"], wid(r));
    assert_ne!(resolved["id"], firing["id"], "a new notification");
    assert_eq!(ra["status"], "resolved", "{resolved}");
    assert_eq!(ra["rule"], "mem-used");
    assert_eq!(ra["fingerprint"], fa["fingerprint"], "same alert");
    assert_eq!(ra["started_at"], fa["started_at"], "same start");
    assert_eq!(ra["severity"], fa["severity"]);
    let started = rfc3339_field(&ra["started_at"], "started_at");
    let resolved_at = rfc3339_field(&ra["resolved_at"], "resolved_at");
    assert!(resolved_at >= started, "resolved_at before started_at: {ra}");
    assert!(
        (resolved_at - arrival_unix(r)).abs() < 30.0,
        "resolved_at not about now: {ra}"
    );
    assert_signed(r, SECRET);
    // Only one firing was ever sent (no re-fire after the restart).
    let firings = all.iter().filter(|r| json(r)["type"] == "alert.firing").count();
    assert_eq!(firings, 1, "{}", show_all(&all));
    daemon.terminate();
}

// ---------------------------------------------------------------------------
// 10. Credentials never in the logs, also when deliveries fail
// ---------------------------------------------------------------------------

#[test]
fn credentials_never_in_logs_when_deliveries_fail() {
    // Timeouts (the error names the request, whose URL carries the query
    // token), 5xx, 429, 404 and 410 for destinations of every auth type.
    let hang = Receiver::start();
    hang.script(vec![Reply::hang(), Reply::hang(), Reply::hang()]);
    let failing = Receiver::start();
    failing.script(
        [500, 429, 404, 503, 410, 502, 408, 504]
            .into_iter()
            .map(Reply::status)
            .cycle()
            .take(60)
            .collect(),
    );
    let setup = Setup::new();
    let mut hooks = auth_hooks(&failing);
    hooks[5] = hooks[5]
        .clone()
        .s("url", &hang.url("/auth/querystring?existing=kept"))
        .s("timeout", "300ms");
    setup.write(&hooks, &alert(0, "repeat = \"300ms\"\n"));
    let mut daemon = setup.daemon();
    // Two timed-out attempts and a good number of failed ones.
    hang.wait_for(2, PATIENCE);
    failing.wait_for(12, PATIENCE);
    daemon.assert_running();
    assert!(
        daemon.wait_stderr("WARN", Duration::from_secs(2)) || daemon.wait_stderr("ERROR", Duration::ZERO),
        "no failure was logged"
    );
    daemon.terminate();
    let err = daemon.stderr();
    assert_absent(&err, &ALL_CREDENTIALS, "daemon stderr");
    assert_absent(&err, &[SECRET, &SECRET[6..]], "daemon stderr");
    let encoded: String = form_urlencoded::byte_serialize(QUERY_TOKEN.as_bytes()).collect();
    assert_absent(&err, &[&encoded, "tok-SECRET"], "daemon stderr");
    assert_absent(&daemon.stdout(), &ALL_CREDENTIALS, "daemon stdout");

    // `webhook test` reporting a timeout on the querystring destination.
    let (status, stdout, stderr) = setup.webhook_test("querystring");
    assert_eq!(
        status.code(),
        Some(1),
        "a failed test send exits 1:\n{stdout}\n{stderr}"
    );
    assert!(stdout.starts_with("querystring: failed, "), "stdout {stdout:?}");
    for (what, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        assert_absent(text, &ALL_CREDENTIALS, &format!("`webhook test` {what}"));
        assert_absent(text, &[&encoded, "tok-SECRET"], &format!("`webhook test` {what}"));
    }
}

#[test]
fn webhook_test_command_reports_failure_without_retry_or_redirect() {
    let rx = Receiver::start();
    let setup = Setup::new();
    setup.write(
        &[Hook::new("hook", &rx.url("/hook"))
            .s("auth_type", "bearer")
            .s("token", BEARER_TOKEN)],
        "",
    );
    // 503: one attempt, exit 1.
    rx.script(vec![Reply::status(503)]);
    let (status, stdout, stderr) = setup.webhook_test("hook");
    assert_eq!(status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("hook: failed, "), "stdout {stdout:?}");
    assert_eq!(rx.requests().len(), 1, "{}", show_all(&rx.requests()));
    assert_absent(&stdout, &[BEARER_TOKEN], "`webhook test` stdout");
    assert_absent(&stderr, &[BEARER_TOKEN], "`webhook test` stderr");

    // A redirect is not followed (and is not a success).
    rx.script(vec![Reply::status(302).header("Location", &rx.url("/elsewhere"))]);
    let (status, stdout, stderr) = setup.webhook_test("hook");
    assert_eq!(status.code(), Some(1), "a 302 is a failure: {stdout}\n{stderr}");
    assert!(stdout.starts_with("hook: failed, "), "stdout {stdout:?}");
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 2, "{}", show_all(&reqs));
    assert!(on_path(&reqs, "/elsewhere").is_empty(), "redirect followed");
}
