//! Wiring: the sampler thread, the delivery task, the alert evaluator, the
//! webhook registry and the management API; signals (TERM/INT stop, HUP
//! reloads the configuration).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::alert::{Evaluator, FiringRecord, Now, Rule};
use crate::collect::{Collector, ProcFs, SystemInfo};
use crate::config::{self, Config};
use crate::custom::Groups;
use crate::metrics;
use crate::payload::Builder;
use crate::plugin::Plugins;
use crate::postback::{self, Client, Msg};
use crate::prometheus;
use crate::sampler::{Sampler, Tick};
use crate::store::StateFile;
use crate::webhook::registry::Registry;

/// How long shutdown waits for an in-flight postback (SIGTERM must end the
/// process within 5 s; every payload is in the spool already).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// After this many samples (from start or a reload) the agent is in its
/// steady loop and gives the code pages it no longer runs back (see
/// [`crate::residency`]).
const STEADY_AFTER_TICKS: u32 = 3;

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
    /// `(field, address, why)`: `api.listen` or `prometheus.listen`.
    #[error("{0}: cannot listen on {1}: {2}")]
    Listen(&'static str, String, std::io::Error),
}

/// Runs the agent until SIGTERM or SIGINT; SIGHUP re-reads `path`.
pub fn run(config: Config, path: Option<PathBuf>) -> Result<(), DaemonError> {
    crate::residency::one_malloc_arena();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?
        .block_on(serve(config, path))
}

/// The host name payloads and alerts report.
fn hostname(config: &Config, system: &SystemInfo) -> String {
    config
        .agent
        .hostname
        .clone()
        .unwrap_or_else(|| system.hostname.clone())
}

