//! End-to-end tests of the management API: the real `hostbeat` daemon with
//! an `[api]` table, driven over real loopback sockets by the tiny blocking
//! HTTP/1.1 client in `common/mod.rs`, with real receivers (also loopback)
//! as webhook destinations. The contract is `shared/protocol/webhooks.md`
//! plus the API brief (routes, envelope, status codes, persistence).
//!
//! Every test has its own tempdir, daemon(s) and receivers, and the API
//! listens on 127.0.0.1:0 (the port is read from the daemon's log), so the
//! tests run in parallel.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::{Daemon, HttpResponse, Receiver, Reply, Request, http_request, parse_rfc3339};
use serde_json::{Value, json};

/// The API token of every test config. It must never show up in a log or a
/// response.
const API_TOKEN: &str = "api-SECRET-token";
/// A secret in the documented format (the Standard Webhooks example).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ACCOUNT: &str = "acct-7f3a9c";
/// How every write-only value is shown.
const MASK: &str = "********";
/// An id no destination has.
const UNKNOWN_ID: &str = "0b9d2c4e-1f3a-4c5b-8d6e-7f8091a2b3c4";
/// How long any single wait may take before a test gives up.
const PATIENCE: Duration = Duration::from_secs(10);

/// The two path families every `/webhooks…` route lives under.
fn families() -> [String; 2] {
    [
        String::new(),
        format!("/accounts/{ACCOUNT}/alerting/v3/destinations"),
    ]
}

/// Every route of the contract as (method, path template).
const CONTRACT_ROUTES: &[(&str, &str)] = &[
    ("post", "/webhooks"),
    ("get", "/webhooks"),
    ("get", "/webhooks/{id}"),
    ("put", "/webhooks/{id}"),
    ("delete", "/webhooks/{id}"),
    ("post", "/webhooks/{id}/test"),
    ("post", "/accounts/{account_id}/alerting/v3/destinations/webhooks"),
    ("get", "/accounts/{account_id}/alerting/v3/destinations/webhooks"),
    (
        "get",
        "/accounts/{account_id}/alerting/v3/destinations/webhooks/{id}",
    ),
    (
        "put",
        "/accounts/{account_id}/alerting/v3/destinations/webhooks/{id}",
    ),
    (
        "delete",
        "/accounts/{account_id}/alerting/v3/destinations/webhooks/{id}",
    ),
    (
        "post",
        "/accounts/{account_id}/alerting/v3/destinations/webhooks/{id}/test",
    ),
    ("get", "/status"),
    ("get", "/alerts"),
    ("get", "/openapi.json"),
];

// ---------------------------------------------------------------------------
// Config and daemon
// ---------------------------------------------------------------------------

/// A TOML basic string (JSON string syntax is valid TOML for these values).
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("string serialises")
}

/// The `[api]` lines of most tests: ephemeral loopback port, the test token,
/// a quota no test reaches.
fn std_api() -> String {
    format!(
        "listen = \"127.0.0.1:0\"\ntoken = {}\nrate_per_second = 1000\nburst = 1000\n",
        q(API_TOKEN)
    )
}

/// A `[[webhook]]` table defined in the TOML file (read-only in the API).
fn toml_hook(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[webhook]]\nname = {}\nurl = {}\ntimeout = \"2s\"\nbackoff = \"100ms\"\nbackoff_max = \"500ms\"\nmax_per_minute = 600\n{extra}\n",
        q(name),
        q(url)
    )
}

/// The `mem` rule: `mem.used_pct` above 0 fires on the first sample.
fn mem_alert(extra: &str) -> String {
    format!("[[alert]]\nname = \"mem\"\nmetric = \"mem.used_pct\"\ncrit = 0\n{extra}\n")
}

/// A tempdir with a config file and a state_dir, kept across restarts.
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

    /// `[agent]` (sampling every `interval`), `[api]` with `api` lines (no
    /// `[api]` at all when `None`), then `rest` verbatim.
    fn write(&self, interval: &str, api: Option<&str>, rest: &str) {
        let mut text = format!(
            "[agent]\nhostname = \"api-host\"\ninterval = {}\nstate_dir = {}\n\n",
            q(interval),
            q(&self.state_dir.to_string_lossy())
        );
        if let Some(api) = api {
            text.push_str("[api]\n");
            text.push_str(api);
            text.push('\n');
        }
        text.push_str(rest);
        std::fs::write(&self.config_path, text).expect("write config");
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&self.config_path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod config");
    }

    /// Starts the daemon and waits for its API.
    fn start(&self) -> (Daemon, Api) {
        self.start_env(&[])
    }

    fn start_env(&self, env: &[(&str, &str)]) -> (Daemon, Api) {
        let mut d = Daemon::spawn_file_env(&self.config_path, env);
        let addr = api_addr(&mut d);
        (d, Api::new(addr, API_TOKEN))
    }

    fn destinations_json(&self) -> PathBuf {
        self.state_dir.join("destinations.json")
    }
}

/// SIGTERM, then everything the daemon wrote (stderr, then stdout), once
/// its last line ("hostbeat stopped") has been drained from the pipe.
fn stop(d: &mut Daemon) -> String {
    d.terminate();
    d.wait_stderr("hostbeat stopped", Duration::from_secs(2));
    thread::sleep(Duration::from_millis(50));
    format!("{}{}", d.stderr(), d.stdout())
}

/// Waits for `management API listening … addr=127.0.0.1:PORT` in the
/// daemon's log and returns that address.
fn api_addr(d: &mut Daemon) -> SocketAddr {
    let addr = d.wait_api_addr(PATIENCE);
    assert_ne!(addr.port(), 0, "the log shows port 0, not the bound port");
    addr
}

// ---------------------------------------------------------------------------
// The API client
// ---------------------------------------------------------------------------

/// A client of one daemon's API. Every response it sees is kept (headers
/// and body) so a test can check none of them leaks a secret.
#[derive(Clone)]
struct Api {
    addr: SocketAddr,
    token: String,
    seen: Arc<Mutex<Vec<(String, HttpResponse)>>>,
}

impl Api {
    fn new(addr: SocketAddr, token: &str) -> Api {
        Api {
            addr,
            token: token.to_string(),
            seen: Arc::default(),
        }
    }

    /// Sends a request with exactly `headers` (no Authorization added).
    fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> HttpResponse {
        let resp = http_request(self.addr, method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: no HTTP response: {e}"));
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((format!("{method} {path}"), resp.clone()));
        resp
    }

    /// An authorised request; a JSON body goes with `Content-Type: application/json`.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> HttpResponse {
        let auth = format!("Bearer {}", self.token);
        match body {
            Some(b) => {
                let bytes = serde_json::to_vec(b).expect("serialises");
                self.raw(
                    method,
                    path,
                    &[("Authorization", &auth), ("Content-Type", "application/json")],
                    Some(&bytes),
                )
            }
            None => self.raw(method, path, &[("Authorization", &auth)], None),
        }
    }

    /// An authorised request with a raw body and content type.
    fn call_bytes(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> HttpResponse {
        let auth = format!("Bearer {}", self.token);
        self.raw(
            method,
            path,
            &[("Authorization", &auth), ("Content-Type", content_type)],
            Some(body),
        )
    }

    fn get(&self, path: &str) -> HttpResponse {
        self.call("GET", path, None)
    }

    /// `POST {prefix}/webhooks` that must succeed: the created view.
    fn create(&self, prefix: &str, body: &Value) -> Value {
        let resp = self.call("POST", &format!("{prefix}/webhooks"), Some(body));
        let view = ok_result(&resp, 201, &format!("POST {prefix}/webhooks {body}"));
        check_view(&view, "create response");
        view
    }

    /// `GET /webhooks`: the list, each view checked.
    fn list(&self, prefix: &str) -> Vec<Value> {
        let resp = self.get(&format!("{prefix}/webhooks"));
        let result = ok_result(&resp, 200, &format!("GET {prefix}/webhooks"));
        let items = result
            .as_array()
            .unwrap_or_else(|| panic!("GET /webhooks: result is not an array: {result}"))
            .clone();
        for v in &items {
            check_view(v, "GET /webhooks item");
        }
        items
    }

    fn responses(&self) -> Vec<(String, HttpResponse)> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A create body for a destination at `url`, fast tuning, not an alert hook.
fn body(name: &str, url: &str) -> Value {
    json!({
        "name": name,
        "url": url,
        "type": "generic",
        "isAlertHook": false,
        "authType": "none",
        "timeout": "2s",
        "retry_for": "10s",
        "backoff": "100ms",
        "backoff_max": "500ms",
        "max_per_minute": 600,
    })
}

/// `body` with `changes` merged in (a null value removes the key).
fn with(mut base: Value, changes: Value) -> Value {
    let o = base.as_object_mut().expect("object");
    for (k, v) in changes.as_object().expect("object") {
        if v.is_null() {
            o.remove(k);
        } else {
            o.insert(k.clone(), v.clone());
        }
    }
    base
}

fn find<'a>(items: &'a [Value], id: &str) -> Option<&'a Value> {
    items.iter().find(|v| v["id"] == id)
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {v}"))
}

// ---------------------------------------------------------------------------
// Envelope and view checks
// ---------------------------------------------------------------------------

fn show(resp: &HttpResponse) -> String {
    format!(
        "status {} headers {:?} body {}",
        resp.status,
        resp.headers,
        resp.text()
    )
}

/// Asserts the envelope shape: `success`, `errors` [{code:int, message:str}],
/// `messages` [], `result` present, JSON content type.
fn check_envelope(resp: &HttpResponse, what: &str) -> Value {
    let ct = resp.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("application/json"),
        "{what}: Content-Type {ct:?} is not application/json; {}",
        show(resp)
    );
    let v = resp
        .try_json()
        .unwrap_or_else(|| panic!("{what}: body is not JSON; {}", show(resp)));
    let o = v
        .as_object()
        .unwrap_or_else(|| panic!("{what}: body is not a JSON object; {}", show(resp)));
    for key in ["success", "errors", "messages", "result"] {
        assert!(
            o.contains_key(key),
            "{what}: envelope has no {key:?}; {}",
            show(resp)
        );
    }
    assert!(
        v["success"].is_boolean(),
        "{what}: success is not a bool; {}",
        show(resp)
    );
    assert!(
        v["messages"].is_array(),
        "{what}: messages is not an array; {}",
        show(resp)
    );
    let errors = v["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: errors is not an array; {}", show(resp)));
    for e in errors {
        assert!(
            e["code"].is_i64() || e["code"].is_u64(),
            "{what}: error code is not an integer: {e}; {}",
            show(resp)
        );
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: error message is not a non-empty string: {e}; {}",
            show(resp)
        );
    }
    v
}

/// Asserts `status` and a successful envelope; returns `result`.
fn ok_result(resp: &HttpResponse, status: u16, what: &str) -> Value {
    assert_eq!(resp.status, status, "{what}: {}", show(resp));
    let v = check_envelope(resp, what);
    assert_eq!(v["success"], true, "{what}: success is not true; {}", show(resp));
    assert_eq!(
        v["errors"],
        json!([]),
        "{what}: errors on success; {}",
        show(resp)
    );
    v["result"].clone()
}

/// Asserts `status` and a failed envelope with at least one error; returns
/// the error messages.
fn err_messages(resp: &HttpResponse, status: u16, what: &str) -> Vec<String> {
    assert_eq!(resp.status, status, "{what}: {}", show(resp));
    let v = check_envelope(resp, what);
    assert_eq!(
        v["success"],
        false,
        "{what}: success is not false; {}",
        show(resp)
    );
    let errors = v["errors"].as_array().expect("checked");
    assert!(!errors.is_empty(), "{what}: no errors listed; {}", show(resp));
    errors
        .iter()
        .map(|e| e["message"].as_str().expect("checked").to_string())
        .collect()
}

const VIEW_KEYS: &[&str] = &[
    "id",
    "name",
    "url",
    "endpoint",
    "type",
    "isAlertHook",
    "authType",
    "userName",
    "password",
    "token",
    "headerName",
    "queryParam",
    "secret",
    "created_at",
    "last_success",
    "last_failure",
    "last_error",
    "pending",
    "disabled",
    "source",
    "readOnly",
];

fn null_or_string(v: &Value) -> bool {
    v.is_null() || v.is_string()
}

fn null_or_time(v: &Value) -> bool {
    v.is_null() || v.as_str().is_some_and(|s| parse_rfc3339(s).is_some())
}

