//! What happens after an attempt fails or a connection is lost: retry after a delay or stop,
//! which log records say so and at which level, and when an outage is over.
//!
//! The rules (the README's "Reconnect policy and logging"):
//! - The failure streak (the backoff exponent and the attempt number) resets only once a
//!   connection has held for `stable_after`; a connection lost sooner continues the streak.
//! - At most one ERROR per outage, whatever the mix of causes, and exactly one once it
//!   matters: the failure that brings the streak to `escalate_after`, or else the failure
//!   that ends the client (a fatal one, or credentials rejected again). An outage that ends
//!   the client after escalating logs its end at WARN.
//! - Credentials rejected: retried at once, with fresh credentials; rejected again before a
//!   connection succeeded, the client stops. (A CONNECT_ERROR after the namespace accepted
//!   is a protocol error, retried with backoff: the session says so, so a server that
//!   accepts and then rejects cannot make the client retry at once without end.)
//! - One INFO when a connection has held for `stable_after` after an outage, with the
//!   outage's length.

use crate::policy::backoff::Backoff;
use crate::policy::classify::Class;
use crate::policy::escalation::{Escalation, Level};
use crate::state::{EndReason, Status};
use std::time::{Duration, Instant};

/// The settings the decisions depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Delays between attempts.
    pub backoff: Backoff,
    /// Failed attempts in one outage before its ERROR.
    pub escalate_after: u32,
    /// How long a connection must hold before the outage is over.
    pub stable_after: Duration,
    /// Whether a server-side disconnect is retried like a lost link.
    pub reconnect_on_server_disconnect: bool,
    /// Failed attempts in one outage after which the client gives up, the first attempt
    /// included (`None`: never; `Some(0)`: reconnection off, the first failed attempt or a
    /// lost connection ends it). The one retry with fresh credentials after a rejection is
    /// not stopped by it, though it counts.
    pub max_attempts: Option<u32>,
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Try again after this long.
    Retry(Duration),
    /// Stop for good, in this status, for this reason.
    Stop(Status, EndReason),
}

/// A failed attempt or a lost connection, as the driver saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What it means for the loop.
    pub class: Class,
    /// Its short, stable name (`"http_503"`, ...).
    pub reason: &'static str,
    /// Its message, which never holds a secret.
    pub message: String,
    /// How the client ends if the failure is fatal.
    pub fatal_end: EndReason,
}

/// How loud a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The outage is over, or the server ended the session.
    Info,
    /// A failure a person need not look at yet.
    Warn,
    /// A person should look: at most one per outage.
    Error,
}

/// A log record for the driver to write. The decisions choose the level; the driver only
/// formats (message texts and field names are the README's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A connection that had held for the stable period was lost: an outage starts.
    ConnectionLost {
        /// [`Failure::reason`].
        reason: &'static str,
        /// [`Failure::message`].
        error: String,
        /// The delay before the next attempt.
        delay: Duration,
    },
    /// An attempt failed, or a connection was lost before it was stable.
    AttemptFailed {
        /// Failures in this outage so far.
        streak: u32,
        /// It was a connection, lost before it held for the stable period (not an attempt
        /// that never connected); it counts in the streak all the same.
        connection_lost: bool,
        /// [`Failure::reason`].
        reason: &'static str,
        /// [`Failure::message`].
        error: String,
        /// The delay before the next attempt.
        delay: Duration,
    },
    /// The outage has reached `escalate_after` failures: its one ERROR.
    KeepsFailing {
        /// Failures in this outage so far.
        streak: u32,
        /// [`Failure::reason`].
        reason: &'static str,
        /// [`Failure::message`].
        error: String,
    },
    /// Credentials rejected: trying once more at once, asking the provider again.
    RetryingCredentials {
        /// Failures in this outage so far.
        streak: u32,
        /// [`Failure::reason`].
        reason: &'static str,
        /// [`Failure::message`].
        error: String,
    },
    /// Credentials rejected again: the client stops.
    CredentialsRejectedAgain {
        /// [`Failure::reason`].
        reason: &'static str,
        /// [`Failure::message`].
        error: String,
        /// ERROR, unless the outage already had its ERROR.
        severity: Severity,
    },
    /// Retrying cannot help (configuration): the client stops.
    Misconfigured {
        /// [`Failure::reason`].
        reason: &'static str,
        /// [`Failure::message`].
        error: String,
        /// ERROR, unless the outage already had its ERROR.
        severity: Severity,
    },
    /// The server ended the session; not retried.
    ServerDisconnected,
    /// No more attempts (`max_attempts`): the client stops.
    GaveUp {
        /// Failed attempts in this outage, this one included (0: a lost connection, with
        /// reconnection off).
        attempts: u32,
        /// [`Failure::reason`].
        reason: &'static str,
        /// [`Failure::message`].
        error: String,
        /// ERROR, unless the outage already had its ERROR.
        severity: Severity,
    },
    /// A connection has held for the stable period after an outage.
    Recovered {
        /// From the first failure (or the lost connection) to now.
        outage: Duration,
        /// Failed attempts in the outage.
        attempts: u32,
        /// Whether the outage had its ERROR.
        escalated: bool,
    },
}