/// A payload builder for this host and config.
pub fn builder(config: &Config) -> Builder {
    let system = SystemInfo::detect();
    let host = hostname(config, &system);
    Builder::new(config.postback.agent_key.clone(), host, system)
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

/// The running delivery task.
struct PostbackTask {
    tx: mpsc::Sender<Msg>,
    task: JoinHandle<postback::Stats>,
}

/// Everything that runs, and the config it runs with.
struct Agent {
    config: Config,
    host: String,
    run: Arc<str>,
    http: Option<reqwest::Client>,
    postback: Option<PostbackTask>,
    api: Option<JoinHandle<()>>,
    prometheus: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    sampler: Sampler,
    plugins: Plugins,
    /// Samples until the start-up (or reload) code pages are released.
    release_in: u32,
}

impl Agent {
    async fn start(config: Config, ticks: mpsc::Sender<Tick>) -> Result<Agent, DaemonError> {
        let payloads = builder(&config);
        let host = payloads.hostname().to_owned();
        let run = payloads.run().clone();
        let needs_http = config.postback.url.is_some() || !config.webhook.is_empty() || config.api.is_some();
        let http = match needs_http {
            true => Some(new_http()?),
            false => None,
        };
        let registry = match &http {
            Some(http) => Registry::start(&config.webhook, &config.agent.state_dir, http.clone(), &host),
            None => Registry::empty(&config.agent.state_dir, &host),
        };
        let shared = Arc::new(Shared {
            registry: Mutex::new(registry),
            alerts: Mutex::new(Alerts::start(&config, &host)),
            postback: Arc::new(Mutex::new(postback::Status::default())),
            postback_url: Mutex::new(None),
            started_at: SystemTime::now(),
            started: Instant::now(),
            last_sample_ms: AtomicU64::new(0),
            custom: Arc::new(Mutex::new(Groups::default())),
            scrape: Mutex::new(None),
        });
        let sampler = Sampler::spawn(
            Collector::new(ProcFs::from_env()),
            payloads,
            config.agent.interval,
            shared.custom.clone(),
            ticks,
        )
        .map_err(DaemonError::Sampler)?;
        let mut agent = Agent {
            config,
            host,
            run,
            http,
            postback: None,
            api: None,
            prometheus: None,
            shared,
            sampler,
            release_in: STEADY_AFTER_TICKS,
            plugins: Plugins::default(),
        };
        agent.plugins.start(
            &agent.config.plugin,
            agent.config.agent.interval,
            &agent.shared.custom,
        );
        agent.apply_postback()?;
        if agent.postback.is_none() {
            tracing::info!("no postback.url configured: printing payloads to stdout");
        }
        if let Some(api) = agent.config.api.clone() {
            agent.api = Some(start_api(&agent.shared, &api).await?);
        }
        if let Some(p) = agent.config.prometheus.clone() {
            agent.prometheus = Some(start_prometheus(&agent.shared, &p).await?);
        }
        Ok(agent)
    }

    /// The shared HTTP client, built on first need.
    fn http(&mut self) -> Result<reqwest::Client, DaemonError> {
        if self.http.is_none() {
            self.http = Some(new_http()?);
        }
        Ok(self.http.clone().expect("just built"))
    }

    /// Starts, reconfigures or stops the delivery task to match the config.
    fn apply_postback(&mut self) -> Result<(), DaemonError> {
        let url = self.config.postback.url.clone();
        *self.shared.postback_url.lock().unwrap_or_else(|e| e.into_inner()) = url.as_deref().map(display_url);
        let Some(url) = url else {
            if self.postback.take().is_some() {
                tracing::info!("postback.url removed: payloads go to stdout; the spool waits for a receiver");
            }
            return Ok(());
        };
        let client = Client::new(self.http()?, &self.config.postback)?;
        let settings = postback::Settings::from(&self.config);
        tracing::info!(
            url = %display_url(&url),
            min_interval = ?self.config.postback.min_interval,
            token = if self.config.postback.token.is_some() { "********" } else { "none" },
            spool = %settings.spool_dir.display(),
            "posting back"
        );
        match &self.postback {
            Some(p) => {
                let _ =
                    p.tx.try_send(Msg::Reconfigure(Box::new(client), Box::new(settings)));
            }
            None => {
                let (tx, rx) = mpsc::channel(64);
                let task = tokio::spawn(postback::run(client, settings, rx, self.shared.postback.clone()));
                self.postback = Some(PostbackTask { tx, task });
            }
        }
        Ok(())
    }

    /// One sample: alerts first (they never wait on the receiver), then the payload.
    fn on_tick(&mut self, tick: Tick) {
        if self.release_in > 0 {
            self.release_in -= 1;
            if self.release_in == 0 {
                crate::residency::release_startup_code();
            }
        }
        let sh = &self.shared;
        sh.last_sample_ms
            .store(crate::timefmt::to_millis(tick.sample.taken_at), Ordering::Relaxed);
        // The sample's series, once, for whoever reads them.
        if self.prometheus.is_some() || sh.lock_alerts().has_rules() {
            let series = metrics::series(&tick.sample);
            sh.lock_alerts().evaluate(&sh.lock_registry(), &series);
            if self.prometheus.is_some() {
                let scrape = prometheus::Scrape {
                    series,
                    taken_at: tick.sample.taken_at,
                    seq: tick.payload.seq,
                    cost: tick.cost,
                };
                *sh.scrape.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(scrape));
            }
        }
        tracing::debug!(
            seq = tick.payload.seq,
            bytes = tick.payload.json.len(),
            cost_ms = tick.cost.as_secs_f64() * 1e3,
            "sample"
        );
        match &self.postback {
            Some(p) => {
                if let Err(e) = p.tx.try_send(Msg::Payload(tick.payload, self.run.clone())) {
                    tracing::warn!("postback task busy, payload dropped: {e}");
                }
            }
            None => print_line(&tick.payload.json),
        }
    }

    /// SIGHUP: re-reads the config; a bad one is reported and the running one stays.
    async fn reload(&mut self, path: Option<&Path>) {
        self.release_in = STEADY_AFTER_TICKS;
        let Some(path) = path else {
            tracing::warn!("SIGHUP: running on built-in defaults, there is no file to reload");
            return;
        };
        let mut new = match config::load(path) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    tracing::warn!("{w}");
                }
                loaded.config
            }
            Err(e) => {
                for line in e.to_string().lines() {
                    tracing::error!("{line}");
                }
                tracing::error!("SIGHUP: the new configuration is invalid; the running one stays");
                return;
            }
        };
        if new.agent.state_dir != self.config.agent.state_dir {
            tracing::warn!("agent.state_dir changes take effect at restart; keeping the current one");
            new.agent.state_dir = self.config.agent.state_dir.clone();
        }
        let old = std::mem::replace(&mut self.config, new);
        let system = SystemInfo::detect();
        let old_host = std::mem::replace(&mut self.host, hostname(&self.config, &system));
        let new = &self.config;
        if (new.agent.interval, &new.postback.agent_key, &self.host)
            != (old.agent.interval, &old.postback.agent_key, &old_host)
        {
            self.sampler.reconfigure(
                new.agent.interval,
                new.postback.agent_key.clone(),
                self.host.clone(),
            );
        }
        if (&new.plugin, new.agent.interval) != (&old.plugin, old.agent.interval) {
            self.plugins
                .start(&new.plugin, new.agent.interval, &self.shared.custom);
        }
        if new.alert != old.alert || self.host != old_host {
            self.shared.lock_alerts().replace_rules(new, &self.host);
        }
        if let Err(e) = self.apply_postback() {
            tracing::error!("postback not restarted: {e}");
        }
        if self.config.webhook != old.webhook || self.host != old_host {
            match self.http() {
                Ok(http) => self
                    .shared
                    .lock_registry()
                    .reload(&self.config.webhook, http, &self.host),
                Err(e) => tracing::error!("webhooks not reloaded: {e}"),
            }
        }
        if self.config.api != old.api {
            stop(self.api.take()).await;
            if let Some(api) = self.config.api.clone() {
                self.api = started("management API", start_api(&self.shared, &api).await);
            }
        }
        if self.config.prometheus != old.prometheus {
            stop(self.prometheus.take()).await;
            *self.shared.scrape.lock().unwrap_or_else(|e| e.into_inner()) = None;
            if let Some(p) = self.config.prometheus.clone() {
                self.prometheus = started("prometheus endpoint", start_prometheus(&self.shared, &p).await);
            }
        }
        tracing::info!(path = %path.display(), "configuration reloaded");
    }

    /// Stops sampling; gives an in-flight postback a moment (the spool keeps the rest).
    async fn shutdown(mut self) {
        self.sampler.stop();
        self.plugins.stop();
        if let Some(PostbackTask { tx, task }) = self.postback.take() {
            drop(tx);
            match tokio::time::timeout(SHUTDOWN_GRACE, task).await {
                Ok(Ok(stats)) => tracing::info!(
                    delivered = stats.delivered,
                    rejected = stats.rejected,
                    spooled = stats.queued,
                    "postback stopped"
                ),
                Ok(Err(e)) => tracing::error!("postback task failed: {e}"),
                Err(_) => {
                    tracing::warn!("postback still in flight after {SHUTDOWN_GRACE:?}; it stays in the spool")
                }
            }
        }
    }
}

