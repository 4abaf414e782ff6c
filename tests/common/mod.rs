//! Shared harness for end-to-end tests: a real loopback HTTP/1.1 receiver
//! with scripted replies, and a helper that runs the real `hostbeat`
//! binary against it.
//!
//! Everything binds to 127.0.0.1 on an ephemeral port; nothing here ever
//! talks to another address.

// Each integration test crate compiles this module on its own and uses only
// part of it.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

// ---------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------

/// One scripted response. The receiver consumes one per request, in order;
/// when the script is empty it answers [`Reply::ok`].
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long after the request before answering.
    pub delay: Duration,
    /// Never answer: hold the connection open until the receiver is dropped.
    pub hang: bool,
}

impl Reply {
    /// `200 OK` with a small body.
    pub fn ok() -> Self {
        Reply::status(200)
    }

    /// A reply with this status code and a short text body.
    pub fn status(code: u16) -> Self {
        Reply {
            status: code,
            headers: Vec::new(),
            body: format!("{code} {}\n", reason(code)).into_bytes(),
            delay: Duration::ZERO,
            hang: false,
        }
    }

    /// Accept the request, then never answer.
    pub fn hang() -> Self {
        Reply {
            status: 0,
            headers: Vec::new(),
            body: Vec::new(),
            delay: Duration::ZERO,
            hang: true,
        }
    }

    /// Adds a response header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Replaces the response body.
    pub fn body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }

    /// Answers only after `d`.
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

// ---------------------------------------------------------------------------
// Recorded requests
// ---------------------------------------------------------------------------

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Request {
    /// When the first bytes of the request arrived.
    pub at: Instant,
    /// When the response had been written (`None` for a hung request).
    pub replied_at: Option<Instant>,
    pub method: String,
    /// Path plus query, as on the request line.
    pub target: String,
    /// e.g. `HTTP/1.1`.
    pub version: String,
    /// Header names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked if it came chunked.
    pub body: Vec<u8>,
    /// Status code answered (0 for a hung request).
    pub status_sent: u16,
    /// Which TCP connection carried it (0, 1, 2 … in accept order).
    pub conn: usize,
}

impl Request {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path part of the target.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The raw query string (without `?`), if any.
    pub fn query_string(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// Decoded query parameters.
    pub fn query(&self) -> Vec<(String, String)> {
        self.query_string()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default()
    }

    /// Decoded `application/x-www-form-urlencoded` body fields, in order.
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }

    /// The exact bytes of form field `name` (percent- and `+`-decoded, no
    /// UTF-8 repair), if present.
    pub fn form_bytes(&self, name: &str) -> Option<Vec<u8>> {
        self.body.split(|&b| b == b'&').find_map(|pair| {
            let (k, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            (percent_decode(k) == name.as_bytes()).then(|| percent_decode(v))
        })
    }

    /// The `payload` field's exact bytes. Panics if absent.
    pub fn payload_bytes(&self) -> Vec<u8> {
        self.form_bytes("payload")
            .unwrap_or_else(|| panic!("request has no payload field: {}", self.describe()))
    }

    /// The `hash` field. Panics if absent.
    pub fn hash(&self) -> String {
        let raw = self
            .form_bytes("hash")
            .unwrap_or_else(|| panic!("request has no hash field: {}", self.describe()));
        String::from_utf8(raw).expect("hash is UTF-8")
    }

    /// The payload parsed as JSON. Panics if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        let bytes = self.payload_bytes();
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("payload is not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
    }

    /// `hostbeat.seq` from the payload. Panics if missing.
    pub fn seq(&self) -> u64 {
        self.json()["hostbeat"]["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("payload has no hostbeat.seq: {}", self.describe()))
    }

    /// `hostbeat.seq` if the body is a parseable payload.
    pub fn try_seq(&self) -> Option<u64> {
        let bytes = self.form_bytes("payload")?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        v["hostbeat"]["seq"].as_u64()
    }

    /// `hostbeat.run` (the daemon run's id) from the payload. Panics if missing.
    pub fn run(&self) -> String {
        self.try_run()
            .unwrap_or_else(|| panic!("payload has no hostbeat.run: {}", self.describe()))
    }

    /// `hostbeat.run` if the body is a parseable payload.
    pub fn try_run(&self) -> Option<String> {
        let bytes = self.form_bytes("payload")?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        v["hostbeat"]["run"].as_str().map(str::to_owned)
    }

    /// `(hostbeat.run, hostbeat.seq)`, the identity of a payload, if the
    /// body is a parseable payload.
    pub fn try_id(&self) -> Option<(String, u64)> {
        let bytes = self.form_bytes("payload")?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        Some((
            v["hostbeat"]["run"].as_str()?.to_owned(),
            v["hostbeat"]["seq"].as_u64()?,
        ))
    }

    /// Whether the receiver answered with a 2xx status.
    pub fn is_2xx(&self) -> bool {
        (200..300).contains(&self.status_sent)
    }

    /// A one-line summary for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "{} {} -> {} (seq {:?}, {} body bytes, conn {})",
            self.method,
            self.target,
            self.status_sent,
            self.try_seq(),
            self.body.len(),
            self.conn
        )
    }
}

