//! A fleet of clients losing the link at the same moment, in virtual time.
//!
//! Every client's connection has held for the stable period when it drops at t = 0; the
//! gateway answers 503 (with `Retry-After` on every answer, or without) until `outage` has
//! passed, then lets everyone in. The simulation replays each client's reconnect schedule
//! with its own random samples and reports how bunched the attempts are: what a backend
//! sees when it comes back. relink's clients are the real reconnect core
//! ([`relink::core::reconnect`]), the code the supervisor runs: delays, the streak, the one
//! ERROR per outage.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use relink::EndReason;
use relink::core::reconnect::{Decision, Failure, Reconnect, Settings, Severity};
use relink::policy::backoff::Backoff;
use relink::policy::classify::Class;
use std::fmt::Write;
use std::time::{Duration, Instant};

/// A reconnect schedule to compare.
#[derive(Debug, Clone, Copy)]
pub enum Schedule {
    /// relink's reconnect core with these settings.
    Relink(Settings),
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
        Schedule::relink_with_initial(Backoff::default().initial)
    }

    /// relink's defaults with another `backoff_initial`.
    pub fn relink_with_initial(initial: Duration) -> Self {
        Schedule::Relink(Settings {
            backoff: Backoff {
                initial,
                ..Backoff::default()
            },
            escalate_after: 5,
            stable_after: Duration::from_secs(5),
            reconnect_on_server_disconnect: false,
            max_attempts: None,
        })
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

    /// The longest delay between two attempts.
    pub fn cap(&self) -> Duration {
        match *self {
            Schedule::Relink(settings) => settings.backoff.max,
            Schedule::Doubling { max, .. } | Schedule::JsClient { max, .. } => max,
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
    /// `Retry-After` on every 503, if any (only relink honours it).
    pub retry_after: Option<Duration>,
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
            retry_after: None,
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
    /// Time from recovery until half of the fleet is back.
    pub median_back_after_recovery: Duration,
    /// Time from recovery until 99 % of the fleet is back.
    pub p99_back_after_recovery: Duration,
}

const WINDOW: Duration = Duration::from_millis(250);
const EARLY: Duration = Duration::from_secs(3);

/// One client's schedule: the delay before each attempt, and the ERROR records a failure
/// makes.
enum Client {
    Relink { core: Reconnect, at: Instant },
    Formula { schedule: Schedule, n: u32 },
}

impl Client {
    /// A client whose connection has held for the stable period, just lost at `epoch`:
    /// the delay before its first attempt, and its ERROR records so far.
    fn dropped(schedule: Schedule, epoch: Instant, rng: &mut StdRng) -> (Client, Duration, u64) {
        match schedule {
            Schedule::Relink(settings) => {
                let mut core = Reconnect::new(settings);
                let connected = epoch.checked_sub(settings.stable_after).unwrap_or(epoch);
                core.on_connected(connected);
                core.handle_timeout(epoch);
                let mut client = Client::Relink { core, at: epoch };
                let (delay, errors) = client.fail(Class::Transient { retry_after: None }, rng);
                (client, delay, errors)
            }
            _ => {
                let mut client = Client::Formula { schedule, n: 0 };
                let (delay, _) = client.fail(Class::Transient { retry_after: None }, rng);
                (client, delay, 0)
            }
        }
    }

    /// The connection or an attempt failed now: the delay before the next attempt and the
    /// ERROR records it made.
    fn fail(&mut self, class: Class, rng: &mut StdRng) -> (Duration, u64) {
        match self {
            Client::Relink { core, at } => {
                let failure = Failure {
                    class,
                    reason: "http_503",
                    message: "HTTP 503".into(),
                    fatal_end: EndReason::Configuration,
                };
                let (decision, records) = core.on_failure(failure, *at, rng.random());
                let errors = records
                    .iter()
                    .filter(|r| r.severity() == Severity::Error)
                    .count() as u64;
                let Decision::Retry(delay) = decision else {
                    unreachable!("a 503 is always retried")
                };
                *at += delay;
                (delay, errors)
            }
            Client::Formula { schedule, n } => {
                *n += 1;
                (formula_delay(*schedule, *n, rng), 1)
            }
        }
    }
}

/// The delay before retry number `n` (1-based) for the schedules relink is compared with.
fn formula_delay(schedule: Schedule, n: u32, rng: &mut StdRng) -> Duration {
    match schedule {
        Schedule::Relink(_) => unreachable!("relink's delays come from its core"),
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

/// Runs the scenario for one schedule.
pub fn simulate(schedule: Schedule, fleet: Fleet) -> FleetReport {
    let schedule = match schedule {
        Schedule::Relink(settings) => Schedule::Relink(Settings {
            escalate_after: fleet.escalate_after,
            ..settings
        }),
        other => other,
    };
    let mut rng = StdRng::seed_from_u64(fleet.seed);
    let epoch = Instant::now();
    let mut reconnects = Vec::with_capacity(fleet.clients);
    let mut early_attempts = Vec::new();
    let mut attempts_total = 0u64;
    let mut errors_total = 0u64;
    let answer = Class::Transient {
        retry_after: fleet.retry_after,
    };
    for _ in 0..fleet.clients {
        let (mut client, mut t, errors) = Client::dropped(schedule, epoch, &mut rng);
        errors_total += errors;
        loop {
            attempts_total += 1;
            if t < EARLY {
                early_attempts.push(t);
            }
            if t >= fleet.outage {
                reconnects.push(t - fleet.outage);
                break;
            }
            let (delay, errors) = client.fail(answer, &mut rng);
            errors_total += errors;
            t += delay;
        }
    }
    reconnects.sort();
    early_attempts.sort();
    let clients = fleet.clients as f64;
    let quantile = |q: f64| {
        let index = (clients * q).ceil() as usize;
        reconnects
            .get(index.saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    FleetReport {
        attempts_per_client: attempts_total as f64 / clients,
        peak_reconnect_share: peak_window(&reconnects) as f64 / clients,
        peak_early_attempt_share: peak_window(&early_attempts) as f64 / clients,
        errors_per_client: errors_total as f64 / clients,
        median_back_after_recovery: quantile(0.5),
        p99_back_after_recovery: quantile(0.99),
    }
}

/// The targets: every 250 ms window at recovery holds at most 5 % of the fleet, at most
/// one ERROR per client, and 99 % are back within the cap plus the `Retry-After` floor.
pub fn meets_targets(schedule: Schedule, fleet: Fleet, report: &FleetReport) -> bool {
    let bound = schedule
        .cap()
        .saturating_add(fleet.retry_after.unwrap_or_default());
    report.peak_reconnect_share <= 0.05
        && report.errors_per_client <= 1.0
        && report.p99_back_after_recovery <= bound
}

/// The outage table (plain 503, then `Retry-After: 2` on every answer), with a status
/// column, for BENCHMARKS.md.
pub fn outage_table() -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| 6. fleet outage: 1000 clients, 30 s of 503 | attempts/client | peak 250 ms reconnect share (target ≤ 5%) | peak 250 ms attempt share, first 3 s | ERROR records/client (target ≤ 1) | 99% back after recovery (target ≤ cap + Retry-After) | status |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for retry_after in [None, Some(Duration::from_secs(2))] {
        let fleet = Fleet {
            retry_after,
            ..Fleet::default()
        };
        for schedule in [
            Schedule::relink(),
            Schedule::doubling(),
            Schedule::js_client(),
        ] {
            let r = simulate(schedule, fleet);
            let answers = match retry_after {
                None => "503".to_owned(),
                Some(ra) => format!("503 + Retry-After: {}", ra.as_secs()),
            };
            let _ = writeln!(
                out,
                "| {} ({answers}) | {:.1} | {:.1}% | {:.1}% | {:.1} | {:.2} s (bound {} s) | {} |",
                schedule.name(),
                r.attempts_per_client,
                r.peak_reconnect_share * 100.0,
                r.peak_early_attempt_share * 100.0,
                r.errors_per_client,
                r.p99_back_after_recovery.as_secs_f64(),
                schedule
                    .cap()
                    .saturating_add(retry_after.unwrap_or_default())
                    .as_secs(),
                if meets_targets(schedule, fleet, &r) {
                    "met"
                } else {
                    "missed"
                },
            );
        }
    }
    out
}

/// How `backoff_initial` trades a quick return after a blip (the server back before the
/// first attempt) against the burst a mass drop sends to it, on the real core.
pub fn blip_table() -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| `backoff_initial` | median reconnect after a blip | 99% back | peak 250 ms share of the fleet |"
    );
    let _ = writeln!(out, "|---|---|---|---|");
    let blip = Fleet {
        outage: Duration::ZERO,
        ..Fleet::default()
    };
    for secs in [1, 3, 10] {
        let r = simulate(
            Schedule::relink_with_initial(Duration::from_secs(secs)),
            blip,
        );
        let _ = writeln!(
            out,
            "| {secs} s | {:.2} s | {:.2} s | {:.1}% |",
            r.median_back_after_recovery.as_secs_f64(),
            r.p99_back_after_recovery.as_secs_f64(),
            r.peak_reconnect_share * 100.0
        );
    }
    out
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

    fn with_retry_after(secs: u64) -> Fleet {
        Fleet {
            retry_after: Some(Duration::from_secs(secs)),
            ..Fleet::default()
        }
    }

    #[test]
    fn relink_spreads_the_fleet_and_raises_one_error_each() {
        for fleet in [Fleet::default(), with_retry_after(2)] {
            let report = simulate(Schedule::relink(), fleet);
            assert!(
                meets_targets(Schedule::relink(), fleet, &report),
                "{fleet:?}: {report:?}"
            );
        }
        // Without Retry-After every client fails at least 5 times in 30 s: one ERROR each.
        // With it, the longer delays leave some below the threshold: none for those.
        let plain = simulate(Schedule::relink(), Fleet::default());
        assert!(
            (plain.errors_per_client - 1.0).abs() < f64::EPSILON,
            "{plain:?}"
        );
    }

    #[test]
    fn the_old_schedule_comes_back_all_at_once() {
        let report = simulate(Schedule::doubling(), Fleet::default());
        assert!(
            (report.peak_reconnect_share - 1.0).abs() < f64::EPSILON,
            "{report:?}"
        );
        assert!(!meets_targets(
            Schedule::doubling(),
            Fleet::default(),
            &report
        ));
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
    fn a_later_first_attempt_trades_a_slower_return_for_a_smaller_burst() {
        let blip = Fleet {
            outage: Duration::ZERO,
            ..Fleet::default()
        };
        let quick = simulate(Schedule::relink_with_initial(Duration::from_secs(1)), blip);
        let slow = simulate(Schedule::relink_with_initial(Duration::from_secs(10)), blip);
        assert!(slow.median_back_after_recovery > quick.median_back_after_recovery);
        assert!(slow.peak_reconnect_share < quick.peak_reconnect_share);
    }

    #[test]
    fn peak_window_counts_a_half_open_window() {
        let ms = Duration::from_millis;
        assert_eq!(peak_window(&[]), 0);
        assert_eq!(peak_window(&[ms(0), ms(100), ms(249), ms(250), ms(600)]), 3);
    }
}
