//! Host metric collection: one [`Collector`] owns the state between samples
//! (previous counters, caches) and turns `/proc` reads into a typed [`Sample`].
//!
//! Every area lives in its own file with pure parsers unit-tested on fixture
//! text. A failing area is logged and left out of the sample; it is never fatal.

pub mod cpu;
pub mod disk;
pub mod memory;
pub mod net;
pub mod process;
pub mod system;

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

pub use cpu::CpuSample;
pub use disk::{DiskIo, DiskUsage};
pub use memory::Memory;
pub use net::NetIface;
pub use process::{Process, ProcessTable};
pub use system::{LoadAvg, SystemInfo};

/// Environment variable that points the collectors at another `/proc` tree
/// (a container's, or a captured fixture).
pub const PROCFS_ENV: &str = "HOSTBEAT_PROCFS";

/// A parse failure in one `/proc` file.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{file}: {message}")]
    Parse { file: &'static str, message: String },
}

impl CollectError {
    pub(crate) fn parse(file: &'static str, message: impl Into<String>) -> Self {
        CollectError::Parse {
            file,
            message: message.into(),
        }
    }
}

/// The `/proc` tree the collectors read, `/proc` unless overridden.
#[derive(Debug, Clone)]
pub struct ProcFs {
    root: PathBuf,
}

impl ProcFs {
    /// `/proc`, or the directory named by `HOSTBEAT_PROCFS`.
    pub fn from_env() -> Self {
        let root = std::env::var_os(PROCFS_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/proc"));
        ProcFs { root }
    }

    /// A tree rooted at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        ProcFs { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Reads `rel` (relative to the root) into `buf`, replacing its content.
    pub fn read_into(&self, rel: &str, buf: &mut String) -> Result<(), CollectError> {
        read_file_into(&self.root.join(rel), buf)
    }
}

/// The largest `/proc` file read; more is an error, not an allocation spiral.
const MAX_FILE: u64 = 16 << 20;

/// Reads a whole file into a reused buffer with plain `read` calls, without
/// the size probe and seek of `read_to_string` (`/proc` files report size 0).
/// Bytes that are not UTF-8 (a process may name itself anything) are
/// replaced, never fatal.
pub(crate) fn read_file_into(path: &Path, buf: &mut String) -> Result<(), CollectError> {
    use std::io::Read;
    let io_err = |source| CollectError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let mut bytes = std::mem::take(buf).into_bytes();
    bytes.clear();
    let read = file.take(MAX_FILE).read_to_end(&mut bytes);
    *buf = String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    match read {
        Ok(_) if buf.len() as u64 >= MAX_FILE => Err(io_err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            "larger than 16 MiB",
        ))),
        Ok(_) => Ok(()),
        Err(e) => Err(io_err(e)),
    }
}

/// The increase of a kernel counter between two readings.
///
/// A value that went down is either a 32-bit counter that wrapped (the old
/// value was in the upper half of the 32-bit range) or a reset (a device
/// re-created, a CPU brought back online): a wrap yields the distance
/// through the wrap, a reset yields 0. Never negative, never absurd.
pub fn counter_delta(prev: u64, cur: u64) -> u64 {
    if cur >= prev {
        cur - prev
    } else if prev <= u64::from(u32::MAX) && prev > u64::from(u32::MAX / 2) {
        (u64::from(u32::MAX) - prev) + cur + 1
    } else {
        0
    }
}

/// A per-second rate of a counter increase over `secs` seconds.
pub fn per_second(delta: u64, secs: f64) -> f64 {
    if secs > 0.0 { delta as f64 / secs } else { 0.0 }
}

/// The previous reading of a set of named counters (devices, interfaces),
/// so each new reading can be turned into rates.
#[derive(Debug)]
pub struct Previous<C> {
    prev: Vec<(String, C)>,
}

impl<C> Default for Previous<C> {
    fn default() -> Self {
        Previous { prev: Vec::new() }
    }
}

impl<C> Previous<C> {
    /// Pairs every entry of `cur` that was also in the previous reading with
    /// it, through `rate(name, prev, cur, secs)`; keeps `cur` for next time.
    /// Without `secs` (the first reading) the result is empty.
    pub fn rates<R>(
        &mut self,
        cur: Vec<(String, C)>,
        secs: Option<f64>,
        rate: impl Fn(&str, &C, &C, f64) -> R,
    ) -> Vec<R> {
        let out = match secs {
            Some(secs) => cur
                .iter()
                .filter_map(|(name, c)| {
                    let (_, p) = self.prev.iter().find(|(n, _)| n == name)?;
                    Some(rate(name, p, c, secs))
                })
                .collect(),
            None => Vec::new(),
        };
        self.prev = cur;
        out
    }
}