/// Lowercase hex MD5, computed here independently of the daemon.
pub fn md5_hex(bytes: &[u8]) -> String {
    let digest = Md5::digest(bytes);
    let mut s = String::with_capacity(32);
    for b in digest.iter() {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `application/x-www-form-urlencoded` decoding to raw bytes.
fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < input.len() => match (hex_val(input[i + 1]), hex_val(input[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Summary of a list of requests with timings relative to the first.
pub fn describe_all(reqs: &[Request]) -> String {
    let Some(first) = reqs.first() else {
        return "(no requests)".to_string();
    };
    let mut s = String::new();
    for (i, r) in reqs.iter().enumerate() {
        let _ = writeln!(
            s,
            "  #{i} at +{:>6} ms: {}",
            r.at.duration_since(first.at).as_millis(),
            r.describe()
        );
    }
    s
}

// ---------------------------------------------------------------------------
// The receiver
// ---------------------------------------------------------------------------

#[derive(Default)]
struct State {
    script: VecDeque<Reply>,
    /// Requests in arrival order; each is complete once `done` is true.
    requests: Vec<(Request, bool)>,
    /// Anything the receiver could not parse.
    errors: Vec<String>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    shutdown: AtomicBool,
    streams: Mutex<Vec<TcpStream>>,
    next_conn: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A minimal HTTP/1.1 server on 127.0.0.1:0 that records every request and
/// answers from a script. Dropping it closes the listener and every
/// connection.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Receiver {
    /// Binds 127.0.0.1 on an ephemeral port and starts accepting.
    pub fn start() -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        assert!(addr.ip().is_loopback());
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            shutdown: AtomicBool::new(false),
            streams: Mutex::new(Vec::new()),
            next_conn: AtomicUsize::new(0),
        });
        let s = Arc::clone(&shared);
        thread::Builder::new()
            .name("receiver-accept".into())
            .spawn(move || accept_loop(listener, s))
            .expect("spawn accept thread");
        Receiver { addr, shared }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Queues replies, consumed one per request after any already queued.
    pub fn script(&self, replies: Vec<Reply>) {
        self.shared.lock().script.extend(replies);
    }

    /// Drops every queued reply: from now on requests get [`Reply::ok`]
    /// (until more are scripted).
    pub fn clear_script(&self) {
        self.shared.lock().script.clear();
    }

    /// Completed requests (answered or hung) so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        completed(&self.shared.lock())
    }

    /// Parse errors seen by the receiver (should stay empty).
    pub fn errors(&self) -> Vec<String> {
        self.shared.lock().errors.clone()
    }

    /// Number of TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.next_conn.load(Ordering::SeqCst)
    }

    /// Waits until `pred` holds for the completed requests, or `timeout`
    /// passes. Returns the requests that satisfied it.
    pub fn wait_until(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&[Request]) -> bool,
    ) -> Option<Vec<Request>> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            let reqs = completed(&st);
            if pred(&reqs) {
                return Some(reqs);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            // Wake at least every 100 ms so a predicate that depends on the
            // clock is re-evaluated too.
            let wait = (deadline - now).min(Duration::from_millis(100));
            st = self
                .shared
                .changed
                .wait_timeout(st, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits until at least `n` requests have completed; panics after
    /// `timeout` with what did arrive.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Request> {
        match self.wait_until(timeout, |r| r.len() >= n) {
            Some(r) => r,
            None => {
                let got = self.requests();
                panic!(
                    "timed out after {timeout:?} waiting for {n} requests; got {}:\n{}receiver errors: {:?}",
                    got.len(),
                    describe_all(&got),
                    self.errors()
                );
            }
        }
    }
}

fn completed(st: &State) -> Vec<Request> {
    st.requests
        .iter()
        .filter(|(_, done)| *done)
        .map(|(r, _)| r.clone())
        .collect()
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(500));
        for s in self
            .shared
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = s.shutdown(Shutdown::Both);
        }
        self.shared.changed.notify_all();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.shutdown.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let conn = shared.next_conn.fetch_add(1, Ordering::SeqCst);
        if let Ok(clone) = stream.try_clone() {
            shared
                .streams
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(clone);
        }
        let s = Arc::clone(&shared);
        let _ = thread::Builder::new()
            .name(format!("receiver-conn-{conn}"))
            .spawn(move || {
                if let Err(e) = serve(stream, conn, &s)
                    && !s.shutdown.load(Ordering::SeqCst)
                {
                    s.lock().errors.push(format!("conn {conn}: {e}"));
                    s.changed.notify_all();
                }
            });
    }
}

