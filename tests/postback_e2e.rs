//! End-to-end tests of the postback path: the real `hostbeat` binary posts
//! to a real HTTP/1.1 receiver on 127.0.0.1 (see `common/mod.rs`).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{
    AGENT_KEY, Config, Daemon, FORWARDED_HOST, HOSTNAME, Receiver, Reply, Request, TOKEN, describe_all,
    loadavg_1, md5_hex, meminfo_kb,
};

/// Slack allowed below a timing lower bound (scheduling, clock reads).
const SLACK: Duration = Duration::from_millis(50);
/// How long any single wait may take before the test gives up.
const PATIENCE: Duration = Duration::from_secs(15);
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Asserts no two consecutive requests arrived closer than `min`.
fn assert_spacing(reqs: &[Request], min: Duration, daemon: &Daemon) {
    for pair in reqs.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap + SLACK >= min,
            "two POSTs {gap:?} apart (min_interval {min:?}):\n{}\n--- stderr ---\n{}",
            describe_all(reqs),
            daemon.stderr()
        );
    }
}

fn assert_no_token_in_logs(daemon: &Daemon) {
    let err = daemon.stderr();
    assert!(!err.is_empty(), "the daemon logged nothing at RUST_LOG=debug");
    assert!(
        !err.contains(TOKEN),
        "the postback token appears in stderr:\n{}",
        err.lines()
            .filter(|l| l.contains(TOKEN))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn assert_clean_receiver(rx: &Receiver) {
    assert!(
        rx.errors().is_empty(),
        "receiver saw malformed HTTP: {:?}",
        rx.errors()
    );
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

// ---------------------------------------------------------------------------
// The harness itself (runs without the daemon)
// ---------------------------------------------------------------------------

/// Reads one HTTP/1.1 response (status, headers, Content-Length body).
fn read_response(r: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).expect("header line");
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').expect("header has a colon");
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse().expect("content-length"))
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).expect("body");
    (status, headers, body)
}