/// Asserts a destination view has every documented field with its type, and
/// no write-only value in clear (except a generated `whsec_` secret, which
/// the caller checks is only in its create response).
fn check_view(v: &Value, what: &str) {
    let o = v
        .as_object()
        .unwrap_or_else(|| panic!("{what}: view is not an object: {v}"));
    for key in VIEW_KEYS {
        assert!(o.contains_key(*key), "{what}: view has no {key:?}: {v}");
    }
    assert!(v["id"].as_str().is_some_and(|s| !s.is_empty()), "{what}: id: {v}");
    assert!(v["name"].is_string(), "{what}: name: {v}");
    assert!(v["url"].is_string(), "{what}: url: {v}");
    assert_eq!(v["endpoint"], v["url"], "{what}: endpoint != url: {v}");
    assert!(
        ["generic", "slack", "discord", "gchat", "teams", "pagerduty"]
            .contains(&v["type"].as_str().unwrap_or("?")),
        "{what}: type: {v}"
    );
    assert!(v["isAlertHook"].is_boolean(), "{what}: isAlertHook: {v}");
    assert!(
        ["none", "basic", "querystring", "authheader", "header", "bearer"]
            .contains(&v["authType"].as_str().unwrap_or("?")),
        "{what}: authType: {v}"
    );
    for key in ["userName", "headerName", "queryParam", "last_error"] {
        assert!(null_or_string(&v[key]), "{what}: {key}: {v}");
    }
    for key in ["password", "token"] {
        assert!(
            v[key].is_null() || v[key] == MASK,
            "{what}: {key} must be \"********\" or null: {v}"
        );
    }
    let secret = v["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: secret is not a string: {v}"));
    assert!(
        secret == MASK || secret.starts_with("whsec_"),
        "{what}: secret must be masked: {v}"
    );
    for key in ["last_success", "last_failure"] {
        assert!(
            null_or_time(&v[key]),
            "{what}: {key} is neither null nor RFC 3339: {v}"
        );
    }
    assert!(
        v["pending"].is_u64(),
        "{what}: pending is not a non-negative integer: {v}"
    );
    assert!(v["disabled"].is_boolean(), "{what}: disabled: {v}");
    match v["source"].as_str() {
        Some("config") => {
            assert_eq!(
                v["readOnly"], true,
                "{what}: a config destination must be readOnly: {v}"
            );
            assert!(
                v["created_at"].is_null(),
                "{what}: created_at of a config destination: {v}"
            );
        }
        Some("api") => {
            assert_eq!(
                v["readOnly"], false,
                "{what}: an API destination is not readOnly: {v}"
            );
            assert!(
                v["created_at"]
                    .as_str()
                    .is_some_and(|s| parse_rfc3339(s).is_some()),
                "{what}: created_at is not RFC 3339: {v}"
            );
        }
        _ => panic!("{what}: source is neither config nor api: {v}"),
    }
}

/// Whether `message` names `field` first (`field: …` or `field …`).
fn names_field(message: &str, field: &str) -> bool {
    message
        .strip_prefix(field)
        .is_some_and(|rest| rest.starts_with(':') || rest.starts_with(' '))
}

// ---------------------------------------------------------------------------
// Time and signatures
// ---------------------------------------------------------------------------

fn unix_now_f() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Asserts `r` carries Standard Webhooks headers whose signature verifies
/// with `secret` over the exact body bytes.
fn assert_signed(r: &Request, secret: &str) {
    let id = r
        .header("webhook-id")
        .unwrap_or_else(|| panic!("no webhook-id header: {}", show_req(r)));
    let ts = r
        .header("webhook-timestamp")
        .unwrap_or_else(|| panic!("no webhook-timestamp header: {}", show_req(r)));
    let sig = r
        .header("webhook-signature")
        .unwrap_or_else(|| panic!("no webhook-signature header: {}", show_req(r)));
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("secret is base64");
    let mut msg = format!("{id}.{ts}.").into_bytes();
    msg.extend_from_slice(&r.body);
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key), &msg);
    let expected = format!("v1,{}", b64(tag.as_ref()));
    assert!(
        sig.split(' ').any(|s| s == expected),
        "webhook-signature {sig:?} does not verify with the expected secret (want {expected:?}): {}",
        show_req(r)
    );
}

// ---------------------------------------------------------------------------
// Receivers
// ---------------------------------------------------------------------------

fn show_req(r: &Request) -> String {
    format!(
        "{} {} -> {} webhook-id={:?} body={}",
        r.method,
        r.target,
        r.status_sent,
        r.header("webhook-id"),
        String::from_utf8_lossy(&r.body)
    )
}

fn show_reqs(reqs: &[Request]) -> String {
    if reqs.is_empty() {
        return "  (no requests)".into();
    }
    reqs.iter()
        .map(|r| format!("  {}", show_req(r)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn req_json(r: &Request) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", show_req(r)))
}

fn on_path(reqs: &[Request], path: &str) -> Vec<Request> {
    reqs.iter().filter(|r| r.path() == path).cloned().collect()
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
            show_reqs(&rx.requests()),
            rx.errors()
        ),
    }
}

/// Alert notifications (generic body of type alert.*) among `reqs`.
fn alerts_in(reqs: &[Request]) -> Vec<Request> {
    reqs.iter()
        .filter(|r| {
            serde_json::from_slice::<Value>(&r.body)
                .ok()
                .and_then(|v| v["type"].as_str().map(|t| t.starts_with("alert.")))
                .unwrap_or(false)
        })
        .cloned()
        .collect()
}

/// A loopback port with nothing listening on it.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

// ---------------------------------------------------------------------------
// 1. Every route and every error code, both path families
// ---------------------------------------------------------------------------