/// Buffered reader over one connection.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
}

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 64 * 1024 * 1024;

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl Conn {
    fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Reads more bytes; `Ok(false)` on EOF.
    fn fill(&mut self) -> io::Result<bool> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// One CRLF-terminated line (without the CRLF).
    fn line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.pending().windows(2).position(|w| w == b"\r\n") {
                let line = self.pending()[..i].to_vec();
                self.pos += i + 2;
                return Ok(line);
            }
            if self.pending().len() > MAX_HEAD {
                return Err(bad("line too long"));
            }
            if !self.fill()? {
                return Err(bad("EOF inside a line"));
            }
        }
    }

    fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.pending().len() < n {
            if !self.fill()? {
                return Err(bad(format!(
                    "EOF inside a body: wanted {n} bytes, got {}",
                    self.pending().len()
                )));
            }
        }
        let out = self.pending()[..n].to_vec();
        self.pos += n;
        Ok(out)
    }
}

/// Serves requests on one connection until EOF.
fn serve(stream: TcpStream, conn: usize, shared: &Shared) -> io::Result<()> {
    let mut c = Conn {
        stream,
        buf: Vec::new(),
        pos: 0,
    };
    loop {
        // Wait for the first byte of the next request; EOF here is a clean
        // close by the client.
        if c.pending().is_empty() && !c.fill()? {
            return Ok(());
        }
        let at = Instant::now();
        let request_line = String::from_utf8(c.line()?).map_err(|_| bad("request line not UTF-8"))?;
        let mut parts = request_line.split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad(format!("malformed request line {request_line:?}")));
        };
        if !version.starts_with("HTTP/1.") {
            return Err(bad(format!("unsupported protocol {version:?}")));
        }
        let mut headers = Vec::new();
        let mut head_len = request_line.len();
        loop {
            let line = c.line()?;
            if line.is_empty() {
                break;
            }
            head_len += line.len();
            if head_len > MAX_HEAD {
                return Err(bad("header section too large"));
            }
            let line = String::from_utf8(line).map_err(|_| bad("header not UTF-8"))?;
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| bad(format!("malformed header {line:?}")))?;
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let chunked = get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let body = if chunked {
            read_chunked(&mut c)?
        } else if let Some(len) = get("content-length") {
            let n: usize = len
                .parse()
                .map_err(|_| bad(format!("bad content-length {len:?}")))?;
            if n > MAX_BODY {
                return Err(bad("body too large"));
            }
            c.take(n)?
        } else {
            Vec::new()
        };
        if get("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
            // The body was already read above; clients that wait for 100 send
            // it after a short timeout anyway. Nothing more to do.
        }
        let close =
            get("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) || version == "HTTP/1.0";

        let mut req = Request {
            at,
            replied_at: None,
            method: method.to_string(),
            target: target.to_string(),
            version: version.to_string(),
            headers,
            body,
            status_sent: 0,
            conn,
        };

        let reply = {
            let mut st = shared.lock();
            st.script.pop_front().unwrap_or_else(Reply::ok)
        };

        if reply.hang {
            let mut st = shared.lock();
            st.requests.push((req, true));
            shared.changed.notify_all();
            while !shared.shutdown.load(Ordering::SeqCst) {
                st = shared
                    .changed
                    .wait_timeout(st, Duration::from_millis(200))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            return Ok(());
        }

        if !reply.delay.is_zero() {
            thread::sleep(reply.delay);
        }

        let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
        let _ = write!(head, "Content-Length: {}\r\n", reply.body.len());
        head.push_str("Content-Type: text/plain\r\n");
        if close {
            head.push_str("Connection: close\r\n");
        }
        for (k, v) in &reply.headers {
            let _ = write!(head, "{k}: {v}\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if method != "HEAD" {
            out.extend_from_slice(&reply.body);
        }
        c.stream.write_all(&out)?;
        c.stream.flush()?;

        req.status_sent = reply.status;
        req.replied_at = Some(Instant::now());
        shared.lock().requests.push((req, true));
        shared.changed.notify_all();

        if close {
            let _ = c.stream.shutdown(Shutdown::Write);
            return Ok(());
        }
    }
}

fn read_chunked(c: &mut Conn) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = String::from_utf8(c.line()?).map_err(|_| bad("chunk size not UTF-8"))?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| bad(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailers until an empty line.
            while !c.line()?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(bad("body too large"));
        }
        body.extend_from_slice(&c.take(size)?);
        if !c.line()?.is_empty() {
            return Err(bad("chunk not followed by CRLF"));
        }
    }
}

