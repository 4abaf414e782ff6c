//! Payload build + MD5 for a sample with 1 000 and 10 000 processes
//! (`cargo bench --bench payload`). Prints criterion's figures.

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use hostbeat::collect::{Collector, ProcFs, Process, ProcessTable, Sample, SystemInfo};
use hostbeat::payload::Builder;

/// This machine's sample, with its process table replaced by `n` made-up processes.
fn sample_with(base: &Sample, n: usize) -> Sample {
    let user: Arc<str> = Arc::from("www-data");
    let processes = (0..n)
        .map(|i| Process {
            pid: 1000 + i as u32,
            user: user.clone(),
            stat: "Ss".into(),
            tty_nr: 0,
            start_time: 1_795_600_000 + i as u64,
            cpu_time_s: i as f64 * 0.37,
            cpu_pct: (i % 100) as f64 / 10.0,
            mem_pct: (i % 50) as f64 / 100.0,
            vsz_kb: 123_456 + i as u64,
            rss_kb: 4_096 + i as u64,
            command: Arc::from(format!(
                "/usr/sbin/worker --id {i} --config /etc/worker/worker.conf"
            )),
        })
        .collect();
    Sample {
        processes: Some(ProcessTable {
            processes,
            running: 1,
            sleeping: n as u64 - 1,
            ..ProcessTable::default()
        }),
        ..base.clone()
    }
}

fn main() {
    let mut collector = Collector::new(ProcFs::from_env());
    collector.sample();
    std::thread::sleep(Duration::from_millis(200));
    let base = collector.sample();
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    let mut group = c.benchmark_group("payload build + md5");
    for n in [1_000usize, 10_000] {
        let sample = sample_with(&base, n);
        let mut builder = Builder::new("bench".into(), "bench-host".into(), SystemInfo::default());
        builder.build(&sample); // systemStats goes in the first payload only
        let bytes = builder.build(&sample).json.len();
        println!("{n} processes: payload {bytes} bytes");
        group.bench_with_input(BenchmarkId::from_parameter(n), &sample, |b, s| {
            b.iter(|| builder.build(s).md5.len())
        });
    }
    group.finish();
    c.final_summary();
}
