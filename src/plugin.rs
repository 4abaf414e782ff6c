//! Exec plugins: each `[[plugin]]` runs on its own schedule, without a
//! shell, in a process group of its own; stdout is read up to
//! [`MAX_OUTPUT`]; at the timeout the whole group is killed and the plugin
//! reaped, and what it leaves in its group when it exits is killed too.
//! What it prints replaces its group in [`Groups`]; a plugin that fails,
//! hangs or prints garbage loses its group (the payload goes without it)
//! and is logged: the first failure, then at most every [`LOG_EVERY`]
//! while it keeps failing, and its recovery.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::task::JoinSet;

use crate::config::PluginSpec;
use crate::custom::{self, Groups, Metrics};

/// Most bytes of output read from a plugin.
pub const MAX_OUTPUT: u64 = 64 * 1024;

/// How often a plugin that keeps failing is logged again.
pub const LOG_EVERY: Duration = Duration::from_secs(600);

/// Why a run gave no metrics.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("cannot run {0}: {1}")]
    Spawn(String, std::io::Error),
    #[error("reading its output: {0}")]
    Read(std::io::Error),
    #[error("still running after {0:?}: killed")]
    Timeout(Duration),
    #[error("printed more than {MAX_OUTPUT} bytes: killed")]
    TooLong,
    #[error("exited with {0}")]
    Exit(ExitStatus),
    #[error("bad output: {}", .0.join("; "))]
    Output(Vec<String>),
}

/// Runs a plugin once and parses what it printed.
pub async fn run_once(spec: &PluginSpec) -> Result<Metrics, Failure> {
    let mut child = tokio::process::Command::new(&spec.command)
        .args(&spec.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Failure::Spawn(spec.command.display().to_string(), e))?;
    // Kills the whole group if this run ends before the plugin was reaped
    // (timeout, output cap, or the task aborted at reload or shutdown).
    let mut group = GroupGuard(child.id().and_then(|id| i32::try_from(id).ok()));
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut out = Vec::new();
    let work = async {
        (&mut stdout)
            .take(MAX_OUTPUT + 1)
            .read_to_end(&mut out)
            .await
            .map_err(Failure::Read)?;
        if out.len() as u64 > MAX_OUTPUT {
            return Err(Failure::TooLong);
        }
        // What the plugin left behind in its group (a `cmd &`) goes with it:
        // once it has exited, while it is a zombie holding the group's id.
        if let Some(pgid) = group.0
            && exited(pgid).await.is_ok()
        {
            group.kill();
        }
        child.wait().await.map_err(Failure::Read)
    };
    let status = match tokio::time::timeout(spec.timeout, work).await {
        Ok(Ok(status)) => {
            group.0 = None; // reaped: its pid may be reused now
            status
        }
        Ok(Err(failure)) => {
            group.kill();
            let _ = child.wait().await;
            return Err(failure);
        }
        Err(_) => {
            group.kill();
            let _ = child.wait().await;
            return Err(Failure::Timeout(spec.timeout));
        }
    };
    if !status.success() {
        return Err(Failure::Exit(status));
    }
    custom::parse_output(&out).map_err(Failure::Output)
}

/// Runs every plugin of `specs` once, side by side: each one's result, in
/// the order of `specs` (for `hostbeat once` and `hostbeat metrics`).
pub async fn run_all(specs: &[PluginSpec]) -> Vec<Result<Metrics, Failure>> {
    let mut tasks = JoinSet::new();
    for (i, spec) in specs.iter().enumerate() {
        let spec = spec.clone();
        tasks.spawn(async move { (i, run_once(&spec).await) });
    }
    let mut results: Vec<_> = tasks.join_all().await;
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Resolves once `pid`, a child not reaped yet, has exited; it stays a
/// zombie until waited for. An error where pidfds are missing (Linux before
/// 5.3, or a seccomp filter).
async fn exited(pid: i32) -> std::io::Result<()> {
    use std::os::fd::{FromRawFd, OwnedFd};
    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;
    // SAFETY: pidfd_open(2) takes a pid and flags; it returns a new
    // descriptor, or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor just opened, owned by nobody else; the OwnedFd
    // keeps it open, unchanged, for as long as the AsyncFd holds it.
    let fd = unsafe {
        let fd = OwnedFd::from_raw_fd(fd as i32);
        AsyncFd::register_with_interest(fd, Interest::READABLE).map_err(std::io::Error::from)?
    };
    let _exited = fd.readable().await?;
    Ok(())
}

/// The process group of a plugin that is not reaped yet: its pid, the group
/// id, cannot have been reused, so a SIGKILL to the group reaches only the
/// plugin and its children.
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // SAFETY: kill(2) on a process group this agent created.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The running plugins.
#[derive(Default)]
pub struct Plugins {
    tasks: JoinSet<()>,
}

impl Plugins {
    /// Starts every plugin of `specs` (stopping the ones running): each runs
    /// at once, then every `interval` (`default_interval` when unset).
    pub fn start(&mut self, specs: &[PluginSpec], default_interval: Duration, groups: &Arc<Mutex<Groups>>) {
        self.tasks.abort_all();
        groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_plugins(specs.iter().map(|s| s.name.clone()).collect());
        for spec in specs {
            let every = spec.interval.unwrap_or(default_interval);
            self.tasks.spawn(schedule(spec.clone(), every, groups.clone()));
        }
    }

    /// Stops every plugin (killing any that runs).
    pub fn stop(&mut self) {
        self.tasks.abort_all();
    }
}

async fn schedule(spec: PluginSpec, every: Duration, groups: Arc<Mutex<Groups>>) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut log = FailureLog::default();
    loop {
        ticks.tick().await;
        let result = run_once(&spec).await;
        let now = Instant::now();
        let mut g = groups.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(metrics) => {
                g.set(&spec.name, metrics, None);
                drop(g);
                if let Some(failures) = log.recovered() {
                    tracing::info!(plugin = %spec.name, failures, "plugin works again");
                }
            }
            Err(failure) => {
                g.remove(&spec.name);
                drop(g);
                if let Some(count) = log.failed(now) {
                    tracing::warn!(plugin = %spec.name, failures = count, "plugin failed: {failure}");
                }
            }
        }
    }
}

/// Rate limit for one plugin's failure messages.
#[derive(Debug, Default)]
struct FailureLog {
    failures: u64,
    last_logged: Option<Instant>,
}

impl FailureLog {
    /// Counts a failure; returns the count when it should be logged.
    fn failed(&mut self, now: Instant) -> Option<u64> {
        self.failures += 1;
        let due = self
            .last_logged
            .is_none_or(|t| now.duration_since(t) >= LOG_EVERY);
        due.then(|| {
            self.last_logged = Some(now);
            self.failures
        })
    }

    /// A success: the failures before it, if any.
    fn recovered(&mut self) -> Option<u64> {
        let failures = std::mem::take(&mut self.failures);
        self.last_logged = None;
        (failures > 0).then_some(failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_logged_first_then_every_ten_minutes() {
        let t0 = Instant::now();
        let mut log = FailureLog::default();
        assert_eq!(log.failed(t0), Some(1));
        assert_eq!(log.failed(t0 + Duration::from_secs(60)), None);
        assert_eq!(log.failed(t0 + LOG_EVERY), Some(3));
        assert_eq!(log.recovered(), Some(3));
        assert_eq!(log.recovered(), None);
        assert_eq!(log.failed(t0 + LOG_EVERY), Some(1));
    }
}
