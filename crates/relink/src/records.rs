//! Writes the core's log records with `tracing`: the levels the core chose, the README's
//! messages and field names. The only place the client's decisions become log lines.

use crate::core::connection::Note;
use crate::core::reconnect::{Record, Severity};
use crate::metrics;
use std::time::Duration;
use tracing::{debug, error, info, warn};

/// Writes a record of the reconnect decisions; `url` is the redacted endpoint, and
/// `refreshable` says whether a token provider can give fresh credentials.
pub(crate) fn log(record: &Record, url: &str, refreshable: bool) {
    match record {
        Record::ConnectionLost {
            reason,
            error,
            delay,
        } => {
            warn!(reason, error = %error, delay_ms = millis(*delay), "connection lost");
        }
        Record::AttemptFailed {
            streak,
            connection_lost,
            reason,
            error,
            delay,
        } => {
            let message = if *connection_lost {
                "connection lost before it was stable"
            } else {
                "connection attempt failed"
            };
            warn!(attempt = streak, streak, reason, error = %error, delay_ms = millis(*delay), "{message}");
        }
        Record::KeepsFailing {
            streak,
            reason,
            error,
        } => {
            error!(attempt = streak, streak, reason, error = %error, url = %url, "connection attempts keep failing");
        }
        Record::RetryingCredentials {
            streak,
            reason,
            error,
        } => {
            if refreshable {
                warn!(attempt = streak, streak, reason, error = %error, delay_ms = 0u64, "credentials rejected: retrying once with fresh credentials");
            } else {
                warn!(attempt = streak, streak, reason, error = %error, delay_ms = 0u64, "credentials rejected: trying once more with the same token (no token provider to refresh it)");
            }
        }
        Record::CredentialsRejectedAgain {
            reason,
            error,
            severity,
        }
        | Record::Misconfigured {
            reason,
            error,
            severity,
        } => {
            let message = if matches!(record, Record::Misconfigured { .. }) {
                "cannot connect: check the configuration"
            } else {
                "credentials rejected again: giving up"
            };
            match severity {
                Severity::Error => error!(reason, error = %error, "{message}"),
                _ => warn!(reason, error = %error, "{message}"),
            }
        }
        Record::GaveUp {
            attempts,
            reason,
            error,
            severity,
        } => {
            let message = if *attempts == 0 {
                "connection lost: reconnection is off"
            } else {
                "giving up: no reconnection attempts left"
            };
            match severity {
                Severity::Error => error!(attempts, reason, error = %error, "{message}"),
                _ => warn!(attempts, reason, error = %error, "{message}"),
            }
        }
        Record::ServerDisconnected => info!("disconnected by the server"),
        Record::Recovered {
            outage,
            attempts,
            escalated,
        } => {
            info!(
                outage_ms = millis(*outage),
                attempts, escalated, "connection recovered"
            );
        }
    }
}

/// What a record of the reconnect decisions means for the metrics: each failed attempt is
/// one record (the outage's ERROR comes beside its attempt's, not instead of it).
/// `in_outage` is the client's: an outage begins with its first failure (as the core
/// measures it) and ends with the `Recovered` record.
pub(crate) fn count(record: &Record, in_outage: &mut bool) {
    let failure = !matches!(
        record,
        Record::KeepsFailing { .. } | Record::ServerDisconnected | Record::Recovered { .. }
    );
    if failure && !*in_outage {
        *in_outage = true;
        metrics::outage_began();
    }
    match record {
        Record::ConnectionLost { delay, .. } => metrics::reconnect_delay(*delay),
        Record::AttemptFailed {
            connection_lost,
            delay,
            ..
        } => {
            // A connection lost before it held was counted as `connected` already.
            if !connection_lost {
                metrics::attempt("transient");
            }
            metrics::reconnect_delay(*delay);
        }
        Record::RetryingCredentials { .. } | Record::CredentialsRejectedAgain { .. } => {
            metrics::attempt("unauthorized");
        }
        Record::Misconfigured { .. } => metrics::attempt("fatal"),
        Record::GaveUp { attempts, .. } if *attempts > 0 => metrics::attempt("transient"),
        Record::Recovered { outage, .. } => {
            *in_outage = false;
            metrics::outage_ended(*outage);
        }
        Record::KeepsFailing { .. } | Record::GaveUp { .. } | Record::ServerDisconnected => {}
    }
}

/// Writes a note of the connection's; `namespace` is the one joined.
pub(crate) fn note(note: &Note, namespace: &str) {
    match note {
        Note::Connected { recovered } => {
            metrics::attempt("connected");
            info!(namespace = %namespace, recovered, "connected");
        }
        Note::NotRecovered => info!("previous session not recovered: missed events are lost"),
        Note::EmitTooLarge { size, max } => {
            warn!(
                size,
                max, "emit larger than the server's maxPayload dropped"
            );
        }
        Note::AckNotSent { error } => warn!(error = %error, "ack not sent"),
        Note::Resending { event } => debug!(event = %event, "no ack in time: resending"),
        Note::LateAck { id } => debug!(id, "ack for an emit no longer waiting"),
        Note::Abandoned { frames } => {
            warn!(
                frames,
                "client closed before everything accepted was written"
            );
        }
        Note::NeverSent { emits } => warn!(emits, "client closed with emits never sent"),
    }
}

/// A duration in whole milliseconds, for log fields.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
