//! Sample → Server Density postback JSON (v1 keys plus the v2 additions),
//! serialised once; the MD5 is taken over exactly those bytes.
//! See `shared/protocol/postback.md` for every key's shape and unit.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::collect::cpu::CpuUsage;
use crate::collect::process::{PsStart, PsTime, Tty};
use crate::collect::{CpuSample, DiskIo, DiskUsage, NetIface, Process, Sample, SystemInfo};
use crate::custom;

/// The agent's version as sent in `agentVersion` and `User-Agent`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A serialised payload and the hash of its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The JSON document, UTF-8.
    pub json: Vec<u8>,
    /// Lowercase hex MD5 of `json`.
    pub md5: String,
    /// Sequence number within this agent run (also in the JSON as `hostbeat.seq`).
    pub seq: u64,
    /// Sample time, Unix seconds.
    pub time: u64,
}

impl Payload {
    /// Wraps JSON bytes with their hash.
    pub fn new(json: Vec<u8>, seq: u64, time: u64) -> Self {
        let md5 = md5_hex(&json);
        Payload { json, md5, seq, time }
    }

    /// The `application/x-www-form-urlencoded` body: `payload=…&hash=…`.
    pub fn form_body(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.json.len() * 3 / 2 + 48);
        body.extend_from_slice(b"payload=");
        form_encode(&self.json, &mut body);
        body.extend_from_slice(b"&hash=");
        body.extend_from_slice(self.md5.as_bytes());
        body
    }
}

/// Appends `bytes` form-urlencoded (the WHATWG `application/x-www-form-urlencoded`
/// serializer): ASCII letters, digits and `*-._` as they are, space as `+`,
/// every other byte as `%XX`. Encodes into a stack block, appended when full:
/// no capacity check per byte.
fn form_encode(bytes: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut block = [0u8; 1024];
    let mut n = 0;
    out.reserve(bytes.len() * 3 / 2);
    for &b in bytes {
        if n + 3 > block.len() {
            out.extend_from_slice(&block[..n]);
            n = 0;
        }
        if b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_') {
            block[n] = b;
            n += 1;
        } else if b == b' ' {
            block[n] = b'+';
            n += 1;
        } else {
            block[n..n + 3].copy_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
            n += 3;
        }
    }
    out.extend_from_slice(&block[..n]);
}

/// Lowercase hex MD5.
pub fn md5_hex(bytes: &[u8]) -> String {
    let digest = Md5::digest(bytes);
    let mut s = String::with_capacity(32);
    for b in digest.iter() {
        s.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        s.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
    }
    s
}

/// Builds payloads; remembers what must go only in the first one.
#[derive(Debug)]
pub struct Builder {
    agent_key: String,
    hostname: String,
    system: SystemInfo,
    seq: u64,
    /// Random id of this agent run: with `seq`, identifies a payload.
    run: Arc<str>,
}

impl Builder {
    /// A builder for one agent run.
    pub fn new(agent_key: String, hostname: String, system: SystemInfo) -> Self {
        let run: String = crate::webhook::sign::random_bytes::<4>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Builder {
            agent_key,
            hostname,
            system,
            seq: 0,
            run: run.into(),
        }
    }

    /// The run id (8 hex digits).
    pub fn run(&self) -> &Arc<str> {
        &self.run
    }

    /// New identity settings after a reload; the sequence goes on.
    pub fn reconfigure(&mut self, agent_key: String, hostname: String) {
        self.agent_key = agent_key;
        self.hostname = hostname;
    }

    /// The host name payloads report.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// Serialises `sample`. `systemStats` goes in the first payload only.
    pub fn build(&mut self, sample: &Sample) -> Payload {
        self.seq += 1;
        let time = unix_secs(sample.taken_at);
        let doc = document(
            sample,
            &self.agent_key,
            &self.hostname,
            (self.seq == 1).then_some(&self.system),
            Own {
                seq: self.seq,
                time,
                run: &self.run,
            },
        );
        let json = serde_json::to_vec(&doc).expect("payload types always serialise");
        Payload::new(json, self.seq, time)
    }
}