#[test]
fn every_route_and_error_code_through_a_real_socket() {
    let rx = Receiver::start();
    let setup = Setup::new();
    setup.write(
        "500ms",
        Some(&std_api()),
        &toml_hook("from-toml", "http://127.0.0.1:9/hook", ""),
    );
    let (mut daemon, api) = setup.start();

    // The TOML destination, read-only, under both families.
    let list = api.list("");
    let toml = list
        .iter()
        .find(|v| v["name"] == "from-toml")
        .unwrap_or_else(|| panic!("the TOML destination is not listed: {list:?}"))
        .clone();
    assert_eq!(toml["source"], "config", "{toml}");
    assert_eq!(toml["readOnly"], true, "{toml}");
    assert_eq!(toml["url"], "http://127.0.0.1:9/hook", "{toml}");
    assert_eq!(toml["secret"], MASK, "{toml}");
    let toml_id = str_of(&toml, "id").to_string();

    for (i, prefix) in families().iter().enumerate() {
        let base = format!("{prefix}/webhooks");
        let ctx = |s: &str| {
            format!(
                "[{}] {s}",
                if prefix.is_empty() {
                    "/webhooks"
                } else {
                    "accounts"
                }
            )
        };

        // --- create: 201 with the view and a generated secret shown once.
        let before = unix_now_f();
        let create = with(
            body(&format!("hook{i}"), &rx.url(&format!("/hook{i}"))),
            json!({"authType": "bearer", "token": format!("tok-ROUTE-{i}")}),
        );
        let view = api.create(prefix, &create);
        let id = str_of(&view, "id").to_string();
        assert_eq!(view["name"], format!("hook{i}"), "{}", ctx("create view"));
        assert_eq!(
            view["url"],
            rx.url(&format!("/hook{i}")),
            "{}",
            ctx("create view")
        );
        assert_eq!(view["type"], "generic");
        assert_eq!(view["isAlertHook"], false);
        assert_eq!(view["authType"], "bearer");
        assert_eq!(view["token"], MASK);
        assert_eq!(view["password"], Value::Null);
        assert_eq!(view["userName"], Value::Null);
        assert_eq!(view["source"], "api");
        assert_eq!(view["readOnly"], false);
        assert_eq!(view["pending"], 0);
        assert_eq!(view["disabled"], false);
        assert_eq!(view["last_success"], Value::Null);
        assert_eq!(view["last_failure"], Value::Null);
        assert_eq!(view["last_error"], Value::Null);
        let created_at = parse_rfc3339(str_of(&view, "created_at")).expect("checked");
        assert!(
            created_at >= before - 2.0 && created_at <= unix_now_f() + 2.0,
            "{}: created_at {created_at} is not now",
            ctx("create")
        );
        let generated = str_of(&view, "secret").to_string();
        assert!(
            generated.starts_with("whsec_") && generated != MASK,
            "{}: the create response must show the generated secret once: {view}",
            ctx("create")
        );
        let key = base64::engine::general_purpose::STANDARD
            .decode(&generated["whsec_".len()..])
            .unwrap_or_else(|e| panic!("generated secret {generated:?} is not base64: {e}"));
        assert!(
            (24..=64).contains(&key.len()),
            "generated key has {} bytes",
            key.len()
        );

        // --- list and get: masked, both families see it.
        for p in families() {
            let items = api.list(&p);
            let v =
                find(&items, &id).unwrap_or_else(|| panic!("{}: {id} not listed under {p:?}", ctx("list")));
            assert_eq!(
                v["secret"],
                MASK,
                "{}: list must mask the secret: {v}",
                ctx("list")
            );
            assert!(
                find(&items, &toml_id).is_some(),
                "{}: TOML destination not listed under {p:?}",
                ctx("list")
            );
            let got = ok_result(&api.get(&format!("{p}/webhooks/{id}")), 200, &ctx("GET one"));
            check_view(&got, "GET one");
            assert_eq!(got["id"], id.as_str());
            assert_eq!(got["name"], view["name"]);
            assert_eq!(got["url"], view["url"]);
            assert_eq!(got["created_at"], view["created_at"]);
            assert_eq!(
                got["secret"],
                MASK,
                "{}: GET must mask the secret: {got}",
                ctx("GET one")
            );
            assert_eq!(got["token"], MASK);
        }
        // Any account id reaches the same handlers.
        let other = ok_result(
            &api.get(&format!(
                "/accounts/another-account/alerting/v3/destinations/webhooks/{id}"
            )),
            200,
            &ctx("GET under another account id"),
        );
        assert_eq!(other["id"], id.as_str());

        // --- test send: delivered, signed with the generated secret.
        let resp = api.call("POST", &format!("{base}/{id}/test"), None);
        let result = ok_result(&resp, 200, &ctx("POST test"));
        let hook_path = format!("/hook{i}");
        let got = wait_path(&rx, &hook_path, PATIENCE, "the test notification", |r| {
            !r.is_empty()
        });
        let r = &got[0];
        assert_eq!(
            got.len(),
            1,
            "{}: one test send, one request:\n{}",
            ctx("test"),
            show_reqs(&got)
        );
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer tok-ROUTE-{i}").as_str())
        );
        assert_eq!(req_json(r)["type"], "test", "{}", show_req(r));
        assert_signed(r, &generated);
        assert_eq!(result["id"], id.as_str(), "{}: result.id: {result}", ctx("test"));
        assert_eq!(
            result["webhook_id"].as_str(),
            r.header("webhook-id"),
            "{}: result.webhook_id must be the notification's webhook-id: {result}",
            ctx("test")
        );
        assert_eq!(result["delivered"], true, "{result}");
        assert_eq!(result["status"], 200, "{result}");
        assert!(
            result["latency_ms"].as_f64().is_some_and(|l| l >= 0.0),
            "{result}"
        );
        assert_eq!(result["error"], Value::Null, "{result}");

        // --- replace: 200 {id}; the omitted secret is kept.
        let put = with(
            body(&format!("moved{i}"), &rx.url(&format!("/moved{i}"))),
            json!({"authType": "header", "token": format!("tok-ROUTE-PUT-{i}"), "headerName": "X-Hook-Key"}),
        );
        let resp = api.call("PUT", &format!("{base}/{id}"), Some(&put));
        let result = ok_result(&resp, 200, &ctx("PUT"));
        assert_eq!(result, json!({"id": id}), "{}", ctx("PUT result"));
        let got = ok_result(&api.get(&format!("{base}/{id}")), 200, &ctx("GET after PUT"));
        check_view(&got, "GET after PUT");
        assert_eq!(got["name"], format!("moved{i}"));
        assert_eq!(got["url"], rx.url(&format!("/moved{i}")));
        assert_eq!(got["authType"], "header");
        assert_eq!(got["headerName"], "X-Hook-Key");
        assert_eq!(got["token"], MASK);
        assert_eq!(got["secret"], MASK);
        assert_eq!(got["created_at"], view["created_at"], "PUT must keep created_at");
        let resp = api.call("POST", &format!("{base}/{id}/test"), None);
        let result = ok_result(&resp, 200, &ctx("POST test after PUT"));
        assert_eq!(result["delivered"], true, "{result}");
        let got = wait_path(&rx, &format!("/moved{i}"), PATIENCE, "the test after PUT", |r| {
            !r.is_empty()
        });
        assert_eq!(
            got[0].header("x-hook-key"),
            Some(format!("tok-ROUTE-PUT-{i}").as_str())
        );
        assert_signed(&got[0], &generated);

        // --- test send outcomes: a 4xx answer and a refused connection.
        let failing = api.create(
            prefix,
            &body(&format!("failing{i}"), &rx.url(&format!("/fail{i}"))),
        );
        rx.script(vec![Reply::status(404)]);
        let result = ok_result(
            &api.call("POST", &format!("{base}/{}/test", str_of(&failing, "id")), None),
            200,
            &ctx("POST test answered 404"),
        );
        rx.clear_script();
        assert_eq!(result["delivered"], false, "{result}");
        assert_eq!(result["status"], 404, "{result}");
        assert!(
            result["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{result}"
        );
        assert!(result["latency_ms"].is_number(), "{result}");
        let refused = api.create(
            prefix,
            &body(
                &format!("refused{i}"),
                &format!("http://127.0.0.1:{}/x", closed_port()),
            ),
        );
        let result = ok_result(
            &api.call("POST", &format!("{base}/{}/test", str_of(&refused, "id")), None),
            200,
            &ctx("POST test to a closed port"),
        );
        assert_eq!(result["delivered"], false, "{result}");
        assert_eq!(result["status"], Value::Null, "{result}");
        assert!(
            result["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{result}"
        );

        // --- delete: 200 {id}; then 404 everywhere.
        let resp = api.call("DELETE", &format!("{base}/{id}"), None);
        assert_eq!(ok_result(&resp, 200, &ctx("DELETE")), json!({"id": id}));
        err_messages(&api.get(&format!("{base}/{id}")), 404, &ctx("GET deleted"));
        err_messages(
            &api.call("DELETE", &format!("{base}/{id}"), None),
            404,
            &ctx("DELETE deleted"),
        );
        err_messages(
            &api.call("PUT", &format!("{base}/{id}"), Some(&put)),
            404,
            &ctx("PUT deleted"),
        );
        err_messages(
            &api.call("POST", &format!("{base}/{id}/test"), None),
            404,
            &ctx("test deleted"),
        );
        assert!(
            find(&api.list(prefix), &id).is_none(),
            "{}: deleted id still listed",
            ctx("list")
        );
        for unknown in [UNKNOWN_ID, "not-a-uuid"] {
            err_messages(
                &api.get(&format!("{base}/{unknown}")),
                404,
                &ctx("GET unknown id"),
            );
            err_messages(
                &api.call("PUT", &format!("{base}/{unknown}"), Some(&put)),
                404,
                &ctx("PUT unknown id"),
            );
            err_messages(
                &api.call("DELETE", &format!("{base}/{unknown}"), None),
                404,
                &ctx("DELETE unknown"),
            );
            err_messages(
                &api.call("POST", &format!("{base}/{unknown}/test"), None),
                404,
                &ctx("test unknown"),
            );
        }

        // --- the TOML destination: readable, testable, not changeable.
        let got = ok_result(&api.get(&format!("{base}/{toml_id}")), 200, &ctx("GET TOML"));
        assert_eq!(got["source"], "config");
        err_messages(
            &api.call("PUT", &format!("{base}/{toml_id}"), Some(&put)),
            409,
            &ctx("PUT TOML"),
        );
        err_messages(
            &api.call("DELETE", &format!("{base}/{toml_id}"), None),
            409,
            &ctx("DELETE TOML"),
        );
        let result = ok_result(
            &api.call("POST", &format!("{base}/{toml_id}/test"), None),
            200,
            &ctx("test TOML (port 9 refuses)"),
        );
        assert_eq!(result["delivered"], false, "{result}");
        let still = find(&api.list(prefix), &toml_id)
            .cloned()
            .expect("TOML destination still listed");
        assert_eq!(still["url"], "http://127.0.0.1:9/hook");
        assert_eq!(still["name"], "from-toml");

        // --- 400: malformed JSON, unknown field, wrong JSON type.
        let live = api.create(prefix, &body(&format!("live{i}"), &rx.url("/live")));
        let live_id = str_of(&live, "id").to_string();
        let n_before = api.list(prefix).len();
        for (what, bytes) in [
            ("malformed JSON", br#"{"name": "x", "url": "#.to_vec()),
            ("not an object", b"[1, 2, 3]".to_vec()),
            ("empty body", Vec::new()),
        ] {
            err_messages(
                &api.call_bytes("POST", &base, "application/json", &bytes),
                400,
                &ctx(&format!("POST {what}")),
            );
            err_messages(
                &api.call_bytes("PUT", &format!("{base}/{live_id}"), "application/json", &bytes),
                400,
                &ctx(&format!("PUT {what}")),
            );
        }
        let unknown_field = with(body("x", &rx.url("/x")), json!({"colour": "red"}));
        let msgs = err_messages(
            &api.call("POST", &base, Some(&unknown_field)),
            400,
            &ctx("unknown field"),
        );
        assert!(
            msgs.iter().any(|m| m.contains("colour")),
            "{}: the unknown field is not named: {msgs:?}",
            ctx("400")
        );
        let msgs = err_messages(
            &api.call("PUT", &format!("{base}/{live_id}"), Some(&unknown_field)),
            400,
            &ctx("PUT unknown field"),
        );
        assert!(msgs.iter().any(|m| m.contains("colour")), "{msgs:?}");
        let wrong_type = with(body("x", &rx.url("/x")), json!({"isAlertHook": "yes"}));
        err_messages(
            &api.call("POST", &base, Some(&wrong_type)),
            400,
            &ctx("wrong JSON type"),
        );

        // --- 415: a JSON body under a non-JSON content type.
        let valid = serde_json::to_vec(&body("typed", &rx.url("/typed"))).expect("serialises");
        for ct in ["text/plain", "application/x-www-form-urlencoded"] {
            err_messages(
                &api.call_bytes("POST", &base, ct, &valid),
                415,
                &ctx(&format!("POST as {ct}")),
            );
            err_messages(
                &api.call_bytes("PUT", &format!("{base}/{live_id}"), ct, &valid),
                415,
                &ctx(&format!("PUT as {ct}")),
            );
        }

        // --- 413: a body over 64 KiB; one just under the limit is fine.
        let mut big = serde_json::to_vec(&body("big", &rx.url("/big"))).expect("serialises");
        big.resize(64 * 1024 + 1, b' ');
        err_messages(
            &api.call_bytes("POST", &base, "application/json", &big),
            413,
            &ctx("POST 64 KiB + 1"),
        );
        err_messages(
            &api.call_bytes("PUT", &format!("{base}/{live_id}"), "application/json", &big),
            413,
            &ctx("PUT 64 KiB + 1"),
        );
        let mut huge = big.clone();
        huge.resize(1024 * 1024, b' ');
        err_messages(
            &api.call_bytes("POST", &base, "application/json", &huge),
            413,
            &ctx("POST 1 MiB"),
        );
        let mut fine = serde_json::to_vec(&body("padded", &rx.url("/padded"))).expect("serialises");
        fine.resize(60 * 1024, b' ');
        let resp = api.call_bytes("POST", &base, "application/json", &fine);
        let padded = ok_result(&resp, 201, &ctx("POST 60 KiB of valid JSON"));
        assert_eq!(padded["name"], "padded");
        assert_eq!(
            api.list(prefix).len(),
            n_before + 1,
            "{}: only the valid padded create may have added a destination",
            ctx("list")
        );

        // --- 405: wrong method on a known path.
        for (method, path) in [
            ("DELETE", base.clone()),
            ("PUT", base.clone()),
            ("PATCH", format!("{base}/{live_id}")),
            ("POST", format!("{base}/{live_id}")),
            ("GET", format!("{base}/{live_id}/test")),
            ("DELETE", format!("{base}/{live_id}/test")),
        ] {
            err_messages(
                &api.call(method, &path, None),
                405,
                &ctx(&format!("{method} {path}")),
            );
        }
    }

    // 405 on the other routes.
    for (method, path) in [
        ("POST", "/status"),
        ("DELETE", "/alerts"),
        ("PUT", "/alerts"),
        ("POST", "/openapi.json"),
    ] {
        err_messages(&api.call(method, path, None), 405, &format!("{method} {path}"));
    }

    // 404: unknown routes.
    for path in [
        "/nope",
        "/webhook",
        "/webhooks/x/y/z",
        "/accounts/a/alerting/v3/destinations/nope",
        "/accounts/a/alerting/v2/destinations/webhooks",
        "/status/extra",
    ] {
        err_messages(&api.get(path), 404, &format!("GET {path}"));
    }

    // 401: no, wrong, or differently-schemed credentials, on every route.
    let n = api.list("").len();
    let valid = serde_json::to_vec(&body("unauth", &rx.url("/unauth"))).expect("serialises");
    let near = &API_TOKEN[..API_TOKEN.len() - 1];
    let basic = format!("Basic {}", b64(format!("x:{API_TOKEN}").as_bytes()));
    let bearer_near = format!("Bearer {near}");
    let bearer_long = format!("Bearer {API_TOKEN}x");
    let lower = format!("bearer-{API_TOKEN}");
    let bad_auth: Vec<Option<&str>> = vec![
        None,
        Some("Bearer wrong-token"),
        Some(&bearer_near),
        Some(&bearer_long),
        Some(&basic),
        Some(API_TOKEN),
        Some(&lower),
        Some("Bearer "),
    ];
    let acc = &families()[1];
    let paths: Vec<(&str, String, bool)> = vec![
        ("GET", "/webhooks".into(), false),
        ("POST", "/webhooks".into(), true),
        ("GET", format!("/webhooks/{toml_id}"), false),
        ("PUT", format!("/webhooks/{toml_id}"), true),
        ("DELETE", format!("/webhooks/{toml_id}"), false),
        ("POST", format!("/webhooks/{toml_id}/test"), false),
        ("GET", format!("{acc}/webhooks"), false),
        ("POST", format!("{acc}/webhooks"), true),
        ("DELETE", format!("{acc}/webhooks/{toml_id}"), false),
        ("GET", "/status".into(), false),
        ("GET", "/alerts".into(), false),
        ("GET", "/openapi.json".into(), false),
    ];
    for auth in &bad_auth {
        for (method, path, with_body) in &paths {
            let mut headers: Vec<(&str, &str)> = Vec::new();
            if let Some(a) = auth {
                headers.push(("Authorization", a));
            }
            if *with_body {
                headers.push(("Content-Type", "application/json"));
            }
            let resp = api.raw(method, path, &headers, with_body.then_some(valid.as_slice()));
            let what = format!("{method} {path} with Authorization {auth:?}");
            err_messages(&resp, 401, &what);
            let challenge = resp
                .header("www-authenticate")
                .unwrap_or_else(|| panic!("{what}: 401 without WWW-Authenticate; {}", show(&resp)));
            assert!(
                challenge.starts_with("Bearer"),
                "{what}: WWW-Authenticate {challenge:?} is not a Bearer challenge"
            );
        }
    }
    assert_eq!(api.list("").len(), n, "an unauthorised POST created something");
    assert!(
        rx.requests().iter().all(|r| r.path() != "/unauth"),
        "an unauthorised request reached a destination"
    );

    // The remaining routes answer 200.
    ok_result(&api.get("/status"), 200, "GET /status");
    let alerts = ok_result(&api.get("/alerts"), 200, "GET /alerts");
    assert!(alerts.is_array(), "{alerts}");
    let doc = api.get("/openapi.json");
    assert_eq!(doc.status, 200, "{}", show(&doc));
    assert!(doc.json()["openapi"].is_string(), "{}", doc.text());

    daemon.assert_running();
}

// ---------------------------------------------------------------------------
// 2. The auth rules, one by one, and all at once
// ---------------------------------------------------------------------------

#[test]
fn the_auth_rules_one_by_one_and_all_at_once() {
    let rx = Receiver::start();
    let setup = Setup::new();
    setup.write("500ms", Some(&std_api()), "");
    let (mut daemon, api) = setup.start();
    let url = rx.url("/v");
    let base = |changes: Value| with(body("v", &url), changes);

    // (what, body, fields each needing an error, exact error count if the
    // body breaks one rule only, values that must not be echoed)
    type Case<'a> = (&'a str, Value, Vec<&'a str>, Option<usize>, Vec<&'a str>);
    let cases: Vec<Case<'_>> = vec![
        (
            "none with a token",
            base(json!({"authType": "none", "token": "tok-VAL-1"})),
            vec!["token"],
            Some(1),
            vec!["tok-VAL-1"],
        ),
        (
            "none with user credentials",
            base(json!({"authType": "none", "userName": "u", "password": "pw-VAL-2"})),
            vec!["userName", "password"],
            Some(2),
            vec!["pw-VAL-2"],
        ),
        (
            "basic without password",
            base(json!({"authType": "basic", "userName": "u"})),
            vec!["password"],
            Some(1),
            vec![],
        ),
        (
            "basic without userName",
            base(json!({"authType": "basic", "password": "pw-VAL-3"})),
            vec!["userName"],
            Some(1),
            vec!["pw-VAL-3"],
        ),
        (
            "bearer without token",
            base(json!({"authType": "bearer"})),
            vec!["token"],
            Some(1),
            vec![],
        ),
        (
            "querystring without token",
            base(json!({"authType": "querystring"})),
            vec!["token"],
            Some(1),
            vec![],
        ),
        (
            "authheader without token",
            base(json!({"authType": "authheader"})),
            vec!["token"],
            Some(1),
            vec![],
        ),
        (
            "header without token",
            base(json!({"authType": "header", "headerName": "X-Key"})),
            vec!["token"],
            Some(1),
            vec![],
        ),
        (
            "basic credentials and a token together",
            base(json!({"authType": "basic", "userName": "u", "password": "pw-VAL-4", "token": "tok-VAL-4"})),
            vec!["token"],
            None,
            vec!["pw-VAL-4", "tok-VAL-4"],
        ),
        (
            "bearer token and user credentials together",
            base(
                json!({"authType": "bearer", "userName": "u", "password": "pw-VAL-5", "token": "tok-VAL-5"}),
            ),
            vec!["userName", "password"],
            None,
            vec!["pw-VAL-5", "tok-VAL-5"],
        ),
        (
            "an ftp:// URL",
            base(json!({"url": "ftp://127.0.0.1/hook"})),
            vec!["url"],
            Some(1),
            vec![],
        ),
        (
            "endpoint alias with an ftp:// URL",
            base(json!({"url": null, "endpoint": "ftp://127.0.0.1/hook"})),
            vec!["url"],
            Some(1),
            vec![],
        ),
        (
            "every rule at once",
            json!({
                "name": "multi",
                "url": "ftp://127.0.0.1/hook",
                "authType": "basic",
                "token": "tok-VAL-6",
                "secret": "not-a-valid-secret",
            }),
            vec!["url", "userName", "password", "token", "secret"],
            None,
            vec!["tok-VAL-6", "not-a-valid-secret"],
        ),
    ];

    for prefix in families() {
        let path = format!("{prefix}/webhooks");
        for (what, b, fields, exact, secrets) in &cases {
            let what = format!("POST {path}: {what}");
            let resp = api.call("POST", &path, Some(b));
            let msgs = err_messages(&resp, 400, &what);
            for f in fields {
                assert!(
                    msgs.iter().any(|m| names_field(m, f)),
                    "{what}: no error starting with {f:?}; errors: {msgs:?}"
                );
            }
            if let Some(n) = exact {
                assert_eq!(
                    msgs.len(),
                    *n,
                    "{what}: one error per violated rule; errors: {msgs:?}"
                );
            }
            if fields.len() > 1 {
                assert!(msgs.len() >= fields.len(), "{what}: every rule listed: {msgs:?}");
            }
            for s in secrets {
                assert!(
                    !resp.text().contains(s),
                    "{what}: the response echoes {s:?}: {}",
                    resp.text()
                );
            }
        }
        // The bearer case's message, as the contract words it.
        let msgs = err_messages(
            &api.call("POST", &path, Some(&base(json!({"authType": "bearer"})))),
            400,
            "bearer without token",
        );
        assert!(
            msgs.iter()
                .any(|m| names_field(m, "token") && m.contains("required") && m.contains("bearer")),
            "bearer without token: {msgs:?}"
        );
    }
    // Nothing invalid was created.
    assert_eq!(api.list("").len(), 0, "an invalid body created a destination");

    // A valid destination per auth type, then the same rules on PUT.
    let valid = [
        base(json!({"authType": "none"})),
        base(json!({"authType": "basic", "userName": "u", "password": "p"})),
        base(json!({"authType": "bearer", "token": "t"})),
        base(json!({"authType": "authheader", "token": "t"})),
        base(json!({"authType": "header", "token": "t", "headerName": "X-Key"})),
        base(json!({"authType": "querystring", "token": "t", "queryParam": "k"})),
        base(json!({"url": null, "endpoint": url.clone(), "authType": "none"})),
        base(json!({"url": url.replace("http://", "https://")})),
    ];
    for b in &valid {
        let v = api.create("", b);
        assert_eq!(
            v["url"],
            b.get("url").or(b.get("endpoint")).cloned().unwrap_or_default(),
            "{v}"
        );
    }
    // isAlertHook defaults to true.
    let v = api.create("", &base(json!({"isAlertHook": null})));
    assert_eq!(v["isAlertHook"], true, "isAlertHook must default to true: {v}");
    let id = str_of(&v, "id").to_string();
    for prefix in families() {
        for (what, b, fields, _, _) in &cases {
            let what = format!("PUT {prefix}/webhooks/{{id}}: {what}");
            let msgs = err_messages(
                &api.call("PUT", &format!("{prefix}/webhooks/{id}"), Some(b)),
                400,
                &what,
            );
            for f in fields {
                assert!(
                    msgs.iter().any(|m| names_field(m, f)),
                    "{what}: no error starting with {f:?}; errors: {msgs:?}"
                );
            }
        }
    }
    let after = ok_result(
        &api.get(&format!("/webhooks/{id}")),
        200,
        "GET after refused PUTs",
    );
    assert_eq!(
        after["url"],
        url.as_str(),
        "a refused PUT changed the destination: {after}"
    );
    assert_eq!(after["authType"], "none", "{after}");
    daemon.assert_running();
}

