//! The TOML configuration: schema, defaults, validation.
//!
//! Loading parses with serde (`deny_unknown_fields`), then validates every
//! field and reports *every* problem at once, each naming the file, the line
//! and the dotted field (`hostbeat.toml line 12: postback.min_interval: …`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};

use crate::alert::RuleSpec;
use crate::secret::Secret;
use crate::webhook::DestinationSpec;

/// Where the daemon looks when no `-c` is given.
pub const DEFAULT_PATH: &str = "/etc/hostbeat/hostbeat.toml";

/// Environment variable that overrides `postback.token` / `postback.token_file`.
pub const TOKEN_ENV: &str = "HOSTBEAT_POSTBACK_TOKEN";

/// Environment variable that overrides `api.token` / `api.token_file`.
pub const API_TOKEN_ENV: &str = "HOSTBEAT_API_TOKEN";

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub agent: Agent,
    pub postback: Postback,
    pub log: Log,
    /// `[[alert]]` rules.
    pub alert: Vec<RuleSpec>,
    /// `[[webhook]]` destinations.
    pub webhook: Vec<DestinationSpec>,
    /// `[api]`: the management API, off when absent.
    pub api: Option<Api>,
    pub spool: SpoolConfig,
    /// `[[plugin]]` programs whose output becomes custom metrics.
    pub plugin: Vec<PluginSpec>,
    /// `[prometheus]`: the scrape endpoint, off when absent.
    pub prometheus: Option<Prometheus>,
}

/// `[[plugin]]`: a program run without a shell; what it prints (a JSON
/// object, or `metric value` lines) becomes `plugins.NAME` in the payload
/// and `plugin.NAME.METRIC` in the catalogue.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    pub name: String,
    /// Absolute path of the program.
    pub command: PathBuf,
    #[serde(default)]
    pub args: Vec<String>,
    /// Killed (and reaped) when it runs longer.
    #[serde(default = "plugin_timeout", deserialize_with = "duration::deserialize")]
    pub timeout: Duration,
    /// How often it runs; `agent.interval` when absent.
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub interval: Option<Duration>,
}

fn plugin_timeout() -> Duration {
    Duration::from_secs(10)
}

/// `[prometheus]`: `GET /metrics` in the Prometheus text format.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Prometheus {
    /// Address to listen on; loopback unless `allow_remote`.
    pub listen: String,
    pub allow_remote: bool,
}

impl Default for Prometheus {
    fn default() -> Self {
        Prometheus {
            listen: "127.0.0.1:9631".into(),
            allow_remote: false,
        }
    }
}

/// `[spool]`: bounds of the on-disk queue of undelivered payloads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Beyond this, the oldest payloads are dropped (counted, logged).
    pub max_bytes: ByteSize,
    /// Payloads older than this are dropped (counted, logged).
    #[serde(deserialize_with = "duration::deserialize")]
    pub max_age: Duration,
    /// A spooled payload the receiver has not taken this long after it was
    /// built is flushed to the disk (fsync); `0s` flushes every payload
    /// before its first attempt.
    #[serde(deserialize_with = "duration::deserialize")]
    pub grace: Duration,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            max_bytes: ByteSize(64 << 20),
            max_age: Duration::from_secs(24 * 3600),
            grace: Duration::from_millis(100),
        }
    }
}

/// A size in bytes, written as an integer or a string with a unit
/// (`"64MiB"`, `"500KB"`, `"1GiB"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `"64MiB"`, `"100MB"`, `"4096"` ….
    pub fn parse(s: &str) -> Result<ByteSize, String> {
        let err = || format!("invalid size {s:?}: expected e.g. \"64MiB\", \"500KB\" or a number of bytes");
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let n: u64 = t[..split].parse().map_err(|_| err())?;
        let unit: u64 = match t[split..].trim() {
            "" | "B" => 1,
            "KB" => 1000,
            "KiB" => 1 << 10,
            "MB" => 1_000_000,
            "MiB" => 1 << 20,
            "GB" => 1_000_000_000,
            "GiB" => 1 << 30,
            _ => return Err(err()),
        };
        n.checked_mul(unit).map(ByteSize).ok_or_else(err)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(s) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// `[api]`: the local management API.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Api {
    /// Address to listen on; loopback unless `allow_remote`.
    pub listen: String,
    pub allow_remote: bool,
    /// Bearer token every request must carry.
    pub token: Option<Secret>,
    /// File holding the token (first line); exclusive with `token`.
    pub token_file: Option<PathBuf>,
    /// The API's own rate limit: requests per second …
    pub rate_per_second: u32,
    /// … and the burst above it.
    pub burst: u32,
    /// How long values pushed to `POST /metrics/{group}` count.
    #[serde(deserialize_with = "duration::deserialize")]
    pub push_ttl: Duration,
}

