//! Measurements of relink: the fleet outage simulation ([`fleet`]), used by the `fleet` binary
//! and by the benchmark table. The side-by-side benchmarks themselves are bench targets
//! (`benches/codec.rs`, criterion; `benches/e2e/`, the one table): run them with
//! `cargo bench -p relink-bench`, see BENCHMARKS.md at the repository root.

pub mod fleet;
