//! The real binary's command line: exit codes and messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn hostbeat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hostbeat"))
        .args(args)
        .env_remove("HOSTBEAT_POSTBACK_TOKEN")
        .env_remove("RUST_LOG")
        .output()
        .expect("hostbeat runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn toml_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

#[test]
fn invalid_configs_name_field_and_line_and_exit_78() {
    for file in toml_files("tests/invalid_configs") {
        let content = std::fs::read_to_string(&file).unwrap();
        let expect = content
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} lacks an '# expect: ' first line", file.display()));
        let out = hostbeat(&["check-config", "-c", file.to_str().unwrap()]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{}: {stderr}", file.display());
        let want = format!("{} {expect}", file.display());
        assert!(
            stderr.contains(&want),
            "{}:\n want: {want}\n  got: {stderr}",
            file.display()
        );
        assert!(text(&out.stdout).is_empty());
    }
}

#[test]
fn valid_configs_and_the_example_pass() {
    let mut files = toml_files("tests/valid_configs");
    files.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml"));
    for file in files {
        let out = hostbeat(&["check-config", "-c", file.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            file.display(),
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), "ok\n");
    }
}

#[test]
fn missing_config_file_is_a_config_error() {
    let out = hostbeat(&["check-config", "-c", "/nonexistent/hostbeat.toml"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out.stderr).contains("/nonexistent/hostbeat.toml: No such file"));
    let out = hostbeat(&["run", "-c", "/nonexistent/hostbeat.toml"]);
    assert_eq!(out.status.code(), Some(78));
}

#[test]
fn world_readable_token_is_warned_about_but_masked() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("hostbeat.toml");
    std::fs::write(
        &f,
        "[postback]\nurl = \"http://127.0.0.1:9/\"\nagent_key = \"k\"\ntoken = \"tok-SECRET-value\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = hostbeat(&["check-config", "-c", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("readable by all users (mode 0644)"), "{stderr}");
    assert!(!stderr.contains("tok-SECRET-value"));
}

#[test]
fn usage_errors_exit_64_help_and_version_exit_0() {
    for args in [&["bogus"][..], &["run", "--nope"], &[]] {
        let out = hostbeat(args);
        assert_eq!(out.status.code(), Some(64), "{args:?}");
    }
    let out = hostbeat(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        format!("hostbeat {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = hostbeat(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for cmd in ["run", "once", "check-config", "metrics"] {
        assert!(help.contains(cmd), "{help}");
    }
}

#[test]
fn once_prints_every_payload_key() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("hostbeat.toml");
    std::fs::write(&f, "[agent]\nhostname = \"once-host\"\n").unwrap();
    let out = hostbeat(&["once", "-c", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("pretty JSON");
    for key in [
        "os",
        "agentKey",
        "agentVersion",
        "internalHostname",
        "loadAvrg",
        "memPhysUsed",
        "memPhysFree",
        "memSwapUsed",
        "memSwapFree",
        "memCached",
        "diskUsage",
        "networkTraffic",
        "processes",
        "ioStats",
        "cpuStats",
        "systemStats",
        "memPhysTotal",
        "memBuffers",
        "memShared",
        "memPhysUsable",
        "memPhysPctUsable",
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
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["internalHostname"], "once-host");
    let me = std::process::id().to_string();
    let procs = v["processes"].as_array().unwrap();
    assert!(
        procs.iter().any(|p| p[1] == me.as_str()),
        "the test process is listed"
    );
    assert!(v["cpuStats"]["ALL"]["%idle"].is_string());
}

#[test]
fn once_reads_a_fixture_procfs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc");
    let out = Command::new(env!("CARGO_BIN_EXE_hostbeat"))
        .args(["once", "-c", "/dev/null"])
        .env("HOSTBEAT_PROCFS", &root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["loadAvrg"], "0.42");
    assert_eq!(v["memPhysTotal"], 8_030_176.0 / 1024.0);
    assert_eq!(v["processes"].as_array().unwrap().len(), 3);
}

#[test]
fn metrics_lists_catalogue_names_with_values() {
    let out = hostbeat(&["metrics"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    for name in [
        "cpu.usage_pct ",
        "load.1 ",
        "mem.used_pct ",
        "disk.used_pct{mount=/} ",
        "net.rx_bytes_per_s{iface=lo} ",
    ] {
        assert!(stdout.contains(name), "{name} missing from:\n{stdout}");
    }
}

#[test]
fn once_and_metrics_run_the_configured_plugins() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let script = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let f = dir.path().join("hostbeat.toml");
    std::fs::write(
        &f,
        format!(
            "[[plugin]]\nname = \"jobs\"\ncommand = {:?}\n\n[[plugin]]\nname = \"broken\"\ncommand = {:?}\n",
            script("jobs.sh", "echo 'queue 7'; echo 'lag_s 0.25'"),
            script("broken.sh", "exit 3"),
        ),
    )
    .unwrap();

    let out = hostbeat(&["once", "-c", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["plugins"],
        serde_json::json!({"jobs": {"queue": 7, "lag_s": 0.25}})
    );
    assert!(
        text(&out.stderr).contains("plugin \"broken\" failed: exited with exit status: 3"),
        "{}",
        text(&out.stderr)
    );

    let out = hostbeat(&["metrics", "-c", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for name in ["plugin.jobs.queue ", "plugin.jobs.lag_s "] {
        assert!(stdout.contains(name), "{name} missing from:\n{stdout}");
    }
    assert!(!stdout.contains("plugin.broken"), "{stdout}");
}