impl Default for Api {
    fn default() -> Self {
        Api {
            listen: "127.0.0.1:8631".into(),
            allow_remote: false,
            token: None,
            token_file: None,
            rate_per_second: 10,
            burst: 50,
            push_ttl: Duration::from_secs(300),
        }
    }
}

/// `[agent]`: what this host is and how often it is sampled.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Agent {
    /// Reported host name; the system's when absent.
    pub hostname: Option<String>,
    /// Time between samples.
    #[serde(deserialize_with = "duration::deserialize")]
    pub interval: Duration,
    /// Where the agent keeps its state.
    pub state_dir: PathBuf,
}

impl Default for Agent {
    fn default() -> Self {
        Agent {
            hostname: None,
            interval: Duration::from_secs(60),
            state_dir: PathBuf::from("/var/lib/hostbeat"),
        }
    }
}

/// `[postback]`: the Server Density-compatible receiver. Without `url`,
/// payloads are printed to stdout, one JSON document a line.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Postback {
    pub url: Option<String>,
    /// Device key sent inside the payload as `agentKey`.
    pub agent_key: String,
    /// API token sent as the `token` query parameter.
    pub token: Option<Secret>,
    /// File holding the token (first line); exclusive with `token`.
    pub token_file: Option<PathBuf>,
    /// Sent as `X-Forwarded-Host` (the account host for the Postbacks API).
    pub forwarded_host: Option<String>,
    /// At most one POST per this period, retries included.
    #[serde(deserialize_with = "duration::deserialize")]
    pub min_interval: Duration,
    /// Per-request timeout.
    #[serde(deserialize_with = "duration::deserialize")]
    pub timeout: Duration,
    /// Retry back-off step: after n consecutive failures wait n × backoff …
    #[serde(deserialize_with = "duration::deserialize")]
    pub backoff: Duration,
    /// … but never more than this.
    #[serde(deserialize_with = "duration::deserialize")]
    pub backoff_max: Duration,
    /// Attempts allowed at once before the one-per-`min_interval` pace.
    pub burst: u32,
}

impl Default for Postback {
    fn default() -> Self {
        Postback {
            url: None,
            agent_key: String::new(),
            token: None,
            token_file: None,
            forwarded_host: None,
            min_interval: Duration::from_secs(60),
            timeout: Duration::from_secs(15),
            backoff: Duration::from_secs(20),
            backoff_max: Duration::from_secs(90),
            burst: 1,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// A log filter in `RUST_LOG` syntax: a level, targets with levels
    /// (`info`, `warn,hostbeat::postback=debug` …); `RUST_LOG` wins.
    pub level: String,
    pub format: LogFormat,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    /// 1-based line, when the problem has a place in the file.
    pub line: Option<usize>,
    /// Dotted field name (`postback.url`), when known.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// A loaded config and what the operator should know about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Non-fatal findings (e.g. a secret-holding file readable by everyone).
    pub warnings: Vec<String>,
}

/// Reads, parses and validates `path`, resolves the token (environment,
/// then `token_file`, then `token`) and checks file modes.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: file.clone(),
        source,
    })?;
    let mut config = parse(&text, &file)?;
    let mut warnings = Vec::new();
    let inline = config.postback.token.is_some() || config.api.as_ref().is_some_and(|a| a.token.is_some());
    if inline {
        warnings.extend(mode_warning(path));
    }
    let src = Source {
        text: &text,
        file: &file,
    };
    let p = &mut config.postback;
    resolve_token(
        &src,
        "postback",
        &mut p.token,
        p.token_file.as_deref(),
        env(TOKEN_ENV),
        &mut warnings,
    )?;
    if let Some(api) = &mut config.api {
        resolve_token(
            &src,
            "api",
            &mut api.token,
            api.token_file.as_deref(),
            env(API_TOKEN_ENV),
            &mut warnings,
        )?;
        if api.token.is_none() {
            return Err(src.problem(
                &["api", "token"],
                format!("the API needs a token: set token, token_file or {API_TOKEN_ENV}"),
            ));
        }
    }
    Ok(Loaded { config, warnings })
}