/// One observation of the host. Areas that failed to collect are `None`;
/// rates are `None` (or absent) on the first sample, which has no previous one.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Wall-clock time of the sample.
    pub taken_at: SystemTime,
    /// Monotonic time since the previous sample, if any.
    pub elapsed: Option<Duration>,
    pub cpu: Option<CpuSample>,
    pub load: Option<LoadAvg>,
    pub memory: Option<Memory>,
    pub disks: Option<Vec<DiskUsage>>,
    pub disk_io: Option<Vec<DiskIo>>,
    pub net: Option<Vec<NetIface>>,
    pub processes: Option<ProcessTable>,
    /// Seconds since boot.
    pub uptime_s: Option<f64>,
    /// Custom metrics (plugins, pushed groups), by group name; filled in
    /// by the sampler, not the collector.
    pub custom: Vec<crate::custom::Group>,
}

/// Owns what must live between samples and produces [`Sample`]s.
pub struct Collector {
    procfs: ProcFs,
    buf: String,
    last: Option<Instant>,
    cpu: cpu::CpuState,
    disk_io: Previous<disk::DiskCounters>,
    net: Previous<net::NetCounters>,
    processes: process::Scanner,
}

impl Collector {
    /// A collector reading `procfs`.
    pub fn new(procfs: ProcFs) -> Self {
        Collector {
            procfs,
            buf: String::with_capacity(16 * 1024),
            last: None,
            cpu: cpu::CpuState::default(),
            disk_io: Previous::default(),
            net: Previous::default(),
            processes: process::Scanner::new(),
        }
    }

    /// Takes one sample. Rates are computed against the previous call.
    pub fn sample(&mut self) -> Sample {
        let now = Instant::now();
        let elapsed = self.last.map(|l| now.duration_since(l));
        self.last = Some(now);
        let secs = elapsed.map(|d| d.as_secs_f64());
        let taken_at = SystemTime::now();

        let procfs = &self.procfs;
        let buf = &mut self.buf;
        let cpu = logged("cpu", self.cpu.collect(procfs, buf));
        let load = logged("load", system::read_loadavg(procfs, buf));
        let memory = logged("memory", memory::read(procfs, buf));
        let uptime_s = logged("uptime", system::read_uptime(procfs, buf));
        let disks = logged("disk", disk::read_usage(procfs, buf));
        let disk_io = logged("disk_io", disk::read_diskstats(procfs, buf))
            .map(|cur| self.disk_io.rates(cur, secs, disk::io_rates));
        let net =
            logged("net", net::read_net_dev(procfs, buf)).map(|cur| self.net.rates(cur, secs, net::rates));
        let ctx = process::ScanContext {
            boot_time: cpu.as_ref().and_then(|c| c.boot_time),
            uptime_s,
            mem_total: memory.as_ref().map(|m| m.total),
        };
        let processes = logged("processes", self.processes.scan(procfs, buf, &ctx));

        Sample {
            taken_at,
            elapsed,
            cpu,
            load,
            memory,
            disks,
            disk_io,
            net,
            processes,
            uptime_s,
            custom: Vec::new(),
        }
    }
}

/// Logs a failed collector and turns its result into an `Option`.
fn logged<T>(area: &str, result: Result<T, CollectError>) -> Option<T> {
    result
        .map_err(|e| tracing::warn!(collector = area, "collector failed, skipped: {e}"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_delta_cases() {
        let cases = [
            (10, 15, 5),
            (7, 7, 0),
            // 32-bit wrap: old value near the top of the range.
            (u64::from(u32::MAX) - 4, 5, 10),
            // reset: old value low, counter restarted.
            (1_000, 10, 0),
            // 64-bit counter going down is a reset, never a huge delta.
            (u64::MAX - 1, 3, 0),
        ];
        for (prev, cur, want) in cases {
            assert_eq!(counter_delta(prev, cur), want, "{prev} -> {cur}");
        }
    }

    #[test]
    fn per_second_guards_zero_time() {
        assert_eq!(per_second(100, 0.0), 0.0);
        assert_eq!(per_second(100, 2.0), 50.0);
    }

    #[test]
    fn fixture_tree_samples_every_area() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proc");
        let mut c = Collector::new(ProcFs::at(root));
        let first = c.sample();
        assert!(first.cpu.as_ref().unwrap().total.is_none(), "no rate yet");
        let s = c.sample();
        let mem = s.memory.unwrap();
        assert_eq!(mem.total, 8_030_176 * 1024);
        assert_eq!(s.load.unwrap().one, 0.42);
        assert!(s.uptime_s.unwrap() > 1000.0);
        let procs = s.processes.unwrap();
        assert_eq!(procs.processes.len(), 3);
        assert!(s.net.unwrap().iter().any(|i| i.name == "eth0"));
        assert!(s.disk_io.unwrap().iter().any(|d| d.device == "sda"));
    }

    #[test]
    fn a_failing_collector_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("meminfo"), "MemTotal: 100 kB\nMemFree: 50 kB\n").unwrap();
        std::fs::write(dir.path().join("loadavg"), "garbage\n").unwrap();
        let mut c = Collector::new(ProcFs::at(dir.path()));
        let s = c.sample();
        assert_eq!(s.memory.unwrap().total, 100 * 1024);
        assert!(s.cpu.is_none() && s.load.is_none() && s.net.is_none() && s.disk_io.is_none());
        assert!(s.processes.unwrap().processes.is_empty());
    }
}