/// Tells systemd (when it started us with `NOTIFY_SOCKET`) where we are.
fn notify(state: NotifyState<'_>) {
    if let Err(e) = sd_notify::notify(&[state]) {
        tracing::warn!("sd_notify failed: {e}");
    }
}

fn new_http() -> Result<reqwest::Client, DaemonError> {
    crate::http::client().map_err(|e| DaemonError::Http(crate::http::describe(e)))
}

/// Binds the management API and serves it in a task.
/// Ends a listener's task, if any, and waits for it.
async fn stop(task: Option<JoinHandle<()>>) {
    if let Some(task) = task {
        task.abort();
        let _ = task.await;
    }
}

/// The task of a listener restarted at reload; a failure is logged.
fn started(what: &str, task: Result<JoinHandle<()>, DaemonError>) -> Option<JoinHandle<()>> {
    task.map_err(|e| tracing::error!("{what} not restarted: {e}"))
        .ok()
}

/// A listener on `listen` (the `field` of the config), logged as `what`.
async fn listen(
    field: &'static str,
    listen: &str,
    what: &str,
) -> Result<tokio::net::TcpListener, DaemonError> {
    let fail = |e: std::io::Error| DaemonError::Listen(field, listen.to_owned(), e);
    let addr: std::net::SocketAddr = listen
        .parse()
        .map_err(|_| fail(std::io::ErrorKind::InvalidInput.into()))?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(fail)?;
    let bound = listener.local_addr().map_err(fail)?;
    tracing::info!(addr = %bound, "{what} listening");
    Ok(listener)
}

