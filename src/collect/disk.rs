//! Filesystem usage (mounts + `statvfs`) and block device I/O (`/proc/diskstats`).

use std::ffi::CString;
use std::path::Path;

use super::{CollectError, ProcFs, counter_delta, per_second};

/// One line of the mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub device: String,
    pub mount_point: String,
    pub fs_type: String,
}

/// Filesystems that hold no user data (kernel interfaces, in-memory, images)
/// or that can hang `statvfs` when their server is gone (network filesystems).
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

/// Parses `/proc/self/mountinfo`, keeping real filesystems once per mount
/// point (the last mount on a point is the visible one). Mounts of a
/// subdirectory (root other than `/`) are skipped: they are bind mounts of a
/// filesystem already listed, such as the ones systemd's sandboxing
/// (`StateDirectory`, `PrivateTmp`, `ProtectHome`) adds.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut l = left.split_ascii_whitespace().skip(3);
        let (Some(root), Some(mount_point)) = (l.next(), l.next()) else {
            continue;
        };
        let mut r = right.split_ascii_whitespace();
        let (Some(fs_type), Some(device)) = (r.next(), r.next()) else {
            continue;
        };
        if root != "/" || SKIPPED_FS.contains(&fs_type) {
            continue;
        }
        let mount = Mount {
            device: unescape_octal(device),
            mount_point: unescape_octal(mount_point),
            fs_type: fs_type.to_owned(),
        };
        out.retain(|m| m.mount_point != mount.mount_point);
        out.push(mount);
    }
    out
}

/// Undoes the kernel's `\040`-style escaping of spaces, tabs, newlines and backslashes.
fn unescape_octal(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Block and inode counts of one filesystem.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsStats {
    pub total_bytes: u64,
    /// Free to the superuser.
    pub free_bytes: u64,
    /// Free to unprivileged users.
    pub avail_bytes: u64,
    pub inodes_total: u64,
    pub inodes_free: u64,
}

/// `statvfs(2)` on `path`.
// The field types are u32 or u64 depending on the target.
#[allow(clippy::useless_conversion)]
pub fn statvfs(path: &Path) -> std::io::Result<FsStats> {
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a valid NUL-terminated string and `st` a writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    let frsize = u64::from(if st.f_frsize > 0 { st.f_frsize } else { st.f_bsize });
    Ok(FsStats {
        total_bytes: u64::from(st.f_blocks).saturating_mul(frsize),
        free_bytes: u64::from(st.f_bfree).saturating_mul(frsize),
        avail_bytes: u64::from(st.f_bavail).saturating_mul(frsize),
        inodes_total: u64::from(st.f_files),
        inodes_free: u64::from(st.f_ffree),
    })
}

/// Usage of one mounted filesystem, as `df` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskUsage {
    pub device: String,
    pub mount_point: String,
    pub fs_type: String,
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub avail_bytes: u64,
    /// `used / (used + avail)`, as `df`'s Use% (rounded up there, exact here).
    pub used_pct: f64,
    pub inodes_total: u64,
    pub inodes_used: u64,
    pub inodes_used_pct: f64,
}

/// Combines a mount with its `statvfs` figures.
pub fn usage(mount: &Mount, st: &FsStats) -> DiskUsage {
    let used = st.total_bytes.saturating_sub(st.free_bytes);
    let inodes_used = st.inodes_total.saturating_sub(st.inodes_free);
    let pct = |part: u64, whole: u64| {
        if whole == 0 {
            0.0
        } else {
            part as f64 * 100.0 / whole as f64
        }
    };
    DiskUsage {
        device: mount.device.clone(),
        mount_point: mount.mount_point.clone(),
        fs_type: mount.fs_type.clone(),
        total_bytes: st.total_bytes,
        used_bytes: used,
        avail_bytes: st.avail_bytes,
        used_pct: pct(used, used + st.avail_bytes),
        inodes_total: st.inodes_total,
        inodes_used,
        inodes_used_pct: pct(inodes_used, st.inodes_total),
    }
}

/// Reads the mount table and `statvfs`es every real filesystem. A mount that
/// cannot be queried (permissions, gone since listing) is skipped; a
/// zero-sized filesystem is left out.
pub fn read_usage(procfs: &ProcFs, buf: &mut String) -> Result<Vec<DiskUsage>, CollectError> {
    procfs.read_into("self/mountinfo", buf)?;
    Ok(parse_mountinfo(buf)
        .iter()
        .filter_map(|m| {
            let st = statvfs(Path::new(&m.mount_point))
                .map_err(|e| tracing::debug!(mount = %m.mount_point, "statvfs failed: {e}"))
                .ok()?;
            (st.total_bytes > 0).then(|| usage(m, &st))
        })
        .collect())
}

/// Cumulative counters of one block device (`/proc/diskstats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskCounters {
    pub reads: u64,
    pub sectors_read: u64,
    pub ms_reading: u64,
    pub writes: u64,
    pub sectors_written: u64,
    pub ms_writing: u64,
    pub ms_doing_io: u64,
}

/// Parses `/proc/diskstats`, leaving out loop and RAM devices and devices that
/// never did any I/O.
pub fn parse_diskstats(text: &str) -> Result<Vec<(String, DiskCounters)>, CollectError> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f.len() < 14 {
            return Err(CollectError::parse(
                "diskstats",
                format!("short line {:?}", line.trim()),
            ));
        }
        let name = f[2];
        if ["loop", "ram", "zram"].iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let n = |i: usize| {
            f[i].parse::<u64>()
                .map_err(|_| CollectError::parse("diskstats", format!("bad counter {:?} for {name}", f[i])))
        };
        let c = DiskCounters {
            reads: n(3)?,
            sectors_read: n(5)?,
            ms_reading: n(6)?,
            writes: n(7)?,
            sectors_written: n(9)?,
            ms_writing: n(10)?,
            ms_doing_io: n(12)?,
        };
        if c.reads + c.writes > 0 {
            out.push((name.to_owned(), c));
        }
    }
    Ok(out)
}

