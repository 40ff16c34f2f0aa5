//! A seeded simulation of the reconnect decisions in virtual time.
//!
//! Each seed draws settings (zero and `Duration::MAX` included: anything the builder
//! accepts) and a client's life: attempts that fail for every reason the classifier knows
//! (503 with and without `Retry-After`, rejected credentials, fatal errors, server
//! disconnects), connections that are lost before or after the stable period, in random
//! mixes. A reference model, written from the README's rules rather than from the code,
//! checks every decision and record as it happens.
//!
//! `cargo test` runs 2,000 seeds. `RELINK_SIM_SEEDS=N` runs N; `RELINK_SIM_SEED=S` replays
//! one seed, which a failure prints.

use super::reconnect::{Decision, Failure, Reconnect, Record, Settings, Severity};
use crate::policy::backoff::Backoff;
use crate::policy::classify::Class;
use crate::state::{EndReason, Status};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

/// Steps (attempts and connections) in one seed's life at most.
const STEPS: usize = 60;

fn pick_duration(rng: &mut StdRng, choices: &[Duration]) -> Duration {
    choices[rng.random_range(0..choices.len())]
}

fn settings(rng: &mut StdRng) -> Settings {
    let ms = Duration::from_millis;
    let initial = pick_duration(rng, &[ms(1), ms(100), ms(1000), ms(7000), Duration::MAX]);
    let max = initial.saturating_add(pick_duration(
        rng,
        &[ms(0), ms(500), ms(30_000), Duration::MAX],
    ));
    Settings {
        backoff: Backoff {
            initial,
            max,
            retry_after_max: pick_duration(rng, &[ms(0), ms(2000), ms(300_000), Duration::MAX]),
        },
        escalate_after: [0, 1, 2, 5, 30][rng.random_range(0..5)],
        stable_after: pick_duration(rng, &[ms(0), ms(50), ms(5000), Duration::MAX]),
        reconnect_on_server_disconnect: rng.random_bool(0.5),
        max_attempts: [None, None, Some(0), Some(1), Some(4)][rng.random_range(0..5)],
    }
}

/// What ended an attempt or a connection (a rejection after a connection is a new
/// handshake's, after the link was lost: the session makes a CONNECT_ERROR on an accepted
/// namespace a protocol error, transient).
fn failure(rng: &mut StdRng) -> Failure {
    let ms = Duration::from_millis;
    let (class, reason) = match rng.random_range(0..100) {
        0..55 => (Class::Transient { retry_after: None }, "transport_close"),
        55..75 => (
            Class::Transient {
                retry_after: Some(pick_duration(
                    rng,
                    &[ms(0), ms(2000), ms(120_000), Duration::MAX],
                )),
            },
            "http_503",
        ),
        75..88 => (Class::Unauthorized, "unauthorized"),
        88..92 => (Class::Fatal, "invalid_url"),
        _ => (Class::ServerDisconnect, "server_disconnect"),
    };
    Failure {
        class,
        reason,
        message: format!("{reason} (simulated)"),
        fatal_end: EndReason::Configuration,
    }
}

/// The README's rules, kept independently of the code under test.
#[derive(Debug, Default)]
struct Model {
    /// Failures counted towards the ERROR threshold in this outage.
    streak: u32,
    /// The backoff exponent: failures since the last stable connection.
    failures: u32,
    rejections: u32,
    ever_connected: bool,
    /// When the current outage started (first failure or lost stable connection).
    outage_started: Option<Instant>,
    errors_in_outage: u32,
    stable: bool,
}

impl Model {
    fn threshold(settings: &Settings) -> u32 {
        settings.escalate_after.max(1)
    }

    /// `min(max, initial × 2^(failures − 1))`, the exponent clamped at 31 (README).
    fn ceiling(backoff: &Backoff, failures: u32) -> Duration {
        let mut ceiling = backoff.initial;
        for _ in 1..failures.clamp(1, 32) {
            ceiling = ceiling.saturating_mul(2);
        }
        ceiling.min(backoff.max)
    }

    /// The documented delay: the floor plus the sample's share of the ceiling.
    fn delay(floor: Duration, ceiling: Duration, sample: f64) -> f64 {
        floor.as_secs_f64() + ceiling.as_secs_f64() * sample
    }
}