/// Seconds since the Unix epoch (0 before it).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

const MB: f64 = 1024.0 * 1024.0;

fn whole_mb(bytes: u64) -> u64 {
    bytes / (1024 * 1024)
}

fn two_dp(v: f64) -> String {
    format!("{v:.2}")
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a> {
    os: &'static str,
    agent_key: &'a str,
    agent_version: &'static str,
    internal_hostname: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    load_avrg: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    mem: Option<MemKeys>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disk_usage: Option<Vec<DiskRow<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    network_traffic: Option<NetTraffic<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    processes: Option<ProcessRows<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    io_stats: Option<IoStats<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_stats: Option<CpuStats<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_stats: Option<SystemStats<'a>>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    load: Option<LoadKeys>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    cpu: Option<CpuKeys>,
    #[serde(rename = "system.uptime", skip_serializing_if = "Option::is_none")]
    uptime: Option<f64>,
    /// `{group: {metric: value}}`: plugins and pushed groups.
    #[serde(skip_serializing_if = "Option::is_none")]
    plugins: Option<Plugins<'a>>,
    hostbeat: Own<'a>,
}

/// `plugins`: every custom group, by name.
struct Plugins<'a>(&'a [custom::Group]);

impl Serialize for Plugins<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for g in self.0 {
            m.serialize_entry(&g.name, &GroupMetrics(&g.metrics))?;
        }
        m.end()
    }
}

struct GroupMetrics<'a>(&'a custom::Metrics);

impl Serialize for GroupMetrics<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            match value {
                // Whole numbers as integers, as the plugin printed them.
                custom::Value::Number(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                    m.serialize_entry(name, &(*f as i64))?
                }
                custom::Value::Number(f) => m.serialize_entry(name, f)?,
                custom::Value::Text(t) => m.serialize_entry(name, t)?,
            }
        }
        m.end()
    }
}

/// hostbeat's own key: identity of this payload (`run` + `seq`).
#[derive(Serialize)]
struct Own<'a> {
    seq: u64,
    time: u64,
    run: &'a str,
}

/// v1 memory keys (whole MB) and the v2 additions (MB as floats).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MemKeys {
    mem_phys_used: u64,
    mem_phys_free: u64,
    mem_swap_used: u64,
    mem_swap_free: u64,
    mem_cached: u64,
    mem_phys_total: f64,
    mem_buffers: f64,
    mem_shared: f64,
    mem_phys_usable: f64,
    mem_phys_pct_usable: f64,
    mem_swap_total: f64,
}

#[derive(Serialize)]
struct LoadKeys {
    #[serde(rename = "system.load.1")]
    one: f64,
    #[serde(rename = "system.load.5")]
    five: f64,
    #[serde(rename = "system.load.15")]
    fifteen: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CpuKeys {
    cpu_user: f64,
    cpu_system: f64,
    cpu_wait: f64,
    cpu_idle: f64,
    cpu_stolen: f64,
}

/// `[filesystem, size_1k_blocks, used_gb, avail_gb, "use%", mountpoint]`.
type DiskRow<'a> = (&'a str, String, u64, u64, String, &'a str);

#[derive(Serialize)]
struct SystemStats<'a> {
    machine: &'a str,
    platform: &'static str,
    processor: &'a str,
    #[serde(rename = "cpuCores")]
    cpu_cores: usize,
    #[serde(rename = "nixV")]
    nix_v: [&'a str; 2],
}

/// `networkTraffic`: `{iface: {"recv_bytes": "<delta>", "trans_bytes": "<delta>"}}`.
struct NetTraffic<'a>(&'a [NetIface]);

#[derive(Serialize)]
struct NetRow {
    recv_bytes: String,
    trans_bytes: String,
}

impl Serialize for NetTraffic<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for n in self.0 {
            let row = NetRow {
                recv_bytes: n.rx_bytes.to_string(),
                trans_bytes: n.tx_bytes.to_string(),
            };
            m.serialize_entry(&n.name, &row)?;
        }
        m.end()
    }
}

