//! The process table, read straight from `/proc/PID/stat` (sysinfo's process
//! refresh costs ~3x more: see PERFORMANCE.md). The owner comes from the
//! `/proc/PID` directory's uid, and the command line is read once per process
//! (keyed by pid, start time and name) instead of on every pass.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use super::{CollectError, ProcFs, read_file_into};
use crate::timefmt::civil_from_days;

/// The kernel-thread flag in `/proc/PID/stat` (`PF_KTHREAD`).
const PF_KTHREAD: u64 = 0x0020_0000;

/// The fields of `/proc/PID/stat` hostbeat uses, borrowing the command
/// name from the text they were parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidStat<'a> {
    pub pid: u32,
    pub comm: &'a str,
    /// State letter (`R`, `S`, `D`, `Z`, `T` …).
    pub state: u8,
    pub pgrp: i64,
    pub session: i64,
    pub tty_nr: u32,
    pub tpgid: i64,
    pub flags: u64,
    pub utime: u64,
    pub stime: u64,
    pub nice: i64,
    pub threads: u64,
    /// Start time in clock ticks after boot.
    pub start_ticks: u64,
    pub vsize: u64,
    /// Resident pages.
    pub rss_pages: u64,
}

/// Parses `/proc/PID/stat`. The command name sits in parentheses and may
/// itself hold spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_pid_stat(text: &str) -> Result<PidStat<'_>, CollectError> {
    let bad = |what: &str| CollectError::parse("PID/stat", format!("{what} in {:?}", text.trim()));
    let open = text.find('(').ok_or_else(|| bad("no command name"))?;
    let close = text.rfind(')').ok_or_else(|| bad("no command name"))?;
    if close < open {
        return Err(bad("no command name"));
    }
    let pid = text[..open].trim().parse().map_err(|_| bad("bad pid"))?;
    let mut f = [""; 22];
    let mut fields = text[close + 1..].split_ascii_whitespace();
    for slot in &mut f {
        *slot = fields.next().ok_or_else(|| bad("too few fields"))?;
    }
    let u = |i: usize| f[i].parse::<u64>().map_err(|_| bad("bad number"));
    let i = |i: usize| f[i].parse::<i64>().map_err(|_| bad("bad number"));
    let state = match f[0].as_bytes() {
        [c] if c.is_ascii_alphabetic() => *c,
        _ => return Err(bad("bad state")),
    };
    Ok(PidStat {
        pid,
        comm: &text[open + 1..close],
        state,
        pgrp: i(2)?,
        session: i(3)?,
        // tty_nr is a dev_t printed as a signed int
        tty_nr: i(4)? as u32,
        tpgid: i(5)?,
        flags: u(6)?,
        utime: u(11)?,
        stime: u(12)?,
        nice: i(16)?,
        threads: u(17)?,
        start_ticks: u(19)?,
        vsize: u(20)?,
        rss_pages: i(21)?.max(0) as u64,
    })
}

/// One row of the process table, in `ps auxww` terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Process {
    pub pid: u32,
    pub user: Arc<str>,
    /// `STAT` column: state letter and flags (`Ss`, `R+`, `SN`, `Sl` …).
    pub stat: PsStat,
    pub tty_nr: u32,
    /// Start time, Unix seconds.
    pub start_time: u64,
    /// CPU time used so far, seconds.
    pub cpu_time_s: f64,
    /// CPU time over lifetime, percent (as `ps`).
    pub cpu_pct: f64,
    /// Resident memory over physical memory, percent.
    pub mem_pct: f64,
    pub vsz_kb: u64,
    pub rss_kb: u64,
    pub command: Arc<str>,
}

/// All processes plus counts by state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessTable {
    pub processes: Vec<Process>,
    pub running: u64,
    pub sleeping: u64,
    /// Uninterruptible sleep (`D`).
    pub blocked: u64,
    pub zombie: u64,
    pub stopped: u64,
    /// Threads across all processes.
    pub threads: u64,
}

/// `ps`'s `STAT`: state, then `<`/`N` (priority), `s` (session leader),
/// `l` (multi-threaded), `+` (foreground process group). At most five ASCII
/// bytes, kept inline: no allocation per process and sample.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PsStat {
    bytes: [u8; 5],
    len: u8,
}

impl PsStat {
    /// The `STAT` of a process.
    pub fn of(st: &PidStat) -> Self {
        let mut s = PsStat {
            bytes: [0; 5],
            len: 0,
        };
        let mut push = |b: u8| {
            s.bytes[usize::from(s.len)] = b;
            s.len += 1;
        };
        push(st.state);
        if st.nice < 0 {
            push(b'<');
        } else if st.nice > 0 {
            push(b'N');
        }
        if st.session == i64::from(st.pid) {
            push(b's');
        }
        if st.threads > 1 {
            push(b'l');
        }
        if st.tpgid >= 0 && st.tpgid == st.pgrp {
            push(b'+');
        }
        s
    }