/// Runs one seed; the first broken rule, with the step it broke at.
fn run(seed: u64) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let settings = settings(&mut rng);
    let mut core = Reconnect::new(settings);
    let mut model = Model::default();
    let t0 = Instant::now();
    let mut now = t0;
    let threshold = Model::threshold(&settings);
    let fail = |step: usize, what: String| Err(format!("step {step}: {what} ({settings:?})"));

    for step in 0..STEPS {
        // The attempt: it connects, or fails.
        let (status, attempt) = core.trying();
        let expected_status = if model.ever_connected {
            Status::Reconnecting
        } else {
            Status::Connecting
        };
        if (status, attempt) != (expected_status, model.streak.saturating_add(1)) {
            let got = (status, attempt);
            return fail(
                step,
                format!("trying() = {got:?}, model streak {}", model.streak),
            );
        }
        let mut recovered = None;
        let connects = rng.random_bool(0.35);
        if connects {
            core.on_connected(now);
            model.ever_connected = true;
            model.stable = false;
            model.rejections = 0;
            // The deadline, from the settings, not from the code under test.
            let deadline = now.checked_add(settings.stable_after);
            if core.poll_timeout() != deadline {
                return fail(
                    step,
                    format!(
                        "stable deadline {:?}, expected {deadline:?}",
                        core.poll_timeout()
                    ),
                );
            }
            // The connection lasts a while: shorter or longer than the stable period.
            let lasts = pick_duration(
                &mut rng,
                &[
                    Duration::ZERO,
                    Duration::from_millis(40),
                    Duration::from_secs(6),
                    Duration::from_secs(3600),
                ],
            );
            let until = now.checked_add(lasts).unwrap_or(now);
            // Before the deadline, nothing happens.
            if let Some(at) = deadline
                && at > now
            {
                let early = now + (at.min(until) - now) / 2;
                if early < at && core.handle_timeout(early).is_some() {
                    return fail(step, "a record before the stable deadline".into());
                }
            }
            let reached = deadline.is_some_and(|at| at <= until);
            if reached {
                model.stable = true;
                model.failures = 0;
                recovered = model
                    .outage_started
                    .take()
                    .map(|started| Record::Recovered {
                        outage: deadline.unwrap_or(now).saturating_duration_since(started),
                        attempts: model.streak,
                        escalated: model.errors_in_outage > 0,
                    });
                model.streak = 0;
                model.errors_in_outage = 0;
                // Sometimes the driver's timer fires at the deadline; sometimes it is busy
                // and the next failure is the first to look.
                if rng.random_bool(0.5) {
                    let at = deadline.unwrap_or(now);
                    let record = core.handle_timeout(at);
                    if record != recovered {
                        return fail(step, format!("stable: {record:?}, expected {recovered:?}"));
                    }
                    recovered = None;
                    if core.handle_timeout(at).is_some() {
                        return fail(step, "a second record for the same stable period".into());
                    }
                }
            }
            now = until;
        }
        let failure = failure(&mut rng);
        let sample: f64 = rng.random();
        let class = match failure.class {
            Class::ServerDisconnect if settings.reconnect_on_server_disconnect => {
                Class::Transient { retry_after: None }
            }
            class => class,
        };
        let (reason, error) = (failure.reason, failure.message.clone());
        let stable_drop = connects && model.stable;
        let (decision, records) = core.on_failure(failure, now, sample);
        let mut expected: Vec<Record> = recovered.into_iter().collect();
        let mut ended = false;
        let keeps_failing =
            |model: &Model| model.streak >= threshold && model.errors_in_outage == 0;
        let final_severity = |model: &Model| {
            if model.errors_in_outage == 0 {
                Severity::Error
            } else {
                Severity::Warn
            }
        };
        // The README: "gives up after n failed attempts in one outage, the first included;
        // with reconnection off, the first failed attempt or a lost connection ends it".
        let failed_attempts_with_this = model.streak + u32::from(!stable_drop);
        let gives_up = matches!(class, Class::Transient { .. })
            && match settings.max_attempts {
                Some(0) => true,
                Some(n) => !stable_drop && failed_attempts_with_this >= n,
                None => false,
            };
        match class {
            Class::Transient { .. } if gives_up => {
                // The README: after `max_attempts` failed attempts in one outage the client
                // gives up; with reconnection off (0), a lost connection ends it too.
                let lost = connects && settings.max_attempts == Some(0);
                let (status, end, attempts) = if lost {
                    (Status::Disconnected, EndReason::ConnectionLost, 0)
                } else {
                    model.streak = model.streak.saturating_add(1);
                    (Status::Failed, EndReason::AttemptsExhausted, model.streak)
                };
                if decision != Decision::Stop(status, end) {
                    return fail(step, format!("giving up decided {decision:?}"));
                }
                expected.push(Record::GaveUp {
                    attempts,
                    reason,
                    error,
                    severity: final_severity(&model),
                });
                ended = true;
            }
            Class::Transient { retry_after } => {
                let floor = retry_after.map_or(Duration::ZERO, |ra| {
                    ra.min(settings.backoff.retry_after_max)
                });
                if stable_drop {
                    model.outage_started = Some(now);
                    model.failures = 1;
                } else {
                    model.outage_started.get_or_insert(now);
                    model.failures = model.failures.saturating_add(1);
                    model.streak = model.streak.saturating_add(1);
                }
                let ceiling = Model::ceiling(&settings.backoff, model.failures);
                let Decision::Retry(delay) = decision else {
                    return fail(step, format!("transient failure decided {decision:?}"));
                };
                if delay < floor || delay > floor.saturating_add(ceiling) {
                    return fail(
                        step,
                        format!("delay {delay:?} outside [{floor:?}, {floor:?} + {ceiling:?}]"),
                    );
                }
                // And exactly where the sample puts it: a streak reset too early or too late
                // shows here as the wrong ceiling (up to float rounding near the maximum).
                let exact = Model::delay(floor, ceiling, sample);
                let tolerance = 1e-6 + exact * 1e-9;
                if delay < Duration::MAX && (delay.as_secs_f64() - exact).abs() > tolerance {
                    return fail(
                        step,
                        format!(
                            "delay {delay:?}, expected {exact} s: floor {floor:?} + {sample} × ceiling {ceiling:?} (failures {})",
                            model.failures
                        ),
                    );
                }
                if stable_drop {
                    expected.push(Record::ConnectionLost {
                        reason,
                        error,
                        delay,
                    });
                } else {
                    let streak = model.streak;
                    expected.push(Record::AttemptFailed {
                        streak,
                        connection_lost: connects,
                        reason,
                        error: error.clone(),
                        delay,
                    });
                    if keeps_failing(&model) {
                        expected.push(Record::KeepsFailing {
                            streak,
                            reason,
                            error,
                        });
                    }
                }
                match now.checked_add(delay) {
                    Some(later) => now = later,
                    None => ended = true, // beyond any clock: this life is over
                }
            }
            Class::Unauthorized if model.rejections == 0 => {
                model.rejections = 1;
                model.outage_started.get_or_insert(now);
                model.streak = model.streak.saturating_add(1);
                if decision != Decision::Retry(Duration::ZERO) {
                    return fail(step, format!("first rejection decided {decision:?}"));
                }
                let streak = model.streak;
                expected.push(Record::RetryingCredentials {
                    streak,
                    reason,
                    error: error.clone(),
                });
                if keeps_failing(&model) {
                    expected.push(Record::KeepsFailing {
                        streak,
                        reason,
                        error,
                    });
                }
            }
            Class::Unauthorized | Class::Fatal => {
                let severity = if model.errors_in_outage == 0 {
                    Severity::Error
                } else {
                    Severity::Warn
                };
                let (end, record) = if class == Class::Fatal {
                    (
                        EndReason::Configuration,
                        Record::Misconfigured {
                            reason,
                            error,
                            severity,
                        },
                    )
                } else {
                    (
                        EndReason::Unauthorized,
                        Record::CredentialsRejectedAgain {
                            reason,
                            error,
                            severity,
                        },
                    )
                };
                if decision != Decision::Stop(Status::Failed, end) {
                    return fail(step, format!("{class:?} decided {decision:?}"));
                }
                expected.push(record);
                ended = true;
            }
            Class::ServerDisconnect => {
                if decision != Decision::Stop(Status::Disconnected, EndReason::ServerDisconnect) {
                    return fail(step, format!("server disconnect decided {decision:?}"));
                }
                expected.push(Record::ServerDisconnected);
                ended = true;
            }
        }
        if records != expected {
            return fail(step, format!("records {records:?}, expected {expected:?}"));
        }
        model.errors_in_outage += records
            .iter()
            .filter(|r| r.severity() == Severity::Error)
            .count() as u32;
        if model.errors_in_outage > 1 {
            return fail(step, "a second ERROR in one outage".into());
        }
        if ended {
            return Ok(());
        }
    }
    Ok(())
}

