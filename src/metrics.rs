//! The metric catalogue: stable dotted names with at most one label
//! (`disk.used_pct{mount=/}`), shared by alert rules, `hostbeat metrics` and
//! the docs. A name, once published here, does not change meaning.

use std::borrow::Cow;
use std::fmt;

use crate::collect::Sample;
use crate::custom;

/// One catalogue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    pub name: &'static str,
    /// The label that tells series apart, if the metric has several.
    pub label: Option<&'static str>,
    pub unit: &'static str,
    pub help: &'static str,
}

const fn def(
    name: &'static str,
    label: Option<&'static str>,
    unit: &'static str,
    help: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        label,
        unit,
        help,
    }
}

const CPU: Option<&str> = Some("cpu");
const MOUNT: Option<&str> = Some("mount");
const DEVICE: Option<&str> = Some("device");
const IFACE: Option<&str> = Some("iface");

/// Every metric hostbeat produces.
pub const CATALOGUE: &[MetricDef] = &[
    def(
        "cpu.usage_pct",
        None,
        "%",
        "CPU busy (all but idle and iowait), all cores",
    ),
    def("cpu.user_pct", None, "%", "CPU in user mode, guest time excluded"),
    def("cpu.nice_pct", None, "%", "CPU in user mode at low priority"),
    def("cpu.system_pct", None, "%", "CPU in kernel mode"),
    def("cpu.iowait_pct", None, "%", "CPU idle while I/O was outstanding"),
    def("cpu.irq_pct", None, "%", "CPU servicing hardware interrupts"),
    def("cpu.softirq_pct", None, "%", "CPU servicing soft interrupts"),
    def("cpu.steal_pct", None, "%", "CPU time taken by the hypervisor"),
    def("cpu.guest_pct", None, "%", "CPU running guests"),
    def("cpu.idle_pct", None, "%", "CPU idle"),
    def("cpu.count", None, "", "online CPUs"),
    def("cpu.core.usage_pct", CPU, "%", "CPU busy, one core"),
    def("cpu.core.iowait_pct", CPU, "%", "CPU iowait, one core"),
    def("load.1", None, "", "load average over 1 minute"),
    def("load.5", None, "", "load average over 5 minutes"),
    def("load.15", None, "", "load average over 15 minutes"),
    def("mem.total_bytes", None, "B", "physical memory"),
    def("mem.used_bytes", None, "B", "memory in use (total - available)"),
    def("mem.free_bytes", None, "B", "memory unused (MemFree)"),
    def(
        "mem.available_bytes",
        None,
        "B",
        "memory available without swapping (MemAvailable)",
    ),
    def("mem.cached_bytes", None, "B", "page cache"),
    def("mem.buffers_bytes", None, "B", "block device buffers"),
    def("mem.shared_bytes", None, "B", "shared memory (Shmem)"),
    def("mem.used_pct", None, "%", "memory in use over total"),
    def("swap.total_bytes", None, "B", "swap space"),
    def("swap.used_bytes", None, "B", "swap in use"),
    def("swap.free_bytes", None, "B", "swap free"),
    def("swap.used_pct", None, "%", "swap in use over total"),
    def("disk.total_bytes", MOUNT, "B", "filesystem size"),
    def("disk.used_bytes", MOUNT, "B", "filesystem space used"),
    def(
        "disk.avail_bytes",
        MOUNT,
        "B",
        "filesystem space available to users",
    ),
    def(
        "disk.used_pct",
        MOUNT,
        "%",
        "filesystem used over used + available (df Use%)",
    ),
    def("disk.inodes_used_pct", MOUNT, "%", "inodes used over total"),
    def(
        "diskio.reads_per_s",
        DEVICE,
        "/s",
        "read requests completed per second",
    ),
    def(
        "diskio.writes_per_s",
        DEVICE,
        "/s",
        "write requests completed per second",
    ),
    def(
        "diskio.read_kb_per_s",
        DEVICE,
        "kB/s",
        "kilobytes read per second",
    ),
    def(
        "diskio.write_kb_per_s",
        DEVICE,
        "kB/s",
        "kilobytes written per second",
    ),
    def(
        "diskio.await_ms",
        DEVICE,
        "ms",
        "mean time per request, queueing included",
    ),
    def(
        "diskio.util_pct",
        DEVICE,
        "%",
        "share of time the device was busy",
    ),
    def("net.rx_bytes_per_s", IFACE, "B/s", "bytes received per second"),
    def("net.tx_bytes_per_s", IFACE, "B/s", "bytes sent per second"),
    def("net.rx_packets_per_s", IFACE, "/s", "packets received per second"),
    def("net.tx_packets_per_s", IFACE, "/s", "packets sent per second"),
    def("net.rx_errors_per_s", IFACE, "/s", "receive errors per second"),
    def("net.tx_errors_per_s", IFACE, "/s", "transmit errors per second"),
    def(
        "net.rx_dropped_per_s",
        IFACE,
        "/s",
        "received packets dropped per second",
    ),
    def(
        "net.tx_dropped_per_s",
        IFACE,
        "/s",
        "sent packets dropped per second",
    ),
    def("proc.count", None, "", "processes"),
    def("proc.running", None, "", "processes running"),
    def("proc.blocked", None, "", "processes in uninterruptible sleep"),
    def("proc.zombie", None, "", "zombie processes"),
    def("proc.threads", None, "", "threads across all processes"),
    def("system.uptime_s", None, "s", "time since boot"),
];

