//! Alert latency: from the end of a sample to the webhook request arriving at
//! a loopback receiver. Target from the issue: ≤ 50 ms.
//!
//! The path is the daemon's: on a current-thread runtime, `metrics::series`,
//! `Evaluator::evaluate`, saving the firing alerts (`alerts.json`) when they
//! changed, `Registry::notify`; the destination task then saves its queue,
//! signs and posts. State lives in a temporary directory under the target
//! directory (a real disk, as `state_dir` would be; both saves fsync).
//!
//! `cargo bench --bench alert_latency` (200 alerts); without `--bench`, as under
//! `cargo test --benches`, a 5 alert smoke run.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hostbeat::alert::{Evaluator, Now, Rule, RuleSpec};
use hostbeat::collect::{Collector, ProcFs};
use hostbeat::metrics;
use hostbeat::webhook::DestinationSpec;
use hostbeat::webhook::registry::Registry;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

const TARGET_MS: f64 = 50.0;
const HOST: &str = "bench-host";

/// Connections the receiver accepted (keep-alive: expect one).
static CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

/// One request as the receiver saw it complete.
struct Arrival {
    at: Instant,
    body: String,
}

/// A minimal HTTP/1.1 server on 127.0.0.1 answering every request 200, keeping
/// connections alive; reports each request when its body is complete.
fn receiver(tx: UnboundedSender<Arrival>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            CONNECTIONS.fetch_add(1, Ordering::Relaxed);
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = serve(conn, &tx);
            });
        }
    });
    addr
}

fn serve(mut conn: TcpStream, tx: &UnboundedSender<Arrival>) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            match conn.read(&mut chunk)? {
                0 => return Ok(()),
                k => buf.extend_from_slice(&chunk[..k]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        };
        assert!(
            header("transfer-encoding").is_none(),
            "chunked requests are not handled: {head}"
        );
        let len: usize = header("content-length").map_or(0, |v| v.parse().expect("content-length"));
        while buf.len() < head_end + len {
            match conn.read(&mut chunk)? {
                0 => return Ok(()),
                k => buf.extend_from_slice(&chunk[..k]),
            }
        }
        let at = Instant::now();
        let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
        buf.drain(..head_end + len);
        let _ = tx.send(Arrival { at, body });
        conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")?;
    }
}

/// Nearest-rank percentile of sorted milliseconds.
fn pct(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn line(what: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    println!(
        "{what:<34} count {:>4}  min {:>7.3}  p50 {:>7.3}  p95 {:>7.3}  p99 {:>7.3}  max {:>7.3}  mean {:>7.3}  (ms)",
        ms.len(),
        ms[0],
        pct(&ms, 50.0),
        pct(&ms, 95.0),
        pct(&ms, 99.0),
        ms[ms.len() - 1],
        mean,
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (warmup, count) = if full { (5, 200) } else { (1, 5) };

    let (tx, mut arrivals) = unbounded_channel();
    let addr = receiver(tx);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let alerts_file = dir.path().join("alerts.json");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (mut total, to_notify, first) = runtime.block_on(async {
        let client = hostbeat::http::client().expect("http client");
        let spec = DestinationSpec {
            name: Some("bench".into()),
            url: Some(format!("http://{addr}/hook")),
            max_per_minute: Some(100_000),
            ..Default::default()
        };
        let dispatcher = Registry::start(&[spec], dir.path(), client, HOST);

        let mut collector = Collector::new(ProcFs::from_env());
        collector.sample();
        let (mut total, mut to_notify, mut first) = (Vec::new(), Vec::new(), None);
        for i in 0..warmup + count {
            // A fresh evaluator whose one rule fires at once: one notification.
            let name = format!("latency-{i}");
            let spec = RuleSpec {
                name: name.clone(),
                metric: "mem.used_pct".into(),
                crit: Some(0.0),
                ..RuleSpec::default()
            };
            let mut evaluator = Evaluator::new(vec![Rule::compile(&spec).expect("rule")], HOST);
            // Let the previous delivery finish (its state save) before sampling.
            tokio::time::sleep(Duration::from_millis(20)).await;

            let sample = collector.sample();
            let t0 = Instant::now();
            let notes = evaluator.evaluate(&metrics::series(&sample), Now::real());
            if evaluator.take_changed() {
                hostbeat::store::save_json(&alerts_file, &evaluator.snapshot()).expect("save alerts.json");
            }
            assert_eq!(notes.len(), 1, "one notification per iteration");
            for n in &notes {
                dispatcher.notify(n);
            }
            let notified = Instant::now();

            let got = tokio::time::timeout(Duration::from_secs(5), arrivals.recv())
                .await
                .expect("no webhook request within 5 s")
                .expect("receiver alive");
            assert!(
                got.body.contains(&format!("\"{name}\"")),
                "request for another alert: {}",
                got.body
            );
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            if i == 0 {
                first = Some(ms(got.at - t0));
            }
            if i >= warmup {
                total.push(ms(got.at - t0));
                to_notify.push(ms(notified - t0));
            }
        }
        (total, to_notify, first.expect("one iteration"))
    });

    println!("alert latency, end of sample -> webhook request complete at a 127.0.0.1 receiver");
    println!(
        "({count} alerts after {warmup} warm-up; {} connection(s) to the receiver; state dir {})",
        CONNECTIONS.load(Ordering::Relaxed),
        dir.path().display()
    );
    println!("first alert (new connection, in warm-up): {first:.3} ms");
    line("evaluate + save + notify", to_notify);
    line("end of sample -> request arrived", total.clone());
    total.sort_by(f64::total_cmp);
    let p99 = pct(&total, 99.0);
    let verdict = if p99 <= TARGET_MS { "met" } else { "MISSED" };
    println!(
        "SUMMARY alert latency p50 {:.3} ms, p99 {p99:.3} ms, max {:.3} ms (target <= {TARGET_MS} ms at p99: {verdict})",
        pct(&total, 50.0),
        total[total.len() - 1]
    );
}