// ---------------------------------------------------------------------------
// 3. 100 concurrent creates
// ---------------------------------------------------------------------------

#[test]
fn a_hundred_concurrent_creates_all_land() {
    const N: usize = 100;
    let rx = Receiver::start();
    let setup = Setup::new();
    setup.write("500ms", Some(&std_api()), "");
    let (mut daemon, api) = setup.start();

    let barrier = Arc::new(Barrier::new(N));
    let handles: Vec<_> = (0..N)
        .map(|i| {
            let api = api.clone();
            let barrier = Arc::clone(&barrier);
            let prefix = families()[i % 2].clone();
            let b = body(&format!("c{i}"), &rx.url(&format!("/c{i}")));
            thread::spawn(move || {
                barrier.wait();
                let resp = api.call("POST", &format!("{prefix}/webhooks"), Some(&b));
                (i, resp)
            })
        })
        .collect();
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    for h in handles {
        let (i, resp) = h.join().expect("thread");
        let view = ok_result(&resp, 201, &format!("concurrent create #{i}"));
        assert_eq!(view["name"], format!("c{i}"));
        let id = str_of(&view, "id").to_string();
        if let Some(j) = ids.insert(id.clone(), i) {
            panic!("creates #{j} and #{i} got the same id {id}");
        }
    }
    assert_eq!(ids.len(), N);

    let listed = api.list("");
    assert_eq!(
        listed.len(),
        N,
        "GET /webhooks lists {} destinations",
        listed.len()
    );
    for (id, i) in &ids {
        let v = find(&listed, id).unwrap_or_else(|| panic!("#{i} ({id}) is not listed"));
        assert_eq!(v["name"], format!("c{i}"));
        assert_eq!(v["url"], rx.url(&format!("/c{i}")));
    }

    let text = std::fs::read_to_string(setup.destinations_json()).expect("read destinations.json");
    let stored: Value = serde_json::from_str(&text).expect("destinations.json is JSON");
    let mut strings = BTreeSet::new();
    collect_strings(&stored, &mut strings);
    for (id, i) in &ids {
        assert!(strings.contains(id), "#{i} ({id}) is not in destinations.json");
    }
    // Atomic writes leave no temporary file behind.
    let leftovers: Vec<String> = std::fs::read_dir(&setup.state_dir)
        .expect("read state_dir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.starts_with("destinations.json") && n != "destinations.json")
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left in state_dir: {leftovers:?}"
    );
    daemon.assert_running();
}

fn collect_strings(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => {
            out.insert(s.clone());
        }
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            out.insert(k.clone());
            collect_strings(x, out)
        }),
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// 4. Persistence: a restart, and kill -9 right after the answer
// ---------------------------------------------------------------------------

#[test]
fn api_destinations_survive_a_restart() {
    let rx = Receiver::start();
    let setup = Setup::new();
    setup.write(
        "500ms",
        Some(&std_api()),
        &toml_hook("from-toml", "http://127.0.0.1:9/hook", ""),
    );
    let (mut daemon, api) = setup.start();

    let a = api.create("", &body("keep-generated", &rx.url("/a")));
    let generated = str_of(&a, "secret").to_string();
    assert!(generated.starts_with("whsec_"), "{a}");
    let b = api.create(
        &families()[1],
        &with(
            body("keep-basic", &rx.url("/b")),
            json!({"authType": "basic", "userName": "user-b", "password": "pw-b", "secret": SECRET}),
        ),
    );
    let c = api.create("", &body("to-delete", &rx.url("/c")));
    let d = api.create("", &body("to-update", &rx.url("/d")));
    let (a_id, b_id, c_id, d_id) = (
        str_of(&a, "id"),
        str_of(&b, "id"),
        str_of(&c, "id"),
        str_of(&d, "id"),
    );
    ok_result(
        &api.call("DELETE", &format!("/webhooks/{c_id}"), None),
        200,
        "DELETE c",
    );
    ok_result(
        &api.call(
            "PUT",
            &format!("/webhooks/{d_id}"),
            Some(&body("updated", &rx.url("/d2"))),
        ),
        200,
        "PUT d",
    );
    // The last change before the restart is a create: it alone must have
    // reached the disk.
    let e = api.create("", &body("created-last", &rx.url("/e")));
    let e_id = str_of(&e, "id");
    let before = api.list("");

    let (status, _) = daemon.terminate();
    assert!(status.success(), "SIGTERM exit: {status}\n{}", daemon.stderr());
    let (mut daemon, api) = setup.start();
    let after = api.list("");
    assert_eq!(after.len(), before.len(), "before: {before:?}\nafter: {after:?}");
    for id in [a_id, b_id, d_id, e_id] {
        let (x, y) = (find(&before, id).expect("listed before"), find(&after, id));
        let y = y.unwrap_or_else(|| panic!("{id} is gone after the restart: {after:?}"));
        for key in [
            "id",
            "name",
            "url",
            "type",
            "authType",
            "userName",
            "isAlertHook",
            "created_at",
            "source",
        ] {
            assert_eq!(x[key], y[key], "{key} of {id} changed across the restart");
        }
    }
    assert!(find(&after, c_id).is_none(), "the deleted destination came back");
    assert_eq!(find(&after, d_id).expect("d")["url"], rx.url("/d2"));
    assert!(
        after.iter().any(|v| v["source"] == "config"),
        "the TOML destination is missing"
    );

    // The secrets came back too: test sends sign with the same secrets and
    // carry the same password.
    for (id, path, secret) in [(a_id, "/a", generated.as_str()), (b_id, "/b", SECRET)] {
        let result = ok_result(
            &api.call("POST", &format!("/webhooks/{id}/test"), None),
            200,
            "test after restart",
        );
        assert_eq!(result["delivered"], true, "{result}");
        let got = wait_path(&rx, path, PATIENCE, "a test after the restart", |r| !r.is_empty());
        assert_signed(&got[0], secret);
    }
    let got = on_path(&rx.requests(), "/b");
    assert_eq!(
        got[0].header("authorization"),
        Some(format!("Basic {}", b64(b"user-b:pw-b")).as_str())
    );
    daemon.assert_running();
}