/// The catalogue entry for `name`.
pub fn lookup(name: &str) -> Option<&'static MetricDef> {
    CATALOGUE.iter().find(|d| d.name == name)
}

/// Prefix of custom metrics: `plugin.GROUP.METRIC`, numbers from plugins
/// and pushed groups (no labels).
pub const CUSTOM_PREFIX: &str = "plugin.";

/// `(group, metric)` of a custom metric name such as `plugin.redis.clients`.
pub fn custom_parts(name: &str) -> Option<(&str, &str)> {
    let (group, metric) = name.strip_prefix(CUSTOM_PREFIX)?.split_once('.')?;
    (custom::valid_name(group, false) && custom::valid_name(metric, true)).then_some((group, metric))
}

/// One value of one metric in one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// A catalogue name, or a custom one (`plugin.GROUP.METRIC`).
    pub name: Cow<'static, str>,
    /// `(label, value)` for labelled metrics.
    pub label: Option<(&'static str, String)>,
    pub value: f64,
}

impl fmt::Display for Series {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some((k, v)) = &self.label {
            write!(f, "{{{k}={v}}}")?;
        }
        Ok(())
    }
}

/// Collects series, with the label name taken from the catalogue.
struct Out(Vec<Series>);

impl Out {
    fn add(&mut self, name: &'static str, value: f64) {
        self.0.push(Series {
            name: Cow::Borrowed(name),
            label: None,
            value,
        });
    }

    fn labelled(&mut self, name: &'static str, label_value: &str, value: f64) {
        let label = lookup(name).and_then(|d| d.label).unwrap_or("id");
        self.0.push(Series {
            name: Cow::Borrowed(name),
            label: Some((label, label_value.to_owned())),
            value,
        });
    }
}

