//! CPU time by state, total and per core, from `/proc/stat`.

use super::{CollectError, ProcFs, counter_delta};

/// Cumulative jiffies of one `cpu` line of `/proc/stat`. Columns a kernel
/// does not have (older kernels stop after `iowait` or `steal`) read as 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
    pub guest: u64,
    pub guest_nice: u64,
}

/// The parts of `/proc/stat` hostbeat uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcStat {
    pub total: CpuTimes,
    /// `(cpu index, times)` for every online core.
    pub cores: Vec<(u32, CpuTimes)>,
    /// Boot time, Unix seconds (`btime`).
    pub boot_time: Option<u64>,
    pub procs_running: Option<u64>,
    pub procs_blocked: Option<u64>,
}

/// Share of time in each state over an interval, in percent (mpstat's
/// definitions: `user` and `nice` exclude guest time, which has its own column).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuUsage {
    pub user: f64,
    pub nice: f64,
    pub system: f64,
    pub iowait: f64,
    pub irq: f64,
    pub softirq: f64,
    pub steal: f64,
    pub guest: f64,
    pub idle: f64,
}

impl CpuUsage {
    /// Busy share: everything but idle and iowait.
    pub fn busy(&self) -> f64 {
        (100.0 - self.idle - self.iowait).clamp(0.0, 100.0)
    }
}

/// The CPU part of a sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuSample {
    /// All CPUs together; `None` on the first sample.
    pub total: Option<CpuUsage>,
    /// Per core, only cores online in both this and the previous sample.
    pub cores: Vec<(u32, CpuUsage)>,
    pub boot_time: Option<u64>,
    pub procs_running: Option<u64>,
    pub procs_blocked: Option<u64>,
    /// Number of online cores.
    pub online: usize,
}

/// Parses `/proc/stat`.
pub fn parse_stat(text: &str) -> Result<ProcStat, CollectError> {
    let mut out = ProcStat::default();
    let mut saw_total = false;
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(key) = fields.next() else { continue };
        if key == "cpu" {
            out.total = parse_times(fields)?;
            saw_total = true;
        } else if let Some(idx) = key.strip_prefix("cpu") {
            let idx = idx
                .parse()
                .map_err(|_| CollectError::parse("stat", format!("bad cpu line {key:?}")))?;
            out.cores.push((idx, parse_times(fields)?));
        } else {
            let value = fields.next().and_then(|v| v.parse().ok());
            match key {
                "btime" => out.boot_time = value,
                "procs_running" => out.procs_running = value,
                "procs_blocked" => out.procs_blocked = value,
                _ => {}
            }
        }
    }
    if !saw_total {
        return Err(CollectError::parse("stat", "no aggregate \"cpu\" line"));
    }
    Ok(out)
}

fn parse_times<'a>(fields: impl Iterator<Item = &'a str>) -> Result<CpuTimes, CollectError> {
    let mut v = [0u64; 10];
    let mut n = 0;
    for (slot, f) in v.iter_mut().zip(fields) {
        *slot = f
            .parse()
            .map_err(|_| CollectError::parse("stat", format!("bad cpu counter {f:?}")))?;
        n += 1;
    }
    if n < 4 {
        return Err(CollectError::parse("stat", "cpu line has fewer than 4 columns"));
    }
    let [
        user,
        nice,
        system,
        idle,
        iowait,
        irq,
        softirq,
        steal,
        guest,
        guest_nice,
    ] = v;
    Ok(CpuTimes {
        user,
        nice,
        system,
        idle,
        iowait,
        irq,
        softirq,
        steal,
        guest,
        guest_nice,
    })
}

/// Usage between two readings of the same CPU; `None` when no time passed.
pub fn usage(prev: &CpuTimes, cur: &CpuTimes) -> Option<CpuUsage> {
    let d = |p: u64, c: u64| counter_delta(p, c) as f64;
    let guest = d(prev.guest, cur.guest);
    let guest_nice = d(prev.guest_nice, cur.guest_nice);
    // The kernel counts guest time inside user (and guest_nice inside nice).
    let user = (d(prev.user, cur.user) - guest).max(0.0);
    let nice = (d(prev.nice, cur.nice) - guest_nice).max(0.0);
    let system = d(prev.system, cur.system);
    let idle = d(prev.idle, cur.idle);
    let iowait = d(prev.iowait, cur.iowait);
    let irq = d(prev.irq, cur.irq);
    let softirq = d(prev.softirq, cur.softirq);
    let steal = d(prev.steal, cur.steal);
    let total = user + nice + system + idle + iowait + irq + softirq + steal + guest + guest_nice;
    if total <= 0.0 {
        return None;
    }
    let pct = |v: f64| v * 100.0 / total;
    Some(CpuUsage {
        user: pct(user),
        nice: pct(nice),
        system: pct(system),
        iowait: pct(iowait),
        irq: pct(irq),
        softirq: pct(softirq),
        steal: pct(steal),
        guest: pct(guest + guest_nice),
        idle: pct(idle),
    })
}