/// I/O rates of one block device over an interval, as `iostat -x` reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskIo {
    pub device: String,
    pub reads_per_s: f64,
    pub writes_per_s: f64,
    pub read_kb_per_s: f64,
    pub write_kb_per_s: f64,
    /// Mean time per completed request, queueing included, ms.
    pub await_ms: f64,
    /// Share of the interval the device was busy, percent (≤ 100).
    pub util_pct: f64,
}

/// Rates between two readings of one device taken `secs` apart.
pub fn io_rates(device: &str, prev: &DiskCounters, cur: &DiskCounters, secs: f64) -> DiskIo {
    let reads = counter_delta(prev.reads, cur.reads);
    let writes = counter_delta(prev.writes, cur.writes);
    let ios = reads + writes;
    let wait_ms =
        counter_delta(prev.ms_reading, cur.ms_reading) + counter_delta(prev.ms_writing, cur.ms_writing);
    // Sectors in diskstats are always 512 bytes.
    let kb = |d: u64| per_second(d, secs) / 2.0;
    let busy_ms = counter_delta(prev.ms_doing_io, cur.ms_doing_io) as f64;
    DiskIo {
        device: device.to_owned(),
        reads_per_s: per_second(reads, secs),
        writes_per_s: per_second(writes, secs),
        read_kb_per_s: kb(counter_delta(prev.sectors_read, cur.sectors_read)),
        write_kb_per_s: kb(counter_delta(prev.sectors_written, cur.sectors_written)),
        await_ms: if ios == 0 {
            0.0
        } else {
            wait_ms as f64 / ios as f64
        },
        util_pct: if secs > 0.0 {
            (busy_ms / (secs * 10.0)).clamp(0.0, 100.0)
        } else {
            0.0
        },
    }
}

/// Reads and parses `/proc/diskstats`.
pub fn read_diskstats(
    procfs: &ProcFs,
    buf: &mut String,
) -> Result<Vec<(String, DiskCounters)>, CollectError> {
    procfs.read_into("diskstats", buf)?;
    parse_diskstats(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_skip_pseudo_binds_and_unescape() {
        let m = parse_mountinfo(include_str!("../../tests/fixtures/proc/self/mountinfo"));
        let points: Vec<&str> = m.iter().map(|m| m.mount_point.as_str()).collect();
        assert_eq!(points, ["/", "/boot", "/mnt/my disk"]);
        assert_eq!(m[0].fs_type, "ext4");
        assert_eq!(m[0].device, "/dev/sda1");
    }

    #[test]
    fn remount_keeps_the_last() {
        let m = parse_mountinfo("1 0 8:1 / / rw - ext4 /dev/a rw\n2 0 8:2 / / rw - xfs /dev/b rw\n");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].device, "/dev/b");
    }

    #[test]
    fn usage_matches_df() {
        let mount = Mount {
            device: "/dev/sda1".into(),
            mount_point: "/".into(),
            fs_type: "ext4".into(),
        };
        let st = FsStats {
            total_bytes: 100 << 30,
            free_bytes: 30 << 30,
            avail_bytes: 25 << 30,
            inodes_total: 1000,
            inodes_free: 750,
        };
        let u = usage(&mount, &st);
        assert_eq!(u.used_bytes, 70 << 30);
        assert!((u.used_pct - 70.0 / 95.0 * 100.0).abs() < 1e-9);
        assert_eq!(u.inodes_used, 250);
        assert_eq!(u.inodes_used_pct, 25.0);
    }

    #[test]
    fn statvfs_root_works() {
        let st = statvfs(Path::new("/")).unwrap();
        assert!(st.total_bytes > 0);
        assert!(statvfs(Path::new("/definitely/not/here")).is_err());
    }

    #[test]
    fn diskstats_skips_loop_ram_and_idle() {
        let d = parse_diskstats(include_str!("../../tests/fixtures/proc/diskstats")).unwrap();
        let names: Vec<&str> = d.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["sda", "sda1"]);
        assert_eq!(d[0].1.reads, 20_000);
        assert_eq!(d[0].1.ms_doing_io, 50_000);
        assert!(parse_diskstats("8 0 sda 1 2 3\n").is_err());
    }

    #[test]
    fn io_rates_over_one_second() {
        let prev = DiskCounters::default();
        let cur = DiskCounters {
            reads: 100,
            sectors_read: 2048,
            ms_reading: 300,
            writes: 50,
            sectors_written: 1024,
            ms_writing: 150,
            ms_doing_io: 500,
        };
        let r = io_rates("sda", &prev, &cur, 1.0);
        assert_eq!(r.reads_per_s, 100.0);
        assert_eq!(r.writes_per_s, 50.0);
        assert_eq!(r.read_kb_per_s, 1024.0);
        assert_eq!(r.write_kb_per_s, 512.0);
        assert_eq!(r.await_ms, 3.0);
        assert_eq!(r.util_pct, 50.0);
        // a reset device never yields negative or absurd rates
        let back = io_rates("sda", &cur, &DiskCounters::default(), 1.0);
        assert_eq!(back.reads_per_s, 0.0);
        assert_eq!(back.util_pct, 0.0);
        // busy time above the interval is clamped
        let over = DiskCounters {
            ms_doing_io: 5_000,
            ..cur
        };
        assert_eq!(io_rates("sda", &prev, &over, 1.0).util_pct, 100.0);
    }
}
