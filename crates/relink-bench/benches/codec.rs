//! Codec micro benchmarks (criterion): relink, rust_socketio's codec and bare serde_json on
//! the same packets, with criterion's statistics. `cargo bench -p relink-bench --bench codec`
//! runs only these; the table of the `e2e` target times the same functions interleaved.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

#[path = "common/mod.rs"]
mod common;

fn main() {
    let mut criterion = common::codec_cases::criterion().configure_from_args();
    common::codec_cases::register(&mut criterion);
    criterion.final_summary();
}