#[test]
fn kill_9_right_after_the_answer_loses_nothing() {
    let rx = Receiver::start();
    let setup = Setup::new();
    setup.write("500ms", Some(&std_api()), "");

    // Create, then SIGKILL the moment the 201 is read.
    let (mut daemon, api) = setup.start();
    let v = api.create("", &body("survivor", &rx.url("/s")));
    daemon.kill9();
    let id = str_of(&v, "id").to_string();

    let (mut daemon, api) = setup.start();
    let after = api.list("");
    let got = find(&after, &id)
        .unwrap_or_else(|| panic!("created {id}, killed -9, restarted: not listed: {after:?}"));
    assert_eq!(got["name"], "survivor");
    assert_eq!(got["url"], rx.url("/s"));
    assert_eq!(got["created_at"], v["created_at"]);

    // Replace, SIGKILL: the replacement is what comes back.
    ok_result(
        &api.call(
            "PUT",
            &format!("/webhooks/{id}"),
            Some(&body("replaced", &rx.url("/r"))),
        ),
        200,
        "PUT",
    );
    daemon.kill9();
    let (mut daemon, api) = setup.start();
    let got = find(&api.list(""), &id)
        .cloned()
        .expect("still listed after PUT + kill -9");
    assert_eq!(got["name"], "replaced");
    assert_eq!(got["url"], rx.url("/r"));

    // Delete, SIGKILL: it stays deleted.
    ok_result(
        &api.call("DELETE", &format!("/webhooks/{id}"), None),
        200,
        "DELETE",
    );
    daemon.kill9();
    let (mut daemon, api) = setup.start();
    assert!(
        find(&api.list(""), &id).is_none(),
        "deleted, killed -9, restarted: it came back"
    );
    daemon.assert_running();
}

// ---------------------------------------------------------------------------
// 5. No secret in any response or log line
// ---------------------------------------------------------------------------

#[test]
fn no_secret_in_any_response_or_in_the_log() {
    let rx = Receiver::start();
    let setup = Setup::new();
    let toml_secret = format!("whsec_{}", b64(b"toml-destination-secret-0123456789"));
    setup.write(
        "300ms",
        Some(&std_api()),
        &format!(
            "{}{}",
            toml_hook(
                "toml-bearer",
                &rx.url("/toml"),
                &format!(
                    "auth_type = \"bearer\"\ntoken = \"tok-LEAK-toml\"\nsecret = {}\n",
                    q(&toml_secret)
                ),
            ),
            mem_alert("repeat = \"300ms\"\n"),
        ),
    );
    let (mut daemon, api) = setup.start();

    let given_secret = format!("whsec_{}", b64(b"api-destination-secret-0123456789abc"));
    let hooks: Vec<(&str, Value)> = vec![
        (
            "/bearer",
            json!({"authType": "bearer", "token": "tok-LEAK-bearer", "secret": given_secret}),
        ),
        (
            "/basic",
            json!({"authType": "basic", "userName": "leak-user", "password": "pw-LEAK-basic"}),
        ),
        (
            "/query",
            json!({"authType": "querystring", "token": "tok-LEAK-query", "queryParam": "k"}),
        ),
        (
            "/authheader",
            json!({"authType": "authheader", "token": "tok-LEAK-authheader"}),
        ),
        (
            "/header",
            json!({"authType": "header", "token": "tok-LEAK-header", "headerName": "X-Leak"}),
        ),
        ("/none", json!({"authType": "none"})),
    ];
    let mut generated: Vec<String> = Vec::new();
    let mut ids = Vec::new();
    for (i, (path, auth)) in hooks.iter().enumerate() {
        let prefix = &families()[i % 2];
        let b = with(
            with(
                body(&format!("leak{i}"), &rx.url(path)),
                json!({"isAlertHook": true}),
            ),
            auth.clone(),
        );
        let resp = api.call("POST", &format!("{prefix}/webhooks"), Some(&b));
        let v = ok_result(&resp, 201, "create");
        if auth.get("secret").is_none() {
            let s = str_of(&v, "secret").to_string();
            assert!(s.starts_with("whsec_"), "{v}");
            generated.push(s);
        } else {
            assert_eq!(
                v["secret"], MASK,
                "a secret given by the caller must never be shown: {v}"
            );
        }
        ids.push(str_of(&v, "id").to_string());
    }

    // Exercise everything: reads, updates with new credentials, test sends,
    // alert deliveries, status, alerts, the OpenAPI document, failures.
    for prefix in families() {
        api.list(&prefix);
        for id in &ids {
            ok_result(&api.get(&format!("{prefix}/webhooks/{id}")), 200, "GET");
        }
    }
    let puts: Vec<Value> = vec![
        json!({"authType": "bearer", "token": "tok-LEAK-put-bearer"}),
        json!({"authType": "basic", "userName": "leak-user", "password": "pw-LEAK-put-basic"}),
        json!({"authType": "querystring", "token": "tok-LEAK-put-query", "queryParam": "k"}),
        json!({"authType": "authheader", "token": "tok-LEAK-put-authheader"}),
        json!({"authType": "header", "token": "tok-LEAK-put-header", "headerName": "X-Leak"}),
        json!({"authType": "none", "secret": format!("whsec_{}", b64(b"put-secret-for-none-0123456789ab"))}),
    ];
    for (i, (id, change)) in ids.iter().zip(&puts).enumerate() {
        let b = with(
            with(
                body(&format!("leak{i}"), &rx.url(hooks[i].0)),
                json!({"isAlertHook": true}),
            ),
            change.clone(),
        );
        ok_result(&api.call("PUT", &format!("/webhooks/{id}"), Some(&b)), 200, "PUT");
        let result = ok_result(
            &api.call("POST", &format!("/webhooks/{id}/test"), None),
            200,
            "test",
        );
        assert_eq!(result["delivered"], true, "{result}");
    }
    for path in [
        "/bearer",
        "/basic",
        "/query",
        "/authheader",
        "/header",
        "/none",
        "/toml",
    ] {
        wait_path(&rx, path, PATIENCE, "an alert notification", |r| {
            !alerts_in(r).is_empty()
        });
    }
    // The credentials really went out (so the log had a chance to leak them).
    let sent = on_path(&rx.requests(), "/query");
    assert!(
        sent.iter()
            .any(|r| r.query().contains(&("k".into(), "tok-LEAK-put-query".into()))),
        "the querystring token was not sent:\n{}",
        show_reqs(&sent)
    );
    api.get("/status");
    api.get("/alerts");
    api.get("/openapi.json");
    api.call(
        "POST",
        "/webhooks",
        Some(&with(
            body("x", &rx.url("/x")),
            json!({"token": "tok-LEAK-invalid"}),
        )),
    );
    api.call(
        "PUT",
        &format!("/webhooks/{}", ids[0]),
        Some(&with(
            body("x", &rx.url("/x")),
            json!({"authType": "basic", "password": "pw-LEAK-invalid", "token": "tok-LEAK-invalid2"}),
        )),
    );
    api.call_bytes(
        "POST",
        "/webhooks",
        "application/json",
        br#"{"authType": "bearer", "token": "tok-LEAK-malformed", "#,
    );
    api.call_bytes(
        "POST",
        "/webhooks",
        "text/plain",
        br#"{"authType": "bearer", "token": "tok-LEAK-plain"}"#,
    );
    api.call(
        "POST",
        "/webhooks",
        Some(&json!({"authType": "bearer", "token": "tok-LEAK-unknown-field", "colour": "pw-LEAK-colour"})),
    );
    api.raw(
        "GET",
        "/webhooks",
        &[("Authorization", "Bearer not-the-token")],
        None,
    );
    // Let a few more alert deliveries (and their log lines) happen.
    thread::sleep(Duration::from_millis(700));

    let mut secrets: Vec<String> = [
        API_TOKEN,
        "tok-LEAK-toml",
        "tok-LEAK-bearer",
        "pw-LEAK-basic",
        "tok-LEAK-query",
        "tok-LEAK-authheader",
        "tok-LEAK-header",
        "tok-LEAK-put-bearer",
        "pw-LEAK-put-basic",
        "tok-LEAK-put-query",
        "tok-LEAK-put-authheader",
        "tok-LEAK-put-header",
        "tok-LEAK-invalid",
        "pw-LEAK-invalid",
        "tok-LEAK-invalid2",
        "tok-LEAK-malformed",
        "tok-LEAK-plain",
        "tok-LEAK-unknown-field",
        "pw-LEAK-colour",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    secrets.push(toml_secret.clone());
    secrets.push(given_secret.clone());
    secrets.push(format!("whsec_{}", b64(b"put-secret-for-none-0123456789ab")));
    // The secrets' key parts and the basic credentials as sent on the wire.
    for s in [&toml_secret, &given_secret] {
        secrets.push(s["whsec_".len()..].to_string());
    }
    secrets.push(b64(b"leak-user:pw-LEAK-basic"));
    secrets.push(b64(b"leak-user:pw-LEAK-put-basic"));

    let responses = api.responses();
    for (what, resp) in &responses {
        let mut text = resp.text();
        for (k, v) in &resp.headers {
            text.push_str(&format!("\n{k}: {v}"));
        }
        for s in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "{s:?} appears in the response to {what}:\n{text}"
            );
        }
        for g in &generated {
            let allowed = what.starts_with("POST ")
                && what.ends_with("/webhooks")
                && resp.status == 201
                && resp.json()["result"]["secret"] == g.as_str();
            if !allowed {
                assert!(
                    !text.contains(g.as_str()),
                    "generated secret {g:?} shown again, in {what}:\n{text}"
                );
            }
        }
    }
    for g in &generated {
        let shown = responses
            .iter()
            .filter(|(_, r)| r.text().contains(g.as_str()))
            .count();
        assert_eq!(shown, 1, "generated secret {g:?} must be shown exactly once");
    }

    let log = stop(&mut daemon);
    assert!(log.contains("management API listening"), "{log}");
    let mut all = secrets.clone();
    all.extend(generated.iter().cloned());
    for g in &generated {
        all.push(g["whsec_".len()..].to_string());
    }
    for s in &all {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(s.as_str())).collect();
        assert!(
            lines.is_empty(),
            "{s:?} appears in the daemon's output:\n{}",
            lines.join("\n")
        );
        let encoded: String = form_urlencoded::byte_serialize(s.as_bytes()).collect();
        assert!(
            !log.contains(&encoded),
            "{s:?} (URL-encoded) appears in the daemon's output"
        );
    }
}

/// A credential sent with the wrong JSON type is still a credential: the
/// 400 must not quote it back.
#[test]
fn wrongly_typed_credentials_are_not_echoed() {
    let rx = Receiver::start();
    let setup = Setup::new();
    setup.write("500ms", Some(&std_api()), "");
    let (mut daemon, api) = setup.start();
    let url = rx.url("/typed");
    let cases = [
        (
            "a numeric token",
            json!({"url": url, "authType": "bearer", "token": 98_765_432_123u64}),
            "98765432123",
        ),
        (
            "a numeric password",
            json!({"url": url, "authType": "basic", "userName": "u", "password": 24_681_357_913u64}),
            "24681357913",
        ),
        (
            "a numeric secret",
            json!({"url": url, "secret": 13_579_246_801u64}),
            "13579246801",
        ),
        (
            "a floating-point token",
            json!({"url": url, "authType": "bearer", "token": 6.02214076}),
            "6.02214076",
        ),
    ];
    let mut leaks = Vec::new();
    for prefix in families() {
        for (what, b, value) in &cases {
            let resp = api.call("POST", &format!("{prefix}/webhooks"), Some(b));
            err_messages(&resp, 400, what);
            if resp.text().contains(value) {
                leaks.push(format!("POST {prefix}/webhooks with {what}: {}", resp.text()));
            }
        }
    }
    let log = stop(&mut daemon);
    for (_, _, value) in &cases {
        assert!(!log.contains(value), "{value} appears in the daemon's output");
    }
    assert!(
        leaks.is_empty(),
        "credential values echoed in 400 responses:\n{}",
        leaks.join("\n")
    );
}

// ---------------------------------------------------------------------------
// 6. OpenAPI conformance
// ---------------------------------------------------------------------------

/// A minimal JSON-schema checker for OpenAPI 3.0 schemas: `$ref` (local),
/// `type` (with `nullable`), `required`, `properties`,
/// `additionalProperties`, `items`, `enum`, `allOf`/`anyOf`/`oneOf`, and
/// `format: date-time`.
struct Schemas<'a> {
    doc: &'a Value,
}

