//! Physical memory and swap from `/proc/meminfo`.

use super::{CollectError, ProcFs};

/// Memory figures in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    pub total: u64,
    pub free: u64,
    /// Memory available for new work without swapping (`MemAvailable`).
    pub available: u64,
    /// `total - available`: what applications hold.
    pub used: u64,
    pub cached: u64,
    pub buffers: u64,
    pub shared: u64,
    pub swap_total: u64,
    pub swap_free: u64,
    pub swap_used: u64,
}

impl Memory {
    /// Used share of physical memory, percent.
    pub fn used_pct(&self) -> f64 {
        pct(self.used, self.total)
    }

    /// Used share of swap, percent (0 without swap).
    pub fn swap_used_pct(&self) -> f64 {
        pct(self.swap_used, self.swap_total)
    }
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Parses `/proc/meminfo` (values in kB). `MemTotal` and `MemFree` are
/// required; a kernel without `MemAvailable` gets free + buffers + cached.
pub fn parse_meminfo(text: &str) -> Result<Memory, CollectError> {
    let (mut total, mut free, mut available) = (None, None, None);
    let mut m = Memory::default();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let Some(kb) = rest
            .split_ascii_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        else {
            continue;
        };
        let bytes = kb.saturating_mul(1024);
        match key {
            "MemTotal" => total = Some(bytes),
            "MemFree" => free = Some(bytes),
            "MemAvailable" => available = Some(bytes),
            "Buffers" => m.buffers = bytes,
            "Cached" => m.cached = bytes,
            "Shmem" => m.shared = bytes,
            "SwapTotal" => m.swap_total = bytes,
            "SwapFree" => m.swap_free = bytes,
            _ => {}
        }
    }
    m.total = total.ok_or_else(|| CollectError::parse("meminfo", "no MemTotal"))?;
    m.free = free.ok_or_else(|| CollectError::parse("meminfo", "no MemFree"))?;
    m.available = available.unwrap_or(m.free + m.buffers + m.cached).min(m.total);
    m.used = m.total - m.available;
    m.swap_free = m.swap_free.min(m.swap_total);
    m.swap_used = m.swap_total - m.swap_free;
    Ok(m)
}

/// Reads and parses `/proc/meminfo`.
pub fn read(procfs: &ProcFs, buf: &mut String) -> Result<Memory, CollectError> {
    procfs.read_into("meminfo", buf)?;
    parse_meminfo(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fixture() {
        let m = parse_meminfo(include_str!("../../tests/fixtures/proc/meminfo")).unwrap();
        assert_eq!(m.total, 8_030_176 * 1024);
        assert_eq!(m.free, 1_204_512 * 1024);
        assert_eq!(m.available, 5_312_440 * 1024);
        assert_eq!(m.used, (8_030_176 - 5_312_440) * 1024);
        assert_eq!(m.cached, 3_701_228 * 1024);
        assert_eq!(m.buffers, 402_112 * 1024);
        assert_eq!(m.shared, 120_512 * 1024);
        assert_eq!(m.swap_used, (2_097_148 - 1_835_004) * 1024);
        assert!((m.used_pct() - 33.844).abs() < 0.01);
    }

    #[test]
    fn old_kernel_without_memavailable() {
        let m =
            parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n").unwrap();
        assert_eq!(m.available, 400 * 1024);
        assert_eq!(m.swap_total, 0);
        assert_eq!(m.swap_used_pct(), 0.0);
    }

    #[test]
    fn missing_required_fields_fail() {
        assert!(parse_meminfo("MemFree: 1 kB\n").is_err());
        assert!(parse_meminfo("MemTotal: 1 kB\n").is_err());
        assert!(parse_meminfo("").is_err());
    }

    #[test]
    fn inconsistent_values_never_underflow() {
        let m = parse_meminfo(
            "MemTotal: 100 kB\nMemFree: 10 kB\nMemAvailable: 500 kB\nSwapTotal: 5 kB\nSwapFree: 9 kB\n",
        )
        .unwrap();
        assert_eq!(m.used, 0);
        assert_eq!(m.swap_used, 0);
    }
}
