//! One ERROR per outage: WARN for each failed attempt, ERROR once when the streak reaches the
//! threshold, INFO once when the connection is back and stable.

use std::time::{Duration, Instant};

/// How loud a failed attempt should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// An attempt failed; more will follow.
    Warn,
    /// This outage has now lasted `threshold` attempts: a person should look. Once per outage.
    Error,
}

/// What to log for one failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureReport {
    /// The level.
    pub level: Level,
    /// Consecutive failures in this outage, this one included.
    pub streak: u32,
}

/// What to log when a connection has held for the stable period after an outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryReport {
    /// From the first failure to the connection that held.
    pub outage: Duration,
    /// Failed attempts during the outage.
    pub attempts: u32,
    /// Whether the outage had been escalated to ERROR.
    pub escalated: bool,
}

/// The per-client outage latch.
#[derive(Debug, Clone)]
pub struct Escalation {
    threshold: u32,
    streak: u32,
    escalated: bool,
    outage_started: Option<Instant>,
}

impl Escalation {
    /// A latch that escalates on the `threshold`-th consecutive failure (at least 1).
    pub fn new(threshold: u32) -> Self {
        Escalation {
            threshold: threshold.max(1),
            streak: 0,
            escalated: false,
            outage_started: None,
        }
    }

    /// Records a failed attempt (or a connection that dropped before it was stable).
    pub fn on_failure(&mut self, now: Instant) -> FailureReport {
        self.outage_started.get_or_insert(now);
        self.streak = self.streak.saturating_add(1);
        let level = if !self.escalated && self.streak >= self.threshold {
            // A latch, not `>=` on every attempt: later failures of this outage stay at WARN.
            self.escalated = true;
            Level::Error
        } else {
            Level::Warn
        };
        FailureReport {
            level,
            streak: self.streak,
        }
    }

    /// A failure that ends the client: the outage's ERROR unless it has had one (which this
    /// then counts as). An outage never gets two, whatever ended it.
    pub fn on_final(&mut self, now: Instant) -> Level {
        self.outage_started.get_or_insert(now);
        self.streak = self.streak.saturating_add(1);
        if self.escalated {
            Level::Warn
        } else {
            self.escalated = true;
            Level::Error
        }
    }

    /// Marks the start of an outage that began with a drop rather than a failed attempt.
    pub fn on_drop(&mut self, now: Instant) {
        self.outage_started.get_or_insert(now);
    }

    /// Records that a connection has held for the stable period; clears the latch.
    /// Returns a report when there was an outage to recover from.
    pub fn on_stable(&mut self, now: Instant) -> Option<RecoveryReport> {
        let started = self.outage_started.take()?;
        let report = RecoveryReport {
            outage: now.saturating_duration_since(started),
            attempts: self.streak,
            escalated: self.escalated,
        };
        self.streak = 0;
        self.escalated = false;
        Some(report)
    }

    /// Consecutive failures so far.
    pub fn streak(&self) -> u32 {
        self.streak
    }

    /// Whether this outage has been escalated.
    pub fn escalated(&self) -> bool {
        self.escalated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels(e: &mut Escalation, n: u32, now: Instant) -> Vec<Level> {
        (0..n).map(|_| e.on_failure(now).level).collect()
    }

    #[test]
    fn exactly_one_error_per_outage() {
        let t0 = Instant::now();
        let mut e = Escalation::new(5);
        let got = levels(&mut e, 30, t0);
        assert_eq!(got.iter().filter(|l| **l == Level::Error).count(), 1);
        assert_eq!(got[4], Level::Error, "the 5th failure escalates");
        assert!(got[..4].iter().all(|l| *l == Level::Warn));
        assert_eq!(e.streak(), 30);
    }

    #[test]
    fn a_blip_below_the_threshold_never_escalates() {
        let t0 = Instant::now();
        let mut e = Escalation::new(5);
        assert!(levels(&mut e, 3, t0).iter().all(|l| *l == Level::Warn));
        let report = e.on_stable(t0 + Duration::from_secs(9)).expect("outage");
        assert_eq!(
            report,
            RecoveryReport {
                outage: Duration::from_secs(9),
                attempts: 3,
                escalated: false
            }
        );
    }

    #[test]
    fn recovery_clears_the_latch_for_the_next_outage() {
        let t0 = Instant::now();
        let mut e = Escalation::new(2);
        assert_eq!(
            levels(&mut e, 3, t0),
            vec![Level::Warn, Level::Error, Level::Warn]
        );
        assert!(e.on_stable(t0).expect("outage").escalated);
        assert_eq!(e.on_stable(t0), None, "no outage, no report");
        assert_eq!(levels(&mut e, 2, t0), vec![Level::Warn, Level::Error]);
    }

    #[test]
    fn a_drop_starts_the_outage_clock() {
        let t0 = Instant::now();
        let mut e = Escalation::new(5);
        e.on_drop(t0);
        e.on_failure(t0 + Duration::from_secs(1));
        let report = e.on_stable(t0 + Duration::from_secs(4)).expect("outage");
        assert_eq!(report.outage, Duration::from_secs(4));
        assert_eq!(report.attempts, 1);
    }

    #[test]
    fn threshold_zero_means_one() {
        let mut e = Escalation::new(0);
        assert_eq!(e.on_failure(Instant::now()).level, Level::Error);
    }
}