// ---------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------

/// The token used by every test config. It must never show up in logs.
pub const TOKEN: &str = "s3cr3t-token-value";
pub const AGENT_KEY: &str = "agentkey123";
pub const FORWARDED_HOST: &str = "acct.example.test";
pub const HOSTNAME: &str = "e2e-host";

/// The settings a test may vary; [`Config::new`] gives the brief's defaults.
#[derive(Debug, Clone)]
pub struct Config {
    pub url: String,
    pub interval: String,
    pub min_interval: String,
    pub timeout: String,
    pub backoff: String,
    pub backoff_max: String,
    /// Raw TOML appended at the end (for extra tables).
    pub extra: String,
}

impl Config {
    pub fn new(url: String) -> Self {
        Config {
            url,
            interval: "300ms".into(),
            min_interval: "1s".into(),
            timeout: "2s".into(),
            backoff: "200ms".into(),
            backoff_max: "1s".into(),
            extra: String::new(),
        }
    }

    pub fn interval(mut self, v: &str) -> Self {
        self.interval = v.into();
        self
    }

    pub fn min_interval(mut self, v: &str) -> Self {
        self.min_interval = v.into();
        self
    }

    pub fn timeout(mut self, v: &str) -> Self {
        self.timeout = v.into();
        self
    }

    pub fn backoff(mut self, v: &str) -> Self {
        self.backoff = v.into();
        self
    }

    pub fn backoff_max(mut self, v: &str) -> Self {
        self.backoff_max = v.into();
        self
    }