    /// The column as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever pushed (the state letter is checked by the parser).
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("?")
    }
}

impl From<&str> for PsStat {
    /// A `STAT` given as text (tests, benchmarks): its first five ASCII bytes.
    fn from(text: &str) -> Self {
        let mut s = PsStat {
            bytes: [0; 5],
            len: 0,
        };
        for b in text.bytes().filter(u8::is_ascii).take(5) {
            s.bytes[usize::from(s.len)] = b;
            s.len += 1;
        }
        s
    }
}

impl fmt::Display for PsStat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for PsStat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// `ps`'s `TTY`: `pts/N`, `ttyN`, `ttySN`, or `?` without a terminal.
#[derive(Debug, Clone, Copy)]
pub struct Tty(pub u32);

impl fmt::Display for Tty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let major = (self.0 >> 8) & 0xfff;
        let minor = (self.0 & 0xff) | ((self.0 >> 12) & 0xfff00);
        match major {
            136..=143 => write!(f, "pts/{}", minor + (major - 136) * 256),
            4 if minor < 64 => write!(f, "tty{minor}"),
            4 => write!(f, "ttyS{}", minor - 64),
            _ => f.write_str("?"),
        }
    }
}

/// `ps`'s cumulative `TIME` of so many CPU seconds: `M:SS`, minutes unbounded.
#[derive(Debug, Clone, Copy)]
pub struct PsTime(pub f64);

impl fmt::Display for PsTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.max(0.0) as u64;
        write!(f, "{}:{:02}", s / 60, s % 60)
    }
}

/// `ps`'s `START` (in UTC) of a start time seen at `now` (Unix seconds):
/// `HH:MM` if today, `MonDD` if this year, else the year.
#[derive(Debug, Clone, Copy)]
pub struct PsStart {
    pub start: u64,
    pub now: u64,
}

impl fmt::Display for PsStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let (start, now) = (self.start, self.now);
        let (sy, sm, sd) = civil_from_days((start / 86_400) as i64);
        let (ny, _, _) = civil_from_days((now / 86_400) as i64);
        if start / 86_400 == now / 86_400 {
            write!(f, "{:02}:{:02}", start % 86_400 / 3600, start % 3600 / 60)
        } else if sy == ny {
            write!(f, "{}{:02}", MONTHS[(sm - 1) as usize], sd)
        } else {
            write!(f, "{sy}")
        }
    }
}

/// uid → user name from `/etc/passwd`, re-read when the file changes.
#[derive(Debug, Default)]
struct Users {
    names: HashMap<u32, Arc<str>>,
    mtime: Option<SystemTime>,
}

/// Parses `/etc/passwd` into uid → name.
pub fn parse_passwd(text: &str) -> HashMap<u32, Arc<str>> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, Arc::from(name)))
        })
        .collect()
}

impl Users {
    const PATH: &'static str = "/etc/passwd";

    fn refresh(&mut self, buf: &mut String) {
        let mtime = std::fs::metadata(Self::PATH).and_then(|m| m.modified()).ok();
        if mtime.is_some() && mtime == self.mtime {
            return;
        }
        self.mtime = mtime;
        self.names = match read_file_into(std::path::Path::new(Self::PATH), buf) {
            Ok(()) => parse_passwd(buf),
            Err(_) => HashMap::new(),
        };
    }

    fn name(&mut self, uid: u32) -> Arc<str> {
        self.names
            .entry(uid)
            .or_insert_with(|| Arc::from(uid.to_string()))
            .clone()
    }
}

/// What the scan needs from the rest of the sample.
#[derive(Debug, Clone, Default)]
pub struct ScanContext {
    /// Unix seconds at boot (`btime`).
    pub boot_time: Option<u64>,
    pub uptime_s: Option<f64>,
    /// Physical memory, bytes.
    pub mem_total: Option<u64>,
}

/// Cached command line of a process, valid while its name is unchanged.
#[derive(Debug)]
struct CachedCmd {
    comm: String,
    command: Arc<str>,
    seen: u64,
}

/// The longest `/proc/PID/stat` read: 52 numbers of at most 20 digits and a
/// name of at most 64 bytes make about 1.2 KiB.
const STAT_MAX: usize = 4096;