/// A non-empty environment variable.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Built-in defaults, with the environment's token applied.
pub fn defaults() -> Config {
    let mut config = Config::default();
    config.postback.token = env(TOKEN_ENV).map(Secret::new);
    config
}

/// The config text and its name, for messages about it.
struct Source<'a> {
    text: &'a str,
    file: &'a str,
}

impl Source<'_> {
    fn problem(&self, path: &[&str], message: String) -> ConfigError {
        ConfigError::Invalid(vec![Problem {
            file: self.file.to_owned(),
            line: key_line(self.text, path),
            field: Some(path.join(".")),
            message,
        }])
    }
}

/// Sets `token` from the environment override, else from `token_file`.
fn resolve_token(
    src: &Source<'_>,
    section: &str,
    token: &mut Option<Secret>,
    token_file: Option<&Path>,
    env: Option<String>,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    if let Some(t) = env {
        *token = Some(Secret::new(t));
        return Ok(());
    }
    let Some(token_file) = token_file else {
        return Ok(());
    };
    let problem = |message: String| src.problem(&[section, "token_file"], message);
    let content = std::fs::read_to_string(token_file)
        .map_err(|e| problem(format!("cannot read {}: {e}", token_file.display())))?;
    let value = content.lines().next().unwrap_or("").trim();
    if value.is_empty() {
        return Err(problem(format!("{} is empty", token_file.display())));
    }
    warnings.extend(mode_warning(token_file));
    *token = Some(Secret::new(value));
    Ok(())
}

/// A warning when a file holding a secret is readable by everyone.
fn mode_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o007 != 0).then(|| {
        format!(
            "{} holds a secret but is readable by all users (mode {mode:04o}); expected 0640 or stricter",
            path.display()
        )
    })
}

/// Parses and validates config text; `file` names it in messages.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    let config: Config = toml::from_str(text).map_err(|e| {
        let offset = e.span().map(|s| s.start);
        ConfigError::Invalid(vec![Problem {
            file: file.to_owned(),
            line: offset.map(|o| line_of(text, o)),
            field: offset.and_then(|o| field_at(text, o)),
            message: crate::secret::redact_serde_message(e.message().trim()),
        }])
    })?;
    let problems: Vec<Problem> = validate(&config)
        .into_iter()
        .map(|(path, message)| Problem {
            file: file.to_owned(),
            line: key_line(text, &path),
            field: Some(display_path(&config, &path)),
            message,
        })
        .collect();
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

/// A dotted path for people: `postback.url`, `webhook "ops".password`,
/// `alert "disk".metric` (array entries by name, else by position).
fn display_path(c: &Config, path: &[String]) -> String {
    let entry = |section: &str, i: usize| {
        let name = match section {
            "alert" => c.alert.get(i).map(|a| a.name.clone()),
            "plugin" => c.plugin.get(i).map(|p| p.name.clone()),
            _ => c.webhook.get(i).and_then(|w| w.name.clone()),
        };
        match name.filter(|n| !n.trim().is_empty()) {
            Some(n) => format!("{section} {n:?}"),
            None => format!("{section} #{}", i + 1),
        }
    };
    match path {
        [section, idx, rest @ ..] if matches!(section.as_str(), "alert" | "webhook" | "plugin") => {
            let mut s = entry(section, idx.parse().unwrap_or(0));
            for r in rest {
                s.push('.');
                s.push_str(r);
            }
            s
        }
        _ => path.join("."),
    }
}

/// A `listen` address: it parses, and is loopback unless `allow_remote`.
fn check_listen(listen: &str, allow_remote: bool, example: &str) -> Result<std::net::SocketAddr, String> {
    let a: std::net::SocketAddr = listen
        .parse()
        .map_err(|_| format!("{listen:?} is not an address like {example}"))?;
    if !a.ip().is_loopback() && !allow_remote {
        return Err(format!(
            "{a} is not a loopback address; set allow_remote = true to expose it"
        ));
    }
    Ok(a)
}

