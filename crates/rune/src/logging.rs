//! Log output in runc's shapes. containerd reads `--log` as a stream of JSON objects and
//! reports the `msg` of the last one whose `level` is `error`, so each line is exactly
//! `{"level":…,"msg":…,"time":…}`; text lines are logrus-style `time=… level=… msg=…`.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{filter::LevelFilter, filter::Targets, Layer};

use crate::cli::LogFormat;

enum Sink {
    Stderr,
    File(File),
}

struct RuncLayer {
    format: LogFormat,
    sink: Mutex<Sink>,
}

#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// One log line in the given format, without the trailing newline.
pub fn render(format: LogFormat, level: &str, msg: &str, time: &str) -> String {
    match format {
        LogFormat::Json => {
            serde_json::json!({ "level": level, "msg": msg, "time": time }).to_string()
        }
        LogFormat::Text => format!(
            "time={} level={level} msg={}",
            serde_json::Value::from(time),
            serde_json::Value::from(msg)
        ),
    }
}

impl<S: Subscriber> Layer<S> for RuncLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: LayerContext<'_, S>) {
        let mut msg = Message::default();
        event.record(&mut msg);
        // Seconds, as runc's logrus lines (and rune's own error line) carry.
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut line = render(
            self.format,
            level_name(event.metadata().level()),
            &msg.0,
            &time,
        );
        line.push('\n');
        if let Ok(mut sink) = self.sink.lock() {
            let _ = match &mut *sink {
                Sink::Stderr => std::io::stderr().write_all(line.as_bytes()),
                Sink::File(f) => f.write_all(line.as_bytes()),
            };
        }
    }
}

/// Installs the global subscriber. Logs go to `log` (appended) or stderr.
pub fn init(log: Option<&Path>, format: LogFormat, debug: bool) -> Result<()> {
    let sink = match log {
        Some(path) => Sink::File(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("open log file {}", path.display()))?,
        ),
        None => Sink::Stderr,
    };
    // libcgroups warns about every controller the host lacks, on every command, and the
    // libraries' own error lines repeat, part by part, the one error main reports: in a
    // log as on a terminal, that error is the only entry, as runc writes one.
    let libraries = if debug {
        LevelFilter::DEBUG
    } else {
        LevelFilter::OFF
    };
    let filter = Targets::new()
        .with_default(if debug {
            LevelFilter::DEBUG
        } else {
            LevelFilter::WARN
        })
        .with_target("libcontainer", libraries)
        .with_target("libcgroups", libraries)
        // The hook failures the runtime spec makes warnings (poststart, poststop) are
        // the user's to see, as runc shows them.
        .with_target(
            "libcontainer::hooks",
            if debug {
                LevelFilter::DEBUG
            } else {
                LevelFilter::WARN
            },
        );
    tracing_subscriber::registry()
        .with(
            RuncLayer {
                format,
                sink: Mutex::new(sink),
            }
            .with_filter(filter),
        )
        .try_init()
        .context("install logger")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_has_the_fields_containerd_reads() {
        let line = render(LogFormat::Json, "error", "container \"x\" not running", "T");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "container \"x\" not running");
        assert_eq!(v["time"], "T");
    }

    #[test]
    fn text_line_quotes_the_message() {
        let line = render(LogFormat::Text, "warning", "a \"b\"", "T");
        assert_eq!(line, r#"time="T" level=warning msg="a \"b\"""#);
    }
}