    /// The TOML text, with `state_dir` pointing at `state_dir`.
    pub fn to_toml(&self, state_dir: &Path) -> String {
        format!(
            "[agent]\n\
             hostname = {hostname}\n\
             interval = {interval}\n\
             state_dir = {state_dir}\n\
             \n\
             [postback]\n\
             url = {url}\n\
             agent_key = {agent_key}\n\
             token = {token}\n\
             forwarded_host = {forwarded_host}\n\
             min_interval = {min_interval}\n\
             timeout = {timeout}\n\
             backoff = {backoff}\n\
             backoff_max = {backoff_max}\n\
             {extra}",
            hostname = toml_str(HOSTNAME),
            interval = toml_str(&self.interval),
            state_dir = toml_str(&state_dir.to_string_lossy()),
            url = toml_str(&self.url),
            agent_key = toml_str(AGENT_KEY),
            token = toml_str(TOKEN),
            forwarded_host = toml_str(FORWARDED_HOST),
            min_interval = toml_str(&self.min_interval),
            timeout = toml_str(&self.timeout),
            backoff = toml_str(&self.backoff),
            backoff_max = toml_str(&self.backoff_max),
            extra = self.extra,
        )
    }
}

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A `hostbeat` command with the environment every test uses: debug logs,
/// no colour, and no proxy setting that could send traffic anywhere but the
/// loopback receiver.
pub fn hostbeat_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hostbeat"));
    cmd.env("RUST_LOG", "debug")
        .env("NO_COLOR", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "HOSTBEAT_PROCFS",
        "HOSTBEAT_POSTBACK_TOKEN",
        "HOSTBEAT_API_TOKEN",
        "JOURNAL_STREAM",
        "NOTIFY_SOCKET",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

type Buffer = Arc<Mutex<Vec<u8>>>;

fn drain(mut from: impl Read + Send + 'static, into: Buffer, eof: Arc<AtomicBool>) {
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match from.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => into
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&chunk[..n]),
            }
        }
        eof.store(true, Ordering::SeqCst);
    });
}