/// Every rule a parsed config breaks, as (field path, message). Paths into
/// arrays hold the index (`["webhook", "0", "token"]`).
pub fn validate(c: &Config) -> Vec<(Vec<String>, String)> {
    let mut out: Vec<(Vec<String>, String)> = Vec::new();
    let mut bad =
        |path: &[&str], msg: String| out.push((path.iter().map(|p| (*p).to_owned()).collect(), msg));
    let at_least = |d: Duration, min: Duration| d >= min;
    const MIN: Duration = Duration::from_millis(100);

    if c.agent.hostname.as_deref().is_some_and(|h| h.trim().is_empty()) {
        bad(
            &["agent", "hostname"],
            "must not be empty (leave it out to use the system's)".into(),
        );
    }
    if !at_least(c.agent.interval, MIN) || c.agent.interval > Duration::from_secs(3600) {
        bad(&["agent", "interval"], "must be between 100ms and 1h".into());
    }
    if !c.agent.state_dir.is_absolute() {
        bad(
            &["agent", "state_dir"],
            format!("must be an absolute path, got {:?}", c.agent.state_dir),
        );
    }

    let p = &c.postback;
    if let Some(url) = &p.url {
        if let Err(msg) = check_url(url) {
            bad(&["postback", "url"], msg);
        }
        if p.agent_key.trim().is_empty() {
            bad(
                &["postback", "agent_key"],
                "is required when postback.url is set".into(),
            );
        }
    }
    if p.token.is_some() && p.token_file.is_some() {
        bad(
            &["postback", "token_file"],
            "set either token or token_file, not both".into(),
        );
    }
    if p.token.as_ref().is_some_and(Secret::is_empty) {
        bad(&["postback", "token"], "must not be empty".into());
    }
    if let Some(h) = &p.forwarded_host
        && (h.is_empty() || h.chars().any(|ch| ch.is_whitespace() || ch.is_control()))
    {
        bad(
            &["postback", "forwarded_host"],
            format!("{h:?} is not a host name"),
        );
    }
    for (name, d) in [
        ("min_interval", p.min_interval),
        ("timeout", p.timeout),
        ("backoff", p.backoff),
    ] {
        if !at_least(d, MIN) {
            bad(&["postback", name], "must be at least 100ms".into());
        }
    }
    if p.backoff_max < p.backoff {
        bad(
            &["postback", "backoff_max"],
            "must not be less than postback.backoff".into(),
        );
    }
    if p.burst == 0 {
        bad(&["postback", "burst"], "must be at least 1".into());
    }
    if c.spool.max_bytes.0 < 64 * 1024 {
        bad(&["spool", "max_bytes"], "must be at least 64KiB".into());
    }
    if c.spool.grace > Duration::from_secs(10) {
        bad(&["spool", "grace"], "must be at most 10s".into());
    }
    if let Err(e) = c.log.level.parse::<tracing_subscriber::filter::Targets>() {
        bad(
            &["log", "level"],
            format!("{:?} is not a log filter: {e}", c.log.level),
        );
    }

    if let Some(api) = &c.api {
        if let Err(msg) = check_listen(&api.listen, api.allow_remote, "127.0.0.1:8631") {
            bad(&["api", "listen"], msg);
        }
        if api.token.is_some() && api.token_file.is_some() {
            bad(
                &["api", "token_file"],
                "set either token or token_file, not both".into(),
            );
        }
        if api.token.as_ref().is_some_and(Secret::is_empty) {
            bad(&["api", "token"], "must not be empty".into());
        }
        for (name, v) in [("rate_per_second", api.rate_per_second), ("burst", api.burst)] {
            if v == 0 {
                bad(&["api", name], "must be at least 1".into());
            }
        }
        if !at_least(api.push_ttl, Duration::from_secs(1)) || api.push_ttl > Duration::from_secs(86400) {
            bad(&["api", "push_ttl"], "must be between 1s and 24h".into());
        }
    }

    if let Some(p) = &c.prometheus {
        match check_listen(&p.listen, p.allow_remote, "127.0.0.1:9631") {
            Err(msg) => bad(&["prometheus", "listen"], msg),
            Ok(a)
                if a.port() != 0
                    && c.api
                        .as_ref()
                        .is_some_and(|api| api.listen.parse().ok() == Some(a)) =>
            {
                bad(&["prometheus", "listen"], format!("{a} is api.listen already"))
            }
            Ok(_) => {}
        }
    }

    for (n, p) in c.plugin.iter().enumerate() {
        let i = n.to_string();
        let at = |field: &'static str| ["plugin", i.as_str(), field];
        if !crate::custom::valid_name(&p.name, false) {
            bad(
                &at("name"),
                format!(
                    "{:?} is not a plugin name (1 to {} letters, digits, '_', '-')",
                    p.name,
                    crate::custom::MAX_NAME
                ),
            );
        } else if c.plugin[..n].iter().any(|o| o.name == p.name) {
            bad(&at("name"), format!("{:?} is used by another plugin", p.name));
        }
        if !p.command.is_absolute() {
            bad(
                &at("command"),
                format!(
                    "must be an absolute path (it runs without a shell), got {:?}",
                    p.command
                ),
            );
        }
        if !at_least(p.timeout, MIN) || p.timeout > Duration::from_secs(3600) {
            bad(&at("timeout"), "must be between 100ms and 1h".into());
        }
        if let Some(every) = p.interval {
            if !at_least(every, Duration::from_secs(1)) || every > Duration::from_secs(86400) {
                bad(&at("interval"), "must be between 1s and 24h".into());
            } else if p.timeout > every {
                bad(
                    &at("timeout"),
                    "must not be longer than the plugin's interval".into(),
                );
            }
        }
    }

    let mut hooks: Vec<&str> = Vec::new();
    for (i, w) in c.webhook.iter().enumerate() {
        let idx = i.to_string();
        for (field, msg) in w.validate(true) {
            bad(&["webhook", &idx, field], msg);
        }
        if let Some(name) = w.name.as_deref() {
            if hooks.contains(&name) {
                bad(
                    &["webhook", &idx, "name"],
                    format!("{name:?} is used by another webhook"),
                );
            }
            hooks.push(name);
        }
    }
    let mut rules: Vec<&str> = Vec::new();
    for (i, r) in c.alert.iter().enumerate() {
        let idx = i.to_string();
        for (field, msg) in r.validate() {
            bad(&["alert", &idx, field], msg);
        }
        if rules.contains(&r.name.as_str()) {
            bad(
                &["alert", &idx, "name"],
                format!("{:?} is used by another alert", r.name),
            );
        }
        rules.push(&r.name);
        for w in r.webhooks.iter().flatten() {
            if !hooks.contains(&w.as_str()) {
                bad(
                    &["alert", &idx, "webhooks"],
                    format!("no [[webhook]] is named {w:?}"),
                );
            }
        }
    }
    out
}

