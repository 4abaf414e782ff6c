//! End-to-end durability tests: the on-disk postback spool, SIGHUP reload,
//! crashes (SIGKILL) and faults (receiver down, hanging, corrupt spool file,
//! unwritable state directory), against the real `hostbeat` binary and a
//! loopback receiver (127.0.0.1, ephemeral ports only).
//!
//! How a payload's life is followed:
//! * identity: `(hostbeat.run, hostbeat.seq)` from the POSTed JSON, or from
//!   the spool file name `<time>-<run>-<seq>.json`;
//! * production: the daemon's debug log line `… DEBUG sample seq=N …`
//!   (RUST_LOG=debug is set by the harness), with its RFC 3339 UTC
//!   timestamp; request arrival `Instant`s are mapped to wall-clock time with
//!   one `(Instant, SystemTime)` pair taken when a test starts;
//! * delivery: a request the receiver answered with a 2xx.
//!
//! Crash loop: `crash_loop_ci` (in CI, 6 rounds) and `crash_loop_long`
//! (`#[ignore]`d). The long one takes its round count from the environment:
//!
//! ```text
//! HOSTBEAT_CRASH_ROUNDS=50 cargo test --test durability_e2e crash_loop_long -- --ignored --nocapture
//! scripts/crash-loop.sh 50          # the same
//! ```
//!
//! `HOSTBEAT_CRASH_SEED=<u64>` replays the random kill moments and receiver
//! modes of an earlier run (each run prints its seed). See
//! [`crash_loop`] for what counts as produced, delivered, duplicated and lost.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Daemon, Receiver, Reply, Request, describe_all, http_request};
use serde_json::Value;

/// Upper bound for anything that should happen "soon".
const PATIENCE: Duration = Duration::from_secs(15);
/// The limiter's period in most tests (`postback.min_interval`).
const MIN_INTERVAL: Duration = Duration::from_millis(250);
/// Scheduling slack allowed on spacing checks: the receiver stamps a request
/// when it has read it whole, so a loaded 2-core machine (tests run in
/// parallel) can make two arrivals look closer than the sends were.
const SLACK: Duration = Duration::from_millis(60);
/// A payload logged this long before a request counts as "already waiting"
/// when that request was sent (covers log → spool → pop → connect).
const LOG_MARGIN: Duration = Duration::from_millis(50);
const API_TOKEN: &str = "t";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---------------------------------------------------------------------------
// Config files
// ---------------------------------------------------------------------------

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The settings a test varies; [`Opts::new`] gives the brief's defaults.
#[derive(Debug, Clone)]
struct Opts {
    url: String,
    interval: String,
    min_interval: String,
    timeout: String,
    backoff: String,
    backoff_max: String,
    /// TOML value text: `"\"64MiB\""` or `"51200"`.
    max_bytes: String,
    api: bool,
    /// Raw TOML appended at the end.
    extra: String,
}

impl Opts {
    fn new(url: &str) -> Opts {
        Opts {
            url: url.to_owned(),
            interval: "1s".into(),
            min_interval: "250ms".into(),
            timeout: "1s".into(),
            backoff: "100ms".into(),
            backoff_max: "300ms".into(),
            max_bytes: "\"64MiB\"".into(),
            api: true,
            extra: String::new(),
        }
    }

    fn toml(&self, state_dir: &Path) -> String {
        let mut s = format!(
            "[agent]\n\
             hostname = \"dur-host\"\n\
             interval = {interval}\n\
             state_dir = {state}\n\
             \n\
             [postback]\n\
             url = {url}\n\
             agent_key = \"k\"\n\
             min_interval = {min_interval}\n\
             timeout = {timeout}\n\
             backoff = {backoff}\n\
             backoff_max = {backoff_max}\n\
             \n\
             [spool]\n\
             max_bytes = {max_bytes}\n\
             max_age = \"24h\"\n",
            interval = toml_str(&self.interval),
            state = toml_str(&state_dir.to_string_lossy()),
            url = toml_str(&self.url),
            min_interval = toml_str(&self.min_interval),
            timeout = toml_str(&self.timeout),
            backoff = toml_str(&self.backoff),
            backoff_max = toml_str(&self.backoff_max),
            max_bytes = self.max_bytes,
        );
        if self.api {
            let _ = write!(
                s,
                "\n[api]\nlisten = \"127.0.0.1:0\"\ntoken = {}\n",
                toml_str(API_TOKEN)
            );
        }
        s.push_str(&self.extra);
        s
    }
}

/// `[[webhook]] hook` → `hook_url` and `[[alert]] mem` (mem.used_pct above
/// `crit`), optionally re-notifying every `repeat`.
fn hook_and_alert(hook_url: &str, crit: u32, repeat: Option<&str>) -> String {
    let mut s = format!(
        "\n[[webhook]]\nname = \"hook\"\nurl = {}\n\n[[alert]]\nname = \"mem\"\nmetric = \"mem.used_pct\"\ncrit = {crit}\nwebhooks = [\"hook\"]\n",
        toml_str(hook_url)
    );
    if let Some(r) = repeat {
        let _ = writeln!(s, "repeat = {}", toml_str(r));
    }
    s
}

/// A tempdir with `state/` and the config file `hostbeat.toml` (mode 0600).
struct Setup {
    dir: tempfile::TempDir,
    state: PathBuf,
    config: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).expect("mkdir state");
        let config = dir.path().join("hostbeat.toml");
        Setup { dir, state, config }
    }

    /// Rewrites the config file in place (same inode, as an operator's
    /// editor or `cat >` would).
    fn write(&self, text: &str) {
        std::fs::write(&self.config, text).expect("write config");
        std::fs::set_permissions(&self.config, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }

    fn spool(&self) -> PathBuf {
        self.state.join("spool")
    }
}

// ---------------------------------------------------------------------------
// Clocks and the daemon's log
// ---------------------------------------------------------------------------

/// Maps `Instant`s (receiver timestamps) to wall-clock time (log timestamps).
#[derive(Debug, Clone, Copy)]
struct Clock {
    i0: Instant,
    s0: SystemTime,
}

impl Clock {
    fn now() -> Clock {
        Clock {
            i0: Instant::now(),
            s0: SystemTime::now(),
        }
    }

