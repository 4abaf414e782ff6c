//! Log lines on stderr: a small `tracing` subscriber (the agent has no
//! spans, only events), filtered by a `RUST_LOG`-style [`Targets`] filter.
//!
//! - text: `2026-12-02T03:57:48.530053Z  WARN message key=value …`, the
//!   timestamp left out under systemd (the journal stamps every line);
//! - json: `{"timestamp":"…","level":"WARN","fields":{"message":"…","key":…}}`.
//!
//! Written by hand rather than with tracing-subscriber's `fmt` layer: one
//! formatter instead of three instantiations of its layer stack keeps
//! ~90 KB out of the binary (issue 7 caps it at 3 MB).

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::Targets;

use crate::timefmt::civil_from_days;

/// How lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `TIMESTAMP LEVEL message key=value`.
    Text { time: bool },
    /// One JSON object per line.
    Json,
}

/// The subscriber: `filter` decides, `style` formats, stderr receives.
pub struct Logger {
    filter: Targets,
    style: Style,
    /// The time a line carries (the wall clock; fixed in tests).
    clock: fn() -> SystemTime,
    /// Where lines go (stderr; a buffer in tests).
    write: fn(&[u8]),
}

impl Logger {
    pub fn new(filter: Targets, style: Style) -> Self {
        Logger {
            filter,
            style,
            clock: SystemTime::now,
            write: |line| {
                let _ = std::io::stderr().lock().write_all(line);
            },
        }
    }

    /// Installs this logger for the whole process (once; later calls do nothing).
    pub fn install(self) {
        let _ = tracing::subscriber::set_global_default(self);
    }

    /// The line for one event (with its newline).
    fn line(&self, level: &Level, event: &Event<'_>) -> String {
        let now = (self.clock)();
        let mut out = String::with_capacity(160);
        match self.style {
            Style::Text { time } => {
                if time {
                    timestamp(&mut out, now);
                    out.push(' ');
                }
                let _ = write!(out, "{:>5} ", level.as_str());
                let mut v = TextFields {
                    out: &mut out,
                    first: true,
                };
                event.record(&mut v);
            }
            Style::Json => {
                out.push_str("{\"timestamp\":\"");
                timestamp(&mut out, now);
                let _ = write!(out, "\",\"level\":\"{}\",\"fields\":{{", level.as_str());
                let mut v = JsonFields {
                    out: &mut out,
                    first: true,
                };
                event.record(&mut v);
                out.push_str("}}");
            }
        }
        out.push('\n');
        out
    }
}

impl Subscriber for Logger {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        match self.enabled(metadata) {
            true => Interest::always(),
            false => Interest::never(),
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.filter.would_enable(metadata.target(), metadata.level())
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        // The most verbose level any target of the filter lets through.
        Some(
            self.filter
                .iter()
                .map(|(_, level)| level)
                .chain(self.filter.default_level())
                .max()
                .unwrap_or(tracing::level_filters::LevelFilter::OFF),
        )
    }

    fn event(&self, event: &Event<'_>) {
        let line = self.line(event.metadata().level(), event);
        (self.write)(line.as_bytes());
    }

    // hostbeat has no spans: ids are handed out but nothing is kept.
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// `2026-12-02T03:57:48.530053Z`.
fn timestamp(out: &mut String, t: SystemTime) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    let _ = write!(
        out,
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60,
        d.subsec_micros()
    );
}

/// `message key=value key="text"`: strings quoted, `%display` values not.
struct TextFields<'a> {
    out: &'a mut String,
    first: bool,
}

impl TextFields<'_> {
    fn sep(&mut self) {
        if !self.first {
            self.out.push(' ');
        }
        self.first = false;
    }
}

impl Visit for TextFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.sep();
        let _ = match field.name() {
            "message" => write!(self.out, "{value}"),
            name => write!(self.out, "{name}={value:?}"),
        };
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.sep();
        let _ = match field.name() {
            "message" => write!(self.out, "{value:?}"),
            name => write!(self.out, "{name}={value:?}"),
        };
    }
}

/// `"key":value,…`: numbers and booleans as JSON values, the rest as strings.
struct JsonFields<'a> {
    out: &'a mut String,
    first: bool,
}

impl JsonFields<'_> {
    fn key(&mut self, field: &Field) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        json_string(self.out, field.name());
        self.out.push(':');
    }
}

impl Visit for JsonFields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        match value.is_finite() {
            true => {
                let _ = write!(self.out, "{value}");
            }
            false => json_string(self.out, &value.to_string()),
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        json_string(self.out, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        json_string(self.out, &format!("{value:?}"));
    }
}

/// `s` as a JSON string literal.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    thread_local! {
        static WRITTEN: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// The lines a logger in `style` writes for the events `f` emits, at a
    /// fixed time.
    fn lines(style: Style, f: impl FnOnce()) -> Vec<String> {
        let logger = Logger {
            filter: "info".parse().unwrap(),
            style,
            clock: || UNIX_EPOCH + Duration::from_micros(1_795_600_800_123_456),
            write: |line| WRITTEN.with(|w| w.borrow_mut().push(String::from_utf8_lossy(line).into_owned())),
        };
        tracing::subscriber::with_default(logger, f);
        WRITTEN.with(|w| w.take())
    }

    fn emit() {
        let url = "http://127.0.0.1/x";
        tracing::warn!(plugin = %"disk", failures = 3, ok = true, url, "plugin failed: \"quoted\"\tthing");
        tracing::debug!("filtered out");
    }

    #[test]
    fn text_lines() {
        assert_eq!(
            lines(Style::Text { time: true }, emit),
            [
                "2026-11-25T10:00:00.123456Z  WARN plugin failed: \"quoted\"\tthing plugin=disk failures=3 ok=true url=\"http://127.0.0.1/x\"\n"
            ]
        );
        assert_eq!(
            lines(Style::Text { time: false }, emit)[0],
            " WARN plugin failed: \"quoted\"\tthing plugin=disk failures=3 ok=true url=\"http://127.0.0.1/x\"\n"
        );
    }

    #[test]
    fn json_lines_parse() {
        let out = lines(Style::Json, emit);
        assert_eq!(out.len(), 1);
        let v: serde_json::Value = serde_json::from_str(&out[0]).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "timestamp": "2026-11-25T10:00:00.123456Z",
                "level": "WARN",
                "fields": {
                    "message": "plugin failed: \"quoted\"\tthing",
                    "plugin": "disk",
                    "failures": 3,
                    "ok": true,
                    "url": "http://127.0.0.1/x",
                },
            })
        );
    }

    #[test]
    fn max_level_follows_the_filter() {
        let l = |f: &str| Logger::new(f.parse().unwrap(), Style::Json).max_level_hint();
        use tracing::level_filters::LevelFilter;
        assert_eq!(l("warn"), Some(LevelFilter::WARN));
        assert_eq!(l("warn,hostbeat::postback=debug"), Some(LevelFilter::DEBUG));
        assert_eq!(l("off"), Some(LevelFilter::OFF));
    }
}
