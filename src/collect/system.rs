//! Load average, uptime and the static facts about the host.

use super::{CollectError, ProcFs};

/// Load averages over 1, 5 and 15 minutes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadAvg {
    pub one: f64,
    pub five: f64,
    pub fifteen: f64,
}

/// Parses `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Result<LoadAvg, CollectError> {
    let mut f = text.split_ascii_whitespace().map(str::parse::<f64>);
    let mut next = || match f.next() {
        Some(Ok(v)) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(CollectError::parse(
            "loadavg",
            format!("unexpected content {:?}", text.trim()),
        )),
    };
    Ok(LoadAvg {
        one: next()?,
        five: next()?,
        fifteen: next()?,
    })
}

/// Parses `/proc/uptime`: seconds since boot.
pub fn parse_uptime(text: &str) -> Result<f64, CollectError> {
    text.split_ascii_whitespace()
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| CollectError::parse("uptime", format!("unexpected content {:?}", text.trim())))
}

/// Reads `/proc/loadavg`.
pub fn read_loadavg(procfs: &ProcFs, buf: &mut String) -> Result<LoadAvg, CollectError> {
    procfs.read_into("loadavg", buf)?;
    parse_loadavg(buf)
}

/// Reads `/proc/uptime`.
pub fn read_uptime(procfs: &ProcFs, buf: &mut String) -> Result<f64, CollectError> {
    procfs.read_into("uptime", buf)?;
    parse_uptime(buf)
}

/// What does not change while the agent runs: read once at start through sysinfo.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemInfo {
    pub hostname: String,
    /// e.g. `Linux (Debian GNU/Linux 12)`.
    pub os: String,
    pub kernel: String,
    /// e.g. `x86_64`.
    pub arch: String,
    pub cpu_brand: String,
    /// Logical CPUs.
    pub cpu_cores: usize,
}

impl SystemInfo {
    /// Asks sysinfo for the host's static facts; a fact it cannot find is empty.
    pub fn detect() -> Self {
        use sysinfo::{CpuRefreshKind, RefreshKind, System};
        let cpus = System::new_with_specifics(RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing()))
            .map(|s| {
                let brand = s.cpus().first().map(|c| c.brand().to_owned()).unwrap_or_default();
                (brand, s.cpus().len())
            })
            .unwrap_or_default();
        SystemInfo {
            hostname: System::host_name().unwrap_or_default(),
            os: System::long_os_version().unwrap_or_else(|_| "Linux".into()),
            kernel: System::kernel_version().unwrap_or_default(),
            arch: System::cpu_arch(),
            cpu_brand: cpus.0,
            cpu_cores: cpus.1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loadavg() {
        let l = parse_loadavg("0.42 0.30 0.25 1/123 4567\n").unwrap();
        assert_eq!((l.one, l.five, l.fifteen), (0.42, 0.30, 0.25));
        assert!(parse_loadavg("0.1 0.2\n").is_err());
        assert!(parse_loadavg("a b c").is_err());
        assert!(parse_loadavg("-1 0 0").is_err());
    }

    #[test]
    fn uptime() {
        assert_eq!(parse_uptime("12345.67 24000.00\n").unwrap(), 12345.67);
        assert!(parse_uptime("").is_err());
        assert!(parse_uptime("NaN 1").is_err());
    }

    #[test]
    fn detect_finds_this_host() {
        let info = SystemInfo::detect();
        assert!(!info.kernel.is_empty());
        assert!(info.cpu_cores >= 1);
    }
}
