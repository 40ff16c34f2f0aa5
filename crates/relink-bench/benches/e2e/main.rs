//! End-to-end benchmarks, side by side in one run, printed as one table.
//!
//! `cargo bench -p relink-bench` (see BENCHMARKS.md). Every end-to-end figure is measured
//! against the same local server, started once by this binary in a process of its own, for
//! relink, raw tokio-tungstenite (the limit), rust_socketio 0.6 and socket.io-client 4.8 on
//! Node. Figures are repeated in interleaved rounds and the median is reported; the table
//! shows ratios, which survive a noisy machine better than absolute numbers.
//!
//! `RELINK_BENCH_QUICK=1` shrinks every count (a smoke run, not a measurement).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

#[path = "../common/mod.rs"]
mod common;

mod clients;
mod codec;
mod js;
mod memory;
mod server;

use clients::{BenchClient, RawClient, RelinkClient, RsioClient, STEP_TIMEOUT};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Raises the soft limit on open files to the hard limit (10,000 clients need it).
pub fn raise_fd_limit() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("could not raise RLIMIT_NOFILE: {e}");
    }
}

/// The clients' runtime: two workers, one per core.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

#[derive(Clone)]
struct Params {
    rounds: usize,
    emit: [(u64, u64); 2],
    receive: [(u64, u64); 2],
    ack_warmup: u64,
    acks: u64,
    memory: [usize; 2],
}

impl Params {
    /// The long-polling figures: smaller counts (every figure is HTTP round trips).
    fn polling() -> Params {
        if std::env::var_os("RELINK_BENCH_QUICK").is_some() {
            Params {
                rounds: 1,
                emit: [(1_000, 64), (200, 4096)],
                receive: [(1_000, 64), (200, 4096)],
                ack_warmup: 10,
                acks: 100,
                memory: [0, 0],
            }
        } else {
            Params {
                rounds: 3,
                emit: [(20_000, 64), (5_000, 4096)],
                receive: [(20_000, 64), (5_000, 4096)],
                ack_warmup: 50,
                acks: 500,
                memory: [0, 0],
            }
        }
    }

    fn new() -> Params {
        if std::env::var_os("RELINK_BENCH_QUICK").is_some() {
            Params {
                rounds: 1,
                emit: [(2_000, 64), (500, 4096)],
                receive: [(2_000, 64), (500, 4096)],
                ack_warmup: 20,
                acks: 200,
                memory: [100, 1_000],
            }
        } else {
            // Rounds long enough to measure: at 50,000 messages a round took ~20 ms and
            // the raw client's own rounds varied 1.8× (scheduler and frequency noise).
            Params {
                rounds: 5,
                emit: [(250_000, 64), (50_000, 4096)],
                receive: [(250_000, 64), (50_000, 4096)],
                ack_warmup: 200,
                acks: 2_000,
                memory: [1_000, 10_000],
            }
        }
    }
}

/// Bound on one client's whole round (connecting included: a client that never connects
/// does not hang the run).
const DRIVER_TIMEOUT: Duration = Duration::from_secs(240);

const KINDS: [&str; 4] = ["relink", "raw", "rust_socketio", "socket.io-client"];

/// Everything measured for one client kind, over all rounds.
#[derive(Default, Clone)]
struct Measured {
    emit: [Vec<f64>; 2],
    receive: [Vec<f64>; 2],
    /// Events of each receive figure that never reached the application, per round.
    lost: [Vec<u64>; 2],
    ack_us: Vec<f64>,
}

impl Measured {
    fn merge(&mut self, other: Measured) {
        for slot in 0..2 {
            self.emit[slot].extend(&other.emit[slot]);
            self.receive[slot].extend(&other.receive[slot]);
            self.lost[slot].extend(&other.lost[slot]);
        }
        self.ack_us.extend(other.ack_us);
    }
}

async fn timed<F: Future>(what: &str, future: F) -> Option<F::Output> {
    match tokio::time::timeout(STEP_TIMEOUT, future).await {
        Ok(value) => Some(value),
        Err(_) => {
            eprintln!("{what}: no result within {STEP_TIMEOUT:?}");
            None
        }
    }
}