impl Record {
    /// The level to log it at.
    pub fn severity(&self) -> Severity {
        match self {
            Record::ConnectionLost { .. }
            | Record::AttemptFailed { .. }
            | Record::RetryingCredentials { .. } => Severity::Warn,
            Record::KeepsFailing { .. } => Severity::Error,
            Record::CredentialsRejectedAgain { severity, .. }
            | Record::Misconfigured { severity, .. }
            | Record::GaveUp { severity, .. } => *severity,
            Record::ServerDisconnected | Record::Recovered { .. } => Severity::Info,
        }
    }
}

/// The current connection, from the namespace's acceptance until it is lost.
#[derive(Debug, Clone, Copy)]
struct Connection {
    /// When it will have held for the stable period; `None` if that is beyond any clock.
    stable_at: Option<Instant>,
    stable: bool,
}

/// The reconnect state of one client.
#[derive(Debug, Clone)]
pub struct Reconnect {
    settings: Settings,
    escalation: Escalation,
    /// Failures since the last stable connection: the backoff exponent.
    failures: u32,
    /// Credentials rejected since the last connection: the second one is final.
    rejections: u32,
    ever_connected: bool,
    connection: Option<Connection>,
}

impl Reconnect {
    /// A client that has not tried yet.
    pub fn new(settings: Settings) -> Self {
        Reconnect {
            escalation: Escalation::new(settings.escalate_after),
            settings,
            failures: 0,
            rejections: 0,
            ever_connected: false,
            connection: None,
        }
    }

    /// The status and attempt number while trying: `connecting` until a connection first
    /// succeeded, `reconnecting` after; the attempt counts failures in this outage, plus one.
    pub fn trying(&self) -> (Status, u32) {
        let status = if self.ever_connected {
            Status::Reconnecting
        } else {
            Status::Connecting
        };
        (status, self.escalation.streak().saturating_add(1))
    }

    /// The namespace accepted the connection.
    pub fn on_connected(&mut self, now: Instant) {
        self.ever_connected = true;
        self.rejections = 0;
        self.connection = Some(Connection {
            stable_at: now.checked_add(self.settings.stable_after),
            stable: false,
        });
    }