async fn start_prometheus(
    shared: &Arc<Shared>,
    p: &config::Prometheus,
) -> Result<JoinHandle<()>, DaemonError> {
    let listener = listen("prometheus.listen", &p.listen, "prometheus endpoint").await?;
    Ok(tokio::spawn(prometheus::serve(listener, shared.clone())))
}

async fn start_api(shared: &Arc<Shared>, api: &config::Api) -> Result<JoinHandle<()>, DaemonError> {
    let listener = listen("api.listen", &api.listen, "management API").await?;
    Ok(tokio::spawn(crate::api::serve(
        listener,
        crate::api::ApiState::new(shared.clone(), api),
    )))
}

async fn serve(config: Config, path: Option<PathBuf>) -> Result<(), DaemonError> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    let (tick_tx, mut ticks) = mpsc::channel::<Tick>(8);
    let mut agent = Agent::start(config, tick_tx).await?;
    tracing::info!(version = crate::payload::VERSION, interval = ?agent.config.agent.interval, "hostbeat started");
    notify(NotifyState::Ready);
    if let Some(period) = sd_notify::watchdog_enabled() {
        agent.sampler.arm_watchdog(period);
    }
    loop {
        tokio::select! {
            tick = ticks.recv() => match tick {
                Some(tick) => agent.on_tick(tick),
                None => break,
            },
            _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); break }
            _ = sigint.recv() => { tracing::info!("SIGINT: shutting down"); break }
            _ = sighup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                notify(NotifyState::Reloading);
                agent.reload(path.as_deref()).await;
                notify(NotifyState::Ready);
            }
        }
    }
    notify(NotifyState::Stopping);
    agent.shutdown().await;
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
    pub postback_url: Mutex<Option<String>>,
    pub started_at: SystemTime,
    pub started: Instant,
    /// Time of the last sample, Unix ms (0 before the first).
    pub last_sample_ms: AtomicU64,
    /// Custom metric groups (plugins, pushed), read by the sampler.
    pub custom: Arc<Mutex<Groups>>,
    /// The last sample as the Prometheus endpoint serves it (kept only
    /// while the endpoint is on).
    pub scrape: Mutex<Option<Arc<prometheus::Scrape>>>,
}

impl Shared {
    /// The Prometheus exposition of the last sample, the alert states
    /// and the agent's own counters.
    pub fn prometheus_text(&self) -> String {
        let scrape = self.scrape.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let alerts = self.lock_alerts().evaluator().states();
        let status = self.postback.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let st = &status.stats;
        let health = prometheus::Health {
            postbacks_delivered: st.delivered,
            postback_failed_attempts: st.failed_attempts,
            postbacks_rejected: st.rejected,
            postbacks_dropped: st.spool.dropped_for_size + st.spool.dropped_for_age + st.spool.corrupt,
            spool_queued: st.queued as u64,
            webhook_outcomes: crate::webhook::deliver::OUTCOMES.counts(),
        };
        prometheus::render(scrape.as_deref(), &alerts, &health)
    }

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

    /// New rules (SIGHUP): alerts of rules that keep their name and metric
    /// stay firing, and resolve on the next sample if they no longer hold.
    pub fn replace_rules(&mut self, config: &Config, host: &str) {
        let records = self.evaluator.snapshot();
        self.evaluator = Evaluator::new(rules(config), host);
        self.evaluator.restore(&records, Now::real());
        self.file.save(&self.evaluator.snapshot());
    }

    /// Runs the rules against a sample and hands notifications on.
    /// Whether any rule is configured.
    pub fn has_rules(&self) -> bool {
        !self.evaluator.is_empty()
    }

    /// Evaluates one sample's series; notifies and saves what changed.
    pub fn evaluate(&mut self, registry: &Registry, series: &[metrics::Series]) {
        if self.evaluator.is_empty() {
            return;
        }
        let notes = self.evaluator.evaluate(series, Now::real());
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

/// One payload as one JSON line on stdout.
fn print_line(json: &[u8]) {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_all(json)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(e) = written {
        tracing::error!("writing payload to stdout: {e}");
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