/// Walks `/proc` for the process table, caching what does not change.
///
/// Per process and sample it makes four system calls (open, fstat, one read,
/// close) and no heap allocation once the caches are warm.
#[derive(Debug)]
pub struct Scanner {
    commands: HashMap<(u32, u64), CachedCmd>,
    users: Users,
    pass: u64,
    ticks_per_s: f64,
    page_kb: u64,
    /// Reused buffer for one `/proc/PID/stat`.
    stat_buf: Box<[u8]>,
    /// Processes in the last pass, to size the next table at once.
    last_count: usize,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

impl Scanner {
    /// A scanner with empty caches.
    pub fn new() -> Self {
        // SAFETY: sysconf has no preconditions.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        Scanner {
            commands: HashMap::new(),
            users: Users::default(),
            pass: 0,
            ticks_per_s: if ticks > 0 { ticks as f64 } else { 100.0 },
            page_kb: if page > 0 { page as u64 / 1024 } else { 4 },
            stat_buf: vec![0; STAT_MAX].into_boxed_slice(),
            last_count: 0,
        }
    }

    /// Reads every `/proc/PID`. Processes that exit during the walk are skipped.
    pub fn scan(
        &mut self,
        procfs: &ProcFs,
        buf: &mut String,
        ctx: &ScanContext,
    ) -> Result<ProcessTable, CollectError> {
        self.pass += 1;
        self.users.refresh(buf);
        let root = procfs.root();
        let dir = std::fs::read_dir(root).map_err(|source| CollectError::Io {
            path: root.to_path_buf(),
            source,
        })?;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut table = ProcessTable {
            processes: Vec::with_capacity(self.last_count + self.last_count / 8 + 16),
            ..ProcessTable::default()
        };
        let mut path = PathBuf::from(root);
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            path.push(&name);
            let row = self.read_one(&mut path, pid, buf, ctx, now);
            path.pop();
            let Some((counts, row)) = row else { continue };
            match counts.state {
                b'R' => table.running += 1,
                b'S' | b'I' => table.sleeping += 1,
                b'D' => table.blocked += 1,
                b'Z' => table.zombie += 1,
                b'T' | b't' => table.stopped += 1,
                _ => {}
            }
            table.threads += counts.threads;
            table.processes.push(row);
        }
        let pass = self.pass;
        self.commands.retain(|_, c| c.seen == pass);
        table.processes.sort_unstable_by_key(|p| p.pid);
        self.last_count = table.processes.len();
        Ok(table)
    }

    /// One process; `None` when it vanished or its files are unreadable.
    fn read_one(
        &mut self,
        dir: &mut PathBuf,
        pid: u32,
        buf: &mut String,
        ctx: &ScanContext,
        now: u64,
    ) -> Option<(StateCount, Process)> {
        dir.push("stat");
        let file = File::open(&*dir);
        dir.pop();
        let mut file = file.ok()?;
        // /proc/PID/stat has its process's owner, as the /proc/PID directory has.
        let uid = file.metadata().ok()?.uid();
        // One read returns the whole line (procfs builds it at once); a full
        // buffer would mean a line longer than any the kernel writes.
        let n = file.read(&mut self.stat_buf).ok()?;
        if n == self.stat_buf.len() {
            return None;
        }
        drop(file);
        let line = &self.stat_buf[..n];
        let text = match std::str::from_utf8(line) {
            Ok(t) => std::borrow::Cow::Borrowed(t),
            // A process may give itself a name that is not UTF-8.
            Err(_) => String::from_utf8_lossy(line),
        };
        let st = parse_pid_stat(&text).ok()?;
        let command = command(&mut self.commands, self.pass, dir, &st, buf);
        let tps = self.ticks_per_s;
        let cpu_time_s = (st.utime + st.stime) as f64 / tps;
        let started_s = st.start_ticks as f64 / tps;
        let cpu_pct = match ctx.uptime_s {
            Some(up) if up - started_s > 0.0 => (cpu_time_s * 100.0 / (up - started_s)).min(100.0 * 1024.0),
            _ => 0.0,
        };
        let rss_kb = st.rss_pages * self.page_kb;
        let mem_pct = match ctx.mem_total {
            Some(t) if t > 0 => rss_kb as f64 * 102_400.0 / t as f64,
            _ => 0.0,
        };
        let row = Process {
            pid,
            user: self.users.name(uid),
            stat: PsStat::of(&st),
            tty_nr: st.tty_nr,
            start_time: ctx.boot_time.map_or(now, |b| b + started_s as u64),
            cpu_time_s,
            cpu_pct,
            mem_pct,
            vsz_kb: st.vsize / 1024,
            rss_kb,
            command,
        };
        let counts = StateCount {
            state: st.state,
            threads: st.threads,
        };
        Some((counts, row))
    }
}

/// What the table's totals need of one process.
struct StateCount {
    state: u8,
    threads: u64,
}

