//! Wiring: the sampler thread, the delivery task, signals.

use std::io::Write;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::alert::{Evaluator, FiringRecord, Now, Rule};
use crate::collect::{Collector, ProcFs, Sample, SystemInfo};
use crate::config::Config;
use crate::metrics;
use crate::payload::{Builder, Payload};
use crate::postback::{self, Client};
use crate::sampler::{Sampler, Tick};
use crate::store::StateFile;
use crate::webhook::registry::Registry;

/// How long shutdown waits for an in-flight postback (SIGTERM must end the
/// process within 5 s).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("starting the sampler thread: {0}")]
    Sampler(std::io::Error),
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Client(#[from] postback::ClientError),
    #[error("building the HTTP client: {0}")]
    Http(String),
}

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(config: Config) -> Result<(), DaemonError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?
        .block_on(serve(config))
}

/// A payload builder for this host and config.
pub fn builder(config: &Config) -> Builder {
    let system = SystemInfo::detect();
    let hostname = config
        .agent
        .hostname
        .clone()
        .unwrap_or_else(|| system.hostname.clone());
    Builder::new(config.postback.agent_key.clone(), hostname, system)
}

/// The receiver's URL without credentials or query, for logs.
pub fn display_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.to_string()
        }
        Err(_) => "(invalid url)".into(),
    }
}

/// Where payloads go.
enum Sink {
    /// One JSON line per payload on stdout.
    Stdout,
    /// The delivery task.
    Post(mpsc::Sender<Payload>, tokio::task::JoinHandle<postback::Stats>),
}

async fn serve(config: Config) -> Result<(), DaemonError> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;

    let needs_http = config.postback.url.is_some() || !config.webhook.is_empty();
    let http = match needs_http {
        true => Some(crate::http::client().map_err(|e| DaemonError::Http(crate::http::describe(e)))?),
        false => None,
    };
    let sink = match (&config.postback.url, &http) {
        (Some(url), Some(http)) => {
            let client = Client::new(http.clone(), &config.postback)?;
            let (tx, rx) = mpsc::channel(64);
            let task = tokio::spawn(postback::run(client, (&config.postback).into(), rx));
            tracing::info!(
                url = %display_url(url),
                min_interval = ?config.postback.min_interval,
                token = if config.postback.token.is_some() { "********" } else { "none" },
                "posting back"
            );
            Sink::Post(tx, task)
        }
        _ => {
            tracing::info!("no postback.url configured: printing payloads to stdout");
            Sink::Stdout
        }
    };

    let payloads = builder(&config);
    let host = payloads.hostname().to_owned();
    let mut alerts = Alerts::start(&config, &host);
    let registry = match &http {
        Some(http) if !config.webhook.is_empty() => {
            Registry::start(&config.webhook, &config.agent.state_dir, http.clone(), &host)
        }
        _ => Registry::empty(&config.agent.state_dir, &host),
    };

    let (tick_tx, mut ticks) = mpsc::channel::<Tick>(8);
    let sampler = Sampler::spawn(
        Collector::new(ProcFs::from_env()),
        payloads,
        config.agent.interval,
        tick_tx,
    )
    .map_err(DaemonError::Sampler)?;
    tracing::info!(version = crate::payload::VERSION, interval = ?config.agent.interval, "hostbeat started");

    loop {
        tokio::select! {
            tick = ticks.recv() => match tick {
                Some(tick) => {
                    alerts.evaluate(&registry, &tick.sample);
                    deliver(&sink, tick);
                }
                None => break,
            },
            _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); break }
            _ = sigint.recv() => { tracing::info!("SIGINT: shutting down"); break }
            _ = sighup.recv() => {
                tracing::warn!("SIGHUP: configuration reload is not supported by this version; restart hostbeat to apply changes");
            }
        }
    }

    sampler.stop();
    if let Sink::Post(tx, task) = sink {
        drop(tx);
        match tokio::time::timeout(SHUTDOWN_GRACE, task).await {
            Ok(Ok(stats)) => {
                tracing::info!(
                    delivered = stats.delivered,
                    rejected = stats.rejected,
                    dropped = stats.overflowed,
                    undelivered = stats.queued,
                    "postback stopped"
                );
            }
            Ok(Err(e)) => tracing::error!("postback task failed: {e}"),
            Err(_) => tracing::warn!("postback still in flight after {SHUTDOWN_GRACE:?}: abandoned"),
        }
    }
    tracing::info!("hostbeat stopped");
    Ok(())
}

/// The compiled `[[alert]]` rules (the config was validated).
pub fn rules(config: &Config) -> Vec<Rule> {
    config.alert.iter().filter_map(Rule::compile).collect()
}

/// The evaluator and the file that keeps its firing alerts across restarts.
struct Alerts {
    evaluator: Evaluator,
    file: StateFile,
}

impl Alerts {
    fn start(config: &Config, host: &str) -> Self {
        let mut evaluator = Evaluator::new(rules(config), host);
        let file = StateFile::new(config.agent.state_dir.join("alerts.json"));
        if !evaluator.is_empty()
            && let Some(records) = crate::store::load_json::<Vec<FiringRecord>>(file.path())
        {
            evaluator.restore(&records, Now::real());
            tracing::info!(firing = evaluator.firing().len(), "restored alert state");
        }
        Alerts { evaluator, file }
    }

    /// Runs the rules against a sample and hands notifications on.
    fn evaluate(&mut self, registry: &Registry, sample: &Sample) {
        if self.evaluator.is_empty() {
            return;
        }
        let notes = self.evaluator.evaluate(&metrics::series(sample), Now::real());
        if self.evaluator.take_changed() {
            self.file.save(&self.evaluator.snapshot());
        }
        for n in notes {
            let a = &n.alert;
            tracing::info!(
                rule = %a.rule,
                series = %a.series(),
                status = a.status.as_str(),
                severity = a.severity.as_str(),
                "alert: {}",
                n.summary
            );
            registry.notify(&n);
        }
    }
}

/// Hands one tick's payload to the sink.
fn deliver(sink: &Sink, tick: Tick) {
    tracing::debug!(
        seq = tick.payload.seq,
        bytes = tick.payload.json.len(),
        cost_ms = tick.cost.as_secs_f64() * 1e3,
        "sample"
    );
    match sink {
        Sink::Stdout => {
            let mut out = std::io::stdout().lock();
            let written = out
                .write_all(&tick.payload.json)
                .and_then(|()| out.write_all(b"\n"))
                .and_then(|()| out.flush());
            if let Err(e) = written {
                tracing::error!("writing payload to stdout: {e}");
            }
        }
        Sink::Post(tx, _) => {
            if let Err(e) = tx.try_send(tick.payload) {
                tracing::warn!("postback task busy, payload dropped: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_url_hides_credentials_and_query() {
        assert_eq!(
            display_url("https://u:p@example.com/postback/?token=abc"),
            "https://example.com/postback/"
        );
    }
}