/// An `http`/`https` URL with a host (not quoted back: it may hold credentials).
fn check_url(url: &str) -> Result<(), String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("is not a URL ({e})"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("scheme must be http or https, got {:?}", u.scheme()));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    Ok(())
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Line of the key at `path` (array entries by index); for a key the file
/// does not have, the line of its nearest table that it does. A camelCase
/// name is also looked up in snake_case.
pub fn key_line<S: AsRef<str>>(text: &str, path: &[S]) -> Option<usize> {
    let root = DeTable::parse(text).ok()?;
    let mut table = root.get_ref();
    let mut line = None;
    let mut segs = path.iter().map(AsRef::as_ref).peekable();
    while let Some(key) = segs.next() {
        let snake = snake_case(key);
        // `endpoint` is the API's other name for a webhook's url.
        let alias = if key == "url" { "endpoint" } else { key };
        let found = table.iter().find(|(k, _)| {
            let k: &str = k.get_ref();
            k == key || k == snake || k == alias
        });
        let Some((k, v)) = found else {
            break;
        };
        line = Some(line_of(text, k.span().start));
        let mut value = v;
        if let DeValue::Array(items) = value.get_ref() {
            let Some(item) = segs
                .next()
                .and_then(|i| i.parse::<usize>().ok())
                .and_then(|i| items.get(i))
            else {
                break;
            };
            line = Some(line_of(text, item.span().start));
            value = item;
        }
        match value.get_ref() {
            DeValue::Table(t) => table = t,
            _ => break,
        }
    }
    line
}