/// The real `hostbeat` binary running `run -c <config>`; killed on drop.
pub struct Daemon {
    child: Child,
    started: Instant,
    stdout: Buffer,
    stderr: Buffer,
    /// Set once the stderr pipe reached EOF (the process and its children
    /// closed it): everything it wrote is then in `stderr`.
    stderr_eof: Arc<AtomicBool>,
    config_path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Daemon {
    /// Writes `config` into a fresh tempdir and starts the daemon on it.
    pub fn spawn(config: &Config) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let state_dir = dir.path().join("state");
        std::fs::create_dir_all(&state_dir).expect("create state dir");
        let config_path = dir.path().join("hostbeat.toml");
        std::fs::write(&config_path, config.to_toml(&state_dir)).expect("write config");
        // It holds a token: keep it private, as an operator would.
        std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o600)).expect("chmod config");
        Daemon::launch(config_path, Some(dir))
    }

    /// Starts the daemon on a config file the caller owns (and keeps, e.g.
    /// to restart a daemon on the same `state_dir`).
    pub fn spawn_file(config_path: &Path) -> Daemon {
        Daemon::launch(config_path.to_path_buf(), None)
    }

    /// Like [`Daemon::spawn_file`], with extra environment variables.
    pub fn spawn_file_env(config_path: &Path, env: &[(&str, &str)]) -> Daemon {
        Daemon::launch_env(config_path.to_path_buf(), None, env)
    }

    fn launch(config_path: PathBuf, dir: Option<tempfile::TempDir>) -> Daemon {
        Daemon::launch_env(config_path, dir, &[])
    }

    fn launch_env(config_path: PathBuf, dir: Option<tempfile::TempDir>, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = hostbeat_command();
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.arg("run")
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd.spawn().expect("spawn hostbeat");
        let stdout: Buffer = Arc::default();
        let stderr: Buffer = Arc::default();
        let stderr_eof = Arc::new(AtomicBool::new(false));
        drain(
            child.stdout.take().expect("stdout piped"),
            Arc::clone(&stdout),
            Arc::new(AtomicBool::new(false)),
        );
        drain(
            child.stderr.take().expect("stderr piped"),
            Arc::clone(&stderr),
            Arc::clone(&stderr_eof),
        );
        Daemon {
            child,
            started,
            stdout,
            stderr,
            stderr_eof,
            config_path,
            _dir: dir,
        }
    }

    /// Waits until stderr contains `needle` or `timeout` passes; returns
    /// whether it appeared.
    pub fn wait_stderr(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stderr().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Everything written to stdout so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// `Some(status)` if the process has already exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Panics (with the daemon's stderr) if it has already exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.try_exit() {
            panic!(
                "hostbeat exited early with {status}\n--- stderr ---\n{}",
                self.stderr()
            );
        }
    }

    /// Sends SIGTERM and waits for the exit (at most 10 s, then SIGKILL).
    /// Returns the exit status and how long the exit took.
    pub fn terminate(&mut self) -> (ExitStatus, Duration) {
        let sent = Instant::now();
        if self.try_exit().is_none() {
            let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
            // SAFETY: plain kill(2) on our own child's pid.
            let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
            assert_eq!(rc, 0, "kill(SIGTERM) failed: {}", io::Error::last_os_error());
        }
        let deadline = sent + Duration::from_secs(10);
        loop {
            if let Some(status) = self.try_exit() {
                return (status, sent.elapsed());
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let status = self.child.wait().expect("wait after SIGKILL");
                return (status, sent.elapsed());
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Daemon {
    /// Sends SIGKILL (no chance to clean up) and reaps the process.
    pub fn kill9(&mut self) -> ExitStatus {
        if let Some(status) = self.try_exit() {
            return status;
        }
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: plain kill(2) on our own, not yet reaped, child's pid.
        let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill(SIGKILL) failed: {}", io::Error::last_os_error());
        self.child.wait().expect("wait after SIGKILL")
    }

    /// Waits at most `timeout` for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Daemon {
    /// Sends signal `sig` (e.g. `libc::SIGHUP`) to the running daemon.
    /// Panics if it has already exited.
    pub fn signal(&mut self, sig: libc::c_int) {
        self.assert_running();
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: plain kill(2) on our own, not yet reaped, child's pid.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({sig}) failed: {}", io::Error::last_os_error());
    }

    /// Sends SIGHUP (reload the configuration file).
    pub fn hup(&mut self) {
        self.signal(libc::SIGHUP);
    }

    /// Waits for `management API listening … addr=127.0.0.1:PORT` in the log
    /// and returns that (loopback) address. Panics after `timeout`.
    pub fn wait_api_addr(&self, timeout: Duration) -> SocketAddr {
        self.wait_listening("management API listening", timeout)
    }

    /// The address of the log line `what … addr=…` (a listener on port 0).
    pub fn wait_listening(&self, what: &str, timeout: Duration) -> SocketAddr {
        let deadline = Instant::now() + timeout;
        loop {
            let err = self.stderr();
            let found = err.lines().filter(|l| l.contains(what)).find_map(|l| {
                let rest = &l[l.find("addr=")? + 5..];
                let v: String = rest
                    .trim_start_matches('"')
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '"' && *c != ',')
                    .collect();
                v.parse::<SocketAddr>().ok()
            });
            if let Some(addr) = found {
                assert!(addr.ip().is_loopback(), "{what} on {addr}, not loopback");
                return addr;
            }
            assert!(
                Instant::now() < deadline,
                "no `{what} … addr=…` line within {timeout:?}; stderr:\n{err}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// After the process exited: waits (at most `timeout`) until its stderr
    /// pipe reached EOF, so [`Daemon::stderr`] holds everything it wrote.
    /// Returns whether EOF was seen.
    pub fn wait_stderr_eof(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.stderr_eof.load(Ordering::SeqCst) {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            // Give the drain threads a moment to collect the last lines.
            thread::sleep(Duration::from_millis(50));
            let err = self.stderr();
            let tail = tail_chars(&err, 16_000);
            eprintln!(
                "--- hostbeat stderr (last {} of {} bytes) ---\n{tail}\n--- end ---",
                tail.len(),
                err.len()
            );
            let out = self.stdout();
            if !out.is_empty() {
                eprintln!(
                    "--- hostbeat stdout (last 2000 bytes) ---\n{}",
                    tail_chars(&out, 2000)
                );
            }
        }
    }
}

fn tail_chars(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

// ---------------------------------------------------------------------------
// Host readings to compare the payload against
// ---------------------------------------------------------------------------

/// `(MemTotal, MemFree)` in kB from /proc/meminfo.
pub fn meminfo_kb() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/meminfo").expect("read /proc/meminfo");
    let field = |name: &str| {
        text.lines()
            .find_map(|l| {
                let (k, rest) = l.split_once(':')?;
                (k == name).then(|| rest.split_whitespace().next()?.parse::<u64>().ok())?
            })
            .unwrap_or_else(|| panic!("/proc/meminfo has no {name}"))
    };
    (field("MemTotal"), field("MemFree"))
}

/// The 1-minute load average from /proc/loadavg.
pub fn loadavg_1() -> f64 {
    let text = std::fs::read_to_string("/proc/loadavg").expect("read /proc/loadavg");
    text.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("parse /proc/loadavg")
}

// ---------------------------------------------------------------------------
// A tiny blocking HTTP/1.1 client (loopback only)
// ---------------------------------------------------------------------------

/// One response as [`http_request`] read it.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked if it came chunked.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn try_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body parsed as JSON. Panics (with the body) if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}); status {}: {}",
                self.status,
                self.text()
            )
        })
    }
}