    /// When [`Reconnect::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.connection
            .filter(|c| !c.stable)
            .and_then(|c| c.stable_at)
    }

    /// Time has passed: the connection may now count as stable, which ends the outage (the
    /// streak resets) and, if there was one, makes its INFO record.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Record> {
        let connection = self.connection.as_mut()?;
        let stable_at = connection.stable_at.filter(|at| *at <= now)?;
        if connection.stable {
            return None;
        }
        connection.stable = true;
        self.failures = 0;
        // The outage ended at the deadline, however late the driver looked.
        let report = self.escalation.on_stable(stable_at)?;
        Some(Record::Recovered {
            outage: report.outage,
            attempts: report.attempts,
            escalated: report.escalated,
        })
    }

    /// Whether the current connection has held for the stable period.
    pub fn is_stable(&self) -> bool {
        self.connection.is_some_and(|c| c.stable)
    }

    /// An attempt failed or the connection was lost. `sample` is uniform in [0, 1].
    pub fn on_failure(
        &mut self,
        failure: Failure,
        now: Instant,
        sample: f64,
    ) -> (Decision, Vec<Record>) {
        // A connection that reached its stable deadline is stable, whether or not the
        // driver's timer fired in time (it may have been busy with a slow reader).
        let recovered = self.handle_timeout(now);
        let connection = self.connection.take();
        let stable = connection.is_some_and(|c| c.stable);
        let (decision, mut records) =
            self.decide(failure, stable, connection.is_some(), now, sample);
        if let Some(recovered) = recovered {
            records.insert(0, recovered);
        }
        (decision, records)
    }

    fn decide(
        &mut self,
        failure: Failure,
        stable: bool,
        connected: bool,
        now: Instant,
        sample: f64,
    ) -> (Decision, Vec<Record>) {
        let class = match failure.class {
            Class::ServerDisconnect if self.settings.reconnect_on_server_disconnect => {
                Class::Transient { retry_after: None }
            }
            class => class,
        };
        let Failure {
            reason,
            message: error,
            fatal_end,
            ..
        } = failure;
        let backoff = &self.settings.backoff;
        let max = self.settings.max_attempts;
        match class {
            Class::Transient { .. } if connected && max == Some(0) => {
                // Reconnection off: a lost connection ends the client, held or not.
                if stable {
                    self.escalation.on_drop(now);
                }
                let severity = self.final_severity(now);
                let record = Record::GaveUp {
                    attempts: 0,
                    reason,
                    error,
                    severity,
                };
                let stop = Decision::Stop(Status::Disconnected, EndReason::ConnectionLost);
                (stop, vec![record])
            }
            // This failure is the outage's `streak + 1`-th failed attempt: the `m`-th is
            // the last.
            Class::Transient { .. }
                if !stable
                    && max.is_some_and(|m| self.escalation.streak().saturating_add(1) >= m) =>
            {
                let severity = self.final_severity(now);
                let record = Record::GaveUp {
                    attempts: self.escalation.streak(),
                    reason,
                    error,
                    severity,
                };
                (
                    Decision::Stop(Status::Failed, EndReason::AttemptsExhausted),
                    vec![record],
                )
            }
            Class::Transient { retry_after } if stable => {
                // A connection that had held: a new outage starts, no attempt failed yet.
                self.escalation.on_drop(now);
                self.failures = 1;
                let delay = backoff.delay_with_retry_after(1, sample, retry_after);
                let record = Record::ConnectionLost {
                    reason,
                    error,
                    delay,
                };
                (Decision::Retry(delay), vec![record])
            }
            Class::Transient { retry_after } => {
                self.failures = self.failures.saturating_add(1);
                let report = self.escalation.on_failure(now);
                let delay = backoff.delay_with_retry_after(self.failures, sample, retry_after);
                let mut records = vec![Record::AttemptFailed {
                    streak: report.streak,
                    connection_lost: connected,
                    reason,
                    error: error.clone(),
                    delay,
                }];
                if report.level == Level::Error {
                    records.push(Record::KeepsFailing {
                        streak: report.streak,
                        reason,
                        error,
                    });
                }
                (Decision::Retry(delay), records)
            }
            Class::Unauthorized if self.rejections == 0 => {
                self.rejections = 1;
                let report = self.escalation.on_failure(now);
                let mut records = vec![Record::RetryingCredentials {
                    streak: report.streak,
                    reason,
                    error: error.clone(),
                }];
                if report.level == Level::Error {
                    records.push(Record::KeepsFailing {
                        streak: report.streak,
                        reason,
                        error,
                    });
                }
                (Decision::Retry(Duration::ZERO), records)
            }
            Class::Unauthorized => {
                let severity = self.final_severity(now);
                let record = Record::CredentialsRejectedAgain {
                    reason,
                    error,
                    severity,
                };
                let stop = Decision::Stop(Status::Failed, EndReason::Unauthorized);
                (stop, vec![record])
            }
            Class::Fatal => {
                let severity = self.final_severity(now);
                let record = Record::Misconfigured {
                    reason,
                    error,
                    severity,
                };
                (Decision::Stop(Status::Failed, fatal_end), vec![record])
            }
            Class::ServerDisconnect => {
                let stop = Decision::Stop(Status::Disconnected, EndReason::ServerDisconnect);
                (stop, vec![Record::ServerDisconnected])
            }
        }
    }

    /// The level of a failure that ends the client: the outage's ERROR, unless it had one.
    fn final_severity(&mut self, now: Instant) -> Severity {
        match self.escalation.on_final(now) {
            Level::Error => Severity::Error,
            Level::Warn => Severity::Warn,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn settings(escalate_after: u32) -> Settings {
        Settings {
            backoff: Backoff::default(),
            escalate_after,
            stable_after: S(5),
            reconnect_on_server_disconnect: false,
            max_attempts: None,
        }
    }

    fn failure(class: Class) -> Failure {
        Failure {
            class,
            reason: "test",
            message: "it failed".into(),
            fatal_end: EndReason::Configuration,
        }
    }

    const TRANSIENT: Class = Class::Transient { retry_after: None };

    fn errors(records: &[Record]) -> usize {
        records
            .iter()
            .filter(|r| r.severity() == Severity::Error)
            .count()
    }

    #[test]
    fn a_rejection_that_reaches_the_threshold_is_the_outages_error() {
        let t0 = Instant::now();
        let mut r = Reconnect::new(settings(3));
        let mut records = Vec::new();
        for _ in 0..2 {
            records.extend(r.on_failure(failure(TRANSIENT), t0, 0.5).1);
        }
        assert_eq!(errors(&records), 0);
        let (decision, rejected) = r.on_failure(failure(Class::Unauthorized), t0, 0.5);
        assert_eq!(decision, Decision::Retry(Duration::ZERO));
        assert_eq!(
            errors(&rejected),
            1,
            "the 3rd failure escalates: {rejected:?}"
        );
        let (decision, last) = r.on_failure(failure(Class::Unauthorized), t0, 0.5);
        assert_eq!(
            decision,
            Decision::Stop(Status::Failed, EndReason::Unauthorized)
        );
        assert_eq!(errors(&last), 0, "the outage had its ERROR: {last:?}");
    }

    #[test]
    fn an_end_after_an_escalation_is_not_a_second_error() {
        let t0 = Instant::now();
        let mut r = Reconnect::new(settings(2));
        let mut records = Vec::new();
        for _ in 0..4 {
            records.extend(r.on_failure(failure(TRANSIENT), t0, 0.5).1);
        }
        let (decision, end) = r.on_failure(failure(Class::Fatal), t0, 0.5);
        assert!(matches!(decision, Decision::Stop(Status::Failed, _)));
        records.extend(end);
        assert_eq!(errors(&records), 1, "{records:?}");
    }

    #[test]
    fn an_end_before_any_escalation_is_the_outages_error() {
        let t0 = Instant::now();
        let mut r = Reconnect::new(settings(5));
        let (_, records) = r.on_failure(failure(Class::Fatal), t0, 0.5);
        assert_eq!(errors(&records), 1);
        let mut r = Reconnect::new(settings(5));
        r.on_failure(failure(Class::Unauthorized), t0, 0.5);
        let (_, records) = r.on_failure(failure(Class::Unauthorized), t0, 0.5);
        assert_eq!(errors(&records), 1);
    }

    #[test]
    fn the_streak_resets_only_after_the_stable_period() {
        let t0 = Instant::now();
        let mut r = Reconnect::new(settings(10));
        for _ in 0..3 {
            r.on_failure(failure(TRANSIENT), t0, 0.5);
        }
        r.on_connected(t0);
        assert_eq!(r.poll_timeout(), Some(t0 + S(5)));
        assert_eq!(r.handle_timeout(t0 + S(4)), None);
        // Lost before it was stable: the streak goes on.
        let (_, records) = r.on_failure(failure(TRANSIENT), t0 + S(4), 0.5);
        assert!(
            matches!(records[0], Record::AttemptFailed { streak: 4, .. }),
            "{records:?}"
        );
        assert_eq!(r.trying(), (Status::Reconnecting, 5));
        r.on_connected(t0 + S(10));
        let recovered = r.handle_timeout(t0 + S(15));
        assert_eq!(
            recovered,
            Some(Record::Recovered {
                outage: S(15),
                attempts: 4,
                escalated: false
            })
        );
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.trying(), (Status::Reconnecting, 1));
        let (decision, records) = r.on_failure(failure(TRANSIENT), t0 + S(20), 0.5);
        assert!(matches!(records[0], Record::ConnectionLost { .. }));
        assert_eq!(decision, Decision::Retry(Duration::from_millis(500)));
    }

    #[test]
    fn a_connection_gives_back_the_one_credential_refresh() {
        let t0 = Instant::now();
        let mut r = Reconnect::new(settings(5));
        r.on_failure(failure(Class::Unauthorized), t0, 0.5);
        r.on_connected(t0);
        let (decision, _) = r.on_failure(failure(Class::Unauthorized), t0, 0.5);
        assert_eq!(decision, Decision::Retry(Duration::ZERO));
    }

    #[test]
    fn a_connection_past_its_stable_deadline_is_stable_even_if_the_timer_was_late() {
        let t0 = Instant::now();
        let mut r = Reconnect::new(settings(5));
        r.on_failure(failure(TRANSIENT), t0, 0.5);
        r.on_connected(t0 + S(1));
        // No handle_timeout: the driver was busy. Lost a minute later.
        let (_, records) = r.on_failure(failure(TRANSIENT), t0 + S(61), 0.5);
        assert!(
            matches!(
                records[..],
                [
                    Record::Recovered { attempts: 1, .. },
                    Record::ConnectionLost { .. }
                ]
            ),
            "{records:?}"
        );
    }

    #[test]
    fn the_client_gives_up_after_its_attempts_with_the_outages_error() {
        let t0 = Instant::now();
        let mut r = Reconnect::new(Settings {
            max_attempts: Some(3),
            ..settings(5)
        });
        for _ in 0..2 {
            assert!(matches!(
                r.on_failure(failure(TRANSIENT), t0, 0.5).0,
                Decision::Retry(_)
            ));
        }
        let (decision, records) = r.on_failure(failure(TRANSIENT), t0, 0.5);
        assert_eq!(
            decision,
            Decision::Stop(Status::Failed, EndReason::AttemptsExhausted)
        );
        assert!(
            matches!(
                records[..],
                [Record::GaveUp {
                    attempts: 3,
                    severity: Severity::Error,
                    ..
                }]
            ),
            "{records:?}"
        );

        // Reconnection off: a lost connection that had held ends the client.
        let mut r = Reconnect::new(Settings {
            max_attempts: Some(0),
            stable_after: Duration::ZERO,
            ..settings(5)
        });
        r.on_connected(t0);
        let (decision, records) = r.on_failure(failure(TRANSIENT), t0 + S(1), 0.5);
        assert_eq!(
            decision,
            Decision::Stop(Status::Disconnected, EndReason::ConnectionLost)
        );
        assert!(
            matches!(records[..], [Record::GaveUp { attempts: 0, .. }]),
            "{records:?}"
        );
    }

    #[test]
    fn durations_beyond_any_clock_do_not_panic() {
        let t0 = Instant::now();
        let mut r = Reconnect::new(Settings {
            backoff: Backoff {
                initial: Duration::MAX,
                max: Duration::MAX,
                retry_after_max: Duration::MAX,
            },
            escalate_after: 1,
            stable_after: Duration::MAX,
            reconnect_on_server_disconnect: true,
            max_attempts: None,
        });
        let retry_after = Class::Transient {
            retry_after: Some(Duration::MAX),
        };
        let (decision, _) = r.on_failure(failure(retry_after), t0, 1.0);
        assert_eq!(decision, Decision::Retry(Duration::MAX));
        r.on_connected(t0);
        assert_eq!(r.poll_timeout(), None, "never stable, and no panic");
        assert_eq!(r.handle_timeout(t0 + S(1_000_000)), None);
        let (decision, _) = r.on_failure(failure(Class::ServerDisconnect), t0, 0.0);
        assert!(matches!(decision, Decision::Retry(_)));
    }
}
