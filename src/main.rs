//! The `hostbeat` command line: parses arguments and dispatches.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use hostbeat::collect::{Collector, ProcFs, Sample};
use hostbeat::config::{self, Config, ConfigError, LogFormat};
use hostbeat::custom::Group;
use hostbeat::{daemon, metrics, plugin, sampler};

mod cli;

use cli::{Cli, Command};

/// sysexits.h codes.
const EX_USAGE: u8 = 64;
const EX_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let (command, config, log_level) = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Cli::Run {
            command,
            config,
            log_level,
        }) => (command, config, log_level),
        Ok(Cli::Help) => {
            let _ = out(cli::HELP.trim_end());
            return ExitCode::SUCCESS;
        }
        Ok(Cli::Version) => {
            let _ = out(&format!("hostbeat {}", hostbeat::payload::VERSION));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    match dispatch(command, config.as_deref(), log_level.as_deref()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hostbeat: {e}");
            ExitCode::FAILURE
        }
    }
}

/// An error for the one line `main` prints (`hostbeat: what: why`).
type Failed = Box<dyn std::error::Error>;

/// `e`, prefixed with what was being done.
fn context(what: &str, e: impl std::fmt::Display) -> Failed {
    format!("{what}: {e}").into()
}

fn dispatch(command: Command, path: Option<&Path>, log_level: Option<&str>) -> Result<ExitCode, Failed> {
    if command == Command::CheckConfig {
        return Ok(check_config(path));
    }
    let config = match load_or_report(path) {
        Some(config) => config,
        // The catalogue is still worth listing when the default config cannot
        // be read (as a user outside the hostbeat group): without plugins.
        None if command == Command::Metrics && path.is_none() => {
            eprintln!("hostbeat: listing without [[plugin]] metrics");
            Config::default()
        }
        None => return Ok(ExitCode::from(EX_CONFIG)),
    };
    init_logging(log_level, &config);
    match command {
        Command::Once => once(&config)?,
        Command::Metrics => print_metrics(&config)?,
        Command::WebhookTest { name } => return webhook_test(&config, &name),
        Command::Run => daemon::run(config, config_path(path)).map_err(|e| context("hostbeat run", e))?,
        Command::CheckConfig => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The config at `path`; without one, the default path if it exists, else
/// the built-in defaults.
fn load(path: Option<&Path>) -> Result<config::Loaded, ConfigError> {
    match path {
        Some(p) => config::load(p),
        None if Path::new(config::DEFAULT_PATH).exists() => config::load(Path::new(config::DEFAULT_PATH)),
        None => Ok(config::Loaded {
            config: config::defaults(),
            warnings: Vec::new(),
        }),
    }
}

/// The file a reload re-reads: the one given, else the default if it exists.
fn config_path(path: Option<&Path>) -> Option<PathBuf> {
    match path {
        Some(p) => Some(p.to_path_buf()),
        None => Some(PathBuf::from(config::DEFAULT_PATH)).filter(|p| p.exists()),
    }
}

/// Loads the config, printing warnings and errors to stderr.
fn load_or_report(path: Option<&Path>) -> Option<Config> {
    match load(path) {
        Ok(l) => {
            for w in &l.warnings {
                eprintln!("hostbeat: warning: {w}");
            }
            Some(l.config)
        }
        Err(e) => {
            eprintln!("{e}");
            None
        }
    }
}

fn check_config(path: Option<&Path>) -> ExitCode {
    if path.is_none() && !Path::new(config::DEFAULT_PATH).exists() {
        let _ = out(&format!("ok (no {}: built-in defaults)", config::DEFAULT_PATH));
        return ExitCode::SUCCESS;
    }
    match load_or_report(path) {
        Some(_) => {
            let _ = out("ok");
            ExitCode::SUCCESS
        }
        None => ExitCode::from(EX_CONFIG),
    }
}

/// Two samples [`sampler::WARMUP`] apart so rates are real, the second
/// with what each `[[plugin]]` printed (a failing one is reported on stderr).
fn sample(config: &Config) -> Result<Sample, Failed> {
    let mut collector = Collector::new(ProcFs::from_env());
    collector.sample();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = std::time::Instant::now();
    let results = runtime.block_on(plugin::run_all(&config.plugin));
    std::thread::sleep(sampler::WARMUP.saturating_sub(started.elapsed()));
    let mut sample = collector.sample();
    for (spec, result) in config.plugin.iter().zip(results) {
        match result {
            Ok(metrics) => sample.custom.push(Group {
                name: spec.name.clone(),
                metrics: Arc::new(metrics),
            }),
            Err(failure) => eprintln!("hostbeat: plugin {:?} failed: {failure}", spec.name),
        }
    }
    sample.custom.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(sample)
}

/// Prints the payload of one [`sample`].
fn once(config: &Config) -> Result<(), Failed> {
    let payload = daemon::builder(config).build(&sample(config)?);
    let doc: serde_json::Value = serde_json::from_slice(&payload.json)?;
    out(&serde_json::to_string_pretty(&doc)?)?;
    Ok(())
}

/// Sends one test notification, without retries; exit 1 when it fails.
fn webhook_test(config: &Config, name: &str) -> Result<ExitCode, Failed> {
    use hostbeat::webhook::{Destination, Kind, Message, deliver, registry};
    let Some(spec) = config.webhook.iter().find(|w| w.name.as_deref() == Some(name)) else {
        let names: Vec<&str> = config.webhook.iter().filter_map(|w| w.name.as_deref()).collect();
        eprintln!(
            "hostbeat: no [[webhook]] named {name:?} (configured: {})",
            names.join(", ")
        );
        return Ok(ExitCode::from(EX_CONFIG));
    };
    let dest = Destination::from_spec(spec, name).map_err(|v| format!("{v:?}"))?;
    let path = deliver::state_path(&config.agent.state_dir, &registry::config_id(name));
    let mut state = hostbeat::store::load_json(&path).unwrap_or_default();
    let (key, generated) = deliver::signing_key(&dest, &mut state);
    if generated {
        hostbeat::store::save_json(&path, &state)
            .map_err(|e| context("saving the generated signing secret", e))?;
        eprintln!(
            "hostbeat: generated a signing secret for {name:?}, kept in {}",
            path.display()
        );
    }
    let host = daemon::builder(config).hostname().to_owned();
    let message = Message {
        kind: Kind::Test,
        id: hostbeat::webhook::new_id(),
        timestamp: std::time::SystemTime::now(),
        text: format!("hostbeat test notification from {host}"),
        host,
        alert: None,
    };
    let job = deliver::job(&message, &dest);
    let attempt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let client = hostbeat::http::client()?;
            Ok::<_, Failed>(deliver::attempt(&client, &dest, &key, &job.id, &job.body).await)
        })?;
    let ms = attempt.latency.as_secs_f64() * 1e3;
    let status = attempt
        .status
        .map_or_else(|| "no response".to_owned(), |s| format!("HTTP {s}"));
    match attempt.result {
        deliver::Outcome::Delivered => {
            out(&format!(
                "{name}: delivered, {status} in {ms:.0} ms (webhook-id {})",
                job.id
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        deliver::Outcome::Retry(_, e) | deliver::Outcome::Fail(e) | deliver::Outcome::Gone(e) => {
            out(&format!("{name}: failed, {status} in {ms:.0} ms: {e}"))?;
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Writes a line to stdout; a closed pipe (`| head`) is not an error.
fn out(line: &str) -> std::io::Result<()> {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{line}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// The metric catalogue, with the values of one [`sample`].
fn print_metrics(config: &Config) -> Result<(), Failed> {
    let all = metrics::series(&sample(config)?);
    let width = all.iter().map(|s| s.to_string().len()).max().unwrap_or(0);
    for s in &all {
        let d = metrics::lookup(&s.name);
        let unit = d.map_or("", |d| d.unit);
        let help = d.map_or("", |d| d.help);
        let value = if s.value.fract() == 0.0 {
            format!("{:.0}", s.value)
        } else {
            format!("{:.2}", s.value)
        };
        out(&format!(
            "{:<width$}  {value:>14} {unit:<5} {help}",
            s.to_string()
        ))?;
    }
    Ok(())
}

/// tracing to stderr: `RUST_LOG`, else `--log-level`, else `[log] level`.
/// Plain lines without timestamps under the journal (it stamps them).
fn init_logging(cli_level: Option<&str>, config: &Config) {
    use hostbeat::logging::{Logger, Style};
    use tracing_subscriber::filter::Targets;
    let directive = cli_level.unwrap_or(&config.log.level);
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .or_else(|| directive.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let style = match config.log.format {
        LogFormat::Json => Style::Json,
        // The journal stamps every line itself.
        LogFormat::Text => Style::Text {
            time: std::env::var_os("JOURNAL_STREAM").is_none(),
        },
    };
    Logger::new(filter, style).install();
}
