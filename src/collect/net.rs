//! Network interface traffic from `/proc/net/dev` (one read for all interfaces).

use super::{CollectError, ProcFs, counter_delta, per_second};

/// Cumulative counters of one interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// Traffic of one interface over the last interval.
#[derive(Debug, Clone, PartialEq)]
pub struct NetIface {
    pub name: String,
    /// Bytes received and sent since the previous sample.
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_bytes_per_s: f64,
    pub tx_bytes_per_s: f64,
    pub rx_packets_per_s: f64,
    pub tx_packets_per_s: f64,
    pub rx_errors_per_s: f64,
    pub tx_errors_per_s: f64,
    pub rx_dropped_per_s: f64,
    pub tx_dropped_per_s: f64,
}

/// Parses `/proc/net/dev` (two header lines, then `name: 16 counters`).
pub fn parse_net_dev(text: &str) -> Result<Vec<(String, NetCounters)>, CollectError> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let mut v = [0u64; 16];
        let mut n = 0;
        for (slot, f) in v.iter_mut().zip(rest.split_ascii_whitespace()) {
            *slot = f
                .parse()
                .map_err(|_| CollectError::parse("net/dev", format!("bad counter {f:?} for {name}")))?;
            n += 1;
        }
        if n < 16 {
            return Err(CollectError::parse("net/dev", format!("short line for {name}")));
        }
        out.push((
            name.to_owned(),
            NetCounters {
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_dropped: v[11],
            },
        ));
    }
    Ok(out)
}

/// Deltas and rates between two readings of one interface taken `secs` apart.
pub fn rates(name: &str, prev: &NetCounters, cur: &NetCounters, secs: f64) -> NetIface {
    let rx_bytes = counter_delta(prev.rx_bytes, cur.rx_bytes);
    let tx_bytes = counter_delta(prev.tx_bytes, cur.tx_bytes);
    let rate = |p: u64, c: u64| per_second(counter_delta(p, c), secs);
    NetIface {
        name: name.to_owned(),
        rx_bytes,
        tx_bytes,
        rx_bytes_per_s: per_second(rx_bytes, secs),
        tx_bytes_per_s: per_second(tx_bytes, secs),
        rx_packets_per_s: rate(prev.rx_packets, cur.rx_packets),
        tx_packets_per_s: rate(prev.tx_packets, cur.tx_packets),
        rx_errors_per_s: rate(prev.rx_errors, cur.rx_errors),
        tx_errors_per_s: rate(prev.tx_errors, cur.tx_errors),
        rx_dropped_per_s: rate(prev.rx_dropped, cur.rx_dropped),
        tx_dropped_per_s: rate(prev.tx_dropped, cur.tx_dropped),
    }
}

/// Reads and parses `/proc/net/dev`.
pub fn read_net_dev(procfs: &ProcFs, buf: &mut String) -> Result<Vec<(String, NetCounters)>, CollectError> {
    procfs.read_into("net/dev", buf)?;
    parse_net_dev(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fixture() {
        let d = parse_net_dev(include_str!("../../tests/fixtures/proc/net/dev")).unwrap();
        let names: Vec<&str> = d.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["lo", "eth0"]);
        assert_eq!(d[1].1.rx_bytes, 53_724_434);
        assert_eq!(d[1].1.tx_packets, 1_908);
        assert_eq!(d[1].1.rx_errors, 3);
    }

    #[test]
    fn rejects_short_or_garbage_lines() {
        assert!(parse_net_dev("eth0: 1 2 3\n").is_err());
        assert!(parse_net_dev("eth0: x 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n").is_err());
        assert!(parse_net_dev("Inter-|\n face |bytes\n").unwrap().is_empty());
    }

    #[test]
    fn rates_and_wrap() {
        let prev = NetCounters {
            rx_bytes: u64::from(u32::MAX) - 99,
            tx_bytes: 1_000,
            ..NetCounters::default()
        };
        let cur = NetCounters {
            rx_bytes: 100,
            tx_bytes: 3_000,
            rx_packets: 10,
            ..NetCounters::default()
        };
        let r = rates("eth0", &prev, &cur, 2.0);
        assert_eq!(r.rx_bytes, 200, "32-bit wrap");
        assert_eq!(r.tx_bytes, 2_000);
        assert_eq!(r.tx_bytes_per_s, 1_000.0);
        assert_eq!(r.rx_packets_per_s, 5.0);
        // interface re-created: counters restart, no absurd spike
        let reset = rates(
            "eth0",
            &cur,
            &NetCounters {
                tx_bytes: 5,
                ..NetCounters::default()
            },
            1.0,
        );
        assert_eq!(reset.tx_bytes, 0);
    }
}
