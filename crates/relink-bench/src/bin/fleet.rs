//! Prints the fleet outage table: 1,000 clients, 30 s of 503, then recovery.

use relink_bench::fleet::{Fleet, Schedule, simulate};

fn main() {
    let fleet = Fleet::default();
    println!(
        "fleet: {} clients drop at once, {:?} of HTTP 503, then recovery (virtual time, seed {})",
        fleet.clients, fleet.outage, fleet.seed
    );
    println!(
        "| schedule | attempts/client | peak 250 ms reconnect share | peak 250 ms attempt share, first 3 s | ERROR records/client | 99% back after recovery |"
    );
    println!("|---|---|---|---|---|---|");
    for schedule in [
        Schedule::relink(),
        Schedule::doubling(),
        Schedule::js_client(),
    ] {
        let r = simulate(schedule, fleet);
        println!(
            "| {} | {:.1} | {:.1}% | {:.1}% | {:.1} | {:.2} s |",
            schedule.name(),
            r.attempts_per_client,
            r.peak_reconnect_share * 100.0,
            r.peak_early_attempt_share * 100.0,
            r.errors_per_client,
            r.p99_back_after_recovery.as_secs_f64()
        );
    }
}