async fn emit_figure<C: BenchClient>(client: &mut C, n: u64, size: u64) -> f64 {
    let payload = "x".repeat(size as usize);
    let before = client.stats().await;
    let start = Instant::now();
    for i in 0..n {
        client.emit_count(i, &payload).await;
    }
    // `stats` is answered after everything emitted before it was counted.
    while client.stats().await - before < n {}
    n as f64 / start.elapsed().as_secs_f64()
}

/// Events received per second, and how many of the `n` never reached the application.
async fn receive_figure<C: BenchClient>(client: &mut C, n: u64, size: u64) -> (f64, u64) {
    let start = Instant::now();
    let lost = client.flood(n, size).await;
    ((n - lost) as f64 / start.elapsed().as_secs_f64(), lost)
}

async fn ack_figure<C: BenchClient>(client: &mut C, warmup: u64, n: u64) -> Vec<f64> {
    let mut samples = Vec::with_capacity(n as usize);
    for i in 0..warmup + n {
        let start = Instant::now();
        client.echo(i).await;
        if i >= warmup {
            samples.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    samples
}

/// Every figure (`only`: just that part: `emit`, `receive` or `ack`).
async fn run_figures<C: BenchClient>(
    name: &str,
    client: &mut C,
    p: &Params,
    into: &mut Measured,
    only: Option<&str>,
) {
    let left_out = |part: &str| skipped(part) || only.is_some_and(|o| o != part);
    for (slot, &(n, size)) in p.emit.iter().enumerate() {
        if left_out("emit") {
            break;
        }
        if let Some(rate) = timed(name, emit_figure(client, n, size)).await {
            into.emit[slot].push(rate);
        }
    }
    for (slot, &(n, size)) in p.receive.iter().enumerate() {
        if left_out("receive") {
            break;
        }
        if let Some((rate, lost)) = timed(name, receive_figure(client, n, size)).await {
            into.receive[slot].push(rate);
            into.lost[slot].push(lost);
        }
    }
    if left_out("ack") {
        return;
    }
    if let Some(samples) = timed(name, ack_figure(client, p.ack_warmup, p.acks)).await {
        into.ack_us.extend(samples);
    }
}

fn end_to_end(p: &Params) -> (Vec<Measured>, Option<String>) {
    let server = server::ServerProcess::start();
    let js_missing = js::unavailable();
    let mut measured = vec![Measured::default(); KINDS.len()];
    let runtime = runtime();
    for round in 0..p.rounds {
        // A different kind goes first each round, so no one always runs on a cold machine.
        for k in 0..KINDS.len() {
            let kind = (round + k) % KINDS.len();
            if !selected(KINDS[kind]) {
                continue;
            }
            let started = Instant::now();
            let into = &mut measured[kind];
            match KINDS[kind] {
                "socket.io-client" => {
                    if js_missing.is_some() {
                        continue;
                    }
                    if let Some(r) = js::run(
                        &server.url(),
                        &p.emit,
                        &p.receive,
                        p.ack_warmup,
                        p.acks,
                        &["websocket"],
                    ) {
                        for (slot, rate) in r.emit.into_iter().enumerate().take(2) {
                            into.emit[slot].push(rate);
                        }
                        for (slot, rate) in r.receive.into_iter().enumerate().take(2) {
                            into.receive[slot].push(rate);
                        }
                        for (slot, lost) in r.lost.into_iter().enumerate().take(2) {
                            into.lost[slot].push(lost);
                        }
                        into.ack_us.extend(r.ack_us);
                    }
                }
                rust_kind => {
                    // The driver runs as a task on the runtime's workers, like application
                    // code, not on the thread blocked in `block_on`.
                    let (url, ws_url) = (server.url(), server.ws_url());
                    let (params, name) = (p.clone(), rust_kind.to_owned());
                    let task = runtime.spawn(async move {
                        let mut out = Measured::default();
                        match name.as_str() {
                            "relink" => {
                                let mut c = RelinkClient::connect(&url).await;
                                run_figures("relink", &mut c, &params, &mut out, None).await;
                            }
                            "raw" => {
                                let mut c = RawClient::connect(&ws_url).await;
                                run_figures("raw", &mut c, &params, &mut out, None).await;
                            }
                            _ => {
                                let mut c = RsioClient::connect(&url).await;
                                run_figures("rust_socketio", &mut c, &params, &mut out, None).await;
                                c.close().await;
                            }
                        }
                        out
                    });
                    let abort = task.abort_handle();
                    match runtime
                        .block_on(async { tokio::time::timeout(DRIVER_TIMEOUT, task).await })
                    {
                        Ok(Ok(out)) => into.merge(out),
                        Ok(Err(e)) => eprintln!("{rust_kind}: driver failed: {e}"),
                        Err(_) => {
                            abort.abort();
                            eprintln!("{rust_kind}: no result within {DRIVER_TIMEOUT:?}");
                        }
                    }
                }
            }
            eprintln!(
                "round {}/{}: {} done in {:.1} s",
                round + 1,
                p.rounds,
                KINDS[kind],
                started.elapsed().as_secs_f64()
            );
        }
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    (measured, js_missing)
}

/// Long-polling: relink, rust_socketio and socket.io-client each on polling only, against
/// the official Node server configured `transports: ["polling"]` (the bench server speaks
/// WebSocket only). The raw column stays empty: there is no raw polling client.
fn polling_end_to_end(p: &Params) -> (Vec<Measured>, Option<String>) {
    use relink_testkit::node::{NodeOptions, NodeServer};
    let runtime = runtime();
    let server = runtime
        .block_on(NodeServer::start(NodeOptions {
            transports: Some(vec!["polling"]),
            ..NodeOptions::default()
        }))
        .expect("start the Node server (npm ci --prefix interop/node)");
    let url = server.url();
    let js_missing = js::unavailable();
    let mut measured = vec![Measured::default(); KINDS.len()];
    let kinds = [0usize, 2, 3];
    for round in 0..p.rounds {
        for k in 0..kinds.len() {
            let kind = kinds[(round + k) % kinds.len()];
            if !selected(KINDS[kind]) {
                continue;
            }
            let started = Instant::now();
            let into = &mut measured[kind];
            if kind == 3 {
                if js_missing.is_some() {
                    continue;
                }
                let r = js::run(
                    &url,
                    &p.emit,
                    &p.receive,
                    p.ack_warmup,
                    p.acks,
                    &["polling"],
                );
                if let Some(r) = r {
                    for (slot, rate) in r.emit.into_iter().enumerate().take(2) {
                        into.emit[slot].push(rate);
                    }
                    for (slot, rate) in r.receive.into_iter().enumerate().take(2) {
                        into.receive[slot].push(rate);
                    }
                    for (slot, lost) in r.lost.into_iter().enumerate().take(2) {
                        into.lost[slot].push(lost);
                    }
                    into.ack_us.extend(r.ack_us);
                }
            } else {
                // Each part on a connection of its own: a client that fails one (an error,
                // a panic in its driver) is still measured on the others.
                for part in ["emit", "receive", "ack"] {
                    let (url, params) = (url.clone(), p.clone());
                    let task = runtime.spawn(async move {
                        let mut out = Measured::default();
                        if kind == 0 {
                            let polling = [relink::Transport::Polling];
                            let mut c = RelinkClient::connect_over(&url, &polling).await;
                            run_figures("relink (polling)", &mut c, &params, &mut out, Some(part))
                                .await;
                        } else {
                            let polling = rust_socketio::TransportType::Polling;
                            let mut c = RsioClient::connect_over(&url, polling).await;
                            let name = "rust_socketio (polling)";
                            run_figures(name, &mut c, &params, &mut out, Some(part)).await;
                            c.close().await;
                        }
                        out
                    });
                    let abort = task.abort_handle();
                    let result = runtime
                        .block_on(async { tokio::time::timeout(DRIVER_TIMEOUT, task).await });
                    match result {
                        Ok(Ok(out)) => into.merge(out),
                        Ok(Err(e)) => {
                            eprintln!("{} (polling) {part}: driver failed: {e}", KINDS[kind]);
                        }
                        Err(_) => {
                            abort.abort();
                            eprintln!(
                                "{} (polling) {part}: no result in {DRIVER_TIMEOUT:?}",
                                KINDS[kind]
                            );
                        }
                    }
                }
            }
            eprintln!(
                "polling round {}/{}: {} done in {:.1} s",
                round + 1,
                p.rounds,
                KINDS[kind],
                started.elapsed().as_secs_f64()
            );
        }
    }
    runtime.block_on(server.stop());
    runtime.shutdown_timeout(Duration::from_secs(1));
    (measured, js_missing)
}

/// `RELINK_BENCH_ONLY=relink,raw`: measure only these kinds (for working on one client).
fn selected(kind: &str) -> bool {
    match std::env::var("RELINK_BENCH_ONLY") {
        Ok(only) => only.split(',').any(|k| k.trim() == kind),
        Err(_) => true,
    }
}

/// `RELINK_BENCH_SKIP=codec,memory,emit,receive,ack,polling`: leave figures out (for working on the
/// others).
fn skipped(part: &str) -> bool {
    std::env::var("RELINK_BENCH_SKIP").is_ok_and(|s| s.split(',').any(|p| p.trim() == part))
}

fn median(values: &[f64]) -> Option<f64> {
    percentile(values, 0.5)
}

fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[index])
}

/// How a figure compares: higher or lower is better.
#[derive(Clone, Copy)]
enum Better {
    Higher,
    Lower,
}

/// One table row: the four values, and the targets.
struct Row {
    figure: String,
    unit: &'static str,
    values: [Option<f64>; 4],
    /// The lowest and highest round, where a figure has rounds (throughput).
    spread: [Option<(f64, f64)>; 4],
    better: Better,
    /// Target on relink ÷ raw (≥ for Higher, ≤ for Lower).
    vs_raw: Option<f64>,
    /// Target on how far ahead of rust_socketio relink is (a factor ≥ 1).
    ahead: Option<f64>,
    /// Target on how far ahead of socket.io-client relink is.
    ahead_js: Option<f64>,
    /// Target on relink's lowest round ÷ the limit's median (throughput).
    min_vs_raw: Option<f64>,
    /// Receive figures: the most events any round lost, per client (relink's target: 0).
    lost: [Option<u64>; 4],
}

/// The most events any round of receive figure `slot` lost, per client kind.
fn lost_of(m: &[Measured], slot: usize) -> [Option<u64>; 4] {
    std::array::from_fn(|k| m.get(k).and_then(|k| k.lost[slot].iter().copied().max()))
}

/// The lowest and highest of `values`, when there are at least two.
fn spread(values: &[f64]) -> Option<(f64, f64)> {
    if values.len() < 2 {
        return None;
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((min, max))
}

fn fmt_value(value: Option<f64>, unit: &str) -> String {
    match value {
        None => "n/a".into(),
        Some(v) => match unit {
            "msg/s" if v >= 1e6 => format!("{:.2} M/s", v / 1e6),
            "msg/s" => format!("{:.1} k/s", v / 1e3),
            "ns" if v >= 1e3 => format!("{:.2} µs", v / 1e3),
            "ns" => format!("{v:.0} ns"),
            "µs" => format!("{v:.0} µs"),
            "KiB" => format!("{:.1} KiB", v / 1024.0),
            _ => format!("{v:.2}"),
        },
    }
}

impl Row {
    /// relink ÷ raw.
    fn ratio_raw(&self) -> Option<f64> {
        Some(self.values[0]? / self.values[1]?)
    }

    /// How many times better relink is than `peer`.
    fn ahead_of(&self, peer: usize) -> Option<f64> {
        let (relink, other) = (self.values[0]?, self.values[peer]?);
        Some(match self.better {
            Better::Higher => relink / other,
            Better::Lower => other / relink,
        })
    }

    fn target(&self) -> String {
        let mut parts = Vec::new();
        if let Some(t) = self.min_vs_raw {
            parts.push(format!("min round ≥ {t:.2}× raw"));
        }
        if let Some(t) = self.vs_raw {
            parts.push(match self.better {
                Better::Higher => format!("≥ {t:.2}× raw"),
                Better::Lower => format!("≤ {t:.2}× raw"),
            });
        }
        match (self.ahead, self.ahead_js) {
            (Some(t), Some(j)) if t == j => parts.push(format!("≥ {t:.0}× ahead of both")),
            (t, j) => {
                if let Some(t) = t {
                    parts.push(format!("≥ {t:.0}× ahead of rust_socketio"));
                }
                if let Some(j) = j {
                    parts.push(format!("≥ {j:.0}× ahead of socket.io-client"));
                }
            }
        }
        if self.lost[0].is_some() {
            parts.push("0 lost".into());
        }
        if parts.is_empty() {
            "—".into()
        } else {
            parts.join(", ")
        }
    }

    fn met(&self) -> &'static str {
        let mut checked = false;
        if self.lost[0].is_some_and(|lost| lost > 0) {
            return "MISSED";
        }
        if let Some(t) = self.vs_raw {
            checked = true;
            let Some(r) = self.ratio_raw() else {
                return "n/a";
            };
            let ok = match self.better {
                Better::Higher => r >= t,
                Better::Lower => r <= t,
            };
            if !ok {
                return "MISSED";
            }
        }
        if let Some(t) = self.min_vs_raw {
            checked = true;
            let Some(((min, _), raw)) = self.spread[0].zip(self.values[1]) else {
                return "n/a";
            };
            if min / raw < t {
                return "MISSED";
            }
        }
        for (target, peer) in [(self.ahead, 2), (self.ahead_js, 3)] {
            let Some(t) = target else {
                continue;
            };
            checked = true;
            match self.ahead_of(peer) {
                None => return "n/a",
                Some(a) if a < t => return "MISSED",
                Some(_) => {}
            }
        }
        if checked { "met" } else { "—" }
    }
}

/// A value, and its rounds' range when it has one: `1.45 M/s (1.30–1.52)`.
fn fmt_cell(value: Option<f64>, spread: Option<(f64, f64)>, unit: &str) -> String {
    let shown = fmt_value(value, unit);
    match spread {
        Some((min, max)) => {
            let bare = |v: f64| {
                let text = fmt_value(Some(v), unit);
                text.trim_end_matches(unit)
                    .trim_end_matches("/s")
                    .trim_end()
                    .to_owned()
            };
            format!("{shown} ({}–{})", bare(min), bare(max))
        }
        None => shown,
    }
}

/// `relink / raw / rust_socketio / socket.io-client`, or `—` where nothing is counted.
fn fmt_lost(lost: &[Option<u64>; 4]) -> String {
    if lost.iter().all(Option::is_none) {
        return "—".into();
    }
    lost.iter()
        .map(|l| l.map_or("n/a".into(), |l| l.to_string()))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn fmt_factor(value: Option<f64>) -> String {
    value.map_or("n/a".into(), |v| format!("{v:.2}×"))
}

fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| figure | relink | raw limit¹ | rust_socketio | socket.io-client | relink ÷ raw | ahead of rust_socketio | ahead of socket.io-client | lost² | target | status |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.figure,
            fmt_cell(row.values[0], row.spread[0], row.unit),
            fmt_cell(row.values[1], row.spread[1], row.unit),
            fmt_cell(row.values[2], row.spread[2], row.unit),
            fmt_cell(row.values[3], row.spread[3], row.unit),
            fmt_factor(row.ratio_raw()),
            fmt_factor(row.ahead_of(2)),
            fmt_factor(row.ahead_of(3)),
            fmt_lost(&row.lost),
            row.target(),
            row.met(),
        );
    }
    out
}