    fn wall(&self, i: Instant) -> SystemTime {
        match i.checked_duration_since(self.i0) {
            Some(d) => self.s0 + d,
            None => self.s0 - self.i0.duration_since(i),
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-25T11:44:09.021868Z` → `SystemTime`.
fn parse_rfc3339_utc(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let rest = &s[19..];
    let (frac, tail) = match rest.strip_prefix('.') {
        Some(r) => {
            let digits: String = r.chars().take_while(char::is_ascii_digit).collect();
            let tail = &r[digits.len()..];
            let mut nanos: u64 = 0;
            for (i, c) in digits.chars().take(9).enumerate() {
                nanos += u64::from(c.to_digit(10)?) * 10u64.pow(8 - i as u32);
            }
            (nanos, tail)
        }
        None => (0, rest),
    };
    if !tail.starts_with('Z') {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?) + Duration::from_nanos(frac))
}

/// One `sample seq=N` line of the daemon's log.
#[derive(Debug, Clone, Copy)]
struct Logged {
    seq: u64,
    at: SystemTime,
}

/// Every payload the daemon logged as built, in log order.
fn logged_samples(stderr: &str) -> Vec<Logged> {
    stderr
        .lines()
        .filter_map(|l| {
            let i = l.find(" sample seq=")?;
            let seq: u64 = l[i + " sample seq=".len()..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()?;
            let at = parse_rfc3339_utc(l.split_whitespace().next()?)?;
            Some(Logged { seq, at })
        })
        .collect()
}

fn max_logged(stderr: &str) -> u64 {
    logged_samples(stderr).iter().map(|l| l.seq).max().unwrap_or(0)
}

// ---------------------------------------------------------------------------
// The spool directory
// ---------------------------------------------------------------------------

/// One `<time>-<run>-<seq>.json` file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SpoolFile {
    name: String,
    run: String,
    seq: u64,
    size: u64,
}

/// `(time, run, seq)` of a spool file name.
fn parse_spool_name(name: &str) -> Option<(u64, String, u64)> {
    let stem = name.strip_suffix(".json")?;
    let mut parts = stem.split('-');
    let time = parts.next()?.parse().ok()?;
    let run = parts.next()?.to_owned();
    let seq = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((time, run, seq))
}

/// Every entry directly in `dir` (name, is a regular file, size); empty if
/// `dir` does not exist.
fn list_dir(dir: &Path) -> Vec<(String, bool, u64)> {
    let mut out: Vec<(String, bool, u64)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            // A file may vanish between the listing and this call.
            let md = e.metadata().ok()?;
            Some((name, md.is_file(), md.len()))
        })
        .collect();
    out.sort();
    out
}

/// The payload files in `dir`, sorted by name.
fn spool_files(dir: &Path) -> Vec<SpoolFile> {
    list_dir(dir)
        .into_iter()
        .filter(|(_, file, _)| *file)
        .filter_map(|(name, _, size)| {
            let (_, run, seq) = parse_spool_name(&name)?;
            Some(SpoolFile { name, run, seq, size })
        })
        .collect()
}

/// What a [`SpoolWatch`] saw.
#[derive(Debug, Default, Clone)]
struct WatchLog {
    polls: u64,
    /// Every `(run, seq)` ever seen in the directory, with the first time.
    seen: BTreeMap<(String, u64), Instant>,
    /// Largest sum of the sizes of the regular files in the directory
    /// (payloads and temporary files), and that listing.
    max_total: u64,
    max_total_listing: Vec<(String, bool, u64)>,
    /// Largest single payload file.
    max_file: u64,
    /// Listings taken twice in a row with the same result while
    /// contiguity was expected, and the ones among them with a gap.
    stable_checked: u64,
    gaps: Vec<String>,
}

/// Polls a spool directory every few ms from a thread.
struct SpoolWatch {
    stop: Arc<AtomicBool>,
    /// While set, every stable listing must hold contiguous seqs per run.
    pub contiguous: Arc<AtomicBool>,
    log: Arc<Mutex<WatchLog>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl SpoolWatch {
    fn start(dir: PathBuf) -> SpoolWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let contiguous = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(WatchLog::default()));
        let (s, c, l) = (stop.clone(), contiguous.clone(), log.clone());
        let handle = thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let want_contiguous = c.load(Ordering::SeqCst);
                let a = list_dir(&dir);
                let b = if want_contiguous {
                    Some(list_dir(&dir))
                } else {
                    None
                };
                let now = Instant::now();
                {
                    let mut log = l.lock().unwrap();
                    log.polls += 1;
                    let total: u64 = a.iter().filter(|(_, f, _)| *f).map(|(_, _, n)| n).sum();
                    if total > log.max_total {
                        log.max_total = total;
                        log.max_total_listing = a.clone();
                    }
                    for (name, file, size) in &a {
                        if let (true, Some((_, run, seq))) = (file, parse_spool_name(name)) {
                            log.max_file = log.max_file.max(*size);
                            log.seen.entry((run, seq)).or_insert(now);
                        }
                    }
                    if let Some(b) = b
                        && a == b
                        && c.load(Ordering::SeqCst)
                    {
                        log.stable_checked += 1;
                        let mut by_run: BTreeMap<String, Vec<u64>> = BTreeMap::new();
                        for (name, _, _) in &a {
                            if let Some((_, run, seq)) = parse_spool_name(name) {
                                by_run.entry(run).or_default().push(seq);
                            }
                        }
                        for (run, mut seqs) in by_run {
                            seqs.sort_unstable();
                            if seqs.windows(2).any(|w| w[1] != w[0] + 1) {
                                log.gaps.push(format!("run {run}: {seqs:?}"));
                            }
                        }
                    }
                }
                thread::sleep(ms(5));
            }
        });
        SpoolWatch {
            stop,
            contiguous,
            log,
            handle: Some(handle),
        }
    }

    fn snapshot(&self) -> WatchLog {
        self.log.lock().unwrap().clone()
    }

    fn finish(mut self) -> WatchLog {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.join().expect("watch thread");
        }
        self.snapshot()
    }
}

impl Drop for SpoolWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// Seqs of the 2xx-answered payload requests, in arrival order.
fn ok_seqs(reqs: &[Request]) -> Vec<u64> {
    reqs.iter()
        .filter(|r| r.is_2xx())
        .filter_map(Request::try_seq)
        .collect()
}

/// `GET /status` → `result`.
fn status(addr: SocketAddr) -> Value {
    let auth = format!("Bearer {API_TOKEN}");
    let resp = http_request(addr, "GET", "/status", &[("Authorization", &auth)], None).expect("GET /status");
    assert_eq!(resp.status, 200, "GET /status: {}", resp.text());
    resp.json()["result"].clone()
}

fn pb_u64(st: &Value, key: &str) -> u64 {
    st["postback"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("/status has no numeric postback.{key}: {st}"))
}

/// Webhook notifications of `kind` (`alert.firing`, `alert.resolved`).
fn notes(reqs: &[Request], kind: &str) -> Vec<Request> {
    reqs.iter()
        .filter(|r| {
            serde_json::from_slice::<Value>(&r.body)
                .is_ok_and(|v| v["type"] == kind && v["alert"]["rule"] == "mem")
        })
        .cloned()
        .collect()
}

/// Consecutive requests are at least `min_interval` apart, and after the n-th
/// consecutive failure at least min(n × backoff, backoff_max) apart.
fn assert_spacing(reqs: &[Request], min_interval: Duration, backoff: Duration, backoff_max: Duration) {
    let mut failures = 0u32;
    for w in reqs.windows(2) {
        failures = if w[0].is_2xx() { 0 } else { failures + 1 };
        let gap = w[1].at.duration_since(w[0].at);
        let want = if failures > 0 {
            min_interval.max((backoff * failures).min(backoff_max))
        } else {
            min_interval
        };
        assert!(
            gap + SLACK >= want,
            "two POSTs {gap:?} apart (want >= {want:?} - {SLACK:?}, {failures} failures before):\n{}",
            describe_all(reqs)
        );
    }
}

/// Panics with `what` unless `cond` holds within `timeout` (checked every 20 ms).
fn wait_for(what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
    wait_every(what, timeout, ms(20), cond);
}

/// [`wait_for`], checking every `every` (the management API allows ~10
/// requests a second).
fn wait_every(what: &str, timeout: Duration, every: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(every);
    }
}

/// Waits until every payload logged so far has been answered 2xx (a moment
/// with nothing pending); returns the highest such seq.
fn wait_all_delivered(d: &Daemon, rx: &Receiver, at_least: u64, skip: &BTreeSet<u64>) -> u64 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        // The log first: whatever it lists was built before the requests
        // are read.
        let logged = max_logged(&d.stderr());
        let delivered: BTreeSet<u64> = ok_seqs(&rx.requests()).into_iter().collect();
        if logged >= at_least && (1..=logged).all(|s| delivered.contains(&s) || skip.contains(&s)) {
            return logged;
        }
        assert!(
            Instant::now() < deadline,
            "not everything delivered within {PATIENCE:?}: logged up to {logged}, delivered {delivered:?}, not expected {skip:?}\n{}",
            describe_all(&rx.requests())
        );
        thread::sleep(ms(10));
    }
}

/// SIGTERM: exits 0 within 5 s.
fn stop(d: &mut Daemon) {
    let (st, took) = d.terminate();
    assert!(st.success(), "exit status {st} after SIGTERM");
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
}

// ---------------------------------------------------------------------------
// 1. Outage, then recovery
// ---------------------------------------------------------------------------

/// Receiver answers 503 to everything for ~4 s, then 200: everything built
/// during the outage arrives once, the freshest first, then the backlog
/// oldest-first interleaved with fresh payloads; the limiter and the back-off
/// hold throughout.
#[test]
fn outage_then_recovery_delivers_every_payload_freshest_first() {
    let rx = Receiver::start();
    let setup = Setup::new();
    let opts = Opts::new(&rx.url("/postback/"));
    setup.write(&opts.toml(&setup.state));
    let clock = Clock::now();
    let mut d = Daemon::spawn_file(&setup.config);

    rx.wait_until(PATIENCE, |r| ok_seqs(r).len() >= 2)
        .unwrap_or_else(|| {
            panic!(
                "no 2 deliveries before the outage:\n{}",
                describe_all(&rx.requests())
            )
        });
    // ~4–5 s: a backlog of at least 4, more than one second of drain slots,
    // so fresh payloads interleave.
    rx.script(vec![Reply::status(503); 10_000]);
    thread::sleep(ms(4600));
    rx.clear_script();
    let outage_to = Instant::now();
    let during = max_logged(&d.stderr());

    let all_done = wait_all_delivered(&d, &rx, during + 2, &BTreeSet::new());
    d.assert_running();
    stop(&mut d);
    assert!(d.wait_stderr_eof(ms(2000)));
    let err = d.stderr();
    let reqs = rx.requests();
    let logged = logged_samples(&err);
    let ctx = || format!("requests:\n{}", describe_all(&reqs));

    assert!(rx.errors().is_empty(), "receiver errors: {:?}", rx.errors());
    // One run; its payloads are numbered 1, 2, 3 … as logged.
    let runs: BTreeSet<String> = reqs.iter().map(Request::run).collect();
    assert_eq!(runs.len(), 1, "runs {runs:?}");
    let logged_seqs: Vec<u64> = logged.iter().map(|l| l.seq).collect();
    assert_eq!(
        logged_seqs,
        (1..=logged_seqs.len() as u64).collect::<Vec<_>>(),
        "built seqs"
    );

    // No duplicates; nothing lost: every built payload was delivered, but for
    // ones built after the all-delivered moment that are still spooled.
    let oks = ok_seqs(&reqs);
    let uniq: BTreeSet<u64> = oks.iter().copied().collect();
    assert_eq!(
        uniq.len(),
        oks.len(),
        "a payload was delivered twice: {oks:?}\n{}",
        ctx()
    );
    let left: Vec<SpoolFile> = spool_files(&setup.spool());
    for s in &logged_seqs {
        assert!(
            uniq.contains(s) || (*s > all_done && left.iter().any(|f| f.seq == *s)),
            "payload {s} was never delivered (left in spool: {left:?})\n{}",
            ctx()
        );
    }
    assert!(
        left.iter().all(|f| f.seq > all_done),
        "spool after stop: {left:?}"
    );

    // The limiter (any attempt) and the back-off (after failures).
    assert_spacing(&reqs, MIN_INTERVAL, ms(100), ms(300));

    // The outage was seen, and built a backlog.
    let first_fail = reqs
        .iter()
        .position(|r| r.status_sent == 503)
        .unwrap_or_else(|| panic!("no 503 seen\n{}", ctx()));
    let rec = first_fail
        + reqs[first_fail..]
            .iter()
            .position(Request::is_2xx)
            .unwrap_or_else(|| panic!("no 2xx after the outage\n{}", ctx()));
    assert!(reqs[rec].at >= outage_to, "a 2xx during the outage\n{}", ctx());
    let failed = rec - first_fail;
    assert!(
        failed >= 8,
        "only {failed} failed attempts in a 4 s outage\n{}",
        ctx()
    );
    let delivered_before: BTreeSet<u64> = ok_seqs(&reqs[..first_fail]).into_iter().collect();
    let backlog: Vec<u64> = (1..reqs[rec].seq())
        .filter(|s| !delivered_before.contains(s))
        .collect();
    assert!(backlog.len() >= 3, "backlog {backlog:?} too small\n{}", ctx());

    // The first delivery after recovery is the newest payload at that moment.
    let r0 = &reqs[rec];
    let newest_before = |r: &Request| {
        let cut = clock.wall(r.at) - LOG_MARGIN;
        logged
            .iter()
            .filter(|l| l.at <= cut)
            .map(|l| l.seq)
            .max()
            .unwrap_or(0)
    };
    let max_earlier = reqs[..rec].iter().map(Request::seq).max().unwrap_or(0);
    assert!(
        r0.seq() >= max_earlier && r0.seq() >= newest_before(r0),
        "first delivery after recovery is seq {}, but {} had been tried and {} built\n{}",
        r0.seq(),
        max_earlier,
        newest_before(r0),
        ctx()
    );

    // Then: the backlog oldest-first; a backlog payload only goes when every
    // payload built (more than LOG_MARGIN) before it has been tried.
    let mut backlog_order = Vec::new();
    for (i, r) in reqs.iter().enumerate().skip(rec + 1) {
        if !r.is_2xx() {
            continue;
        }
        let tried_before: BTreeSet<u64> = reqs[..i].iter().map(Request::seq).collect();
        let fresh = r.seq() > tried_before.iter().copied().max().unwrap_or(0);
        if fresh {
            continue;
        }
        backlog_order.push(r.seq());
        let cut = clock.wall(r.at) - LOG_MARGIN;
        let waiting: Vec<u64> = logged
            .iter()
            .filter(|l| l.at <= cut && !tried_before.contains(&l.seq))
            .map(|l| l.seq)
            .collect();
        assert!(
            waiting.is_empty(),
            "backlog payload {} (request #{i}) went while newer {waiting:?} waited\n{}",
            r.seq(),
            ctx()
        );
    }
    assert!(
        backlog_order.windows(2).all(|w| w[0] < w[1]),
        "backlog not oldest-first: {backlog_order:?}\n{}",
        ctx()
    );
    assert!(
        backlog.iter().all(|s| backlog_order.contains(s)),
        "backlog {backlog:?} vs drained {backlog_order:?}"
    );
    let drained_in = reqs
        .iter()
        .filter(|r| r.is_2xx() && backlog.contains(&r.seq()))
        .map(|r| r.at)
        .max()
        .expect("backlog drained")
        .duration_since(r0.at);
    println!(
        "outage: {failed} failed attempts; recovery delivered seq {} first, then backlog {backlog_order:?} \
         (drained in {drained_in:?}); 2xx order after recovery: {:?}",
        r0.seq(),
        ok_seqs(&reqs[rec..])
    );
}

// ---------------------------------------------------------------------------
// 2. Crash loop
// ---------------------------------------------------------------------------

/// xorshift64*: reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// 200 at once.
    Up,
    /// 503 to everything.
    Down,
    /// 200 after 500 ms (< the 1 s timeout).
    Slow,
    /// 200 after 1.5 s (> the 1 s timeout: the daemon gives up first).
    TooSlow,
}

const MODES: [Mode; 4] = [Mode::Up, Mode::Down, Mode::Slow, Mode::TooSlow];
/// The daemon's `postback.timeout` in the crash loop.
const CRASH_TIMEOUT: Duration = Duration::from_secs(1);

fn set_mode(rx: &Receiver, m: Mode) {
    rx.clear_script();
    match m {
        Mode::Up => {}
        Mode::Down => rx.script(vec![Reply::status(503); 5_000]),
        Mode::Slow => rx.script(vec![Reply::ok().delay(ms(500)); 5_000]),
        Mode::TooSlow => rx.script(vec![Reply::ok().delay(ms(1500)); 5_000]),
    }
}

/// A request the daemon saw answered 2xx: the reply left the receiver before
/// the daemon's timeout (a `TooSlow` reply is written after the client gave
/// up and does not count).
fn really_delivered(r: &Request) -> bool {
    r.is_2xx()
        && r.replied_at
            .is_some_and(|t| t.duration_since(r.at) + ms(100) < CRASH_TIMEOUT)
}

/// One daemon lifetime of the crash loop.
struct Round {
    spawned: Instant,
    /// SIGKILL (None: the final, clean run).
    killed: Option<Instant>,
    killed_wall: Option<SystemTime>,
    /// The next round's spawn (or the end): requests and new runs seen before
    /// it belong to this round.
    until: Instant,
    /// SIGKILL or the end of SIGTERM.
    ended: Instant,
    modes: Vec<Mode>,
    logged: Vec<Logged>,
    stderr: String,
}

#[derive(Debug, Default)]
struct Figures {
    rounds: usize,
    /// Per the brief: (run, seq) with seq <= the highest seq the receiver saw
    /// for that run, or seen in the spool directory.
    produced: usize,
    /// Payloads the daemons logged as built.
    logged: usize,
    delivered: usize,
    /// (run, seq) answered 2xx more than once, and the extra deliveries.
    duplicated: usize,
    extra_deliveries: usize,
    lost: usize,
    /// Logged as built at least 300 ms before a kill, yet never in the spool
    /// nor sent.
    unspooled: usize,
    /// Deliveries whose reply was still on its way at a kill.
    kills_in_flight: usize,
    requests: usize,
}

/// Runs `rounds` daemon lifetimes on one state directory, each SIGKILLed at a
/// random moment 0.3–2 s after its start while the receiver is up, down,
/// slow (500 ms) or too slow (1.5 s > timeout 1 s), flipping mid-round half of
/// the time. Then one more daemon runs (interval 1h, so it builds exactly one
/// payload) with the receiver up until the spool directory is empty, and is
/// stopped with SIGTERM.
///
/// Method: a thread lists the spool directory every ~5 ms, and once more after
/// each kill; the receiver logs every request. A run id belongs to the round
/// in which it first shows up (spool file or request). "Produced" (the brief's
/// definition) = for each run, every seq up to the highest the receiver ever
/// saw for it, plus every seq seen in the spool. "Delivered" = answered 2xx
/// before the daemon's 1 s timeout. Lost = produced − delivered (must be 0).
/// Duplicates: of the deliveries of one payload, all but one must have been
/// in flight at a kill (reply written at most 250 ms before its daemon's
/// SIGKILL, or after it); their count is printed. In addition,
/// the `sample seq=N` log lines must all be produced (a payload built ≥ 300 ms
/// before a kill must have reached the spool: "unspooled" must be 0).
fn crash_loop(rounds: usize) -> Figures {
    let seed = std::env::var("HOSTBEAT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
    println!("crash loop: {rounds} rounds, HOSTBEAT_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let rx = Receiver::start();
    let hooks = Receiver::start();
    let setup = Setup::new();
    let mut opts = Opts::new(&rx.url("/postback/"));
    opts.api = false;
    // 400 ms: up to ~4 payloads per round, so kills land amid spool writes,
    // deliveries and deletions.
    opts.interval = "400ms".into();
    opts.timeout = "1s".into();
    opts.extra = hook_and_alert(&hooks.url("/hook"), 0, None);
    setup.write(&opts.toml(&setup.state));
    let watch = SpoolWatch::start(setup.spool());

    let mut log: Vec<Round> = Vec::new();
    let mut post_kill: BTreeMap<(String, u64), Instant> = BTreeMap::new();
    for _ in 0..rounds {
        let kill_after = ms(300 + rng.below(1701));
        let mut modes = vec![MODES[rng.below(4) as usize]];
        let flip_at = (rng.below(2) == 0).then(|| ms(rng.below(kill_after.as_millis() as u64)));
        if flip_at.is_some() {
            modes.push(MODES[rng.below(4) as usize]);
        }
        set_mode(&rx, modes[0]);
        let mut d = Daemon::spawn_file(&setup.config);
        let spawned = d.started();
        if let Some(f) = flip_at {
            thread::sleep((spawned + f).saturating_duration_since(Instant::now()));
            set_mode(&rx, modes[1]);
        }
        thread::sleep((spawned + kill_after).saturating_duration_since(Instant::now()));
        if let Some(st) = d.try_exit() {
            panic!("daemon exited on its own ({st}):\n{}", d.stderr());
        }
        let killed = Instant::now();
        let killed_wall = SystemTime::now();
        d.kill9();
        assert!(d.wait_stderr_eof(ms(2000)), "stderr never closed");
        let stderr = d.stderr();
        log.push(Round {
            spawned,
            killed: Some(killed),
            killed_wall: Some(killed_wall),
            until: Instant::now(),
            ended: killed,
            modes,
            logged: logged_samples(&stderr),
            stderr,
        });
        drop(d);
        // What the kill left behind (the watch may not have polled since).
        for f in spool_files(&setup.spool()) {
            post_kill.entry((f.run, f.seq)).or_insert(killed);
        }
    }
    // Runs of the killed rounds, to recognise the final run's.
    let known_runs: BTreeSet<String> = post_kill
        .keys()
        .chain(watch.snapshot().seen.keys())
        .map(|(run, _)| run.clone())
        .chain(rx.requests().iter().filter_map(Request::try_run))
        .collect();

    // The final run: receiver up, until the spool is empty.
    rx.clear_script();
    let mut fin = opts.clone();
    fin.interval = "1h".into();
    setup.write(&fin.toml(&setup.state));
    let mut d = Daemon::spawn_file(&setup.config);
    let spawned = d.started();
    wait_for(
        "the spool to drain in the final run",
        Duration::from_secs(20) + ms(300) * rounds as u32,
        || {
            spool_files(&setup.spool()).is_empty()
                && logged_samples(&d.stderr()).len() == 1
                && rx
                    .requests()
                    .iter()
                    .any(|r| really_delivered(r) && r.try_run().is_some_and(|run| !known_runs.contains(&run)))
        },
    );
    d.assert_running();
    stop(&mut d);
    assert!(d.wait_stderr_eof(ms(2000)));
    let stderr = d.stderr();
    log.push(Round {
        spawned,
        killed: None,
        killed_wall: None,
        until: Instant::now(),
        ended: Instant::now(),
        modes: vec![Mode::Up],
        logged: logged_samples(&stderr),
        stderr,
    });
    let mut seen = watch.finish();
    for (id, t) in post_kill {
        let e = seen.seen.entry(id).or_insert(t);
        *e = (*e).min(t);
    }
    let reqs = rx.requests();
    // Rounds own contiguous windows: [its spawn, the next spawn).
    for i in 0..log.len() - 1 {
        log[i].until = log[i + 1].spawned;
    }
    if let Some(last) = log.last_mut() {
        last.until = Instant::now() + Duration::from_secs(3600);
    }

    // Which round a moment belongs to.
    let round_of = |t: Instant| log.iter().position(|r| t >= r.spawned && t < r.until);

    // Run ids per round: first appearance, in the spool or at the receiver.
    let mut first_seen: BTreeMap<String, Instant> = BTreeMap::new();
    for ((run, _), t) in &seen.seen {
        let e = first_seen.entry(run.clone()).or_insert(*t);
        *e = (*e).min(*t);
    }
    for r in &reqs {
        if let Some((run, _)) = r.try_id() {
            let e = first_seen.entry(run).or_insert(r.at);
            *e = (*e).min(r.at);
        }
    }
    let mut run_round: BTreeMap<String, usize> = BTreeMap::new();
    for (run, t) in &first_seen {
        let i = round_of(*t).unwrap_or_else(|| panic!("run {run} first seen outside every round"));
        run_round.insert(run.clone(), i);
    }
    for i in 0..log.len() {
        let runs: Vec<&String> = run_round
            .iter()
            .filter(|(_, r)| **r == i)
            .map(|(k, _)| k)
            .collect();
        assert!(runs.len() <= 1, "round {i} shows several new runs: {runs:?}");
    }

    // Produced (the brief's definition).
    let mut produced: BTreeSet<(String, u64)> = seen.seen.keys().cloned().collect();
    let mut max_seen: BTreeMap<String, u64> = BTreeMap::new();
    for r in &reqs {
        if let Some((run, seq)) = r.try_id() {
            let m = max_seen.entry(run).or_insert(0);
            *m = (*m).max(seq);
        }
    }
    for (run, m) in &max_seen {
        for s in 1..=*m {
            produced.insert((run.clone(), s));
        }
    }

    // Delivered, duplicates.
    let mut deliveries: BTreeMap<(String, u64), Vec<&Request>> = BTreeMap::new();
    for r in reqs.iter().filter(|r| really_delivered(r)) {
        deliveries
            .entry(r.try_id().expect("payload id"))
            .or_default()
            .push(r);
    }
    let mut fig = Figures {
        rounds,
        produced: produced.len(),
        logged: log.iter().map(|r| r.logged.len()).sum(),
        delivered: deliveries.len(),
        requests: reqs.len(),
        ..Figures::default()
    };
    let mut problems = Vec::new();
    for (id, ds) in &deliveries {
        if ds.len() < 2 {
            continue;
        }
        fig.duplicated += 1;
        fig.extra_deliveries += ds.len() - 1;
        // Every delivery but one must have been in flight at a kill: its
        // reply left the receiver at most 250 ms before its daemon's SIGKILL
        // (or after it), so the daemon could not delete the file.
        let in_flight = |r: &Request| {
            round_of(r.at)
                .and_then(|i| log[i].killed)
                .is_some_and(|k| r.replied_at.is_some_and(|t| t + ms(250) >= k))
        };
        let settled: Vec<&&Request> = ds.iter().filter(|r| !in_flight(r)).collect();
        fig.kills_in_flight += ds.len() - settled.len();
        if settled.len() > 1 {
            problems.push(format!(
                "{id:?} delivered {} times, {} of them not in flight at a kill: {}",
                ds.len(),
                settled.len(),
                settled
                    .iter()
                    .map(|r| format!("[{} in round {:?}]", r.describe(), round_of(r.at)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    for id in &produced {
        if !deliveries.contains_key(id) {
            fig.lost += 1;
            problems.push(format!("LOST {id:?} (run of round {:?})", run_round.get(&id.0)));
        }
    }

    // The log's view: every payload built well before a kill was produced.
    for (i, round) in log.iter().enumerate() {
        let run = run_round.iter().find(|(_, r)| **r == i).map(|(k, _)| k.clone());
        let seqs: Vec<u64> = round.logged.iter().map(|l| l.seq).collect();
        if seqs != (1..=seqs.len() as u64).collect::<Vec<_>>() {
            problems.push(format!(
                "round {i}: built seqs {seqs:?} have gaps (sample dropped?)"
            ));
        }
        for l in &round.logged {
            let in_produced = run
                .as_ref()
                .is_some_and(|run| produced.contains(&(run.clone(), l.seq)));
            if in_produced {
                continue;
            }
            let early = round
                .killed_wall
                .is_none_or(|k| k.duration_since(l.at).unwrap_or_default() >= ms(300));
            if early {
                fig.unspooled += 1;
                let tail: Vec<&str> = round
                    .stderr
                    .lines()
                    .filter(|l| !l.contains("connection") && !l.contains("connect"))
                    .filter(|l| {
                        l.contains(" INFO ")
                            || l.contains(" WARN ")
                            || l.contains(" ERROR ")
                            || l.contains("sample seq=")
                    })
                    .collect();
                problems.push(format!(
                    "round {i} (run {run:?}, modes {:?}, killed {:?} after start): seq {} built {:?} before the kill was never spooled nor sent; its log:\n    {}",
                    round.modes,
                    round.ended.duration_since(round.spawned),
                    l.seq,
                    round.killed_wall.map(|k| k.duration_since(l.at).unwrap_or_default()),
                    tail.join("\n    ")
                ));
            }
        }
        if round.stderr.contains("corrupt") {
            problems.push(format!(
                "round {i} logged a corrupt file:\n{}",
                round
                    .stderr
                    .lines()
                    .filter(|l| l.contains("corrupt"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
        }
        if round.stderr.contains("panicked") {
            problems.push(format!("round {i} panicked:\n{}", round.stderr));
        }
    }

    // What the state directory holds now.
    let spool_left = list_dir(&setup.spool());
    let spool_left: Vec<_> = spool_left.iter().filter(|(n, _, _)| n != "corrupt").collect();
    if !spool_left.is_empty() {
        problems.push(format!("spool not empty after the final run: {spool_left:?}"));
    }
    let corrupt = list_dir(&setup.spool().join("corrupt"));
    if !corrupt.is_empty() {
        problems.push(format!("spool/corrupt holds {corrupt:?}"));
    }
    let mut stack = vec![setup.state.clone()];
    let mut state_files = Vec::new();
    while let Some(dir) = stack.pop() {
        for (name, file, _) in list_dir(&dir) {
            let p = dir.join(&name);
            if !file {
                stack.push(p);
                continue;
            }
            if name.contains(".tmp") || name.ends_with(".corrupt") {
                problems.push(format!("left-over file {}", p.display()));
            } else if name.ends_with(".json") {
                let bytes = std::fs::read(&p).expect("read state file");
                match serde_json::from_slice::<Value>(&bytes) {
                    Ok(_) => state_files.push(p.strip_prefix(&setup.state).unwrap().display().to_string()),
                    Err(e) => problems.push(format!("{} does not parse: {e}", p.display())),
                }
            }
        }
    }

    let mut per_round = String::new();
    for (i, r) in log.iter().enumerate() {
        let run = run_round
            .iter()
            .find(|(_, x)| **x == i)
            .map(|(k, _)| k.as_str())
            .unwrap_or("-");
        let _ = writeln!(
            per_round,
            "  round {i:>3}: run {run:8} modes {:?} lived {:>5} ms, built {}",
            r.modes,
            r.ended.duration_since(r.spawned).as_millis(),
            r.logged.len()
        );
    }
    println!("{per_round}");
    println!(
        "crash loop figures: rounds={} produced={} (logged as built: {}) delivered={} duplicates={} \
         (extra deliveries {}, in flight at a kill {}) lost={} unspooled={} requests={} state files {:?}",
        fig.rounds,
        fig.produced,
        fig.logged,
        fig.delivered,
        fig.duplicated,
        fig.extra_deliveries,
        fig.kills_in_flight,
        fig.lost,
        fig.unspooled,
        fig.requests,
        state_files
    );
    assert!(
        problems.is_empty(),
        "crash loop (HOSTBEAT_CRASH_SEED={seed}) found {} problem(s):\n{}\n{per_round}",
        problems.len(),
        problems.join("\n")
    );
    assert_eq!(fig.lost, 0);
    assert!(fig.delivered > 0 && fig.produced > 0);
    assert!(
        state_files.iter().any(|f| f == "alerts.json"),
        "no alerts.json in {state_files:?}"
    );
    fig
}

/// The CI variant: 6 rounds.
#[test]
fn crash_loop_ci() {
    crash_loop(6);
}

/// The long variant: `HOSTBEAT_CRASH_ROUNDS` rounds (default 50).
#[test]
#[ignore = "long: run with HOSTBEAT_CRASH_ROUNDS=N … -- --ignored (or scripts/crash-loop.sh N)"]
fn crash_loop_long() {
    let rounds = std::env::var("HOSTBEAT_CRASH_ROUNDS")
        .ok()
        .map(|v| v.parse().expect("HOSTBEAT_CRASH_ROUNDS is a number"))
        .unwrap_or(50);
    crash_loop(rounds);
}

// ---------------------------------------------------------------------------
// 3. SIGHUP while an alert fires and payloads are spooled
// ---------------------------------------------------------------------------

/// Broken config: logged with file/line/field, the old config keeps running
/// (posting, sampling, alerting). Valid config (crit = 1000, min_interval
/// 400ms) with the receiver back: the alert resolves, the spool drains, nothing
/// is lost, the new min_interval applies.
#[test]
fn sighup_broken_then_valid_config_while_alerting_and_spooling() {
    let rx = Receiver::start();
    let hooks = Receiver::start();
    let setup = Setup::new();
    rx.script(vec![Reply::status(503); 10_000]);
    let mut opts = Opts::new(&rx.url("/postback/"));
    opts.extra = hook_and_alert(&hooks.url("/hook"), 0, Some("2s"));
    setup.write(&opts.toml(&setup.state));
    let mut d = Daemon::spawn_file(&setup.config);
    let api = d.wait_api_addr(PATIENCE);

    hooks
        .wait_until(PATIENCE, |r| !notes(r, "alert.firing").is_empty())
        .expect("alert.firing");
    wait_for("2 payloads spooled", PATIENCE, || {
        spool_files(&setup.spool()).len() >= 2
    });

    // A broken file: the resolving change plus two invalid fields.
    let mut broken = opts.clone();
    broken.backoff_max = "50ms".into();
    broken.extra = hook_and_alert(&hooks.url("/hook"), 1000, Some("2s"))
        + "\n[[alert]]\nname = \"bogus\"\nmetric = \"mem.no_such_metric\"\ncrit = 1\n";
    let text = broken.toml(&setup.state);
    let line_of = |needle: &str| {
        text.lines()
            .position(|l| l.starts_with(needle))
            .map(|i| i + 1)
            .expect("line in config")
    };
    let (l_backoff, l_metric) = (
        line_of("backoff_max ="),
        line_of("metric = \"mem.no_such_metric\""),
    );
    setup.write(&text);
    d.hup();
    let refused = Instant::now();
    assert!(
        d.wait_stderr(
            "SIGHUP: the new configuration is invalid; the running one stays",
            PATIENCE
        ),
        "no refusal logged"
    );
    let err = d.stderr();
    let path = setup.config.display().to_string();
    for (line, field) in [
        (l_backoff, "postback.backoff_max"),
        (l_metric, "alert \"bogus\".metric"),
    ] {
        assert!(
            err.lines().any(|l| l.contains("ERROR")
                && l.contains(&path)
                && l.contains(&format!("line {line}"))
                && l.contains(field)),
            "no error line naming {path}, line {line} and {field}:\n{err}"
        );
    }
    assert!(!err.contains("configuration reloaded"), "{err}");

    // The old config keeps running: sampling, posting (503s), alerting.
    let seq_at_refusal = max_logged(&err);
    let fired_before = notes(&hooks.requests(), "alert.firing").len();
    wait_for(
        "sampling, posting and alerting after the refused reload",
        PATIENCE,
        || {
            let reqs = rx.requests();
            max_logged(&d.stderr()) >= seq_at_refusal + 2
                && reqs.iter().filter(|r| r.at > refused).count() >= 3
                && notes(&hooks.requests(), "alert.firing").len() > fired_before
        },
    );
    d.assert_running();
    assert!(
        notes(&hooks.requests(), "alert.resolved").is_empty(),
        "the refused config was applied"
    );
    let st = status(api);
    assert_eq!(st["alerts"]["firing"], 1, "{st}");
    assert!(pb_u64(&st, "queued") >= 3, "{st}");
    let spooled_before_reload = spool_files(&setup.spool()).len();
    assert!(
        spooled_before_reload >= 3,
        "spool: {:?}",
        spool_files(&setup.spool())
    );

    // A valid file, the receiver back up.
    let mut valid = opts.clone();
    valid.min_interval = "400ms".into();
    valid.extra = hook_and_alert(&hooks.url("/hook"), 1000, Some("2s"));
    setup.write(&valid.toml(&setup.state));
    rx.clear_script();
    let hup_sent = Instant::now();
    d.hup();
    assert!(
        d.wait_stderr("configuration reloaded", PATIENCE),
        "no reload logged"
    );
    let reloaded = Instant::now();
    let resolved = hooks
        .wait_until(Duration::from_secs(5), |r| !notes(r, "alert.resolved").is_empty())
        .expect("alert.resolved within 5 s of the valid reload");
    let done = wait_all_delivered(&d, &rx, seq_at_refusal + 3, &BTreeSet::new());
    d.assert_running();
    let st = status(api);
    assert_eq!(st["alerts"]["firing"], 0, "{st}");
    stop(&mut d);
    let reqs = rx.requests();

    let oks = ok_seqs(&reqs);
    let uniq: BTreeSet<u64> = oks.iter().copied().collect();
    assert_eq!(uniq.len(), oks.len(), "duplicate deliveries {oks:?}");
    assert!(
        (1..=done).all(|s| uniq.contains(&s)),
        "delivered {uniq:?}, built up to {done}"
    );
    assert_eq!(reqs.iter().map(Request::run).collect::<BTreeSet<_>>().len(), 1);
    assert_eq!(notes(&resolved, "alert.resolved").len(), 1);
    println!(
        "reload: {spooled_before_reload} payloads spooled at the valid reload, all {done} delivered once; \
         resolved notification {:?} after SIGHUP",
        notes(&resolved, "alert.resolved")[0]
            .at
            .saturating_duration_since(hup_sent)
    );
    // Limiter and back-off before the reload; the new min_interval after it;
    // and across it, at least the old min_interval (the new one is longer):
    // a reload never lets a POST follow the previous one sooner.
    let before: Vec<Request> = reqs.iter().filter(|r| r.at < hup_sent).cloned().collect();
    assert_spacing(&before, MIN_INTERVAL, ms(100), ms(300));
    let after: Vec<Request> = reqs
        .iter()
        .filter(|r| r.at > reloaded + ms(100))
        .cloned()
        .collect();
    assert!(after.len() >= 3, "{}", describe_all(&reqs));
    assert_spacing(&after, ms(400), ms(100), ms(300));
    assert_spacing(&reqs, MIN_INTERVAL, Duration::ZERO, Duration::ZERO);
}

// ---------------------------------------------------------------------------
// 4. The spool's byte bound
// ---------------------------------------------------------------------------

/// Size of one compact payload, from `hostbeat once` (pretty-printed there).
fn payload_size_estimate(config: &Path) -> u64 {
    let out = common::hostbeat_command()
        .arg("once")
        .arg("-c")
        .arg(config)
        .output()
        .expect("hostbeat once");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("once prints JSON");
    serde_json::to_vec(&v).unwrap().len() as u64
}

/// max_bytes ≈ 3 payloads, receiver down: the directory never holds more than
/// max_bytes + one payload; the oldest are dropped (counted, logged); what
/// survives is the newest, contiguous, and is delivered once it is back.
#[test]
fn spool_byte_bound_drops_oldest_first() {
    let rx = Receiver::start();
    rx.script(vec![Reply::status(503); 10_000]);
    let setup = Setup::new();
    let mut opts = Opts::new(&rx.url("/postback/"));
    opts.interval = "500ms".into();
    setup.write(&opts.toml(&setup.state));
    let est = payload_size_estimate(&setup.config);
    // The daemon's floor for spool.max_bytes is 64 KiB.
    let max_bytes = (3 * est).max(64 * 1024);
    opts.max_bytes = max_bytes.to_string();
    setup.write(&opts.toml(&setup.state));

    let watch = SpoolWatch::start(setup.spool());
    watch.contiguous.store(true, Ordering::SeqCst);
    let mut d = Daemon::spawn_file(&setup.config);
    let api = d.wait_api_addr(PATIENCE);
    wait_every(
        "3 payloads dropped for size",
        Duration::from_secs(20),
        ms(200),
        || pb_u64(&status(api), "dropped") >= 3,
    );
    assert!(
        d.wait_stderr("spool: payload dropped", ms(500)),
        "drop not logged"
    );
    watch.contiguous.store(false, Ordering::SeqCst);
    rx.clear_script();

    // Deliver what survived: every seq above the dropped ones.
    let deadline = Instant::now() + PATIENCE;
    let (dropped, done) = loop {
        let logged = max_logged(&d.stderr());
        let dropped = pb_u64(&status(api), "dropped");
        let delivered: BTreeSet<u64> = ok_seqs(&rx.requests()).into_iter().collect();
        if logged > dropped + 3 && (dropped + 1..=logged).all(|s| delivered.contains(&s)) {
            break (dropped, logged);
        }
        assert!(
            Instant::now() < deadline,
            "survivors not delivered: {delivered:?}, dropped {dropped}"
        );
        thread::sleep(ms(200));
    };
    d.assert_running();
    let st = status(api);
    stop(&mut d);
    let seen = watch.finish();
    let err = d.stderr();
    let reqs = rx.requests();

    // The directory's size.
    assert!(seen.polls > 100 && seen.max_file > 0, "{seen:?}");
    assert!(
        seen.max_total <= max_bytes + seen.max_file,
        "spool dir held {} bytes > max_bytes {max_bytes} + one payload {}: {:?}",
        seen.max_total,
        seen.max_file,
        seen.max_total_listing
    );
    // Oldest first: the dropped ones are exactly seqs 1..=dropped, as logged.
    let drop_lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("spool: payload dropped"))
        .collect();
    let dropped_seqs: Vec<u64> = drop_lines
        .iter()
        .map(|l| {
            assert!(l.contains("spool.max_bytes reached"), "{l}");
            let f = &l[l.find("file=").expect("file=") + 5..];
            let name = f.split_whitespace().next().unwrap().trim_matches('"');
            parse_spool_name(name).expect("spool name").2
        })
        .collect();
    assert_eq!(
        dropped_seqs,
        (1..=dropped).collect::<Vec<_>>(),
        "{}",
        drop_lines.join("\n")
    );
    assert_eq!(pb_u64(&st, "dropped"), dropped_seqs.len() as u64, "{st}");
    let oks = ok_seqs(&reqs);
    let uniq: BTreeSet<u64> = oks.iter().copied().collect();
    assert_eq!(uniq.len(), oks.len(), "duplicates: {oks:?}");
    assert!(
        uniq.iter().all(|s| *s > dropped),
        "a dropped payload was delivered: {oks:?}"
    );
    assert!((dropped + 1..=done).all(|s| uniq.contains(&s)));
    // While it was down, the spool held a contiguous run of the newest seqs.
    assert!(
        seen.stable_checked >= 20,
        "only {} stable listings",
        seen.stable_checked
    );
    assert!(
        seen.gaps.is_empty(),
        "non-contiguous spool listings: {:?}",
        seen.gaps
    );
    println!(
        "byte bound: payload ~{est} B (largest file {} B), max_bytes {max_bytes}, dir peak {} B, \
         dropped seqs 1..={dropped}, delivered {}..={done}",
        seen.max_file,
        seen.max_total,
        dropped + 1
    );
}

// ---------------------------------------------------------------------------
// 5. A corrupt spool file
// ---------------------------------------------------------------------------

/// A spool file truncated while the daemon is stopped: at the next start it
/// is moved to spool/corrupt/ and counted; the others are delivered.
#[test]
fn truncated_spool_file_is_set_aside_and_the_rest_delivered() {
    let rx = Receiver::start();
    rx.script(vec![Reply::status(503); 10_000]);
    let setup = Setup::new();
    let mut opts = Opts::new(&rx.url("/postback/"));
    opts.interval = "300ms".into();
    opts.api = false;
    setup.write(&opts.toml(&setup.state));
    let mut d = Daemon::spawn_file(&setup.config);
    wait_for("5 payloads spooled", PATIENCE, || {
        spool_files(&setup.spool()).len() >= 5
    });
    stop(&mut d);
    drop(d);

    let files = spool_files(&setup.spool());
    assert!(files.len() >= 5, "{files:?}");
    let victim = files[2].clone();
    let path = setup.spool().join(&victim.name);
    let bytes = std::fs::read(&path).unwrap();
    let cut = bytes[..bytes.len() / 2].to_vec();
    std::fs::write(&path, &cut).unwrap();
    let first_run = victim.run.clone();

    rx.clear_script();
    let phase_a = rx.requests().len();
    let mut opts = Opts::new(&rx.url("/postback/"));
    opts.api = true;
    setup.write(&opts.toml(&setup.state));
    let mut d = Daemon::spawn_file(&setup.config);
    let api = d.wait_api_addr(PATIENCE);
    let aside = setup.spool().join("corrupt").join(&victim.name);
    wait_for(
        "the others delivered and the corrupt one set aside",
        PATIENCE,
        || {
            let got: BTreeSet<(String, u64)> = rx
                .requests()
                .iter()
                .filter(|r| r.is_2xx())
                .filter_map(Request::try_id)
                .collect();
            aside.exists()
                && files
                    .iter()
                    .filter(|f| f.name != victim.name)
                    .all(|f| got.contains(&(f.run.clone(), f.seq)))
        },
    );
    d.assert_running();
    let st = status(api);
    assert_eq!(pb_u64(&st, "corrupt"), 1, "{st}");
    assert_eq!(
        std::fs::read(&aside).unwrap(),
        cut,
        "the set-aside file is not the truncated one"
    );
    assert!(!path.exists());
    let err = d.stderr();
    assert!(
        err.contains("spool file is corrupt or truncated; set aside"),
        "{err}"
    );
    // Nothing else is in corrupt/, and the victim never went out.
    let corrupt_dir = list_dir(&setup.spool().join("corrupt"));
    assert_eq!(corrupt_dir.len(), 1, "{corrupt_dir:?}");
    let reqs = rx.requests()[phase_a..].to_vec();
    assert!(
        !reqs
            .iter()
            .any(|r| r.try_id() == Some((first_run.clone(), victim.seq))),
        "the truncated payload was sent after the restart"
    );
    let old_oks: Vec<u64> = reqs
        .iter()
        .filter(|r| r.is_2xx() && r.try_run().as_deref() == Some(first_run.as_str()))
        .map(Request::seq)
        .collect();
    let uniq: BTreeSet<u64> = old_oks.iter().copied().collect();
    assert_eq!(uniq.len(), old_oks.len(), "duplicates: {old_oks:?}");
    // The first run's payloads went oldest-first (minus the set-aside one).
    assert!(old_oks.windows(2).all(|w| w[0] < w[1]), "{old_oks:?}");
    stop(&mut d);
    println!(
        "corrupt: {} of {} spooled set aside ({} -> {} bytes), other {} delivered: {old_oks:?}",
        victim.name,
        files.len(),
        bytes.len(),
        cut.len(),
        uniq.len()
    );
}

// ---------------------------------------------------------------------------
// 6. A receiver that hangs
// ---------------------------------------------------------------------------

/// The receiver accepts and never answers (timeout 1 s): sampling goes on
/// (new spool files keep appearing) and the alert reaches a separate webhook
/// receiver promptly, and keeps re-notifying.
#[test]
fn hanging_receiver_stalls_neither_sampling_nor_alerts() {
    let rx = Receiver::start();
    rx.script(vec![Reply::hang(); 1_000]);
    let hooks = Receiver::start();
    let setup = Setup::new();
    let mut opts = Opts::new(&rx.url("/postback/"));
    opts.timeout = "1s".into();
    opts.api = true;
    opts.extra = hook_and_alert(&hooks.url("/hook"), 0, Some("1s"));
    setup.write(&opts.toml(&setup.state));
    let watch = SpoolWatch::start(setup.spool());
    let mut d = Daemon::spawn_file(&setup.config);
    let started = d.started();
    let api = d.wait_api_addr(PATIENCE);

    let fired = hooks
        .wait_until(Duration::from_secs(3), |r| !notes(r, "alert.firing").is_empty())
        .unwrap_or_else(|| {
            panic!(
                "no alert.firing within 3 s of the start:\n{}",
                describe_all(&hooks.requests())
            )
        });
    let first_note = notes(&fired, "alert.firing")[0].at.duration_since(started);
    assert!(first_note < Duration::from_secs(3));

    // 5 s in: the postback is stuck behind hung requests, sampling is not.
    wait_for("seq 5 in the spool", Duration::from_secs(8), || {
        watch.snapshot().seen.keys().map(|(_, s)| *s).max().unwrap_or(0) >= 5
    });
    let by = started.elapsed();
    hooks
        .wait_until(PATIENCE, |r| notes(r, "alert.firing").len() >= 3)
        .expect("repeat notifications while the postback hangs");
    d.assert_running();
    let hung = rx.requests();
    assert!(
        hung.len() >= 3,
        "only {} attempts reached the hanging receiver",
        hung.len()
    );
    assert!(hung.iter().all(|r| r.status_sent == 0));
    let st = status(api);
    assert_eq!(pb_u64(&st, "delivered"), 0, "{st}");
    assert!(pb_u64(&st, "failed_attempts") >= 3, "{st}");
    assert_eq!(st["postback"]["last_outcome"], "failed", "{st}");
    // Cadence: no gap of more than 1.5 intervals between built payloads.
    let logged = logged_samples(&d.stderr());
    for w in logged.windows(2) {
        let gap = w[1].at.duration_since(w[0].at).unwrap_or_default();
        assert!(
            gap < ms(1500),
            "sampling stalled {gap:?} between {} and {}",
            w[0].seq,
            w[1].seq
        );
    }
    let seen = watch.finish();
    stop(&mut d);
    let seqs: BTreeSet<u64> = seen.seen.keys().map(|(_, s)| *s).collect();
    println!(
        "hang: first alert {first_note:?} after start; seq 5 spooled {by:?} after start; \
         {} hung attempts; spool saw seqs {seqs:?}",
        hung.len()
    );
}

/// "Every payload is written to the spool when built (before sending)": while
/// a POST hangs (timeout 2 s), payloads built meanwhile (every 300 ms) must
/// still reach the spool directory at once (within 250 ms of the `sample`
/// log line), else a crash in that window loses them. The crash loop found
/// such losses; this pins the cause down deterministically.
#[test]
fn payloads_reach_the_spool_while_a_post_hangs() {
    let rx = Receiver::start();
    rx.script(vec![Reply::hang(); 1_000]);
    let setup = Setup::new();
    let mut opts = Opts::new(&rx.url("/postback/"));
    opts.interval = "300ms".into();
    opts.timeout = "2s".into();
    opts.api = false;
    setup.write(&opts.toml(&setup.state));
    let clock = Clock::now();
    let watch = SpoolWatch::start(setup.spool());
    let mut d = Daemon::spawn_file(&setup.config);
    wait_for("8 payloads built", PATIENCE, || max_logged(&d.stderr()) >= 8);
    thread::sleep(ms(300));
    d.assert_running();
    let seen = watch.finish();
    let logged = logged_samples(&d.stderr());
    stop(&mut d);
    let mut report = Vec::new();
    let mut late = 0;
    for l in logged.iter().filter(|l| l.seq <= 8) {
        let first = seen
            .seen
            .iter()
            .find(|((_, s), _)| *s == l.seq)
            .map(|(_, t)| clock.wall(*t));
        let delay = first.map(|t| t.duration_since(l.at).unwrap_or_default());
        if delay.is_none_or(|d| d > ms(250)) {
            late += 1;
        }
        report.push(format!("seq {}: spooled {delay:?} after built", l.seq));
    }
    assert_eq!(
        late,
        0,
        "payloads built while a POST hung waited to be spooled:\n{}\nrequests:\n{}",
        report.join("\n"),
        describe_all(&rx.requests())
    );
}

// ---------------------------------------------------------------------------
// 7. An unwritable state directory
// ---------------------------------------------------------------------------

/// state_dir under a regular file (mkdir fails, even as root): the daemon
/// runs, logs the spool error once, delivers from memory (through a short
/// outage too), and counts it in /status.
#[test]
fn unwritable_state_dir_delivers_from_memory() {
    let rx = Receiver::start();
    let setup = Setup::new();
    let blocker = setup.dir.path().join("file");
    std::fs::write(&blocker, b"not a directory\n").unwrap();
    let state = blocker.join("state");
    let opts = Opts::new(&rx.url("/postback/"));
    setup.write(&opts.toml(&state));
    let mut d = Daemon::spawn_file(&setup.config);
    let api = d.wait_api_addr(PATIENCE);
    rx.wait_until(PATIENCE, |r| !ok_seqs(r).is_empty())
        .expect("a first delivery from memory");
    rx.script(vec![Reply::status(503); 10_000]);
    thread::sleep(ms(2500));
    rx.clear_script();
    let during = max_logged(&d.stderr());
    let done = wait_all_delivered(&d, &rx, during + 1, &BTreeSet::new());
    d.assert_running();
    let st = status(api);
    stop(&mut d);
    let err = d.stderr();
    let reqs = rx.requests();

    let spool_errors: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("spool"))
        .collect();
    assert_eq!(
        spool_errors.len(),
        1,
        "the spool error is logged once:\n{}",
        spool_errors.join("\n")
    );
    assert!(spool_errors[0].contains("kept in memory"), "{}", spool_errors[0]);
    assert!(pb_u64(&st, "memory_only") >= done, "{st}");
    assert!(pb_u64(&st, "delivered") >= done, "{st}");
    let oks = ok_seqs(&reqs);
    let uniq: BTreeSet<u64> = oks.iter().copied().collect();
    assert_eq!(uniq.len(), oks.len(), "duplicates: {oks:?}");
    assert!(
        (1..=done).all(|s| uniq.contains(&s)),
        "delivered {oks:?}, built up to {done}"
    );
    assert!(
        reqs.iter().any(|r| r.status_sent == 503),
        "the outage was not seen"
    );
    assert!(!state.exists());
    assert_eq!(std::fs::read(&blocker).unwrap(), b"not a directory\n");
    println!(
        "memory only: {} payloads kept in memory, {done} delivered (2xx order {oks:?})",
        pb_u64(&st, "memory_only")
    );
}
