//! systemd notification protocol: the real daemon talks to a `UnixDatagram`
//! bound at a file path, given as `NOTIFY_SOCKET` (as systemd does).

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Every datagram received within `within`, until `until` matches one.
fn collect(sock: &UnixDatagram, within: Duration, until: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .unwrap();
        let Ok(n) = sock.recv(&mut buf) else { break };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let mut done = false;
        for line in text.lines().filter(|l| !l.is_empty()) {
            done |= until(line);
            got.push(line.to_owned());
        }
        if done {
            break;
        }
    }
    got
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

#[test]
fn ready_watchdog_reloading_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let config = dir.path().join("hostbeat.toml");
    let state = dir.path().join("state");
    std::fs::write(
        &config,
        format!(
            "[agent]\ninterval = \"300ms\"\nstate_dir = {:?}\n",
            state.display().to_string()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hostbeat"))
        .args(["run", "-c", config.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();

    let start = collect(&sock, Duration::from_secs(5), |m| m.contains("READY=1"));
    assert_eq!(
        start,
        ["READY=1"],
        "READY=1 comes first, before any watchdog ping"
    );

    // WATCHDOG=1 at half of WATCHDOG_USEC (200 ms): several within 1.5 s.
    let pings = collect(&sock, Duration::from_millis(1500), |_| false);
    let n = pings.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(n >= 4, "{n} watchdog pings in 1.5 s: {pings:?}");

    signal(pid, libc::SIGHUP);
    let reload = collect(&sock, Duration::from_secs(5), |m| m == "READY=1");
    let r = reload
        .iter()
        .position(|m| m == "RELOADING=1")
        .expect("RELOADING=1");
    let ready = reload
        .iter()
        .rposition(|m| m == "READY=1")
        .expect("READY=1 after reload");
    assert!(r < ready, "{reload:?}");

    signal(pid, libc::SIGTERM);
    let stop = collect(&sock, Duration::from_secs(5), |m| m == "STOPPING=1");
    assert!(stop.iter().any(|m| m == "STOPPING=1"), "{stop:?}");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}
