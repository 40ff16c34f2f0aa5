//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) through the same code as the
//! cargo-fuzz targets, on stable: every seed must run without a panic and keep the targets'
//! properties (re-encoding, closed-after-error, ...).

#[path = "../../../fuzz/fuzz_targets/common.rs"]
mod common;

use std::path::PathBuf;

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} is missing: {e}", dir.display()));
    let mut seeds: Vec<(PathBuf, Vec<u8>)> = entries
        .map(|entry| {
            let path = entry
                .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
                .path();
            let data =
                std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            (path, data)
        })
        .filter(|(path, _)| {
            // Hidden files (editor swap files, .DS_Store) are not seeds; git ignores them too.
            !path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    seeds.sort();
    assert!(
        !seeds.is_empty(),
        "corpus {} has no seeds: the fuzz seed test would prove nothing",
        dir.display()
    );
    seeds
}

fn replay(target: &str, run: fn(&[u8])) {
    for (path, data) in seeds(target) {
        let outcome = std::panic::catch_unwind(|| run(&data));
        if let Err(panic) = outcome {
            eprintln!("seed {} failed", path.display());
            std::panic::resume_unwind(panic);
        }
    }
}

#[test]
fn engine_packet_seeds() {
    replay("engine_packet", common::engine_packet);
}

#[test]
fn socketio_packet_seeds() {
    replay("socketio_packet", common::socketio_packet);
}

#[test]
fn session_seeds() {
    replay("session", common::session);
}

#[test]
fn payload_seeds() {
    replay("payload", common::payload);
}