impl Schemas<'_> {
    fn resolve(&self, r: &str) -> Option<&Value> {
        self.doc.pointer(r.strip_prefix('#')?)
    }

    /// Follows `$ref`s (for response and request-body objects).
    fn deref<'b>(&'b self, v: &'b Value) -> &'b Value {
        let mut v = v;
        for _ in 0..16 {
            match v
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| self.resolve(r))
            {
                Some(t) => v = t,
                None => break,
            }
        }
        v
    }

    fn errors(&self, schema: &Value, v: &Value) -> Vec<String> {
        let mut errs = Vec::new();
        self.check(schema, v, "$", &mut errs, 0);
        errs
    }

    fn check(&self, schema: &Value, v: &Value, at: &str, errs: &mut Vec<String>, depth: usize) {
        if depth > 64 {
            errs.push(format!("{at}: schema nesting too deep (a $ref loop?)"));
            return;
        }
        let s = match schema {
            Value::Object(s) => s,
            Value::Bool(false) => {
                errs.push(format!("{at}: schema `false` allows nothing"));
                return;
            }
            _ => return,
        };
        if let Some(r) = s.get("$ref") {
            match r.as_str().and_then(|r| self.resolve(r)) {
                Some(target) => self.check(target, v, at, errs, depth + 1),
                None => errs.push(format!("{at}: unresolvable $ref {r}")),
            }
            return;
        }
        if v.is_null() && s.get("nullable") == Some(&Value::Bool(true)) {
            return;
        }
        if let Some(t) = s.get("type") {
            let types: Vec<&str> = match t {
                Value::String(x) => vec![x.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            let ok = types.iter().any(|t| match *t {
                "object" => v.is_object(),
                "array" => v.is_array(),
                "string" => v.is_string(),
                "boolean" => v.is_boolean(),
                "number" => v.is_number(),
                "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
                "null" => v.is_null(),
                _ => false,
            });
            if !ok {
                errs.push(format!("{at}: {v} is not of type {t}"));
                return;
            }
        }
        if let Some(e) = s.get("enum").and_then(Value::as_array)
            && !e.contains(v)
        {
            errs.push(format!("{at}: {v} is not one of {}", Value::Array(e.clone())));
        }
        if s.get("format").and_then(Value::as_str) == Some("date-time")
            && let Some(text) = v.as_str()
            && parse_rfc3339(text).is_none()
        {
            errs.push(format!("{at}: {text:?} is not a date-time"));
        }
        if let Some(o) = v.as_object() {
            if let Some(req) = s.get("required").and_then(Value::as_array) {
                for k in req.iter().filter_map(Value::as_str) {
                    if !o.contains_key(k) {
                        errs.push(format!("{at}: required property {k:?} is missing"));
                    }
                }
            }
            let props = s.get("properties").and_then(Value::as_object);
            for (k, x) in o {
                let here = format!("{at}.{k}");
                match props.and_then(|p| p.get(k)) {
                    Some(ps) => self.check(ps, x, &here, errs, depth + 1),
                    None => match s.get("additionalProperties") {
                        Some(Value::Bool(false)) => errs.push(format!("{here}: property not allowed")),
                        Some(extra @ Value::Object(_)) => self.check(extra, x, &here, errs, depth + 1),
                        _ => {}
                    },
                }
            }
        }
        if let (Some(a), Some(items)) = (v.as_array(), s.get("items")) {
            for (i, x) in a.iter().enumerate() {
                self.check(items, x, &format!("{at}[{i}]"), errs, depth + 1);
            }
        }
        if let Some(all) = s.get("allOf").and_then(Value::as_array) {
            for sub in all {
                self.check(sub, v, at, errs, depth + 1);
            }
        }
        if let Some(any) = s.get("anyOf").and_then(Value::as_array) {
            let fails: Vec<Vec<String>> = any
                .iter()
                .map(|sub| {
                    let mut e = Vec::new();
                    self.check(sub, v, at, &mut e, depth + 1);
                    e
                })
                .collect();
            if !fails.iter().any(Vec::is_empty) {
                errs.push(format!("{at}: matches no anyOf branch: {fails:?}"));
            }
        }
        if let Some(one) = s.get("oneOf").and_then(Value::as_array) {
            let fails: Vec<Vec<String>> = one
                .iter()
                .map(|sub| {
                    let mut e = Vec::new();
                    self.check(sub, v, at, &mut e, depth + 1);
                    e
                })
                .collect();
            let matched = fails.iter().filter(|e| e.is_empty()).count();
            if matched != 1 {
                errs.push(format!(
                    "{at}: matches {matched} oneOf branches, not 1: {fails:?}"
                ));
            }
        }
    }
}

/// Every `$ref` string in `v`.
fn refs_in(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                if k == "$ref"
                    && let Some(r) = x.as_str()
                {
                    out.push(r.to_string());
                }
                refs_in(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs_in(x, out)),
        _ => {}
    }
}

/// `/a/{x}/b` → `/a/{}/b`.
fn shape(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            c if !in_param => out.push(c),
            _ => {}
        }
    }
    out
}

/// The names of the `{params}` in a path template.
fn params_of(path: &str) -> Vec<String> {
    path.split('{')
        .skip(1)
        .filter_map(|p| p.split_once('}').map(|(n, _)| n.to_string()))
        .collect()
}

/// One documented operation.
struct Op {
    path: String,
    method: String,
    op: Value,
    item: Value,
}

impl Op {
    fn label(&self) -> String {
        format!("{} {}", self.method.to_uppercase(), self.path)
    }

    /// The path with `{account…}` → `account`, any other param → `id`.
    fn concrete(&self, id: &str, account: &str) -> String {
        let mut p = self.path.clone();
        for name in params_of(&self.path) {
            let value = if name.to_ascii_lowercase().contains("account") {
                account
            } else if name == "group" {
                "openapi_probe"
            } else {
                id
            };
            p = p.replace(&format!("{{{name}}}"), value);
        }
        p
    }

    fn has_id(&self) -> bool {
        params_of(&self.path)
            .iter()
            .any(|n| !n.to_ascii_lowercase().contains("account") && n != "group")
    }

    fn is_test(&self) -> bool {
        self.path.ends_with("/test")
    }

    /// `POST /metrics/{group}`: its body is metrics, not a destination.
    fn is_push(&self) -> bool {
        self.path.starts_with("/metrics/")
    }
}

/// Records why a probe response does not conform to `op`'s documentation.
fn conform(schemas: &Schemas<'_>, op: &Op, what: &str, resp: &HttpResponse, failures: &mut Vec<String>) {
    let label = format!("{} [{what}] -> {}", op.label(), resp.status);
    let Some(responses) = op.op.get("responses").and_then(Value::as_object) else {
        failures.push(format!("{label}: the operation documents no responses"));
        return;
    };
    let code = resp.status.to_string();
    let range = format!("{}XX", resp.status / 100);
    let documented = responses
        .get(&code)
        .or_else(|| responses.get(&range))
        .or_else(|| responses.get(&range.to_lowercase()))
        .or_else(|| responses.get("default"));
    let Some(documented) = documented else {
        failures.push(format!(
            "{label}: status {code} is not documented (documented: {:?})",
            responses.keys().collect::<Vec<_>>()
        ));
        return;
    };
    let documented = schemas.deref(documented);
    let Some(body) = resp.try_json() else {
        if !resp.body.is_empty() {
            failures.push(format!("{label}: body is not JSON: {}", resp.text()));
        }
        return;
    };
    let schema = documented
        .get("content")
        .and_then(Value::as_object)
        .and_then(|c| c.iter().find(|(k, _)| k.contains("json")).map(|(_, v)| v))
        .and_then(|m| m.get("schema"));
    let Some(schema) = schema else {
        failures.push(format!(
            "{label}: a JSON body is returned but no JSON schema is documented for {code}"
        ));
        return;
    };
    for e in schemas.errors(schema, &body) {
        failures.push(format!(
            "{label}: body does not match the documented schema: {e}; body: {}",
            resp.text()
        ));
    }
}