/// `ioStats`: `{device: {"r/s", "w/s", "rkB/s", "wkB/s", "await", "%util"}}`.
struct IoStats<'a>(&'a [DiskIo]);

#[derive(Serialize)]
struct IoRow {
    #[serde(rename = "r/s")]
    r: String,
    #[serde(rename = "w/s")]
    w: String,
    #[serde(rename = "rkB/s")]
    rkb: String,
    #[serde(rename = "wkB/s")]
    wkb: String,
    #[serde(rename = "await")]
    wait: String,
    #[serde(rename = "%util")]
    util: String,
}

impl Serialize for IoStats<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for d in self.0 {
            let row = IoRow {
                r: two_dp(d.reads_per_s),
                w: two_dp(d.writes_per_s),
                rkb: two_dp(d.read_kb_per_s),
                wkb: two_dp(d.write_kb_per_s),
                wait: two_dp(d.await_ms),
                util: two_dp(d.util_pct),
            };
            m.serialize_entry(&d.device, &row)?;
        }
        m.end()
    }
}

/// `cpuStats`: `ALL` then `CPU0`, `CPU1` … with mpstat-style keys.
struct CpuStats<'a>(&'a CpuSample);

#[derive(Serialize)]
struct CpuRow {
    #[serde(rename = "%usr")]
    usr: String,
    #[serde(rename = "%nice")]
    nice: String,
    #[serde(rename = "%sys")]
    sys: String,
    #[serde(rename = "%iowait")]
    iowait: String,
    #[serde(rename = "%irq")]
    irq: String,
    #[serde(rename = "%soft")]
    soft: String,
    #[serde(rename = "%steal")]
    steal: String,
    #[serde(rename = "%guest")]
    guest: String,
    #[serde(rename = "%idle")]
    idle: String,
}

impl From<&CpuUsage> for CpuRow {
    fn from(u: &CpuUsage) -> Self {
        CpuRow {
            usr: two_dp(u.user),
            nice: two_dp(u.nice),
            sys: two_dp(u.system),
            iowait: two_dp(u.iowait),
            irq: two_dp(u.irq),
            soft: two_dp(u.softirq),
            steal: two_dp(u.steal),
            guest: two_dp(u.guest),
            idle: two_dp(u.idle),
        }
    }
}

impl Serialize for CpuStats<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.cores.len() + 1))?;
        if let Some(t) = &self.0.total {
            m.serialize_entry("ALL", &CpuRow::from(t))?;
        }
        for (idx, u) in &self.0.cores {
            m.serialize_entry(&format!("CPU{idx}"), &CpuRow::from(u))?;
        }
        m.end()
    }
}