/// Sends one request over a fresh connection to `addr` (which must be a
/// loopback address) with `Connection: close`, and reads the whole response.
/// `headers` are sent as given; `Host`, `Connection` and (when there is a
/// body, or the method is POST/PUT/PATCH) `Content-Length` are added.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> io::Result<HttpResponse> {
    assert!(addr.ip().is_loopback(), "HTTP only to loopback, not {addr}");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        let _ = write!(head, "{k}: {v}\r\n");
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        let _ = write!(head, "Content-Length: {}\r\n", body.len());
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    http_raw(addr, &out)
}

/// Writes `request` (raw bytes) on a fresh connection to `addr` and reads
/// the response until the server closes the connection.
pub fn http_raw(addr: SocketAddr, request: &[u8]) -> io::Result<HttpResponse> {
    assert!(addr.ip().is_loopback(), "HTTP only to loopback, not {addr}");
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.set_write_timeout(Some(Duration::from_secs(20)))?;
    let _ = stream.set_nodelay(true);
    // A server may answer (e.g. 413) and close before reading everything:
    // write from another thread while this one reads, so the answer is read
    // as it arrives (before any reset), and a failed write is not an error
    // as long as a response arrives.
    let mut writer = stream.try_clone()?;
    let request = request.to_vec();
    let write_thread = thread::spawn(move || writer.write_all(&request).and_then(|()| writer.flush()));
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let read_error = loop {
        match stream.read(&mut chunk) {
            Ok(0) => break None,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Some(e),
        }
    };
    let _ = stream.shutdown(Shutdown::Both);
    let write_result = write_thread
        .join()
        .unwrap_or_else(|_| Err(bad("writer thread panicked")));
    match parse_response(&raw) {
        Some(resp) => Ok(resp),
        None => Err(read_error.or(write_result.err()).unwrap_or_else(|| {
            bad(format!(
                "incomplete response: {:?}",
                String::from_utf8_lossy(&raw)
            ))
        })),
    }
}

/// Parses a complete HTTP/1.x response; `None` if incomplete or malformed.
fn parse_response(raw: &[u8]) -> Option<HttpResponse> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let rest = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let status: u16 = parts.next()?.parse().ok()?;
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let body = if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = get("content-length") {
        let n: usize = len.parse().ok()?;
        if rest.len() < n {
            return None;
        }
        rest[..n].to_vec()
    } else {
        rest.to_vec()
    };
    Some(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let i = rest.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&rest[..i]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[i + 2..];
        if size == 0 {
            return Some(body);
        }
        if rest.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Seconds since the epoch of an RFC 3339 date-time, `None` if malformed.
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let t = s.get(from..to)?;
        t.bytes().all(|c| c.is_ascii_digit()).then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, se) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac = 0.0;
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        frac = format!("0.{}", &r[..n]).parse().ok()?;
        rest = &r[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let oh: i64 = rest[1..3].parse().ok()?;
            let om: i64 = rest[4..6].parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
    };
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + se - offset) as f64 + frac)
}
