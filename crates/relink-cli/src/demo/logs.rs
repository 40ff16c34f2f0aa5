//! The demo's tracing subscriber: relink's WARN and ERROR records are counted for the
//! summary, and logs go to stderr only when RUST_LOG asks for them.

use crate::cli::LogFormat;
use indicatif::ProgressBar;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, filter_fn};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// How many WARN and ERROR records relink (the library) has logged.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    warn: AtomicU64,
    error: AtomicU64,
}

impl Counts {
    pub(crate) fn warn(&self) -> u64 {
        self.warn.load(Ordering::Relaxed)
    }

    pub(crate) fn error(&self) -> u64 {
        self.error.load(Ordering::Relaxed)
    }
}

/// Counts the events it is shown, by level.
struct CountLayer(Arc<Counts>);

impl<S: Subscriber> Layer<S> for CountLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let counter = match *event.metadata().level() {
            Level::ERROR => &self.0.error,
            Level::WARN => &self.0.warn,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether a record comes from the relink library itself (not the CLI, not the testkit).
fn from_relink(meta: &Metadata<'_>) -> bool {
    let target = meta.target();
    target == "relink" || target.starts_with("relink::")
}

/// Writes each formatted record to stderr, around the status line when there is one.
#[derive(Clone)]
struct StderrAroundBar(Option<ProgressBar>);

impl Write for StderrAroundBar {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &self.0 {
            Some(bar) => bar.suspend(|| io::stderr().write_all(buf))?,
            None => io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// Installs the global subscriber: the counting layer, and a fmt layer on stderr filtered by
/// RUST_LOG (default `off`: the demo draws its own status), in colour only around a live
/// status line (that is, on a terminal). Returns the counters.
pub(crate) fn install(format: LogFormat, bar: Option<ProgressBar>) -> Arc<Counts> {
    let counts = Arc::new(Counts::default());
    let counting = CountLayer(Arc::clone(&counts)).with_filter(
        filter_fn(|meta| meta.is_event() && from_relink(meta) && *meta.level() <= Level::WARN)
            .with_max_level_hint(LevelFilter::WARN),
    );
    let filter = crate::telemetry::log_filter("off");
    let ansi = bar.is_some();
    let writer = StderrAroundBar(bar);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(move || writer.clone())
        .with_ansi(ansi)
        .with_target(false);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    // Fails only when a subscriber is already installed; the counts then stay at zero, which
    // the summary would show, but `main` installs none for the demo.
    let _ = tracing_subscriber::registry()
        .with(counting)
        .with(fmt.with_filter(filter))
        .try_init();
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_relink_warn_and_error() {
        let counts = Arc::new(Counts::default());
        let layer = CountLayer(Arc::clone(&counts)).with_filter(filter_fn(|meta| {
            meta.is_event() && from_relink(meta) && *meta.level() <= Level::WARN
        }));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "relink::supervisor", "connection attempt failed");
            tracing::warn!(target: "relink", "x");
            tracing::error!(target: "relink::supervisor", "connection attempts keep failing");
            tracing::info!(target: "relink::supervisor", "connected");
            tracing::warn!(target: "relink_testkit::gateway", "not relink");
            tracing::error!(target: "hyper", "not relink");
        });
        assert_eq!((counts.warn(), counts.error()), (2, 1));
    }
}