/// Maps a sample onto the postback keys.
fn document<'a>(
    s: &'a Sample,
    agent_key: &'a str,
    hostname: &'a str,
    system: Option<&'a SystemInfo>,
    own: Own<'a>,
) -> Document<'a> {
    let total = s.cpu.as_ref().and_then(|c| c.total.as_ref());
    Document {
        os: "linux",
        agent_key,
        agent_version: VERSION,
        internal_hostname: hostname,
        load_avrg: s.load.map(|l| two_dp(l.one)),
        mem: s.memory.map(|m| MemKeys {
            mem_phys_used: whole_mb(m.total - m.free.min(m.total)),
            mem_phys_free: whole_mb(m.free),
            mem_swap_used: whole_mb(m.swap_used),
            mem_swap_free: whole_mb(m.swap_free),
            mem_cached: whole_mb(m.cached),
            mem_phys_total: m.total as f64 / MB,
            mem_buffers: m.buffers as f64 / MB,
            mem_shared: m.shared as f64 / MB,
            mem_phys_usable: m.available as f64 / MB,
            mem_phys_pct_usable: if m.total == 0 {
                0.0
            } else {
                m.available as f64 * 100.0 / m.total as f64
            },
            mem_swap_total: m.swap_total as f64 / MB,
        }),
        disk_usage: s.disks.as_ref().map(|disks| disks.iter().map(disk_row).collect()),
        network_traffic: s.net.as_deref().map(NetTraffic),
        processes: s.processes.as_ref().map(|t| ProcessRows(&t.processes, own.time)),
        io_stats: s.disk_io.as_deref().map(IoStats),
        cpu_stats: s.cpu.as_ref().filter(|c| c.total.is_some()).map(CpuStats),
        system_stats: system.map(|i| SystemStats {
            machine: &i.arch,
            platform: "linux",
            processor: &i.cpu_brand,
            cpu_cores: i.cpu_cores,
            nix_v: [&i.os, &i.kernel],
        }),
        load: s.load.map(|l| LoadKeys {
            one: l.one,
            five: l.five,
            fifteen: l.fifteen,
        }),
        cpu: total.map(|t| CpuKeys {
            cpu_user: t.user,
            cpu_system: t.system,
            cpu_wait: t.iowait,
            cpu_idle: t.idle,
            cpu_stolen: t.steal,
        }),
        uptime: s.uptime_s,
        plugins: (!s.custom.is_empty()).then_some(Plugins(&s.custom)),
        hostbeat: own,
    }
}

const GB: u64 = 1024 * 1024 * 1024;

/// One `df -k` row; `Use%` rounded up as df does.
fn disk_row(d: &DiskUsage) -> DiskRow<'_> {
    (
        &d.device,
        (d.total_bytes / 1024).to_string(),
        d.used_bytes / GB,
        d.avail_bytes / GB,
        format!("{}%", d.used_pct.ceil() as u64),
        &d.mount_point,
    )
}

/// `processes`: one `ps auxww` row per process, every column a string,
/// written straight into the output (no string per cell).
struct ProcessRows<'a>(&'a [Process], u64);

/// A value serialised as the string its `Display` writes.
struct Text<T: std::fmt::Display>(T);

impl<T: std::fmt::Display> Serialize for Text<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// A percentage with one decimal, as `ps` prints it: integer arithmetic on
/// tenths (float formatting with a precision costs ~10x more, per process).
struct Tenths(f64);

impl std::fmt::Display for Tenths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let x = self.0;
        if (0.0..1e15).contains(&x) {
            let t = (x * 10.0).round() as u64;
            write!(f, "{}.{}", t / 10, t % 10)
        } else {
            write!(f, "{x:.1}")
        }
    }
}

impl Serialize for ProcessRows<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut rows = s.serialize_seq(Some(self.0.len()))?;
        for p in self.0 {
            rows.serialize_element(&ProcessRow(p, self.1))?;
        }
        rows.end()
    }
}

/// `[USER, PID, %CPU, %MEM, VSZ, RSS, TTY, STAT, START, TIME, COMMAND]`.
struct ProcessRow<'a>(&'a Process, u64);