/// Every series the sample holds, in catalogue order within each area.
pub fn series(s: &Sample) -> Vec<Series> {
    let mut o = Out(Vec::with_capacity(128));
    if let Some(cpu) = &s.cpu {
        if let Some(t) = &cpu.total {
            o.add("cpu.usage_pct", t.busy());
            o.add("cpu.user_pct", t.user);
            o.add("cpu.nice_pct", t.nice);
            o.add("cpu.system_pct", t.system);
            o.add("cpu.iowait_pct", t.iowait);
            o.add("cpu.irq_pct", t.irq);
            o.add("cpu.softirq_pct", t.softirq);
            o.add("cpu.steal_pct", t.steal);
            o.add("cpu.guest_pct", t.guest);
            o.add("cpu.idle_pct", t.idle);
        }
        o.add("cpu.count", cpu.online as f64);
        for (idx, u) in &cpu.cores {
            let idx = idx.to_string();
            o.labelled("cpu.core.usage_pct", &idx, u.busy());
            o.labelled("cpu.core.iowait_pct", &idx, u.iowait);
        }
    }
    if let Some(l) = &s.load {
        o.add("load.1", l.one);
        o.add("load.5", l.five);
        o.add("load.15", l.fifteen);
    }
    if let Some(m) = &s.memory {
        o.add("mem.total_bytes", m.total as f64);
        o.add("mem.used_bytes", m.used as f64);
        o.add("mem.free_bytes", m.free as f64);
        o.add("mem.available_bytes", m.available as f64);
        o.add("mem.cached_bytes", m.cached as f64);
        o.add("mem.buffers_bytes", m.buffers as f64);
        o.add("mem.shared_bytes", m.shared as f64);
        o.add("mem.used_pct", m.used_pct());
        o.add("swap.total_bytes", m.swap_total as f64);
        o.add("swap.used_bytes", m.swap_used as f64);
        o.add("swap.free_bytes", m.swap_free as f64);
        o.add("swap.used_pct", m.swap_used_pct());
    }
    for d in s.disks.iter().flatten() {
        let m = &d.mount_point;
        o.labelled("disk.total_bytes", m, d.total_bytes as f64);
        o.labelled("disk.used_bytes", m, d.used_bytes as f64);
        o.labelled("disk.avail_bytes", m, d.avail_bytes as f64);
        o.labelled("disk.used_pct", m, d.used_pct);
        o.labelled("disk.inodes_used_pct", m, d.inodes_used_pct);
    }
    for d in s.disk_io.iter().flatten() {
        let dev = &d.device;
        o.labelled("diskio.reads_per_s", dev, d.reads_per_s);
        o.labelled("diskio.writes_per_s", dev, d.writes_per_s);
        o.labelled("diskio.read_kb_per_s", dev, d.read_kb_per_s);
        o.labelled("diskio.write_kb_per_s", dev, d.write_kb_per_s);
        o.labelled("diskio.await_ms", dev, d.await_ms);
        o.labelled("diskio.util_pct", dev, d.util_pct);
    }
    for n in s.net.iter().flatten() {
        let i = &n.name;
        o.labelled("net.rx_bytes_per_s", i, n.rx_bytes_per_s);
        o.labelled("net.tx_bytes_per_s", i, n.tx_bytes_per_s);
        o.labelled("net.rx_packets_per_s", i, n.rx_packets_per_s);
        o.labelled("net.tx_packets_per_s", i, n.tx_packets_per_s);
        o.labelled("net.rx_errors_per_s", i, n.rx_errors_per_s);
        o.labelled("net.tx_errors_per_s", i, n.tx_errors_per_s);
        o.labelled("net.rx_dropped_per_s", i, n.rx_dropped_per_s);
        o.labelled("net.tx_dropped_per_s", i, n.tx_dropped_per_s);
    }
    if let Some(p) = &s.processes {
        o.add("proc.count", p.processes.len() as f64);
        o.add("proc.running", p.running as f64);
        o.add("proc.blocked", p.blocked as f64);
        o.add("proc.zombie", p.zombie as f64);
        o.add("proc.threads", p.threads as f64);
    }
    if let Some(up) = s.uptime_s {
        o.add("system.uptime_s", up);
    }
    for g in &s.custom {
        for (metric, value) in g.metrics.iter() {
            if let custom::Value::Number(v) = value {
                o.0.push(Series {
                    name: Cow::Owned(format!("{CUSTOM_PREFIX}{}.{metric}", g.name)),
                    label: None,
                    value: *v,
                });
            }
        }
    }
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::{Collector, ProcFs};

    #[test]
    fn names_are_unique_and_dotted() {
        for (i, d) in CATALOGUE.iter().enumerate() {
            assert!(d.name.contains('.'), "{}", d.name);
            assert!(
                CATALOGUE[i + 1..].iter().all(|o| o.name != d.name),
                "duplicate {}",
                d.name
            );
        }
    }

    #[test]
    fn every_series_is_catalogued_with_its_label() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proc");
        let mut c = Collector::new(ProcFs::at(root));
        c.sample();
        let all = series(&c.sample());
        assert!(all.len() > 40);
        for s in &all {
            let d = lookup(&s.name).unwrap_or_else(|| panic!("{} not in catalogue", s.name));
            assert_eq!(d.label, s.label.as_ref().map(|l| l.0), "{}", s.name);
        }
        let eth0 = all
            .iter()
            .find(|s| s.to_string() == "net.rx_bytes_per_s{iface=eth0}");
        assert_eq!(eth0.unwrap().value, 0.0);
        let load = all.iter().find(|s| s.name == "load.1").unwrap();
        assert_eq!(load.value, 0.42);
    }
}
