//! A fleet of clients losing the link at the same moment, in virtual time.
//!
//! Every client drops at t = 0, the gateway answers 503 until `outage` has passed, then lets
//! everyone in. The simulation replays each client's reconnect schedule with its own random
//! samples and reports how bunched the attempts are: what a backend sees when it comes back.
//! relink's schedule comes from [`relink::policy::backoff`] and its logging from
//! [`relink::policy::escalation`], the same code the supervisor runs.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use relink::policy::backoff::Backoff;
use relink::policy::escalation::{Escalation, Level};
use std::time::{Duration, Instant};

/// A reconnect schedule to compare.
#[derive(Debug, Clone, Copy)]
pub enum Schedule {
    /// relink: full jitter after the cap.
    Relink(Backoff),
    /// Doubling without jitter (the schedule relink replaces): 1 s, 2 s, ... up to `max`.
    Doubling {
        /// First delay.
        initial: Duration,
        /// Cap.
        max: Duration,
    },
    /// socket.io-client 4.8's formula: `min * 2^n`, ±`randomization`, then capped.
    JsClient {
        /// `reconnectionDelay`.
        min: Duration,
        /// `reconnectionDelayMax`.
        max: Duration,
        /// `randomizationFactor`.
        randomization: f64,
    },
}

impl Schedule {
    /// relink's defaults.
    pub fn relink() -> Self {
        Schedule::Relink(Backoff::default())
    }

    /// The 1 s → 30 s doubling of the incident.
    pub fn doubling() -> Self {
        Schedule::Doubling {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }

    /// The reference JavaScript client's defaults.
    pub fn js_client() -> Self {
        Schedule::JsClient {
            min: Duration::from_secs(1),
            max: Duration::from_secs(5),
            randomization: 0.5,
        }
    }

    /// A short name for tables.
    pub fn name(&self) -> &'static str {
        match self {
            Schedule::Relink(_) => "relink (full jitter after cap)",
            Schedule::Doubling { .. } => "doubling 1s->30s, no jitter",
            Schedule::JsClient { .. } => "socket.io-client formula",
        }
    }

    /// The delay before retry number `n` (1-based) after the drop.
    fn delay(&self, n: u32, rng: &mut StdRng) -> Duration {
        match *self {
            Schedule::Relink(backoff) => backoff.delay(n, rng.random::<f64>()),
            Schedule::Doubling { initial, max } => {
                let exp = n.saturating_sub(1).min(31);
                initial.checked_mul(1 << exp).map_or(max, |d| d.min(max))
            }
            Schedule::JsClient {
                min,
                max,
                randomization,
            } => {
                // Backoff.prototype.duration from engine.io-client: jitter before the cap.
                let attempts = n.saturating_sub(1) as i32;
                let mut ms = min.as_millis() as f64 * 2f64.powi(attempts);
                let rand: f64 = rng.random();
                let deviation = (rand * randomization * ms).floor();
                ms = if ((rand * 10.0).floor() as i64) & 1 == 0 {
                    ms - deviation
                } else {
                    ms + deviation
                };
                Duration::from_millis(ms.min(max.as_millis() as f64).max(0.0) as u64)
            }
        }
    }
}

/// The scenario.
#[derive(Debug, Clone, Copy)]
pub struct Fleet {
    /// Clients that drop together.
    pub clients: usize,
    /// How long the gateway answers 503.
    pub outage: Duration,
    /// Failed attempts before the one ERROR record (relink's default is 5).
    pub escalate_after: u32,
    /// Seed for the clients' random samples.
    pub seed: u64,
}

impl Default for Fleet {
    fn default() -> Self {
        Fleet {
            clients: 1000,
            outage: Duration::from_secs(30),
            escalate_after: 5,
            seed: 7,
        }
    }
}

