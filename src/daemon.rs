//! Wiring: the sampler thread, the delivery task, signals.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

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
    #[error("api.listen: cannot listen on {0}: {1}")]
    Api(String, std::io::Error),
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

    let needs_http = config.postback.url.is_some() || !config.webhook.is_empty() || config.api.is_some();
    let http = match needs_http {
        true => Some(crate::http::client().map_err(|e| DaemonError::Http(crate::http::describe(e)))?),
        false => None,
    };
    let postback_status = Arc::new(Mutex::new(postback::Status::default()));
    let sink = match (&config.postback.url, &http) {
        (Some(url), Some(http)) => {
            let client = Client::new(http.clone(), &config.postback)?;
            let (tx, rx) = mpsc::channel(64);
            let settings = (&config.postback).into();
            let task = tokio::spawn(postback::run(client, settings, rx, postback_status.clone()));
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
    let registry = match &http {
        Some(http) => Registry::start(&config.webhook, &config.agent.state_dir, http.clone(), &host),
        None => Registry::empty(&config.agent.state_dir, &host),
    };
    let shared = Arc::new(Shared {
        registry: Mutex::new(registry),
        alerts: Mutex::new(Alerts::start(&config, &host)),
        postback: postback_status,
        postback_url: config.postback.url.as_deref().map(display_url),
        started_at: SystemTime::now(),
        started: Instant::now(),
        last_sample_ms: AtomicU64::new(0),
    });
    if let Some(api) = &config.api {
        let addr: std::net::SocketAddr = api
            .listen
            .parse()
            .map_err(|_| DaemonError::Api(api.listen.clone(), std::io::ErrorKind::InvalidInput.into()))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| DaemonError::Api(api.listen.clone(), e))?;
        let bound = listener
            .local_addr()
            .map_err(|e| DaemonError::Api(api.listen.clone(), e))?;
        tracing::info!(addr = %bound, "management API listening");
        tokio::spawn(crate::api::serve(
            listener,
            crate::api::ApiState::new(shared.clone(), api),
        ));
    }

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
                    shared.last_sample_ms.store(crate::timefmt::to_millis(tick.sample.taken_at), Ordering::Relaxed);
                    shared.lock_alerts().evaluate(&shared.lock_registry(), &tick.sample);
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

/// What the daemon's parts share with the management API.
#[derive(Debug)]
pub struct Shared {
    pub registry: Mutex<Registry>,
    pub alerts: Mutex<Alerts>,
    pub postback: Arc<Mutex<postback::Status>>,
    /// The receiver, without credentials (`None`: stdout).
    pub postback_url: Option<String>,
    pub started_at: SystemTime,
    pub started: Instant,
    /// Time of the last sample, Unix ms (0 before the first).
    pub last_sample_ms: AtomicU64,
}

impl Shared {
    /// The registry (a panic elsewhere does not lock it for good).
    pub fn lock_registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The alert evaluator.
    pub fn lock_alerts(&self) -> MutexGuard<'_, Alerts> {
        self.alerts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The evaluator and the file that keeps its firing alerts across restarts.
#[derive(Debug)]
pub struct Alerts {
    evaluator: Evaluator,
    file: StateFile,
}

impl Alerts {
    /// The evaluator, its firing alerts restored from `state_dir`.
    pub fn start(config: &Config, host: &str) -> Self {
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

    /// The rules and their states.
    pub fn evaluator(&self) -> &Evaluator {
        &self.evaluator
    }

    /// Runs the rules against a sample and hands notifications on.
    pub fn evaluate(&mut self, registry: &Registry, sample: &Sample) {
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
