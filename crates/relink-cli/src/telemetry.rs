//! Logs on stderr (text or JSON lines, filtered by RUST_LOG, default `info`) and, when
//! SENTRY_DSN is set, Sentry: ERROR records become events, WARN and INFO breadcrumbs.

use crate::cli::LogFormat;
use sentry::integrations::tracing::{BreadcrumbLayer, ErrorLayer};
use std::sync::{PoisonError, RwLock};
use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
use tracing_subscriber::layer::{Filter, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Ceilings on libraries' logging, below the levels where they print payloads: tungstenite
/// logs every frame at TRACE (the CONNECT frame carries the token), jsonrpsee logs request
/// bodies at TRACE (a `socket.connect` carries it too).
const SECRET_SAFE_CAPS: [(&str, LevelFilter); 2] = [
    ("tungstenite", LevelFilter::DEBUG),
    ("jsonrpsee", LevelFilter::INFO),
];

/// RUST_LOG (or `default` without it), with the [`SECRET_SAFE_CAPS`] as ceilings: a record
/// passes only if both let it through, so a cap can lower a level and never raise one.
pub(crate) fn log_filter<S>(default: &str) -> impl Filter<S> + Send + Sync + 'static
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let wanted = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let caps = Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(SECRET_SAFE_CAPS);
    wanted.and(caps)
}

/// Keeps Sentry flushing until the process ends.
pub(crate) struct Telemetry {
    _sentry: Option<sentry::ClientInitGuard>,
}

/// Installs the global subscriber. Logs never go to stdout: stdout is for data.
///
/// `secrets` are scrubbed from anything sent to Sentry, as a backstop: relink never logs the
/// token, but an application's own log line might.
pub(crate) fn init(format: LogFormat, secrets: Vec<String>) -> Telemetry {
    let filter = log_filter("info");
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    let sentry_guard = sentry_init(secrets);
    let sentry_layers = sentry_guard.as_ref().map(|_| {
        ErrorLayer::new()
            .with_filter(LevelFilter::ERROR)
            .and_then(BreadcrumbLayer::new().with_filter(LevelFilter::INFO))
    });
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(sentry_layers)
        .try_init();
    Telemetry {
        _sentry: sentry_guard,
    }
}

/// Secrets scrubbed from what goes to Sentry: those known at start, and tokens the daemon is
/// given later. Bounded: a client of the daemon cannot grow it without end.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());
/// How many secrets are kept; the oldest go first.
const MAX_SECRETS: usize = 64;

/// Adds a secret to scrub from Sentry events and breadcrumbs from now on.
pub(crate) fn scrub_also(secret: &str) {
    let secret = secret.trim();
    if secret.is_empty() {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(PoisonError::into_inner);
    if secrets.iter().any(|s| s == secret) {
        return;
    }
    if secrets.len() >= MAX_SECRETS {
        secrets.remove(0);
    }
    secrets.push(secret.to_owned());
}

fn known() -> std::sync::RwLockReadGuard<'static, Vec<String>> {
    SECRETS.read().unwrap_or_else(PoisonError::into_inner)
}

fn sentry_init(secrets: Vec<String>) -> Option<sentry::ClientInitGuard> {
    for secret in &secrets {
        scrub_also(secret);
    }
    let dsn = std::env::var("SENTRY_DSN")
        .ok()
        .filter(|d| !d.trim().is_empty())?;
    let options = sentry::ClientOptions::new()
        .release(sentry::release_name!().unwrap_or_default())
        .send_default_pii(false)
        .before_send(|event| Some(scrub_event(event, &known())))
        .before_breadcrumb(|mut crumb| {
            if let Some(message) = crumb.message.as_mut() {
                scrub_text(message, &known());
            }
            Some(crumb)
        });
    Some(sentry::init((dsn, options)))
}

/// Replaces every occurrence of a secret in `text`.
fn scrub_text(text: &mut String, secrets: &[String]) {
    for secret in secrets {
        if text.contains(secret.as_str()) {
            *text = text.replace(secret.as_str(), "[redacted]");
        }
    }
}

/// Replaces every occurrence of a secret in the event's text fields.
fn scrub_event(
    mut event: sentry::protocol::Event<'static>,
    secrets: &[String],
) -> sentry::protocol::Event<'static> {
    let scrub = |text: &mut String| scrub_text(text, secrets);
    if let Some(message) = event.message.as_mut() {
        scrub(message);
    }
    if let Some(logentry) = event.logentry.as_mut() {
        scrub(&mut logentry.message);
    }
    for exception in event.exception.values.iter_mut() {
        if let Some(value) = exception.value.as_mut() {
            scrub(value);
        }
    }
    for crumb in event.breadcrumbs.values.iter_mut() {
        if let Some(message) = crumb.message.as_mut() {
            scrub(message);
        }
        for value in crumb.data.values_mut() {
            scrub_value(value, &scrub);
        }
    }
    for value in event.extra.values_mut() {
        scrub_value(value, &scrub);
    }
    for context in event.contexts.values_mut() {
        if let sentry::protocol::Context::Other(map) = context {
            for value in map.values_mut() {
                scrub_value(value, &scrub);
            }
        }
    }
    event
}

fn scrub_value(value: &mut serde_json::Value, scrub: &impl Fn(&mut String)) {
    match value {
        serde_json::Value::String(s) => scrub(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| scrub_value(v, scrub)),
        serde_json::Value::Object(map) => map.values_mut().for_each(|v| scrub_value(v, scrub)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_added_later_are_scrubbed_and_the_list_stays_bounded() {
        scrub_also("  tok-later-3  ");
        let mut text = "sent tok-later-3 twice: tok-later-3".to_owned();
        scrub_text(&mut text, &known());
        assert_eq!(text, "sent [redacted] twice: [redacted]");
        for n in 0..2 * MAX_SECRETS {
            scrub_also(&format!("tok-flood-{n}"));
        }
        assert!(known().len() <= MAX_SECRETS);
    }

    #[test]
    fn scrubs_secrets_from_message_exception_breadcrumbs_and_extra() {
        let secret = "tok-SECRET-1".to_string();
        let mut event = sentry::protocol::Event {
            message: Some(format!("failed with {secret}")),
            ..Default::default()
        };
        event.exception.values.push(sentry::protocol::Exception {
            value: Some(format!("x {secret} y")),
            ..Default::default()
        });
        event.breadcrumbs.values.push(sentry::protocol::Breadcrumb {
            message: Some(secret.clone()),
            ..Default::default()
        });
        event.extra.insert(
            "auth".into(),
            serde_json::json!({"token": secret, "n": [secret]}),
        );
        let scrubbed = scrub_event(event, std::slice::from_ref(&secret));
        let text = format!("{scrubbed:?}");
        assert!(!text.contains(&secret), "{text}");
        assert!(text.contains("[redacted]"));
    }
}