/// What the backend and the error tracker see.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetReport {
    /// Mean connection attempts per client, the successful one included.
    pub attempts_per_client: f64,
    /// Largest share of the fleet reconnecting within any 250 ms window after recovery.
    pub peak_reconnect_share: f64,
    /// Largest share of the fleet attempting within any 250 ms window in the first 3 s.
    pub peak_early_attempt_share: f64,
    /// ERROR records per client (relink's latch; the other schedules log every failure at
    /// ERROR in the incident, so theirs is their failed attempts).
    pub errors_per_client: f64,
    /// Time from recovery until 99 % of the fleet is back.
    pub p99_back_after_recovery: Duration,
}

const WINDOW: Duration = Duration::from_millis(250);

/// Runs the scenario for one schedule.
pub fn simulate(schedule: Schedule, fleet: Fleet) -> FleetReport {
    let mut rng = StdRng::seed_from_u64(fleet.seed);
    let epoch = Instant::now();
    let mut reconnects = Vec::with_capacity(fleet.clients);
    let mut early_attempts = Vec::new();
    let mut attempts_total = 0u64;
    let mut errors_total = 0u64;
    for _ in 0..fleet.clients {
        let mut escalation = Escalation::new(fleet.escalate_after);
        escalation.on_drop(epoch);
        let mut t = Duration::ZERO;
        let mut n = 1;
        loop {
            t += schedule.delay(n, &mut rng);
            attempts_total += 1;
            if t < Duration::from_secs(3) {
                early_attempts.push(t);
            }
            if t >= fleet.outage {
                reconnects.push(t - fleet.outage);
                break;
            }
            let report = escalation.on_failure(epoch + t);
            errors_total += match schedule {
                Schedule::Relink(_) => u64::from(report.level == Level::Error),
                _ => 1,
            };
            n += 1;
        }
    }
    reconnects.sort();
    early_attempts.sort();
    let clients = fleet.clients as f64;
    let p99_index = ((fleet.clients as f64) * 0.99).ceil() as usize;
    FleetReport {
        attempts_per_client: attempts_total as f64 / clients,
        peak_reconnect_share: peak_window(&reconnects) as f64 / clients,
        peak_early_attempt_share: peak_window(&early_attempts) as f64 / clients,
        errors_per_client: errors_total as f64 / clients,
        p99_back_after_recovery: reconnects
            .get(p99_index.saturating_sub(1))
            .copied()
            .unwrap_or_default(),
    }
}

/// The most sorted instants inside any half-open window of [`WINDOW`].
fn peak_window(sorted: &[Duration]) -> usize {
    let mut best = 0;
    let mut start = 0;
    for end in 0..sorted.len() {
        while sorted[end] - sorted[start] >= WINDOW {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relink_spreads_the_fleet_and_raises_one_error_each() {
        let report = simulate(Schedule::relink(), Fleet::default());
        assert!(report.peak_reconnect_share <= 0.05, "{report:?}");
        assert!(
            report.p99_back_after_recovery <= Duration::from_secs(30),
            "{report:?}"
        );
        assert!(
            (report.errors_per_client - 1.0).abs() < f64::EPSILON,
            "{report:?}"
        );
    }

    #[test]
    fn the_old_schedule_comes_back_all_at_once() {
        let report = simulate(Schedule::doubling(), Fleet::default());
        assert!(
            (report.peak_reconnect_share - 1.0).abs() < f64::EPSILON,
            "{report:?}"
        );
    }

    #[test]
    fn the_js_formula_bunches_more_than_relink() {
        let js = simulate(Schedule::js_client(), Fleet::default());
        let relink = simulate(Schedule::relink(), Fleet::default());
        assert!(
            js.peak_reconnect_share > 2.0 * relink.peak_reconnect_share,
            "{js:?} vs {relink:?}"
        );
    }

    #[test]
    fn peak_window_counts_a_half_open_window() {
        let ms = Duration::from_millis;
        assert_eq!(peak_window(&[]), 0);
        assert_eq!(peak_window(&[ms(0), ms(100), ms(249), ms(250), ms(600)]), 3);
    }
}