/// Keeps the previous `/proc/stat` reading for rates.
#[derive(Debug, Default)]
pub struct CpuState {
    prev: Option<ProcStat>,
}

impl CpuState {
    /// Reads `/proc/stat` and computes usage against the previous reading.
    pub fn collect(&mut self, procfs: &ProcFs, buf: &mut String) -> Result<CpuSample, CollectError> {
        procfs.read_into("stat", buf)?;
        let cur = parse_stat(buf)?;
        let sample = compare(self.prev.as_ref(), &cur);
        self.prev = Some(cur);
        Ok(sample)
    }
}

/// Builds the CPU sample from the previous and current readings.
pub fn compare(prev: Option<&ProcStat>, cur: &ProcStat) -> CpuSample {
    let (total, cores) = match prev {
        Some(prev) => {
            let cores = cur
                .cores
                .iter()
                .filter_map(|(idx, times)| {
                    let before = prev.cores.iter().find(|(i, _)| i == idx)?;
                    Some((*idx, usage(&before.1, times)?))
                })
                .collect();
            (usage(&prev.total, &cur.total), cores)
        }
        None => (None, Vec::new()),
    };
    CpuSample {
        total,
        cores,
        boot_time: cur.boot_time,
        procs_running: cur.procs_running,
        procs_blocked: cur.procs_blocked,
        online: cur.cores.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_A: &str = include_str!("../../tests/fixtures/proc/stat");
    const STAT_B: &str = include_str!("../../tests/fixtures/stat/later");
    const STAT_OFFLINE: &str = include_str!("../../tests/fixtures/stat/cpu1_offline");
    const STAT_OLD_KERNEL: &str = include_str!("../../tests/fixtures/stat/old_kernel");

    #[test]
    fn parses_totals_cores_and_extras() {
        let s = parse_stat(STAT_A).unwrap();
        assert_eq!(s.cores.len(), 2);
        assert_eq!(s.total.user, 10_000);
        assert_eq!(s.total.steal, 50);
        assert_eq!(s.boot_time, Some(1_700_000_000));
        assert_eq!(s.procs_running, Some(2));
        assert_eq!(s.procs_blocked, Some(0));
    }

    #[test]
    fn usage_over_an_interval_sums_to_100() {
        let a = parse_stat(STAT_A).unwrap();
        let b = parse_stat(STAT_B).unwrap();
        let s = compare(Some(&a), &b);
        let t = s.total.unwrap();
        let sum = t.user + t.nice + t.system + t.iowait + t.irq + t.softirq + t.steal + t.guest + t.idle;
        assert!((sum - 100.0).abs() < 1e-9, "{sum}");
        // fixture: +100 user, +20 system, +860 idle, +20 iowait over 1000 jiffies
        assert!((t.user - 10.0).abs() < 1e-9);
        assert!((t.iowait - 2.0).abs() < 1e-9);
        assert!((t.busy() - 12.0).abs() < 1e-9);
        assert_eq!(s.cores.len(), 2);
    }

    #[test]
    fn offline_cpu_is_left_out_not_negative() {
        let a = parse_stat(STAT_A).unwrap();
        let off = parse_stat(STAT_OFFLINE).unwrap();
        let s = compare(Some(&a), &off);
        assert_eq!(s.online, 1);
        assert_eq!(s.cores.len(), 1);
        assert_eq!(s.cores[0].0, 0);
        // back online with counters restarted: a reset, never a negative share
        let back = compare(Some(&off), &parse_stat(STAT_A).unwrap());
        for (_, u) in &back.cores {
            assert!(u.user >= 0.0 && u.idle >= 0.0 && u.busy() <= 100.0);
        }
    }

    #[test]
    fn missing_columns_read_as_zero() {
        let s = parse_stat(STAT_OLD_KERNEL).unwrap();
        assert_eq!(s.total.iowait, 0);
        assert_eq!(s.total.steal, 0);
        assert_eq!(s.boot_time, None);
    }

    #[test]
    fn guest_time_is_not_counted_twice() {
        let prev = CpuTimes::default();
        let cur = CpuTimes {
            user: 100,
            guest: 40,
            idle: 60,
            ..CpuTimes::default()
        };
        let u = usage(&prev, &cur).unwrap();
        // 160 jiffies in all: 60 user, 40 guest (inside user), 60 idle
        assert!((u.user - 37.5).abs() < 1e-9);
        assert!((u.guest - 25.0).abs() < 1e-9);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_stat("").is_err());
        assert!(parse_stat("cpu 1 2\n").is_err());
        assert!(parse_stat("cpu a b c d\n").is_err());
        assert!(usage(&CpuTimes::default(), &CpuTimes::default()).is_none());
    }
}