#[test]
fn openapi_document_matches_the_api() {
    let rx = Receiver::start();
    let setup = Setup::new();
    setup.write(
        "500ms",
        Some(&std_api()),
        &format!(
            "{}{}",
            toml_hook("from-toml", "http://127.0.0.1:9/hook", ""),
            mem_alert("")
        ),
    );
    let (mut daemon, api) = setup.start();
    let toml_id = str_of(
        api.list("")
            .iter()
            .find(|v| v["source"] == "config")
            .expect("TOML destination"),
        "id",
    )
    .to_string();
    // Let the alert fire so /alerts has an entry to validate.
    let deadline = Instant::now() + PATIENCE;
    while ok_result(&api.get("/alerts"), 200, "GET /alerts")
        .as_array()
        .is_none_or(|a| !a.iter().any(|x| x["state"] == "firing"))
    {
        assert!(Instant::now() < deadline, "the mem alert never fired");
        thread::sleep(Duration::from_millis(100));
    }

    let resp = api.get("/openapi.json");
    assert_eq!(resp.status, 200, "{}", show(&resp));
    assert!(
        resp.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{}",
        show(&resp)
    );
    let doc = resp.json();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.0")),
        "not an OpenAPI 3.0 document: openapi = {}",
        doc["openapi"]
    );
    assert!(
        doc.get("success").is_none(),
        "/openapi.json must not be wrapped in the envelope"
    );
    assert!(
        doc["info"]["title"].is_string() && doc["info"]["version"].is_string(),
        "info: {}",
        doc["info"]
    );
    let paths = doc["paths"].as_object().expect("paths is an object");
    assert!(
        doc["components"]["schemas"]
            .as_object()
            .is_some_and(|s| !s.is_empty()),
        "no components.schemas"
    );
    let schemas = Schemas { doc: &doc };
    let mut failures: Vec<String> = Vec::new();

    // Every $ref resolves.
    let mut refs = Vec::new();
    refs_in(&doc, &mut refs);
    for r in &refs {
        if schemas.resolve(r).is_none() {
            failures.push(format!("$ref {r} does not resolve"));
        }
    }

    // Every contract route is documented.
    let ops: Vec<Op> = paths
        .iter()
        .flat_map(|(path, item)| {
            ["get", "put", "post", "delete", "patch", "head", "options"]
                .iter()
                .filter_map(|m| {
                    item.get(*m).map(|op| Op {
                        path: path.clone(),
                        method: m.to_string(),
                        op: op.clone(),
                        item: item.clone(),
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect();
    for (method, path) in CONTRACT_ROUTES {
        if !ops
            .iter()
            .any(|o| o.method == *method && shape(&o.path) == shape(path))
        {
            failures.push(format!(
                "contract route {} {path} is not documented",
                method.to_uppercase()
            ));
        }
    }

    // Bearer authentication is described.
    let bearer = doc["components"]["securitySchemes"]
        .as_object()
        .and_then(|s| {
            s.iter().find(|(_, v)| {
                v["type"] == "http"
                    && v["scheme"]
                        .as_str()
                        .is_some_and(|x| x.eq_ignore_ascii_case("bearer"))
            })
        })
        .map(|(k, _)| k.clone());
    match &bearer {
        None => failures.push("components.securitySchemes has no http bearer scheme".into()),
        Some(name) => {
            let uses = |sec: &Value| {
                sec.as_array()
                    .is_some_and(|a| a.iter().any(|r| r.get(name).is_some()))
            };
            for o in &ops {
                if !uses(&doc["security"]) && !uses(&o.op["security"]) {
                    failures.push(format!("{}: the bearer requirement is not applied", o.label()));
                }
            }
        }
    }

    let create_body = |name: &str| {
        with(
            body(name, &rx.url("/openapi")),
            json!({"authType": "bearer", "token": "tok-OPENAPI", "secret": SECRET}),
        )
    };
    let invalid_body = json!({"name": "bad", "url": "ftp://127.0.0.1/x", "authType": "basic", "token": "t"});
    let live = api.create("", &create_body("live"));
    let live_id = str_of(&live, "id").to_string();

    // Requests first, deletes last (each on its own fresh destination).
    let mut order: Vec<&Op> = ops.iter().collect();
    order.sort_by_key(|o| o.method == "delete");
    for o in order {
        let label = o.label();
        for name in params_of(&o.path) {
            let declared = |ps: &Value| {
                ps.as_array().is_some_and(|a| {
                    a.iter().any(|p| {
                        let p = schemas.deref(p);
                        p["name"] == name.as_str() && p["in"] == "path" && p["required"] == true
                    })
                })
            };
            if !declared(&o.op["parameters"]) && !declared(&o.item["parameters"]) {
                failures.push(format!(
                    "{label}: path parameter {name:?} is not declared (in: path, required: true)"
                ));
            }
        }
        let body_needed = matches!(o.method.as_str(), "post" | "put") && !o.is_test();
        let request_schema = o.op.get("requestBody").map(|b| schemas.deref(b)).and_then(|b| {
            b["content"].as_object().and_then(|c| {
                c.iter()
                    .find(|(k, _)| k.contains("json"))
                    .map(|(_, v)| v["schema"].clone())
            })
        });
        let metrics_body = json!({"queue": 3, "mode": "ok", "ratio": 0.5});
        if body_needed && o.is_push() {
            match &request_schema {
                None => failures.push(format!("{label}: no JSON requestBody schema documented")),
                Some(s) => {
                    for e in schemas.errors(s, &metrics_body) {
                        failures.push(format!(
                            "{label}: a valid metrics body does not match the request schema: {e}"
                        ));
                    }
                    if schemas.errors(s, &json!({"queue": [1]})).is_empty() {
                        failures.push(format!("{label}: the request schema admits an array value"));
                    }
                }
            }
        } else if body_needed {
            match &request_schema {
                None => failures.push(format!("{label}: no JSON requestBody schema documented")),
                Some(s) => {
                    for e in schemas.errors(s, &create_body("x")) {
                        failures.push(format!(
                            "{label}: a valid request body does not match the documented request schema: {e}"
                        ));
                    }
                    let with_endpoint =
                        with(create_body("x"), json!({"url": null, "endpoint": rx.url("/e")}));
                    for e in schemas.errors(s, &with_endpoint) {
                        failures.push(format!(
                            "{label}: a valid body using `endpoint` does not match the request schema: {e}"
                        ));
                    }
                    let extra = with(create_body("x"), json!({"colour": "red"}));
                    if schemas.errors(s, &extra).is_empty() {
                        failures.push(format!(
                            "{label}: the request schema admits unknown fields (they are a 400)"
                        ));
                    }
                    let documented: BTreeSet<String> = {
                        let mut set = BTreeSet::new();
                        let mut stack = vec![s.clone()];
                        while let Some(x) = stack.pop() {
                            let x = schemas.deref(&x).clone();
                            if let Some(p) = x["properties"].as_object() {
                                set.extend(p.keys().cloned());
                            }
                            for k in ["allOf", "anyOf", "oneOf"] {
                                if let Some(a) = x[k].as_array() {
                                    stack.extend(a.iter().cloned());
                                }
                            }
                        }
                        set
                    };
                    for f in [
                        "name",
                        "url",
                        "endpoint",
                        "type",
                        "isAlertHook",
                        "authType",
                        "userName",
                        "password",
                        "token",
                        "headerName",
                        "queryParam",
                        "secret",
                        "timeout",
                        "retry_for",
                        "backoff",
                        "backoff_max",
                        "max_per_minute",
                    ] {
                        if !documented.contains(f) {
                            failures.push(format!("{label}: request field {f:?} is not documented"));
                        }
                    }
                }
            }
        }

        // The happy request.
        let id = if o.method == "delete" {
            str_of(&api.create("", &create_body("to-delete")), "id").to_string()
        } else {
            live_id.clone()
        };
        let path = o.concrete(&id, ACCOUNT);
        let request_body = match o.method.as_str() {
            "post" if body_needed && o.is_push() => Some(metrics_body.clone()),
            "post" | "put" if body_needed => Some(create_body(if o.method == "put" {
                "live-put"
            } else {
                "created"
            })),
            _ => None,
        };
        let resp = api.call(&o.method.to_uppercase(), &path, request_body.as_ref());
        if !(200..300).contains(&resp.status) {
            failures.push(format!(
                "{label}: the valid request answered {}: {}",
                resp.status,
                resp.text()
            ));
        }
        conform(&schemas, o, "valid request", &resp, &mut failures);
        // Success responses reference components schemas.
        if let Some(resp_doc) = o.op["responses"].get(resp.status.to_string()) {
            let mut r = Vec::new();
            refs_in(schemas.deref(resp_doc), &mut r);
            if r.is_empty() && path != "/openapi.json" {
                failures.push(format!(
                    "{label}: the {} response schema references no components schema",
                    resp.status
                ));
            }
        }

        // Error probes.
        let method = o.method.to_uppercase();
        let probe = |what: &str, expected: u16, resp: HttpResponse, failures: &mut Vec<String>| {
            if resp.status != expected {
                failures.push(format!(
                    "{label} [{what}]: answered {}, expected {expected}: {}",
                    resp.status,
                    resp.text()
                ));
            }
            conform(&schemas, o, what, &resp, failures);
        };
        let valid_bytes = request_body
            .as_ref()
            .map(|b| serde_json::to_vec(b).expect("serialises"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if valid_bytes.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        probe(
            "no token",
            401,
            api.raw(&method, &path, &headers, valid_bytes.as_deref()),
            &mut failures,
        );
        if o.has_id() {
            let unknown = o.concrete(UNKNOWN_ID, ACCOUNT);
            probe(
                "unknown id",
                404,
                api.call(&method, &unknown, request_body.as_ref()),
                &mut failures,
            );
            if matches!(o.method.as_str(), "put" | "delete") {
                let ro = o.concrete(&toml_id, ACCOUNT);
                probe(
                    "TOML destination",
                    409,
                    api.call(&method, &ro, request_body.as_ref()),
                    &mut failures,
                );
            }
        }
        if body_needed {
            let target = o.concrete(&live_id, ACCOUNT);
            let invalid = match o.is_push() {
                true => json!({"a b": [1], "ok": 1}),
                false => invalid_body.clone(),
            };
            probe(
                "invalid body",
                400,
                api.call(&method, &target, Some(&invalid)),
                &mut failures,
            );
            probe(
                "malformed JSON",
                400,
                api.call_bytes(&method, &target, "application/json", b"{\"name\": "),
                &mut failures,
            );
            let valid = valid_bytes.clone().expect("body");
            probe(
                "text/plain body",
                415,
                api.call_bytes(&method, &target, "text/plain", &valid),
                &mut failures,
            );
            let mut big = valid.clone();
            big.resize(64 * 1024 + 1, b' ');
            probe(
                "body over 64 KiB",
                413,
                api.call_bytes(&method, &target, "application/json", &big),
                &mut failures,
            );
        }
    }
    daemon.assert_running();
    assert!(
        failures.is_empty(),
        "{} OpenAPI conformance failures:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// 7. Live updates: PUT redirects the next notification, DELETE stops them
// ---------------------------------------------------------------------------

#[test]
fn put_and_delete_take_effect_at_once() {
    let rx_a = Receiver::start();
    let rx_b = Receiver::start();
    let rx_ctl = Receiver::start();
    let rx_quiet = Receiver::start();
    let setup = Setup::new();
    setup.write("300ms", Some(&std_api()), &mem_alert("repeat = \"300ms\"\n"));
    let (mut daemon, api) = setup.start();
    let alert_hook = |name: &str, url: &str| with(body(name, url), json!({"isAlertHook": true}));

    let x = api.create("", &alert_hook("moving", &rx_a.url("/x")));
    let x_id = str_of(&x, "id").to_string();
    api.create(&families()[1], &alert_hook("control", &rx_ctl.url("/ctl")));
    api.create("", &body("not-an-alert-hook", &rx_quiet.url("/quiet")));

    // An API-created alert hook gets the alerts, without a restart.
    let got = wait_path(&rx_a, "/x", PATIENCE, "2 alert notifications", |r| {
        alerts_in(r).len() >= 2
    });
    let first = req_json(&alerts_in(&got)[0]);
    assert_eq!(first["type"], "alert.firing", "{first}");
    assert_eq!(first["alert"]["rule"], "mem", "{first}");

    // PUT to another receiver: the next notification goes there.
    let resp = api.call(
        "PUT",
        &format!("/webhooks/{x_id}"),
        Some(&alert_hook("moving", &rx_b.url("/x"))),
    );
    ok_result(&resp, 200, "PUT new url");
    let put_done = Instant::now();
    wait_path(&rx_b, "/x", PATIENCE, "an alert at the new url", |r| {
        !alerts_in(r).is_empty()
    });
    let ctl_at_put = rx_ctl.requests().len();
    wait_path(&rx_ctl, "/ctl", PATIENCE, "2 more control notifications", |r| {
        r.len() >= ctl_at_put + 2
    });
    let late: Vec<Request> = rx_a
        .requests()
        .into_iter()
        .filter(|r| r.at > put_done + Duration::from_millis(250))
        .collect();
    assert!(
        late.is_empty(),
        "the old url still got notifications after the PUT:\n{}",
        show_reqs(&late)
    );

    // DELETE: no more notifications to it.
    ok_result(
        &api.call("DELETE", &format!("/webhooks/{x_id}"), None),
        200,
        "DELETE",
    );
    let deleted = Instant::now();
    let ctl_at_delete = rx_ctl.requests().len();
    wait_path(&rx_ctl, "/ctl", PATIENCE, "3 more control notifications", |r| {
        r.len() >= ctl_at_delete + 3
    });
    let late: Vec<Request> = rx_b
        .requests()
        .into_iter()
        .chain(rx_a.requests())
        .filter(|r| r.at > deleted + Duration::from_millis(250))
        .collect();
    assert!(
        late.is_empty(),
        "a deleted destination still got notifications:\n{}",
        show_reqs(&late)
    );
    assert!(
        rx_quiet.requests().is_empty(),
        "a destination with isAlertHook false got alert notifications:\n{}",
        show_reqs(&rx_quiet.requests())
    );
    for rx in [&rx_a, &rx_b, &rx_ctl] {
        assert!(rx.errors().is_empty(), "receiver errors: {:?}", rx.errors());
    }
    daemon.assert_running();
}

// ---------------------------------------------------------------------------
// /status and /alerts
// ---------------------------------------------------------------------------

#[test]
fn status_and_alerts_describe_the_running_agent() {
    let rx = Receiver::start();
    // Answers every alert with 400: a failure that is not retried.
    let rx_reject = Receiver::start();
    rx_reject.script((0..500).map(|_| Reply::status(400)).collect());
    let setup = Setup::new();
    setup.write(
        "300ms",
        Some(&std_api()),
        &format!(
            "{}{}[[alert]]\nname = \"never\"\nmetric = \"mem.used_pct\"\ncrit = 1000\n",
            toml_hook("from-toml", &rx.url("/toml"), ""),
            mem_alert(""),
        ),
    );
    let test_started = unix_now_f();
    let (mut daemon, api) = setup.start();
    let failing = api.create(
        "",
        &with(
            body("rejecting", &rx_reject.url("/reject")),
            json!({"isAlertHook": true}),
        ),
    );
    let failing_id = str_of(&failing, "id").to_string();
    let toml_id = str_of(
        api.list("")
            .iter()
            .find(|v| v["source"] == "config")
            .expect("TOML destination"),
        "id",
    )
    .to_string();

    // /alerts: the mem rule fires.
    let deadline = Instant::now() + PATIENCE;
    let alerts = loop {
        let a = ok_result(&api.get("/alerts"), 200, "GET /alerts");
        let list = a
            .as_array()
            .unwrap_or_else(|| panic!("/alerts result is not an array: {a}"))
            .clone();
        if list.iter().any(|x| x["rule"] == "mem" && x["state"] == "firing") {
            break list;
        }
        assert!(Instant::now() < deadline, "mem never firing in /alerts: {a}");
        thread::sleep(Duration::from_millis(100));
    };
    for a in &alerts {
        for key in [
            "rule",
            "metric",
            "series",
            "labels",
            "state",
            "severity",
            "started_at",
            "value",
            "fingerprint",
        ] {
            assert!(a.get(key).is_some(), "/alerts entry has no {key:?}: {a}");
        }
        assert!(
            a["rule"].is_string() && a["metric"].is_string() && a["series"].is_string(),
            "{a}"
        );
        assert!(a["labels"].is_object(), "{a}");
        assert!(
            ["ok", "pending", "firing"].contains(&a["state"].as_str().unwrap_or("?")),
            "{a}"
        );
        assert!(
            a["severity"].is_null()
                || ["warning", "critical"].contains(&a["severity"].as_str().unwrap_or("?")),
            "{a}"
        );
        assert!(null_or_time(&a["started_at"]), "{a}");
        assert!(a["value"].is_null() || a["value"].is_number(), "{a}");
        assert!(a["fingerprint"].as_str().is_some_and(|f| !f.is_empty()), "{a}");
    }
    let mem = alerts
        .iter()
        .find(|x| x["rule"] == "mem" && x["state"] == "firing")
        .expect("found");
    assert_eq!(mem["metric"], "mem.used_pct", "{mem}");
    assert_eq!(mem["severity"], "critical", "{mem}");
    assert!(
        mem["value"].as_f64().is_some_and(|v| v > 0.0 && v <= 100.0),
        "{mem}"
    );
    assert!(mem["started_at"].is_string(), "{mem}");
    assert!(
        !alerts.iter().any(|x| x["rule"] == "never" && x["state"] != "ok"),
        "the never rule is not ok: {alerts:?}"
    );

    // Deliveries happen: one succeeds (TOML), one is refused with 400 (API).
    wait_path(&rx, "/toml", PATIENCE, "an alert to the TOML destination", |r| {
        !alerts_in(r).is_empty()
    });
    wait_path(&rx_reject, "/reject", PATIENCE, "a rejected alert", |r| {
        !r.is_empty()
    });

    // /status.
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        let s = ok_result(&api.get("/status"), 200, "GET /status");
        let hooks = s["webhooks"].as_array().cloned().unwrap_or_default();
        let toml_ok = hooks
            .iter()
            .any(|h| h["id"] == toml_id.as_str() && h["last_success"].is_string());
        let api_failed = hooks
            .iter()
            .any(|h| h["id"] == failing_id.as_str() && h["last_failure"].is_string());
        if toml_ok && api_failed && s["last_sample_at"].is_string() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "/status never showed a sample, the TOML success and the API failure: {s}"
        );
        thread::sleep(Duration::from_millis(100));
    };
    for key in [
        "version",
        "started_at",
        "uptime_s",
        "last_sample_at",
        "postback",
        "alerts",
        "webhooks",
    ] {
        assert!(status.get(key).is_some(), "/status has no {key:?}: {status}");
    }
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"), "{status}");
    let started = parse_rfc3339(str_of(&status, "started_at")).expect("started_at is RFC 3339");
    assert!(
        started >= test_started - 2.0 && started <= unix_now_f() + 1.0,
        "started_at {started} is not when the daemon started ({test_started})"
    );
    let last_sample = parse_rfc3339(str_of(&status, "last_sample_at")).expect("last_sample_at is RFC 3339");
    assert!(
        last_sample >= started - 1.0 && last_sample <= unix_now_f() + 1.0,
        "{status}"
    );
    assert!(status["postback"].is_object(), "{status}");
    assert_eq!(status["alerts"]["rules"], 2, "{status}");
    assert_eq!(status["alerts"]["firing"], 1, "{status}");
    let hooks = status["webhooks"].as_array().expect("webhooks array");
    assert_eq!(hooks.len(), 2, "{status}");
    for h in hooks {
        for key in [
            "id",
            "name",
            "source",
            "pending",
            "last_success",
            "last_failure",
            "last_error",
            "disabled",
        ] {
            assert!(h.get(key).is_some(), "/status webhook entry has no {key:?}: {h}");
        }
        assert!(h["pending"].is_u64(), "{h}");
        assert!(h["disabled"].is_boolean(), "{h}");
        assert!(
            null_or_time(&h["last_success"]) && null_or_time(&h["last_failure"]),
            "{h}"
        );
        assert!(null_or_string(&h["last_error"]), "{h}");
    }
    let t = hooks
        .iter()
        .find(|h| h["id"] == toml_id.as_str())
        .expect("TOML hook in /status");
    assert_eq!(t["name"], "from-toml");
    assert_eq!(t["source"], "config");
    let f = hooks
        .iter()
        .find(|h| h["id"] == failing_id.as_str())
        .expect("API hook in /status");
    assert_eq!(f["source"], "api");
    assert!(f["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{f}");
    // The same timestamps show in the destination view.
    let view = ok_result(&api.get(&format!("/webhooks/{failing_id}")), 200, "GET failing");
    assert!(
        view["last_failure"].is_string() && view["last_error"].is_string(),
        "{view}"
    );

    // uptime_s grows.
    let u1 = status["uptime_s"].as_f64().expect("uptime_s is a number");
    assert!(u1 >= 0.0);
    thread::sleep(Duration::from_millis(1100));
    let s2 = ok_result(&api.get("/status"), 200, "GET /status again");
    let u2 = s2["uptime_s"].as_f64().expect("uptime_s is a number");
    assert!(
        u2 >= u1 + 1.0 - 1e-9,
        "uptime_s went from {u1} to {u2} over 1.1 s"
    );
    daemon.assert_running();
}

// ---------------------------------------------------------------------------
// 429 and 500
// ---------------------------------------------------------------------------

#[test]
fn the_default_quota_is_a_burst_of_50() {
    let setup = Setup::new();
    setup.write(
        "500ms",
        Some(&format!("listen = \"127.0.0.1:0\"\ntoken = {}\n", q(API_TOKEN))),
        "",
    );
    let (mut daemon, api) = setup.start();
    let started = Instant::now();
    let codes: Vec<u16> = (0..60).map(|_| api.get("/status").status).collect();
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        codes[..50].iter().all(|c| *c == 200),
        "the default burst of 50 must pass: {codes:?}"
    );
    assert!(codes.iter().all(|c| *c == 200 || *c == 429), "{codes:?}");
    let passed = codes.iter().filter(|c| **c == 200).count();
    // 10 per second refill while the 60 requests were sent.
    let allowed = 50 + (elapsed * 10.0).ceil() as usize + 1;
    assert!(
        passed <= allowed,
        "{passed} of 60 requests passed in {elapsed:.2} s; the default quota (10/s, burst 50) allows {allowed}: {codes:?}"
    );
    assert!(codes.contains(&429), "{codes:?}");
    daemon.assert_running();
}

#[test]
fn over_the_quota_is_429_with_retry_after() {
    let setup = Setup::new();
    setup.write(
        "500ms",
        Some(&format!(
            "listen = \"127.0.0.1:0\"\ntoken = {}\nrate_per_second = 1\nburst = 2\n",
            q(API_TOKEN)
        )),
        "",
    );
    let (mut daemon, api) = setup.start();
    let responses: Vec<HttpResponse> = (0..8).map(|_| api.get("/status")).collect();
    let codes: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(&codes[..2], &[200, 200], "the burst of 2 must pass: {codes:?}");
    let limited: Vec<&HttpResponse> = responses.iter().filter(|r| r.status == 429).collect();
    assert!(
        limited.len() >= 5,
        "8 requests at once over a 1/s, burst 2 quota: {codes:?}"
    );
    assert!(codes.iter().all(|c| *c == 200 || *c == 429), "{codes:?}");
    let mut wait = 0u64;
    for r in &limited {
        err_messages(r, 429, "over the quota");
        let ra = r
            .header("retry-after")
            .unwrap_or_else(|| panic!("429 without Retry-After: {}", show(r)));
        let secs: u64 = ra
            .parse()
            .ok()
            .or_else(|| {
                httpdate::parse_http_date(ra)
                    .ok()
                    .map(|t| t.duration_since(SystemTime::now()).unwrap_or_default().as_secs() + 1)
            })
            .unwrap_or_else(|| panic!("Retry-After {ra:?} is neither seconds nor an HTTP date"));
        assert!(secs <= 2, "Retry-After {ra:?} is far beyond a 1/s quota's wait");
        wait = wait.max(secs);
    }
    // Other routes share the quota.
    err_messages(&api.get("/webhooks"), 429, "GET /webhooks over the quota");
    // After Retry-After, requests pass again.
    thread::sleep(Duration::from_millis(wait.max(1) * 1000 + 150));
    ok_result(&api.get("/status"), 200, "after Retry-After");
    daemon.assert_running();
}

#[test]
fn internal_errors_show_no_internals_or_secrets() {
    let rx = Receiver::start();
    let setup = Setup::new();
    setup.write("500ms", Some(&std_api()), "");
    // destinations.json is a non-empty directory: saving a destination must
    // fail, even for root.
    let blocker = setup.destinations_json();
    std::fs::create_dir_all(blocker.join("blocked")).expect("mkdir");
    let (mut daemon, api) = setup.start();

    let b = with(
        body("doomed", &rx.url("/doomed")),
        json!({"authType": "basic", "userName": "u-500", "password": "pw-LEAK-500", "secret": SECRET}),
    );
    for prefix in families() {
        let resp = api.call("POST", &format!("{prefix}/webhooks"), Some(&b));
        let msgs = err_messages(&resp, 500, "create with an unwritable store");
        let text = resp.text();
        for needle in [
            "pw-LEAK-500",
            SECRET,
            API_TOKEN,
            &setup.state_dir.to_string_lossy(),
            "destinations.json",
            "os error",
            "Is a directory",
            "panicked",
            "backtrace",
            "src/",
            ".rs:",
        ] {
            assert!(!text.contains(needle), "the 500 shows {needle:?}: {text}");
        }
        assert!(!msgs.is_empty());
    }
    assert!(
        api.list("").is_empty(),
        "a destination that could not be saved is listed"
    );
    daemon.assert_running();
    let err = stop(&mut daemon);
    for s in ["pw-LEAK-500", SECRET, API_TOKEN] {
        assert!(!err.contains(s), "{s:?} appears in stderr");
    }
}

// ---------------------------------------------------------------------------
// [api] configuration: token sources, refusals, off by default
// ---------------------------------------------------------------------------

fn run_expecting_exit(setup: &Setup, code: i32, needle: &str) {
    let mut d = Daemon::spawn_file(&setup.config_path);
    let status = d
        .wait_exit(PATIENCE)
        .unwrap_or_else(|| panic!("the daemon kept running; stderr:\n{}", d.stderr()));
    // The exit can be seen before the last stderr bytes are drained.
    let mentioned = d.wait_stderr(needle, Duration::from_secs(3));
    let err = d.stderr();
    assert_eq!(status.code(), Some(code), "exit status {status}; stderr:\n{err}");
    assert!(mentioned, "stderr does not mention {needle:?}:\n{err}");
    assert!(!err.contains("management API listening"), "{err}");
}

#[test]
fn api_config_token_sources_and_refusals() {
    // [api] without any token: config error.
    let setup = Setup::new();
    setup.write("500ms", Some("listen = \"127.0.0.1:0\"\n"), "");
    run_expecting_exit(&setup, 78, "api.token");

    // A non-loopback listen address without allow_remote: config error
    // (TEST-NET-1, never bound).
    setup.write(
        "500ms",
        Some(&format!(
            "listen = \"192.0.2.1:8631\"\ntoken = {}\n",
            q(API_TOKEN)
        )),
        "",
    );
    run_expecting_exit(&setup, 78, "api.listen");

    // token_file.
    let token_file = setup.state_dir.join("api-token");
    std::fs::write(&token_file, "file-tok-7b1c\n").expect("write token file");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    setup.write(
        "500ms",
        Some(&format!(
            "listen = \"127.0.0.1:0\"\ntoken_file = {}\n",
            q(&token_file.to_string_lossy())
        )),
        "",
    );
    let mut d = Daemon::spawn_file(&setup.config_path);
    let addr = api_addr(&mut d);
    let api = Api::new(addr, "file-tok-7b1c");
    ok_result(&api.get("/status"), 200, "token from token_file");
    err_messages(&Api::new(addr, API_TOKEN).get("/status"), 401, "another token");
    assert!(
        !stop(&mut d).contains("file-tok-7b1c"),
        "the token_file token is logged"
    );

    // HOSTBEAT_API_TOKEN overrides the file's token.
    setup.write("500ms", Some(&std_api()), "");
    let mut d = Daemon::spawn_file_env(&setup.config_path, &[("HOSTBEAT_API_TOKEN", "env-tok-93af")]);
    let addr = api_addr(&mut d);
    ok_result(
        &Api::new(addr, "env-tok-93af").get("/status"),
        200,
        "token from the environment",
    );
    err_messages(
        &Api::new(addr, API_TOKEN).get("/status"),
        401,
        "the overridden config token",
    );
    assert!(
        !stop(&mut d).contains("env-tok-93af"),
        "the environment token is logged"
    );

    // allow_remote = true accepts a non-loopback address (checked with
    // check-config only: nothing is bound), and without it check-config
    // refuses it too.
    for (allow, expect_ok) in [("allow_remote = true\n", true), ("", false)] {
        setup.write(
            "500ms",
            Some(&format!(
                "listen = \"192.0.2.1:8631\"\n{allow}token = {}\n",
                q(API_TOKEN)
            )),
            "",
        );
        let out = common::hostbeat_command()
            .args(["check-config", "-c"])
            .arg(&setup.config_path)
            .output()
            .expect("run hostbeat check-config");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if expect_ok {
            assert!(out.status.success(), "allow_remote = true is refused: {text}");
        } else {
            assert_eq!(out.status.code(), Some(78), "{text}");
            assert!(text.contains("api.listen"), "{text}");
        }
    }

    // No [api]: no API.
    setup.write("300ms", None, "");
    let mut d = Daemon::spawn_file(&setup.config_path);
    assert!(d.wait_stderr("hostbeat started", PATIENCE), "{}", d.stderr());
    thread::sleep(Duration::from_millis(400));
    d.assert_running();
    assert!(
        !d.stderr().contains("management API listening"),
        "the API started without [api]:\n{}",
        d.stderr()
    );
}
