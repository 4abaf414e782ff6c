//! The command-line grammar of `hostbeat`, parsed with `lexopt`.
//!
//! Five commands and three options do not need clap's 130 KB (a twentieth
//! of the binary; issue 7 caps it at 3 MB): lexopt splits the arguments
//! (`--opt=value`, `-cPATH`, `--`), this module knows what they mean.

use std::ffi::OsString;
use std::path::PathBuf;

/// The help text (`hostbeat --help`).
pub const HELP: &str = "\
A lightweight host-monitoring agent

Usage: hostbeat [--log-level FILTER] <COMMAND> [-c PATH]

Commands:
  run                Run the agent (the daemon)
  once               Take one sample (plugins included) and print its payload
  check-config       Validate the configuration: prints \"ok\" or every error (exit 78)
  metrics            Print the metric catalogue (plugins included) with current values
  webhook test NAME  Send a test notification to the [[webhook]] NAME; prints status and latency
  help               Print this help

Options:
  -c, --config PATH         Configuration file [default: /etc/hostbeat/hostbeat.toml,
                            built-in defaults if absent]
      --log-level FILTER    Log filter (overrides [log] level; RUST_LOG overrides both)
  -h, --help                Print help
  -V, --version             Print version
";

const USAGE: &str = "Usage: hostbeat [--log-level FILTER] <COMMAND> [-c PATH]";

/// What to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Run,
    Once,
    CheckConfig,
    Metrics,
    WebhookTest { name: String },
}

/// A parsed command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Cli {
    Run {
        command: Command,
        config: Option<PathBuf>,
        log_level: Option<String>,
    },
    Help,
    Version,
}

/// A usage error: the message, then the usage line and a pointer to `--help`.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "error: {}\n\n{USAGE}\n\nFor more information, try '--help'.",
            self.0
        )
    }
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Cli, UsageError> {
    use lexopt::Arg::{Long, Short, Value};
    use lexopt::ValueExt;
    let mut p = lexopt::Parser::from_args(args);
    let mut words: Vec<String> = Vec::new();
    let mut config = None;
    let mut log_level = None;
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Short('h') | Long("help") => return Ok(Cli::Help),
            Short('V') | Long("version") => return Ok(Cli::Version),
            Short('c') | Long("config") => config = Some(PathBuf::from(p.value().map_err(usage)?)),
            Long("log-level") => log_level = Some(p.value().map_err(usage)?.string().map_err(usage)?),
            Value(v) => words.push(
                v.into_string()
                    .map_err(|v| UsageError(format!("{v:?} is not valid UTF-8")))?,
            ),
            other => return Err(usage(other.unexpected())),
        }
    }
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let command = match words[..] {
        ["help", ..] => return Ok(Cli::Help),
        ["run"] => Command::Run,
        ["once"] => Command::Once,
        ["check-config"] => Command::CheckConfig,
        ["metrics"] => Command::Metrics,
        ["webhook", "test", name] => Command::WebhookTest {
            name: name.to_owned(),
        },
        ["webhook", "test"] => return Err(UsageError("webhook test needs the webhook's NAME".into())),
        ["webhook", ..] => return Err(UsageError("the webhook command is: webhook test NAME".into())),
        [] => return Err(UsageError("a command is required".into())),
        [cmd] => return Err(UsageError(format!("unknown command {cmd:?}"))),
        [cmd, extra, ..] => return Err(UsageError(format!("unexpected argument {extra:?} after {cmd}"))),
    };
    Ok(Cli::Run {
        command,
        config,
        log_level,
    })
}

fn usage(e: lexopt::Error) -> UsageError {
    UsageError(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Result<Cli, UsageError> {
        parse(args.iter().map(OsString::from))
    }

    fn run(command: Command, config: Option<&str>, log_level: Option<&str>) -> Cli {
        Cli::Run {
            command,
            config: config.map(PathBuf::from),
            log_level: log_level.map(str::to_owned),
        }
    }

    #[test]
    fn commands_and_options_in_any_order() {
        assert_eq!(parse_str(&["run"]), Ok(run(Command::Run, None, None)));
        assert_eq!(
            parse_str(&["--log-level", "debug", "run", "-c", "/etc/h.toml"]),
            Ok(run(Command::Run, Some("/etc/h.toml"), Some("debug")))
        );
        assert_eq!(
            parse_str(&["once", "--config=/x.toml", "--log-level=warn"]),
            Ok(run(Command::Once, Some("/x.toml"), Some("warn")))
        );
        assert_eq!(
            parse_str(&["check-config", "-c/y.toml"]),
            Ok(run(Command::CheckConfig, Some("/y.toml"), None))
        );
        assert_eq!(parse_str(&["metrics"]), Ok(run(Command::Metrics, None, None)));
        assert_eq!(
            parse_str(&["webhook", "test", "ops", "-c", "/z.toml"]),
            Ok(run(
                Command::WebhookTest { name: "ops".into() },
                Some("/z.toml"),
                None
            ))
        );
    }

    #[test]
    fn help_and_version() {
        for args in [&["--help"][..], &["-h"], &["run", "--help"], &["help"]] {
            assert_eq!(parse_str(args), Ok(Cli::Help), "{args:?}");
        }
        assert_eq!(parse_str(&["-V"]), Ok(Cli::Version));
        assert_eq!(parse_str(&["--version"]), Ok(Cli::Version));
        for cmd in ["run", "once", "check-config", "metrics", "webhook test NAME"] {
            assert!(HELP.contains(cmd), "{cmd}");
        }
    }

    #[test]
    fn usage_errors_say_what_is_wrong() {
        let err = |args: &[&str]| parse_str(args).unwrap_err().to_string();
        assert!(err(&[]).contains("a command is required"));
        assert!(err(&["bogus"]).contains("unknown command \"bogus\""));
        assert!(err(&["run", "--nope"]).contains("--nope"));
        assert!(err(&["run", "extra"]).contains("unexpected argument \"extra\""));
        assert!(err(&["run", "-c"]).contains("missing argument"));
        assert!(err(&["webhook", "test"]).contains("NAME"));
        assert!(err(&["webhook", "send", "x"]).contains("webhook test NAME"));
        assert_eq!(
            parse_str(&["metrics", "-c", "/x"]),
            Ok(run(Command::Metrics, Some("/x"), None))
        );
        assert!(err(&["bogus"]).contains("Usage: hostbeat"));
    }
}