/// `userName` → `user_name`.
fn snake_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Dotted path of the innermost key at `offset` (on the key or its value);
/// array entries show as `#1`, `#2` ….
fn field_at(text: &str, offset: usize) -> Option<String> {
    fn in_value(v: &toml::Spanned<DeValue<'_>>, offset: usize, path: &mut Vec<String>) -> bool {
        match v.get_ref() {
            DeValue::Table(t) => in_table(t, offset, path),
            DeValue::Array(items) => items.iter().enumerate().any(|(i, item)| {
                path.push(format!("#{}", i + 1));
                let inside = in_value(item, offset, path) || item.span().contains(&offset);
                if !inside {
                    path.pop();
                }
                inside
            }),
            _ => false,
        }
    }
    fn in_table(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
        for (k, v) in table.iter() {
            path.push(k.get_ref().to_string());
            if in_value(v, offset, path) || k.span().contains(&offset) || v.span().contains(&offset) {
                return true;
            }
            path.pop();
        }
        false
    }
    let root = DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    in_table(root.get_ref(), offset, &mut path).then(|| path.join("."))
}

/// Durations written as `"60s"`, `"500ms"`, `"1m30s"`, `"2h"`, `"1d"`.
pub mod duration {
    use std::time::Duration;

    /// Parses a duration string: one or more `<number><unit>` with units
    /// `ms`, `s`, `m`, `h`, `d`; numbers have at most 9 digits and no leading
    /// zero (the shape the API document publishes).
    pub fn parse(s: &str) -> Result<Duration, String> {
        let err = || format!("invalid duration {s:?}: expected e.g. \"500ms\", \"60s\", \"5m\", \"1h30m\"");
        let mut rest = s;
        if rest.is_empty() {
            return Err(err());
        }
        let mut total = Duration::ZERO;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
            let number = &rest[..digits];
            if number.is_empty() || number.len() > 9 || (number.len() > 1 && number.starts_with('0')) {
                return Err(err());
            }
            let n: u32 = number.parse().map_err(|_| err())?;
            rest = &rest[digits..];
            let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
            let unit = match &rest[..unit_len] {
                "ms" => Duration::from_millis(1),
                "s" => Duration::from_secs(1),
                "m" => Duration::from_secs(60),
                "h" => Duration::from_secs(3600),
                "d" => Duration::from_secs(86_400),
                _ => return Err(err()),
            };
            rest = &rest[unit_len..];
            total = total.checked_add(unit * n).ok_or_else(err)?;
        }
        Ok(total)
    }

    /// Serde adapter for an optional duration (`null` or absent: `None`).
    pub fn deserialize_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match <Option<String> as serde::Deserialize>::deserialize(d)? {
            Some(s) => parse(&s).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }

    /// Serde adapter for [`parse`].
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match parse(text, "t.toml") {
            Ok(_) => Vec::new(),
            Err(e) => e.to_string().lines().map(str::to_owned).collect(),
        }
    }

    #[test]
    fn durations() {
        assert_eq!(duration::parse("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(duration::parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration::parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration::parse("1d"), Ok(Duration::from_secs(86_400)));
        for bad in [
            "",
            "60",
            "s",
            "1x",
            "-1s",
            "1.5s",
            "99999999999h",
            " 60s",
            "05s",
            "1000000000s",
        ] {
            assert!(duration::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(ByteSize::parse("64MiB"), Ok(ByteSize(64 << 20)));
        assert_eq!(ByteSize::parse("500KB"), Ok(ByteSize(500_000)));
        assert_eq!(ByteSize::parse("4096"), Ok(ByteSize(4096)));
        for bad in ["", "MiB", "1.5MiB", "12 parsecs", "99999999999999999999GiB"] {
            assert!(ByteSize::parse(bad).is_err(), "{bad}");
        }
        let c = parse("[spool]\nmax_bytes = 1048576\nmax_age = \"2h\"\n", "t.toml").unwrap();
        assert_eq!(c.spool.max_bytes, ByteSize(1 << 20));
        assert_eq!(c.spool.max_age, Duration::from_secs(7200));
    }

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(parse("", "t.toml").unwrap(), Config::default());
    }

    #[test]
    fn example_config_parses() {
        let text = include_str!("../config.example.toml");
        let c = parse(text, "config.example.toml").unwrap();
        assert_eq!(c.agent.interval, Duration::from_secs(60));
    }

    #[test]
    fn unknown_key_names_field_and_line() {
        let p = problems("[agent]\ninterval = \"60s\"\nintervall = \"5s\"\n");
        assert_eq!(p.len(), 1);
        assert!(
            p[0].starts_with("t.toml line 3: agent.intervall: unknown field"),
            "{}",
            p[0]
        );
    }

    #[test]
    fn bad_duration_names_field_and_line() {
        let p = problems("[postback]\nmin_interval = \"soon\"\n");
        assert!(
            p[0].starts_with("t.toml line 2: postback.min_interval: invalid duration"),
            "{}",
            p[0]
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let p = problems(
            "[agent]\ninterval = \"10ms\"\nstate_dir = \"rel\"\n[postback]\nurl = \"ftp://x\"\ntoken = \"a\"\ntoken_file = \"/t\"\nbackoff = \"5s\"\nbackoff_max = \"1s\"\n",
        );
        let want = [
            "t.toml line 2: agent.interval:",
            "t.toml line 3: agent.state_dir:",
            "t.toml line 5: postback.url:",
            "t.toml line 4: postback.agent_key: is required",
            "t.toml line 7: postback.token_file: set either",
            "t.toml line 9: postback.backoff_max:",
        ];
        assert_eq!(p.len(), want.len(), "{p:#?}");
        for (got, want) in p.iter().zip(want) {
            assert!(got.starts_with(want), "{got} / {want}");
        }
    }

    #[test]
    fn token_resolution() {
        let dir = tempfile::tempdir().unwrap();
        let tf = dir.path().join("token");
        std::fs::write(&tf, "from-file\n").unwrap();
        let text = format!("[postback]\ntoken_file = {:?}\n", tf.display().to_string());
        let src = Source {
            text: &text,
            file: "t.toml",
        };
        let (mut token, mut w) = (None, Vec::new());
        resolve_token(&src, "postback", &mut token, Some(&tf), None, &mut w).unwrap();
        assert_eq!(token.as_ref().unwrap().expose(), "from-file");
        resolve_token(
            &src,
            "postback",
            &mut token,
            Some(&tf),
            Some("from-env".into()),
            &mut w,
        )
        .unwrap();
        assert_eq!(token.as_ref().unwrap().expose(), "from-env");

        let missing = "[postback]\ntoken_file = \"/nonexistent/token\"\n";
        let src = Source {
            text: missing,
            file: "t.toml",
        };
        let e = resolve_token(
            &src,
            "postback",
            &mut token,
            Some(Path::new("/nonexistent/token")),
            None,
            &mut w,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("t.toml line 2: postback.token_file: cannot read"),
            "{e}"
        );
    }

    #[test]
    fn api_needs_a_loopback_address_and_a_token() {
        let p = problems("[api]\nlisten = \"0.0.0.0:8631\"\ntoken = \"t\"\nburst = 0\n");
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("t.toml line 2: api.listen: 0.0.0.0:8631 is not a loopback address"));
        assert!(p[1].starts_with("t.toml line 4: api.burst:"));
        assert!(problems("[api]\nlisten = \"0.0.0.0:8631\"\nallow_remote = true\n").is_empty());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("h.toml");
        std::fs::write(&f, "[api]\n").unwrap();
        if std::env::var_os(API_TOKEN_ENV).is_none() {
            let e = load(&f).unwrap_err().to_string();
            assert!(e.contains("line 1: api.token: the API needs a token"), "{e}");
        }
    }

    #[test]
    fn world_readable_secret_warns() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("h.toml");
        std::fs::write(&f, "[postback]\ntoken = \"x\"\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let l = load(&f).unwrap();
        assert!(
            l.warnings.iter().any(|w| w.contains("mode 0644")),
            "{:?}",
            l.warnings
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(load(&f).unwrap().warnings.is_empty());
    }

    #[test]
    fn debug_output_masks_the_token() {
        let c = parse("[postback]\ntoken = \"hunter2\"\n", "t.toml").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
