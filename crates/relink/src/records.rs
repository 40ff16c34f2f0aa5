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

/// What the metrics remember of one client's run: records and notes become counts here
/// (`metrics.rs`), one per thing that happened.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// An outage has begun (its first failure) and not ended (a connection held).
    in_outage: bool,
    /// The attempt under way has been counted: it connected, or it failed.
    attempt_counted: bool,
}

impl Tally {
    /// The driver starts an attempt.
    pub(crate) fn attempt_began(&mut self) {
        self.attempt_counted = false;
    }

    /// Counts the attempt under way as `class`, once: a connection that is lost later (before
    /// or after it held, or ending the client) was counted as `connected` already.
    fn attempt(&mut self, class: &'static str) {
        if !self.attempt_counted {
            self.attempt_counted = true;
            metrics::attempt(class);
        }
    }

    /// A note of the connection's.
    pub(crate) fn note(&mut self, note: &Note) {
        if let Note::Connected { .. } = note {
            self.attempt("connected");
        }
    }

    /// A record of the reconnect decisions. Every failure has one record (the outage's
    /// ERROR comes beside its attempt's, not instead of it).
    pub(crate) fn record(&mut self, record: &Record) {
        let class = match record {
            Record::ConnectionLost { .. }
            | Record::AttemptFailed { .. }
            | Record::GaveUp { .. } => Some("transient"),
            Record::RetryingCredentials { .. } | Record::CredentialsRejectedAgain { .. } => {
                Some("unauthorized")
            }
            Record::Misconfigured { .. } => Some("fatal"),
            Record::KeepsFailing { .. } | Record::ServerDisconnected | Record::Recovered { .. } => {
                None
            }
        };
        if let Some(class) = class {
            self.attempt(class);
            // A configuration that cannot work is no outage of the server's.
            if !self.in_outage && class != "fatal" {
                self.in_outage = true;
                metrics::outage_began();
            }
        }
        match record {
            Record::ConnectionLost { delay, .. } | Record::AttemptFailed { delay, .. } => {
                metrics::reconnect_delay(*delay);
            }
            Record::Recovered { outage, .. } => {
                self.in_outage = false;
                metrics::outage_ended(*outage);
            }
            _ => {}
        }
    }
}

/// Writes a note of the connection's; `namespace` is the one joined.
pub(crate) fn note(note: &Note, namespace: &str) {
    match note {
        Note::Connected { recovered } => info!(namespace = %namespace, recovered, "connected"),
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

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use std::collections::HashMap;

    /// Counters and histogram sample counts, by name and labels (`name{k=v}`).
    fn counts(recorder: &DebuggingRecorder) -> HashMap<String, u64> {
        let mut out = HashMap::new();
        for (key, _, _, value) in recorder.snapshotter().snapshot().into_vec() {
            let key = key.key();
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let name = if labels.is_empty() {
                key.name().to_owned()
            } else {
                format!("{}{{{}}}", key.name(), labels.join(","))
            };
            let n = match value {
                DebugValue::Counter(n) => n,
                DebugValue::Histogram(samples) => samples.len() as u64,
                DebugValue::Gauge(_) => continue,
            };
            out.insert(name, n);
        }
        out
    }

    fn failed(connection_lost: bool) -> Record {
        Record::AttemptFailed {
            streak: 1,
            connection_lost,
            reason: "network",
            error: "refused".into(),
            delay: Duration::from_millis(100),
        }
    }

    #[test]
    fn each_attempt_is_counted_once_and_an_outage_pairs_with_its_end() {
        let recorder = DebuggingRecorder::new();
        let got = ::metrics::with_local_recorder(&recorder, || {
            let mut tally = Tally::default();
            // A failed attempt begins the outage; its ERROR is no second failure.
            tally.attempt_began();
            tally.record(&failed(false));
            tally.record(&Record::KeepsFailing {
                streak: 1,
                reason: "network",
                error: "refused".into(),
            });
            // Connected, then lost before it held: one attempt, `connected`.
            tally.attempt_began();
            tally.note(&Note::Connected { recovered: false });
            tally.record(&failed(true));
            // Connected, rejected mid-session (a poll answered 401): still one attempt.
            tally.attempt_began();
            tally.note(&Note::Connected { recovered: false });
            tally.record(&Record::RetryingCredentials {
                streak: 3,
                reason: "unauthorized",
                error: "401".into(),
            });
            // Connected again, and it held: the outage ends.
            tally.attempt_began();
            tally.note(&Note::Connected { recovered: false });
            tally.record(&Record::Recovered {
                outage: Duration::from_secs(3),
                attempts: 3,
                escalated: true,
            });
            // A later loss of that connection ends the client (no reconnection): a new
            // outage, no new attempt.
            tally.record(&Record::GaveUp {
                attempts: 0,
                reason: "transport_close",
                error: "closed".into(),
                severity: Severity::Warn,
            });
            counts(&recorder)
        });
        let get = |name: &str| got.get(name).copied().unwrap_or(0);
        assert_eq!(
            get(&format!(
                "{}{{class=connected}}",
                metrics::CONNECTION_ATTEMPTS
            )),
            3,
            "{got:?}"
        );
        assert_eq!(
            get(&format!(
                "{}{{class=transient}}",
                metrics::CONNECTION_ATTEMPTS
            )),
            1,
            "{got:?}"
        );
        assert_eq!(
            get(&format!(
                "{}{{class=unauthorized}}",
                metrics::CONNECTION_ATTEMPTS
            )),
            0,
            "{got:?}"
        );
        assert_eq!(get(metrics::OUTAGES), 2, "{got:?}");
        assert_eq!(get(metrics::OUTAGE_DURATION), 1, "{got:?}");
        assert_eq!(get(metrics::RECONNECT_DELAY), 2, "{got:?}");
    }

    #[test]
    fn a_configuration_that_cannot_work_is_an_attempt_but_no_outage() {
        let recorder = DebuggingRecorder::new();
        let got = ::metrics::with_local_recorder(&recorder, || {
            let mut tally = Tally::default();
            tally.attempt_began();
            tally.record(&Record::Misconfigured {
                reason: "configuration",
                error: "bad url".into(),
                severity: Severity::Error,
            });
            counts(&recorder)
        });
        assert_eq!(
            got.get(&format!("{}{{class=fatal}}", metrics::CONNECTION_ATTEMPTS)),
            Some(&1),
            "{got:?}"
        );
        assert_eq!(got.get(metrics::OUTAGES), None, "{got:?}");
    }
}