fn machine() -> String {
    let run = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "?".into())
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|m| m.trim().to_owned()))
        .unwrap_or_else(|| "?".into());
    format!(
        "machine: {} cores ({cpu}), {mem} RAM, {}, node {}",
        run("nproc", &[]),
        run("rustc", &["--version"]),
        run("node", &["--version"]),
    )
}

fn main() {
    match std::env::var("RELINK_BENCH_ROLE").as_deref() {
        Ok("server") => return server::run(),
        Ok("memory") => return memory::child(),
        _ => {}
    }
    // `cargo bench` passes `--bench`; a test run (`cargo test --benches`) passes nothing
    // of the sort and must not start a multi-minute measurement.
    if !std::env::args().any(|a| a == "--bench") {
        println!("e2e: run with `cargo bench -p relink-bench` (skipped outside --bench)");
        return;
    }
    raise_fd_limit();
    let p = Params::new();
    let started = Instant::now();

    let codec_rows = if skipped("codec") {
        Vec::new()
    } else {
        codec::figures()
    };

    eprintln!("end-to-end: {} rounds against the bench server", p.rounds);
    let (m, js_missing) = end_to_end(&p);

    let pp = Params::polling();
    let polling = if skipped("polling") {
        None
    } else {
        eprintln!(
            "long-polling: {} rounds against the Node server (polling only)",
            pp.rounds
        );
        Some(polling_end_to_end(&pp))
    };

    eprintln!("memory: {:?} idle clients", p.memory);
    let mut memory = Vec::new();
    for n in p.memory {
        if skipped("memory") {
            break;
        }
        let relink = memory::measure("relink", n);
        let raw = memory::measure("raw", n);
        memory.push((n, relink, raw));
    }

    let mut rows = Vec::new();
    for c in &codec_rows {
        rows.push(Row {
            figure: format!("1. {} {}", c.op, c.label),
            unit: "ns",
            values: [c.relink, c.serde_json, c.rust_socketio, None],
            spread: [None; 4],
            better: Better::Lower,
            vs_raw: Some(1.5),
            ahead: c.rust_socketio.map(|_| 3.0),
            ahead_js: None,
            min_vs_raw: None,
            lost: [None; 4],
        });
    }
    let per_kind = |f: &dyn Fn(&Measured) -> Option<f64>| -> [Option<f64>; 4] {
        [f(&m[0]), f(&m[1]), f(&m[2]), f(&m[3])]
    };
    let spreads = |f: &dyn Fn(&Measured) -> Option<(f64, f64)>| -> [Option<(f64, f64)>; 4] {
        [f(&m[0]), f(&m[1]), f(&m[2]), f(&m[3])]
    };
    for (slot, &(n, size)) in p.emit.iter().enumerate() {
        rows.push(Row {
            figure: format!("2. emit {size} B × {n}"),
            unit: "msg/s",
            values: per_kind(&|k| median(&k.emit[slot])),
            spread: spreads(&|k| spread(&k.emit[slot])),
            better: Better::Higher,
            vs_raw: Some(0.9),
            ahead: Some(2.0),
            ahead_js: None,
            min_vs_raw: Some(0.8),
            lost: [None; 4],
        });
    }
    for (slot, &(n, size)) in p.receive.iter().enumerate() {
        rows.push(Row {
            figure: format!("3. receive {size} B × {n}"),
            unit: "msg/s",
            values: per_kind(&|k| median(&k.receive[slot])),
            spread: spreads(&|k| spread(&k.receive[slot])),
            better: Better::Higher,
            vs_raw: Some(0.9),
            ahead: Some(2.0),
            ahead_js: None,
            min_vs_raw: Some(0.8),
            lost: lost_of(&m, slot),
        });
    }
    rows.push(Row {
        figure: format!("4. ack round trip p50 ({} × {})", p.rounds, p.acks),
        unit: "µs",
        values: per_kind(&|k| percentile(&k.ack_us, 0.5)),
        spread: [None; 4],
        better: Better::Lower,
        vs_raw: Some(1.2),
        ahead: None,
        ahead_js: None,
        min_vs_raw: None,
        lost: [None; 4],
    });
    rows.push(Row {
        figure: "4. ack round trip p99".into(),
        unit: "µs",
        values: per_kind(&|k| percentile(&k.ack_us, 0.99)),
        spread: [None; 4],
        better: Better::Lower,
        vs_raw: None,
        ahead: None,
        ahead_js: None,
        min_vs_raw: None,
        lost: [None; 4],
    });
    for (n, relink, raw) in memory {
        rows.push(Row {
            figure: format!("5. RSS per idle client, {n} clients"),
            unit: "KiB",
            values: [relink, raw, None, None],
            spread: [None; 4],
            better: Better::Lower,
            vs_raw: Some(1.5),
            ahead: None,
            ahead_js: None,
            min_vs_raw: None,
            lost: [None; 4],
        });
    }

    if let Some((pm, _)) = &polling {
        let per_kind = |f: &dyn Fn(&Measured) -> Option<f64>| -> [Option<f64>; 4] {
            [f(&pm[0]), None, f(&pm[2]), f(&pm[3])]
        };
        let spreads = |f: &dyn Fn(&Measured) -> Option<(f64, f64)>| -> [Option<(f64, f64)>; 4] {
            [f(&pm[0]), None, f(&pm[2]), f(&pm[3])]
        };
        for (slot, &(n, size)) in pp.emit.iter().enumerate() {
            rows.push(Row {
                figure: format!("7. polling: emit {size} B × {n}"),
                unit: "msg/s",
                values: per_kind(&|k| median(&k.emit[slot])),
                spread: spreads(&|k| spread(&k.emit[slot])),
                better: Better::Higher,
                vs_raw: None,
                ahead: Some(1.0),
                ahead_js: Some(1.0),
                min_vs_raw: None,
                lost: [None; 4],
            });
        }
        for (slot, &(n, size)) in pp.receive.iter().enumerate() {
            rows.push(Row {
                figure: format!("7. polling: receive {size} B × {n}"),
                unit: "msg/s",
                values: per_kind(&|k| median(&k.receive[slot])),
                spread: spreads(&|k| spread(&k.receive[slot])),
                better: Better::Higher,
                vs_raw: None,
                ahead: Some(1.0),
                ahead_js: Some(1.0),
                min_vs_raw: None,
                lost: {
                    let [relink, _, rsio, js] = lost_of(pm, slot);
                    [relink, None, rsio, js]
                },
            });
        }
        rows.push(Row {
            figure: format!(
                "7. polling: ack round trip p50 ({} × {})",
                pp.rounds, pp.acks
            ),
            unit: "µs",
            values: per_kind(&|k| percentile(&k.ack_us, 0.5)),
            spread: [None; 4],
            better: Better::Lower,
            vs_raw: None,
            ahead: Some(1.0),
            ahead_js: Some(1.0),
            min_vs_raw: None,
            lost: [None; 4],
        });
        rows.push(Row {
            figure: "7. polling: ack round trip p99".into(),
            unit: "µs",
            values: per_kind(&|k| percentile(&k.ack_us, 0.99)),
            spread: [None; 4],
            better: Better::Lower,
            vs_raw: None,
            ahead: None,
            ahead_js: None,
            min_vs_raw: None,
            lost: [None; 4],
        });
    }

    println!();
    println!("{}", machine());
    println!(
        "run took {:.0} s; end-to-end figures: median of {} interleaved rounds against one bench server process",
        started.elapsed().as_secs_f64(),
        p.rounds
    );
    println!();
    print!("{}", table(&rows));
    println!();
    println!(
        "¹ raw limit. Codec rows: bare serde_json on the same JSON (decode: validating it; encode: serializing [name, args]). Other rows: raw tokio-tungstenite doing the least a correct client must: handshakes by hand, arguments serialized with serde_json straight into the frame, received JSON validated."
    );
    println!(
        "relink ÷ raw: relink's figure divided by the limit's (throughput: higher is better; time and memory: lower is better). ahead of X: how many times better relink's figure is than X's (> 1: relink is ahead)."
    );
    println!(
        "² lost: relink / raw / rust_socketio / socket.io-client, the most events of one round that never reached the application (counted up to the server's `flood-done`, sent after the flood); relink at default settings, whose target is 0."
    );
    if let Some(why) = js_missing {
        println!("socket.io-client: not measured ({why}).");
    }
    if polling.is_some() {
        println!(
            "7. polling rows: every client on HTTP long-polling only, against the official Node server configured `transports: [\"polling\"]` ({} interleaved rounds; no raw polling client).",
            pp.rounds
        );
    }
    println!();
    print!("{}", relink_bench::fleet::outage_table());
}
