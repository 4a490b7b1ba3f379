//! Log lines on stderr, in text or JSON, printed above the progress bars: shared by both
//! binaries (`fedssl` and the edge `fedssl-client`).

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

use indicatif::MultiProgress;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One line per event for people; colours only when stderr is a terminal and
    /// `NO_COLOR` is unset.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, the event's fields), for
    /// log collectors; never coloured.
    Json,
}

static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// The process's progress bars. Every bar `fedssl` draws belongs to it, and every log line
/// is printed above them while they are hidden for that instant, so a log line and a bar
/// never share a line. On a stderr that is not a terminal the bars are not drawn at all.
pub fn progress() -> MultiProgress {
    BARS.get_or_init(MultiProgress::new).clone()
}

/// A log line, written to stderr in one piece above the progress bars when dropped.
pub struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let line = std::mem::take(&mut self.0);
        progress().suspend(|| {
            let _ = std::io::stderr().lock().write_all(&line);
        });
    }
}

struct AboveBars;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for AboveBars {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine(Vec::with_capacity(256))
    }
}

/// Logs to stderr through `tracing` in `format` (`RUST_LOG` filters; default: info, quinn
/// quiet), above the progress bars of [`progress`].
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,quinn=warn,quinn_proto=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(AboveBars);
    match format {
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(colour).init()
        }
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_ansi(false)
            .init(),
    }
}
