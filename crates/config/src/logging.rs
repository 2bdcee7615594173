//! Log output in Kafka's log4j layout, `[%d] %p %m (%c)`:
//!
//! ```text
//! [2015-10-10 10:01:34,730] INFO Property port is overridden to 9092 (broker::server)
//! ```
//!
//! Local time with comma milliseconds, the level, the message (with any
//! structured fields after it), and the event's target where Kafka shows
//! the logger's class. Written to stderr so stdout stays for data (the
//! console consumer prints messages there).

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The environment variable holding filter directives that replace the
/// default level, e.g. `RUST_LOG=info,broker::fetcher=debug`.
pub const LOG_FILTER_ENV: &str = "RUST_LOG";

/// Formats events in Kafka's layout; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct KafkaLogFormat;

impl<S, N> FormatEvent<S, N> for KafkaLogFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        write!(
            writer,
            "[{}] {} ",
            chrono::Local::now().format("%Y-%m-%d %H:%M:%S,%3f"),
            metadata.level()
        )?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer, " ({})", metadata.target())
    }
}

/// Installs the process's logger: Kafka's layout on stderr, at
/// `default_level` and above, or as `RUST_LOG` directs when it is set.
/// Daemons pass `Level::INFO`, tools usually `Level::WARN`.
///
/// Call once, first thing in `main`. A second call (tests that start several
/// components in one process) leaves the first logger in place. An unusable
/// `RUST_LOG` is reported on stderr and the default level is used instead.
pub fn init_logging(default_level: Level) {
    let (filter, complaint) = log_filter(std::env::var(LOG_FILTER_ENV).ok(), default_level);
    if let Some(complaint) = complaint {
        eprintln!("{complaint}");
    }
    // Err only means a logger is already installed, which is fine.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .event_format(KafkaLogFormat)
        .try_init();
}

/// The filter for `RUST_LOG`'s value (if any), and a complaint to print
/// when that value is unusable and the default level is used instead.
fn log_filter(directives: Option<String>, default_level: Level) -> (EnvFilter, Option<String>) {
    match directives {
        Some(directives) if !directives.trim().is_empty() => {
            match EnvFilter::try_new(&directives) {
                Ok(filter) => (filter, None),
                Err(err) => (
                    EnvFilter::new(default_level.as_str()),
                    Some(format!("Ignoring {LOG_FILTER_ENV}={directives}: {err}")),
                ),
            }
        }
        _ => (EnvFilter::new(default_level.as_str()), None),
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    #[test]
    fn filters_come_from_rust_log_or_the_default_level() {
        let (filter, complaint) = log_filter(None, Level::WARN);
        assert_eq!(filter.to_string(), "warn");
        assert_eq!(complaint, None);
        let (filter, complaint) = log_filter(Some("  ".into()), Level::INFO);
        assert_eq!(filter.to_string(), "info");
        assert_eq!(complaint, None);
        let (filter, complaint) = log_filter(Some("broker=debug".into()), Level::INFO);
        assert_eq!(filter.to_string(), "broker=debug");
        assert_eq!(complaint, None);
        let (filter, complaint) = log_filter(Some("broker=loud".into()), Level::INFO);
        assert_eq!(filter.to_string(), "info");
        assert!(
            complaint
                .as_deref()
                .is_some_and(|c| c.starts_with("Ignoring RUST_LOG=broker=loud: ")),
            "{complaint:?}"
        );
    }

    #[test]
    fn lines_have_kafkas_layout() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buffer.clone())
            .with_ansi(false)
            .event_format(KafkaLogFormat)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "kafka.server.KafkaServer", "[Kafka Server 0], started");
            tracing::warn!(target: "t", port = 9092, "bound");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        for line in &lines {
            // [YYYY-MM-DD HH:MM:SS,mmm]
            let stamp = &line[..25];
            assert!(stamp.starts_with('[') && stamp.ends_with(']'), "{line}");
            let bytes = stamp.as_bytes();
            for (i, &b) in bytes[1..24].iter().enumerate() {
                let expected_sep = match i {
                    4 | 7 => Some(b'-'),
                    10 => Some(b' '),
                    13 | 16 => Some(b':'),
                    19 => Some(b','),
                    _ => None,
                };
                match expected_sep {
                    Some(sep) => assert_eq!(b, sep, "{line}"),
                    None => assert!(b.is_ascii_digit(), "{line}"),
                }
            }
        }
        assert_eq!(
            &lines[0][25..],
            " INFO [Kafka Server 0], started (kafka.server.KafkaServer)"
        );
        assert_eq!(&lines[1][25..], " WARN bound port=9092 (t)");
    }
}