/// The command line of the process in `dir`, from the cache when the same
/// process (pid, start time and name) was seen before; read from
/// `/proc/PID/cmdline` once, else `[name]` as `ps` shows kernel threads.
fn command(
    cache: &mut HashMap<(u32, u64), CachedCmd>,
    pass: u64,
    dir: &mut PathBuf,
    st: &PidStat,
    buf: &mut String,
) -> Arc<str> {
    let key = (st.pid, st.start_ticks);
    if let Some(c) = cache.get_mut(&key).filter(|c| c.comm == st.comm) {
        c.seen = pass;
        return c.command.clone();
    }
    let mut command = None;
    if st.flags & PF_KTHREAD == 0 {
        dir.push("cmdline");
        if read_file_into(dir, buf).is_ok() {
            let line = buf.trim_end_matches('\0').replace('\0', " ");
            if !line.is_empty() {
                command = Some(line);
            }
        }
        dir.pop();
    }
    let command: Arc<str> = Arc::from(command.unwrap_or_else(|| format!("[{}]", st.comm)));
    cache.insert(
        key,
        CachedCmd {
            comm: st.comm.to_owned(),
            command: command.clone(),
            seen: pass,
        },
    );
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "1234 (my (odd) proc) S 1 1234 1234 34816 1240 4194560 100 0 0 0 250 50 0 0 20 0 3 0 5000 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn parses_stat_with_odd_name() {
        let st = parse_pid_stat(STAT).unwrap();
        assert_eq!(st.pid, 1234);
        assert_eq!(st.comm, "my (odd) proc");
        assert_eq!(st.state, b'S');
        assert_eq!((st.utime, st.stime), (250, 50));
        assert_eq!(st.threads, 3);
        assert_eq!(st.start_ticks, 5000);
        assert_eq!(st.vsize, 104_857_600);
        assert_eq!(st.rss_pages, 2560);
        assert_eq!(Tty(st.tty_nr).to_string(), "pts/0");
        assert_eq!(PsStat::of(&st).as_str(), "Ssl");
    }

    #[test]
    fn rejects_truncated_stat() {
        assert!(parse_pid_stat("1234 (x) S 1 2 3").is_err());
        assert!(parse_pid_stat("").is_err());
        assert!(parse_pid_stat("x (y) S").is_err());
    }

    #[test]
    fn ps_columns() {
        let tty = |n: u32| Tty(n).to_string();
        assert_eq!(tty(0), "?");
        assert_eq!(tty((4 << 8) | 1), "tty1");
        assert_eq!(tty((4 << 8) | 65), "ttyS1");
        assert_eq!(tty((137 << 8) | 2), "pts/258");
        assert_eq!(PsTime(0.4).to_string(), "0:00");
        assert_eq!(PsTime(3725.0).to_string(), "62:05");
        let ps_start = |start, now| PsStart { start, now }.to_string();
        // 2026-11-25 10:00 UTC = 1795600800
        let now = 1_795_600_800;
        assert_eq!(ps_start(now - 3600, now), "09:00");
        assert_eq!(ps_start(now - 86_400 * 30, now), "Oct26");
        assert_eq!(ps_start(now - 86_400 * 400, now), "2025");
    }

    #[test]
    fn passwd() {
        let u = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\nbroken\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n",
        );
        assert_eq!(&*u[&0], "root");
        assert_eq!(&*u[&33], "www-data");
        assert_eq!(u.len(), 2);
    }

    #[test]
    fn scans_fixture_tree() {
        let procfs = ProcFs::at(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proc"));
        let mut s = Scanner::new();
        let ctx = ScanContext {
            boot_time: Some(1_700_000_000),
            uptime_s: Some(10_000.0),
            mem_total: Some(8 << 30),
        };
        let mut buf = String::new();
        let t = s.scan(&procfs, &mut buf, &ctx).unwrap();
        let cmds: Vec<&str> = t.processes.iter().map(|p| &*p.command).collect();
        assert_eq!(cmds, ["/sbin/init splash", "[kthreadd]", "[defunct]"]);
        assert_eq!((t.running, t.sleeping, t.zombie), (1, 1, 1));
        let init = &t.processes[0];
        assert_eq!(init.start_time, 1_700_000_000);
        assert_eq!(init.rss_kb, 2560 * s.page_kb);
        // second pass hits the cache and prunes nothing that still exists
        let again = s.scan(&procfs, &mut buf, &ctx).unwrap();
        assert_eq!(again.processes.len(), 3);
        assert_eq!(s.commands.len(), 3);
    }

    #[test]
    fn scans_this_host() {
        let mut s = Scanner::new();
        let t = s
            .scan(&ProcFs::at("/proc"), &mut String::new(), &ScanContext::default())
            .unwrap();
        let me = std::process::id();
        assert!(t.processes.iter().any(|p| p.pid == me));
    }
}
