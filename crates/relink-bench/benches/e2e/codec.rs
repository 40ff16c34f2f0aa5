//! Figure 1 for the table: the codec cases of `benches/common/codec_cases.rs` (the same
//! functions the criterion `codec` target measures), timed here in interleaved short batches.
//!
//! Criterion measures one function for seconds, then the next: on a shared 2-core machine a
//! burst of outside load lands on one of them and skews the ratio. Here relink, rust_socketio
//! and serde_json take turns in ~2 ms batches, 101 rounds, and the median batch counts, so a
//! burst hits all three alike.

use crate::common::codec_cases::{self, Case};
use relink_proto::binary::Data;
use std::hint::black_box;
use std::time::{Duration, Instant};

const ROUNDS: usize = 101;
const BATCH_TIME: Duration = Duration::from_millis(2);

/// Median time per operation in nanoseconds, per implementation (`None`: not applicable).
pub struct CodecRow {
    pub op: &'static str,
    pub label: &'static str,
    pub relink: Option<f64>,
    pub rust_socketio: Option<f64>,
    pub serde_json: Option<f64>,
}

/// One implementation of one operation: builds `n` inputs (untimed), then runs them (timed).
trait Bench {
    fn batch(&mut self, n: usize) -> Duration;
}

struct WithInput<I, S: FnMut() -> I, R: FnMut(I)> {
    setup: S,
    run: R,
}

impl<I, S: FnMut() -> I, R: FnMut(I)> Bench for WithInput<I, S, R> {
    fn batch(&mut self, n: usize) -> Duration {
        let inputs: Vec<I> = (0..n).map(|_| (self.setup)()).collect();
        let start = Instant::now();
        for input in inputs {
            (self.run)(input);
        }
        start.elapsed()
    }
}

fn bench<I: 'static>(
    setup: impl FnMut() -> I + 'static,
    run: impl FnMut(I) + 'static,
) -> Box<dyn Bench> {
    Box::new(WithInput { setup, run })
}

/// Median nanoseconds per operation for each bench, measured in turns.
fn interleaved(benches: &mut [Option<Box<dyn Bench>>]) -> Vec<Option<f64>> {
    // Calibrate each to a batch of about BATCH_TIME.
    let sizes: Vec<usize> = benches
        .iter_mut()
        .map(|b| {
            let Some(b) = b else { return 0 };
            let mut n = 16;
            loop {
                let took = b.batch(n);
                if took >= BATCH_TIME / 4 || n >= 1 << 20 {
                    let per = took.as_secs_f64() / n as f64;
                    return ((BATCH_TIME.as_secs_f64() / per) as usize).clamp(1, 1 << 20);
                }
                n *= 4;
            }
        })
        .collect();
    let mut samples = vec![Vec::with_capacity(ROUNDS); benches.len()];
    for round in 0..ROUNDS {
        for k in 0..benches.len() {
            let i = (round + k) % benches.len();
            if let Some(b) = &mut benches[i] {
                let took = b.batch(sizes[i]);
                samples[i].push(took.as_secs_f64() * 1e9 / sizes[i] as f64);
            }
        }
    }
    samples.iter().map(|s| crate::median(s)).collect()
}

fn decode_benches(case: &'static Case) -> Vec<Option<Box<dyn Bench>>> {
    let mut session = codec_cases::connected_session();
    let now = Instant::now();
    vec![
        Some(bench(
            || (),
            move |()| {
                black_box(codec_cases::relink_decode(
                    &mut session,
                    black_box(case),
                    now,
                ));
            },
        )),
        // rust_socketio's packet codec is crate-private (`pub(crate) mod packet`): it cannot
        // be called on its own, and copying its code into this repository is not an option.
        None,
        Some(bench(
            || (),
            move |()| {
                black_box(codec_cases::floor_decode(black_box(case)));
            },
        )),
    ]
}

fn encode_benches(case: &'static Case) -> Vec<Option<Box<dyn Bench>>> {
    let mut session = codec_cases::connected_session();
    let relink: Box<dyn Bench> = match &case.data {
        Some(data) => bench(
            || data.clone(),
            move |data: Data| {
                black_box(codec_cases::relink_encode(&mut session, case, Some(data)));
            },
        ),
        None => bench(
            || (),
            move |()| {
                black_box(codec_cases::relink_encode(
                    &mut session,
                    black_box(case),
                    None,
                ));
            },
        ),
    };
    vec![
        Some(relink),
        // rust_socketio's encoder is crate-private too (see `decode_benches`).
        None,
        Some(bench(
            || (),
            move |()| {
                black_box(codec_cases::floor_encode(black_box(case)));
            },
        )),
    ]
}

/// A plain emit's or an answer's one-pass encoding against the same floor (JSON only:
/// binary arguments go through a `Payload`).
fn one_pass_benches(case: &'static Case) -> Vec<Option<Box<dyn Bench>>> {
    vec![
        Some(bench(
            || (),
            move |()| {
                black_box(codec_cases::relink_encode_one_pass(black_box(case)));
            },
        )),
        None,
        Some(bench(
            || (),
            move |()| {
                black_box(codec_cases::floor_encode(black_box(case)));
            },
        )),
    ]
}

/// The codec rows.
pub fn figures() -> Vec<CodecRow> {
    // The cases live for the whole run; leaking them lets the closures borrow them freely.
    let cases: &'static [Case] = Vec::leak(codec_cases::cases());
    let mut rows = Vec::new();
    for op in ["decode", "encode", "one-pass encode"] {
        for case in cases {
            let one_pass = case.data.is_none();
            let mut benches = match op {
                "decode" => decode_benches(case),
                "encode" => encode_benches(case),
                _ if one_pass => one_pass_benches(case),
                _ => continue,
            };
            let ns = interleaved(&mut benches);
            rows.push(CodecRow {
                op,
                label: case.label,
                relink: ns[0],
                rust_socketio: ns[1],
                serde_json: ns[2],
            });
        }
    }
    rows
}
