//! Postback over TLS end to end: the release's trimmed crypto provider
//! (src/http.rs: AES-GCM suites, ring's key exchange and signature checks)
//! against real TLS servers on 127.0.0.1 (Python's ssl module): TLS 1.3
//! with an ECDSA certificate, TLS 1.2 with an RSA one. The self-signed
//! certificates come from the openssl command line and are trusted through
//! SSL_CERT_FILE, as an operator with a private CA would. A certificate
//! signed by an unknown CA is refused.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Config, Daemon};

const SERVER: &str = r#"
import http.server, ssl, sys
cert, key, version, log, port_file = sys.argv[1:6]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with open(log, "a") as f:
            f.write(f"{self.path} {len(body)} {self.request.version()} {self.request.cipher()[0]}\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
v = ssl.TLSVersion.TLSv1_3 if version == "1.3" else ssl.TLSVersion.TLSv1_2
ctx.minimum_version = v
ctx.maximum_version = v
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
open(port_file, "w").write(str(srv.server_address[1]))
srv.serve_forever()
"#;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A test CA and a server certificate for 127.0.0.1 it signed, both with
/// `key` (`ec` or `rsa`) keys: (CA certificate, server certificate, server
/// key) paths. `None` when the openssl command is missing.
fn certificates(dir: &Path, key: &str) -> Option<(String, String, String)> {
    let p = |name: &str| dir.join(format!("{key}-{name}")).display().to_string();
    let newkey: &[&str] = match key {
        "ec" => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
        _ => &["-newkey", "rsa:2048"],
    };
    std::fs::write(
        p("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let steps: Vec<Vec<String>> = vec![
        [
            &[
                "req",
                "-x509",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=hostbeat test CA",
            ][..],
            newkey,
        ]
        .concat()
        .iter()
        .map(|s| s.to_string())
        .chain(["-keyout".into(), p("ca.key"), "-out".into(), p("ca.crt")])
        .collect(),
        [&["req", "-nodes", "-subj", "/CN=127.0.0.1"][..], newkey]
            .concat()
            .iter()
            .map(|s| s.to_string())
            .chain(["-keyout".into(), p("server.key"), "-out".into(), p("server.csr")])
            .collect(),
        ["x509", "-req", "-days", "2", "-CAcreateserial", "-in"]
            .iter()
            .map(|s| s.to_string())
            .chain([
                p("server.csr"),
                "-CA".into(),
                p("ca.crt"),
                "-CAkey".into(),
                p("ca.key"),
            ])
            .chain(["-extfile".into(), p("ext"), "-out".into(), p("server.crt")])
            .collect(),
    ];
    for args in steps {
        match Command::new("openssl")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(s) if s.success() => {}
            Ok(s) => panic!("openssl {args:?}: {s}"),
            Err(_) => {
                assert!(
                    std::env::var_os("HOSTBEAT_REQUIRE_OPENSSL").is_none(),
                    "the openssl command is required"
                );
                eprintln!("openssl not installed: TLS test skipped");
                return None;
            }
        }
    }
    Some((p("ca.crt"), p("server.crt"), p("server.key")))
}

fn start_server(dir: &Path, cert: &str, key: &str, version: &str) -> (Server, u16, std::path::PathBuf) {
    let log = dir.join(format!("tls{version}.log"));
    let port_file = dir.join(format!("tls{version}.port"));
    let child = Command::new("python3")
        .args(["-c", SERVER, cert, key, version])
        .arg(&log)
        .arg(&port_file)
        .stdin(Stdio::null())
        .spawn()
        .expect("python3");
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(port) = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
        {
            return (server, port, log);
        }
        assert!(Instant::now() < deadline, "the TLS server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn delivers_over(version: &str, key: &str) {
    let dir = tempfile::tempdir().unwrap();
    let Some((ca, cert, keyfile)) = certificates(dir.path(), key) else {
        return;
    };
    let (_server, port, log) = start_server(dir.path(), &cert, &keyfile, version);
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let config = Config::new(format!("https://127.0.0.1:{port}/postback/")).min_interval("100ms");
    let path = dir.path().join("hostbeat.toml");
    std::fs::write(&path, config.to_toml(&state)).unwrap();
    let mut daemon = Daemon::spawn_file_env(&path, &[("SSL_CERT_FILE", &ca)]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        let got = std::fs::read_to_string(&log).unwrap_or_default();
        if got.lines().count() >= 2 {
            break got;
        }
        assert!(
            Instant::now() < deadline,
            "no payload over TLS {version} ({key} certificate); log:\n{}",
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let first = got.lines().next().unwrap();
    assert!(first.starts_with("/postback/"), "{first}");
    assert!(first.contains(&format!("TLSv{version}")), "{first}");
    assert!(first.contains("AES") && first.contains("GCM"), "{first}");
    daemon.terminate();
}

#[test]
fn postback_over_tls13_with_an_ecdsa_certificate() {
    delivers_over("1.3", "ec");
}

#[test]
fn postback_over_tls12_with_an_rsa_certificate() {
    delivers_over("1.2", "rsa");
}

#[test]
fn a_certificate_from_an_unknown_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_ca, cert, keyfile)) = certificates(dir.path(), "ec") else {
        return;
    };
    let (_server, port, log) = start_server(dir.path(), &cert, &keyfile, "1.3");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let config = Config::new(format!("https://127.0.0.1:{port}/postback/")).min_interval("100ms");
    let path = dir.path().join("hostbeat.toml");
    std::fs::write(&path, config.to_toml(&state)).unwrap();
    // The system's roots only: the test CA is not among them.
    let daemon = Daemon::spawn_file(&path);
    assert!(
        daemon.wait_stderr("invalid peer certificate", Duration::from_secs(20)),
        "{}",
        daemon.stderr()
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap_or_default(),
        "",
        "nothing was sent"
    );
}
