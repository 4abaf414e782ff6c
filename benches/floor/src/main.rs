//! The floor of hostbeat's footprint benchmark (`benches/footprint.sh`).
//!
//! Every interval it reads what hostbeat reads for one sample and does
//! nothing with it: `/proc/stat`, `/proc/meminfo`, `/proc/loadavg`,
//! `/proc/uptime`, `/proc/diskstats`, `/proc/net/dev`,
//! `/proc/self/mountinfo` plus `statvfs` of every real mount, and for every
//! process what hostbeat does: open `/proc/PID/stat`, `fstat` it (the owner),
//! one read, close. One reused
//! buffer, no allocation per sample once warm, one thread, std only. The CPU
//! it spends per sample is what reading those files costs; the rest of an
//! agent's cost is its own.
//!
//! Usage: `hostbeat-floor [INTERVAL_MS]` (default 1000). After each sample it
//! prints `UNIX_TIME_NS sample N procs P bytes B` on stdout, so the benchmark
//! can read its CPU time at the same point of the cycle as hostbeat's (right
//! after a sample). Samples on a fixed schedule; runs until killed.

use std::ffi::{CString, c_char, c_int};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant, SystemTime};

unsafe extern "C" {
    /// `statvfs(3)` from the C library std already links. The result is
    /// ignored, so the buffer only has to be large enough (struct statvfs is
    /// 112 bytes on 64-bit Linux).
    fn statvfs(path: *const c_char, buf: *mut u64) -> c_int;
}

/// File systems hostbeat leaves out of its disk usage (src/collect/disk.rs).
const SKIPPED_FS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "fuse.gvfsd-fuse",
    "fuse.lxcfs",
    "fuse.portal",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
    "cifs",
    "smb3",
    "nfs",
    "nfs4",
    "fuse.sshfs",
    "9p",
];

const HOST_FILES: &[&str] = &[
    "/proc/stat",
    "/proc/meminfo",
    "/proc/loadavg",
    "/proc/uptime",
    "/proc/diskstats",
    "/proc/net/dev",
];

struct Floor {
    buf: Vec<u8>,
    path: String,
    mountinfo: Vec<u8>,
    mounts: Vec<CString>,
    statvfs_buf: [u64; 32],
    /// Bytes read and processes seen in the current sample, so the reads
    /// have an observable result.
    bytes: u64,
    procs: u64,
}

impl Floor {
    /// Reads a whole file into the reused buffer: read calls until EOF, no
    /// size probe (as hostbeat reads).
    fn read(&mut self, path: &str) -> usize {
        self.buf.clear();
        File::open(path)
            .and_then(|f| f.take(16 << 20).read_to_end(&mut self.buf))
            .unwrap_or_default()
    }

    /// Open, fstat (the owner), one read (a `/proc/PID/stat` line fits in
    /// the buffer), close. Returns the bytes read, or 0 if the file vanished.
    fn read_small(&mut self, path: &str) -> usize {
        let cap = self.buf.capacity();
        self.buf.resize(cap, 0);
        let Ok(mut f) = File::open(path) else {
            return 0;
        };
        let Ok(meta) = f.metadata() else {
            return 0;
        };
        self.bytes += u64::from(std::os::unix::fs::MetadataExt::uid(&meta) == 0);
        f.read(&mut self.buf).unwrap_or_default()
    }

    fn sample(&mut self) {
        self.bytes = 0;
        self.procs = 0;
        for f in HOST_FILES {
            self.bytes += self.read(f) as u64;
        }

        // Mount table (parsed again only when it changed), then statvfs of
        // each real file system, as hostbeat does: once per mount point, the
        // last mount wins, bind mounts of a subdirectory (root other than
        // "/") and pseudo file systems skipped.
        self.bytes += self.read("/proc/self/mountinfo") as u64;
        if self.buf != self.mountinfo {
            self.mountinfo.clear();
            self.mountinfo.extend_from_slice(&self.buf);
            self.mounts.clear();
            for line in self.mountinfo.split(|&b| b == b'\n') {
                let Some(sep) = line.windows(3).position(|w| w == b" - ") else {
                    continue;
                };
                let mut left = line[..sep].split(|&b| b == b' ').skip(3);
                let (Some(root), Some(mount_point)) = (left.next(), left.next()) else {
                    continue;
                };
                let fs_type = line[sep + 3..].split(|&b| b == b' ').next().unwrap_or_default();
                if root != b"/" || SKIPPED_FS.iter().any(|s| s.as_bytes() == fs_type) {
                    continue;
                }
                let Ok(c) = CString::new(unescape_octal(mount_point)) else {
                    continue;
                };
                self.mounts.retain(|m| *m != c);
                self.mounts.push(c);
            }
        }
        for m in &self.mounts {
            // SAFETY: `m` is NUL-terminated; the buffer is larger than struct statvfs.
            let rc = unsafe { statvfs(m.as_ptr(), self.statvfs_buf.as_mut_ptr()) };
            self.bytes += u64::from(rc == 0);
        }

        // Every process: /proc/PID/stat, as read_small reads it.
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in dir.flatten() {
            let name = entry.file_name();
            let name = name.as_bytes();
            if name.is_empty() || !name.iter().all(u8::is_ascii_digit) {
                continue;
            }
            self.path.clear();
            self.path.push_str("/proc/");
            self.path.push_str(std::str::from_utf8(name).unwrap_or_default());
            self.path.push_str("/stat");
            let path = std::mem::take(&mut self.path);
            self.bytes += self.read_small(&path) as u64;
            self.path = path;
            self.procs += 1;
        }
    }
}

/// Undoes the kernel's `\\040`-style escaping in mount points.
fn unescape_octal(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s.get(i + 1..i + 4) {
            Some(d) if s[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            _ => {
                out.push(s[i]);
                i += 1;
            }
        }
    }
    out
}

fn main() {
    let interval_ms = match std::env::args().nth(1).map(|a| a.parse::<u64>()) {
        None => 1000,
        Some(Ok(ms)) if ms > 0 => ms,
        Some(_) => {
            eprintln!("usage: hostbeat-floor [INTERVAL_MS]");
            std::process::exit(2);
        }
    };
    let interval = Duration::from_millis(interval_ms);
    let mut floor = Floor {
        buf: Vec::with_capacity(64 * 1024),
        path: String::with_capacity(64),
        mountinfo: Vec::new(),
        mounts: Vec::new(),
        statvfs_buf: [0; 32],
        bytes: 0,
        procs: 0,
    };
    let mut out = std::io::stdout().lock();
    let start = Instant::now();
    for n in 1u64.. {
        floor.sample();
        // Ignore a closed stdout: the benchmark may stop reading.
        let ns = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let _ = writeln!(out, "{ns} sample {n} procs {} bytes {}", floor.procs, floor.bytes);
        let _ = out.flush();
        let next = start + interval * u32::try_from(n).unwrap_or(u32::MAX);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}