/// The seeds to run: `RELINK_SIM_SEED` alone, else `RELINK_SIM_SEEDS` (2,000 by default).
pub(super) fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("RELINK_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    let count = std::env::var("RELINK_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000u64);
    (0..count).collect()
}

#[test]
fn the_reconnect_decisions_keep_the_readmes_rules_for_every_seed() {
    let seeds = seeds();
    let failures: Vec<String> = seeds
        .iter()
        .filter_map(|&seed| {
            // A panic is a broken rule too ("no panic for any setting the builder accepts"):
            // it is reported with its seed like any other.
            let outcome = std::panic::catch_unwind(|| run(seed))
                .unwrap_or_else(|panic| Err(format!("panicked: {}", panic_text(&panic))));
            outcome.err().map(|e| {
                format!(
                    "seed {seed}: {e}\n  replay: RELINK_SIM_SEED={seed} cargo test -p relink the_reconnect_decisions"
                )
            })
        })
        .take(5)
        .collect();
    assert!(
        failures.is_empty(),
        "{} seeds run; failures:\n{}",
        seeds.len(),
        failures.join("\n")
    );
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

#[test]
fn a_seed_replays_exactly() {
    // The same seed makes the same life: what a printed failing seed relies on.
    let life = |seed| {
        let mut rng = StdRng::seed_from_u64(seed);
        let settings = settings(&mut rng);
        let first = failure(&mut rng);
        format!("{settings:?} {first:?}")
    };
    assert_eq!(life(42), life(42));
    assert_ne!(life(42), life(43));
}