impl Serialize for ProcessRow<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let (p, now) = (self.0, self.1);
        let mut row = s.serialize_tuple(11)?;
        row.serialize_element(&*p.user)?;
        row.serialize_element(&Text(p.pid))?;
        row.serialize_element(&Text(Tenths(p.cpu_pct)))?;
        row.serialize_element(&Text(Tenths(p.mem_pct)))?;
        row.serialize_element(&Text(p.vsz_kb))?;
        row.serialize_element(&Text(p.rss_kb))?;
        row.serialize_element(&Text(Tty(p.tty_nr)))?;
        row.serialize_element(p.stat.as_str())?;
        row.serialize_element(&Text(PsStart {
            start: p.start_time,
            now,
        }))?;
        row.serialize_element(&Text(PsTime(p.cpu_time_s)))?;
        row.serialize_element(&*p.command)?;
        row.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::{Collector, ProcFs};
    use serde_json::Value;

    fn fixture_payloads() -> (Payload, Payload) {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proc");
        let mut c = Collector::new(ProcFs::at(root));
        let system = SystemInfo {
            hostname: "web1".into(),
            os: "Debian GNU/Linux 12".into(),
            kernel: "6.1.0".into(),
            arch: "x86_64".into(),
            cpu_brand: "Test CPU".into(),
            cpu_cores: 2,
        };
        let mut b = Builder::new("0123456789abcdef".into(), "web1".into(), system);
        let first = b.build(&c.sample());
        let mut sample = c.sample();
        // the fixture tree does not move; give the CPU a real interval
        let stat = |f: &str| crate::collect::cpu::parse_stat(f).unwrap();
        let before = stat(include_str!("../tests/fixtures/proc/stat"));
        let after = stat(include_str!("../tests/fixtures/stat/later"));
        sample.cpu = Some(crate::collect::cpu::compare(Some(&before), &after));
        let second = b.build(&sample);
        (first, second)
    }

    #[test]
    fn custom_groups_go_under_plugins() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proc");
        let mut sample = Collector::new(ProcFs::at(root)).sample();
        let mut b = Builder::new("k".into(), "h".into(), SystemInfo::default());
        let plain: Value = serde_json::from_slice(&b.build(&sample).json).unwrap();
        assert!(plain.get("plugins").is_none(), "no groups, no key");
        let metrics = custom::parse_output(br#"{"clients": 12, "ratio": 0.25, "role": "master"}"#).unwrap();
        sample.custom = vec![custom::Group {
            name: "redis".into(),
            metrics: Arc::new(metrics),
        }];
        let v: Value = serde_json::from_slice(&b.build(&sample).json).unwrap();
        assert_eq!(
            v["plugins"],
            serde_json::json!({"redis": {"clients": 12, "ratio": 0.25, "role": "master"}})
        );
        assert!(
            v["plugins"]["redis"]["clients"].is_i64(),
            "whole numbers stay integers"
        );
    }

    #[test]
    fn md5_known_vectors() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(
            md5_hex(b"The quick brown fox jumps over the lazy dog"),
            "9e107d9d372bb6826bd81d3542a419d6"
        );
    }

    #[test]
    fn hash_is_over_the_exact_bytes() {
        let (_, p) = fixture_payloads();
        assert_eq!(p.md5, md5_hex(&p.json));
        // the form body carries the same bytes, URL-encoded
        let body = p.form_body();
        let fields: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
        assert_eq!(fields[0].0, "payload");
        assert_eq!(fields[0].1.as_bytes(), &p.json[..]);
        assert_eq!(fields[1], ("hash".to_string(), p.md5.clone()));
    }

    #[test]
    fn tenths_print_as_one_decimal() {
        for (x, want) in [
            (0.0, "0.0"),
            (0.04, "0.0"),
            (0.06, "0.1"),
            (2.34, "2.3"),
            (99.96, "100.0"),
            (1234.5678, "1234.6"),
        ] {
            assert_eq!(Tenths(x).to_string(), want, "{x}");
        }
        for x in [-1.0, f64::NAN, 1e16] {
            assert_eq!(Tenths(x).to_string(), format!("{x:.1}"));
        }
    }

    #[test]
    fn form_encoding_matches_the_whatwg_serializer() {
        let every_byte: Vec<u8> = (0..=255).collect();
        let mut ours = Vec::new();
        form_encode(&every_byte, &mut ours);
        let reference: String = form_urlencoded::byte_serialize(&every_byte).collect();
        assert_eq!(String::from_utf8(ours).unwrap(), reference);
        let mut empty = Vec::new();
        form_encode(b"", &mut empty);
        assert!(empty.is_empty());
    }

    #[test]
    fn hash_matches_an_independent_md5() {
        let (_, p) = fixture_payloads();
        let out = std::process::Command::new("md5sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(&p.json)?;
                child.wait_with_output()
            })
            .expect("md5sum runs");
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text.split_whitespace().next(), Some(p.md5.as_str()));
    }

    #[test]
    fn v1_shapes_and_units() {
        let (first, second) = fixture_payloads();
        let v: Value = serde_json::from_slice(&second.json).unwrap();
        assert_eq!(v["os"], "linux");
        assert_eq!(v["agentKey"], "0123456789abcdef");
        assert_eq!(v["agentVersion"], VERSION);
        assert_eq!(v["internalHostname"], "web1");
        assert_eq!(v["loadAvrg"], "0.42");
        // whole MB: kB / 1024, used = MemTotal - MemFree
        assert_eq!(v["memPhysUsed"], (8_030_176 - 1_204_512) / 1024);
        assert_eq!(v["memPhysFree"], 1_204_512 / 1024);
        assert_eq!(v["memSwapUsed"], (2_097_148 - 1_835_004) / 1024);
        assert_eq!(v["memSwapFree"], 1_835_004 / 1024);
        assert_eq!(v["memCached"], 3_701_228 / 1024);
        assert_eq!(v["networkTraffic"]["eth0"]["recv_bytes"], "0");
        assert_eq!(v["networkTraffic"]["eth0"]["trans_bytes"], "0");
        let io = &v["ioStats"]["sda"];
        for k in ["r/s", "w/s", "rkB/s", "wkB/s", "await", "%util"] {
            assert!(io[k].is_string(), "ioStats.sda.{k}");
        }
        let all = &v["cpuStats"]["ALL"];
        for k in [
            "%usr", "%nice", "%sys", "%iowait", "%irq", "%soft", "%steal", "%guest", "%idle",
        ] {
            assert!(all[k].is_string(), "cpuStats.ALL.{k}");
        }
        assert!(v["cpuStats"]["CPU0"].is_object());
        assert_eq!(all["%usr"], "10.00");
        let procs = v["processes"].as_array().unwrap();
        assert_eq!(procs.len(), 3);
        let init = procs[0].as_array().unwrap();
        assert_eq!(init.len(), 11);
        assert!(init.iter().all(Value::is_string));
        assert_eq!(init[1], "1");
        assert_eq!(init[7], "Ss");
        assert_eq!(init[10], "/sbin/init splash");
        // disk rows: strings but used/avail whole GB integers
        for row in v["diskUsage"].as_array().unwrap() {
            let r = row.as_array().unwrap();
            assert_eq!(r.len(), 6);
            assert!(r[0].is_string() && r[1].is_string() && r[4].is_string() && r[5].is_string());
            assert!(r[2].is_u64() && r[3].is_u64());
            assert!(r[4].as_str().unwrap().ends_with('%'));
        }
        // systemStats only in the first payload
        assert!(v.get("systemStats").is_none());
        let v1: Value = serde_json::from_slice(&first.json).unwrap();
        assert_eq!(v1["systemStats"]["cpuCores"], 2);
        assert_eq!(v1["systemStats"]["machine"], "x86_64");
        // first sample has no previous one: no traffic yet
        assert_eq!(v1["networkTraffic"], serde_json::json!({}));
    }

    #[test]
    fn v2_additions_and_identity() {
        let (first, second) = fixture_payloads();
        let v: Value = serde_json::from_slice(&second.json).unwrap();
        assert!((v["memPhysTotal"].as_f64().unwrap() - 8_030_176.0 / 1024.0).abs() < 1e-6);
        assert!((v["memPhysUsable"].as_f64().unwrap() - 5_312_440.0 / 1024.0).abs() < 1e-6);
        assert!(v["memPhysPctUsable"].as_f64().unwrap() > 66.0);
        for k in [
            "memBuffers",
            "memShared",
            "memSwapTotal",
            "system.load.1",
            "system.load.5",
            "system.load.15",
            "cpuUser",
            "cpuSystem",
            "cpuWait",
            "cpuIdle",
            "cpuStolen",
            "system.uptime",
        ] {
            assert!(v[k].is_number(), "{k}");
        }
        assert_eq!(v["hostbeat"]["seq"], 2);
        assert_eq!(v["hostbeat"]["run"].as_str().unwrap().len(), 8);
        assert_eq!((first.seq, second.seq), (1, 2));
    }
}