#[test]
fn receiver_serves_keepalive_chunked_and_scripted_replies() {
    let rx = Receiver::start();
    assert!(rx.url("/postback/").starts_with("http://127.0.0.1:"));
    rx.script(vec![Reply::status(429).header("Retry-After", "2")]);

    let json = br#"{"a":"x y&z=1","hostbeat":{"seq":7,"time":1}}"#;
    let hash = md5_hex(json);
    let body = format!(
        "payload={}&hash={hash}",
        form_urlencoded::byte_serialize(json).collect::<String>()
    );

    let stream = TcpStream::connect(rx.addr()).expect("connect");
    let mut w = stream.try_clone().expect("clone");
    let mut r = BufReader::new(stream);

    // 1: Content-Length body, answered from the script.
    write!(
        w,
        "POST /postback/?token=a%2Bb HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let (status, headers, _) = read_response(&mut r);
    assert_eq!(status, 429);
    assert!(headers.contains(&("retry-after".into(), "2".into())));

    // 2: same connection, chunked body, default reply.
    let (a, b) = body.split_at(10);
    write!(
        w,
        "POST /postback/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    )
    .unwrap();
    let (status, _, reply_body) = read_response(&mut r);
    assert_eq!(status, 200);
    assert!(!reply_body.is_empty());

    // 3: no body at all.
    w.write_all(b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (status, _, _) = read_response(&mut r);
    assert_eq!(status, 200);

    let reqs = rx.wait_for(3, Duration::from_secs(5));
    assert_clean_receiver(&rx);
    assert_eq!(rx.connections(), 1);
    let (first, second, third) = (&reqs[0], &reqs[1], &reqs[2]);
    assert_eq!(first.method, "POST");
    assert_eq!(first.path(), "/postback/");
    assert_eq!(first.query(), vec![("token".to_string(), "a+b".to_string())]);
    assert_eq!(
        first.header("Content-Type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(first.status_sent, 429);
    assert!(first.replied_at.unwrap() >= first.at);
    assert_eq!(first.payload_bytes(), json);
    assert_eq!(first.hash(), hash);
    assert_eq!(md5_hex(&first.payload_bytes()), first.hash());
    assert_eq!(first.seq(), 7);
    let names: Vec<String> = first.form().into_iter().map(|(k, _)| k).collect();
    assert_eq!(names, ["payload", "hash"]);
    assert_eq!(second.body, first.body);
    assert_eq!(second.status_sent, 200);
    assert!(second.at >= first.at);
    assert_eq!((third.method.as_str(), third.body.len()), ("GET", 0));
    assert!(reqs.iter().all(|r| r.conn == 0));
}

#[test]
fn receiver_hang_holds_the_request_until_dropped() {
    let rx = Receiver::start();
    rx.script(vec![Reply::hang()]);
    let mut s = TcpStream::connect(rx.addr()).expect("connect");
    s.write_all(b"POST /p HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi")
        .unwrap();
    let reqs = rx.wait_for(1, Duration::from_secs(5));
    assert_eq!(reqs[0].status_sent, 0);
    assert!(reqs[0].replied_at.is_none());
    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut buf = [0u8; 16];
    let err = s.read(&mut buf).expect_err("no reply while hung");
    assert!(matches!(
        err.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    drop(rx);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(s.read(&mut buf).expect("EOF after drop"), 0);
}

// ---------------------------------------------------------------------------
// The daemon against the receiver
// ---------------------------------------------------------------------------

/// Checks one postback request: HTTP shape, hash, and JSON keys and types.
fn check_request_shape(r: &Request) -> serde_json::Value {
    let what = r.describe();
    assert_eq!(r.method, "POST", "{what}");
    assert_eq!(r.path(), "/postback/", "{what}");
    let query = r.query();
    assert!(
        query.contains(&("token".to_string(), TOKEN.to_string())),
        "query lacks the token: {what}"
    );
    assert!(
        r.query_string().unwrap_or("").contains(&format!("token={TOKEN}")),
        "{what}"
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/x-www-form-urlencoded"),
        "{what}"
    );
    assert_eq!(
        r.header("user-agent").map(str::to_string),
        Some(format!("hostbeat/{VERSION}")),
        "{what}"
    );
    assert_eq!(r.header("x-forwarded-host"), Some(FORWARDED_HOST), "{what}");

    let form = r.form();
    let names: Vec<&str> = form.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["payload", "hash"], "form fields of {what}");
    let payload = r.payload_bytes();
    assert_eq!(form[0].1.as_bytes(), &payload[..], "payload is valid UTF-8");
    let hash = r.hash();
    assert_eq!(hash.len(), 32, "{what}");
    assert!(
        hash.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "hash is lowercase hex: {hash}"
    );
    assert_eq!(md5_hex(&payload), hash, "MD5 of the payload bytes");

    let v = r.json();
    assert_eq!(v["os"], "linux");
    assert_eq!(v["agentKey"], AGENT_KEY);
    assert_eq!(v["agentVersion"], VERSION);
    assert_eq!(v["internalHostname"], HOSTNAME);
    assert!(v["loadAvrg"].is_string(), "loadAvrg: {}", v["loadAvrg"]);
    for k in [
        "memPhysUsed",
        "memPhysFree",
        "memSwapUsed",
        "memSwapFree",
        "memCached",
    ] {
        assert!(v[k].is_u64(), "{k} is a whole number: {}", v[k]);
    }
    for k in ["memPhysTotal", "system.load.1", "system.load.5", "system.load.15"] {
        assert!(v[k].is_f64(), "{k} is a float: {}", v[k]);
    }
    assert!(v["cpuStats"].is_object(), "cpuStats: {}", v["cpuStats"]);
    assert!(
        v["cpuStats"]["ALL"]["%idle"].is_string(),
        "cpuStats.ALL: {}",
        v["cpuStats"]
    );
    assert!(v["networkTraffic"].is_object(), "networkTraffic");
    let procs = v["processes"].as_array().expect("processes is a list");
    assert!(!procs.is_empty(), "processes is not empty");
    assert!(v["diskUsage"].is_array(), "diskUsage");
    assert!(v["ioStats"].is_object(), "ioStats");
    assert!(v["hostbeat"]["seq"].is_u64(), "hostbeat.seq");
    let time = v["hostbeat"]["time"].as_u64().expect("hostbeat.time");
    assert!(
        time.abs_diff(unix_now()) <= 120,
        "hostbeat.time {time} is far from now {}",
        unix_now()
    );
    // memPhysUsed = MemTotal - MemFree, all truncated to whole MB.
    let used = v["memPhysUsed"].as_u64().unwrap() as f64;
    let free = v["memPhysFree"].as_u64().unwrap() as f64;
    let total = v["memPhysTotal"].as_f64().unwrap();
    assert!(
        (used + free - total).abs() <= 2.0,
        "memPhysUsed {used} + memPhysFree {free} != memPhysTotal {total}"
    );
    v
}

#[test]
fn posts_form_with_valid_md5_token_and_headers() {
    let rx = Receiver::start();
    let cfg = Config::new(rx.url("/postback/"))
        .interval("300ms")
        .min_interval("1s");
    let mut daemon = Daemon::spawn(&cfg);

    // Read the host's own figures right as each POST lands.
    let mut host = Vec::new();
    let mut reqs = Vec::new();
    for n in 1..=3 {
        reqs = rx.wait_for(n, PATIENCE);
        host.push((meminfo_kb(), loadavg_1()));
    }
    daemon.assert_running();
    assert_clean_receiver(&rx);
    let reqs = &reqs[..3];

    let mut seqs = Vec::new();
    for (r, &((mem_total_kb, mem_free_kb), load1)) in reqs.iter().zip(&host) {
        assert_eq!(r.status_sent, 200);
        let v = check_request_shape(r);
        seqs.push(v["hostbeat"]["seq"].as_u64().unwrap());

        let total_mb = mem_total_kb as f64 / 1024.0;
        let sent_total = v["memPhysTotal"].as_f64().unwrap();
        assert!(
            (sent_total - total_mb).abs() <= 1.0,
            "memPhysTotal {sent_total} vs /proc/meminfo {total_mb}"
        );
        let free_mb = mem_free_kb as f64 / 1024.0;
        let sent_free = v["memPhysFree"].as_u64().unwrap() as f64;
        let tol = (free_mb * 0.25).max(256.0);
        assert!(
            (sent_free - free_mb).abs() <= tol,
            "memPhysFree {sent_free} vs /proc/meminfo {free_mb} (±{tol})"
        );

        let sent_load = v["system.load.1"].as_f64().unwrap();
        assert!(
            (sent_load - load1).abs() <= 1.0,
            "system.load.1 {sent_load} vs /proc/loadavg {load1}"
        );
        let load_avrg: f64 = v["loadAvrg"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap_or_else(|e| panic!("loadAvrg {:?}: {e}", v["loadAvrg"]));
        assert!(
            (load_avrg - sent_load).abs() <= 0.005 + 1e-9,
            "loadAvrg {load_avrg} is system.load.1 {sent_load} to 2 dp"
        );
        assert_eq!(
            v["loadAvrg"].as_str().unwrap(),
            format!("{sent_load:.2}"),
            "loadAvrg formatting"
        );
    }
    assert_eq!(seqs[0], 1, "the first payload of a run is seq 1");
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "all accepted, so each POST carries a newer payload: {seqs:?}"
    );
    assert_spacing(reqs, Duration::from_secs(1), &daemon);

    let (status, took) = daemon.terminate();
    assert!(
        status.success(),
        "exit status {status} after SIGTERM\n{}",
        daemon.stderr()
    );
    assert!(took < Duration::from_secs(5), "exit took {took:?}");
    assert_no_token_in_logs(&daemon);
}

#[test]
fn retry_after_on_429_delays_next_post() {
    let rx = Receiver::start();
    rx.script(vec![Reply::status(429).header("Retry-After", "2")]);
    let mut daemon = Daemon::spawn(&Config::new(rx.url("/postback/")));

    let reqs = rx.wait_for(2, PATIENCE);
    daemon.assert_running();
    assert_clean_receiver(&rx);
    let (limited, next) = (&reqs[0], &reqs[1]);
    assert_eq!(limited.status_sent, 429);
    check_request_shape(limited);
    check_request_shape(next);
    let sent_429 = limited.replied_at.expect("429 was answered");
    let gap = next.at.duration_since(sent_429);
    assert!(
        gap + SLACK >= secs(2.0),
        "next POST {gap:?} after the 429 with Retry-After: 2\n{}",
        describe_all(&reqs)
    );
    assert_eq!(next.status_sent, 200, "{}", next.describe());
    assert_no_token_in_logs(&daemon);
}

#[test]
fn server_error_is_retried() {
    let rx = Receiver::start();
    rx.script(vec![Reply::status(500)]);
    let cfg = Config::new(rx.url("/postback/"))
        .interval("2s")
        .min_interval("1s")
        .backoff("200ms");
    let mut daemon = Daemon::spawn(&cfg);

    let retried = |reqs: &[Request]| {
        reqs.len() >= 3
            && reqs[1..]
                .iter()
                .any(|r| r.try_seq() == Some(1) && r.status_sent == 200)
    };
    let Some(reqs) = rx.wait_until(PATIENCE, retried) else {
        panic!(
            "seq 1 was not re-posted and accepted within {PATIENCE:?}:\n{}",
            describe_all(&rx.requests())
        );
    };
    daemon.assert_running();
    assert_clean_receiver(&rx);

    let failed = &reqs[0];
    assert_eq!(failed.status_sent, 500);
    assert_eq!(failed.seq(), 1, "{}", describe_all(&reqs));
    for r in &reqs {
        check_request_shape(r);
    }
    let retry = reqs[1..]
        .iter()
        .find(|r| r.try_seq() == Some(1))
        .expect("found above");
    assert_eq!(
        retry.payload_bytes(),
        failed.payload_bytes(),
        "the retry carries the same payload bytes"
    );
    assert_eq!(retry.hash(), failed.hash());
    assert_spacing(&reqs, Duration::from_secs(1), &daemon);
    assert_no_token_in_logs(&daemon);
}

#[test]
fn rejected_payload_is_not_retried() {
    let rx = Receiver::start();
    rx.script(vec![Reply::status(400).body(b"bad payload\n")]);
    let mut daemon = Daemon::spawn(&Config::new(rx.url("/postback/")));

    let first = rx.wait_for(1, PATIENCE).remove(0);
    assert_eq!(first.status_sent, 400);
    assert_eq!(first.seq(), 1);
    let rejected_at = first.replied_at.expect("answered");

    // Watch for a little over 3 s after the rejection.
    let until = rejected_at + secs(3.2);
    let reqs = rx
        .wait_until(PATIENCE, |_| Instant::now() >= until)
        .expect("clock moves");
    daemon.assert_running();
    assert_clean_receiver(&rx);
    let window: Vec<&Request> = reqs[1..].iter().filter(|r| r.at <= until).collect();
    for r in &window {
        check_request_shape(r);
        assert_ne!(
            r.seq(),
            1,
            "seq 1 was rejected with 400 and must not be posted again:\n{}",
            describe_all(&reqs)
        );
    }
    let accepted = window.iter().filter(|r| r.status_sent == 200).count();
    assert!(
        accepted >= 2,
        "later payloads keep flowing after a 400 (got {accepted} in ~3 s):\n{}",
        describe_all(&reqs)
    );
    let seqs: Vec<u64> = reqs.iter().map(Request::seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_spacing(&reqs, Duration::from_secs(1), &daemon);
    assert_no_token_in_logs(&daemon);
}

#[test]
fn sigterm_exits_quickly_while_server_hangs() {
    let rx = Receiver::start();
    rx.script(vec![Reply::hang()]);
    let cfg = Config::new(rx.url("/postback/")).timeout("10s");
    let mut daemon = Daemon::spawn(&cfg);

    let reqs = rx.wait_for(1, PATIENCE);
    assert_eq!(reqs[0].status_sent, 0, "the first request is held open");
    check_request_shape(&reqs[0]);
    daemon.assert_running();

    let (status, took) = daemon.terminate();
    assert!(
        status.success(),
        "exit status {status} after SIGTERM with a request in flight\n{}",
        daemon.stderr()
    );
    assert!(
        took < Duration::from_secs(5),
        "exit took {took:?} with a request in flight"
    );
    // The hung request is the only one: no second POST went out.
    assert_eq!(rx.requests().len(), 1, "{}", describe_all(&rx.requests()));
    assert_no_token_in_logs(&daemon);
}
