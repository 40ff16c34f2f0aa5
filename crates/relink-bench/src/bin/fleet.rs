//! Prints the fleet tables: 1,000 clients through a 30 s outage (plain 503, and 503 with
//! `Retry-After: 2`), then how `backoff_initial` trades a quick return after a blip against
//! the burst at the server.

use relink_bench::fleet::{Fleet, blip_table, outage_table};

fn main() {
    let fleet = Fleet::default();
    println!(
        "fleet: {} clients drop at once, {:?} of HTTP 503, then recovery (virtual time, seed {}, relink's real reconnect core)",
        fleet.clients, fleet.outage, fleet.seed
    );
    println!();
    print!("{}", outage_table());
    println!();
    println!("A blip: the server is back before anyone's first attempt.");
    println!();
    print!("{}", blip_table());
}
