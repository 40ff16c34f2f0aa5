//! Figure 5: resident memory per idle connected client, in a process of its own per run.
//!
//! The child (this binary with `RELINK_BENCH_ROLE=memory`) connects a few clients to warm up
//! whatever is allocated once, reads its RSS, connects `n` more in waves, waits a second with
//! all of them idle and connected, reads its RSS again, and prints the growth per client.

use crate::clients::{RawClient, RelinkClient};
use crate::server::ServerProcess;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WARM_UP: usize = 8;
const WAVE: usize = 250;
const IDLE: Duration = Duration::from_secs(1);
const CHILD_TIMEOUT: Duration = Duration::from_secs(180);

/// The resident set size of this process, in bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// Entry point of the `memory` role.
pub fn child() {
    crate::raise_fd_limit();
    let kind = std::env::var("RELINK_BENCH_KIND").expect("kind");
    let n: usize = std::env::var("RELINK_BENCH_N")
        .expect("n")
        .parse()
        .expect("n");
    let url = std::env::var("RELINK_BENCH_URL").expect("url");
    let ws_url = std::env::var("RELINK_BENCH_WS_URL").expect("ws url");
    let runtime = crate::runtime();
    runtime.block_on(async move {
        let mut relinks = Vec::new();
        let mut raws = Vec::new();
        let mut connect = async |count: usize| {
            let mut left = count;
            while left > 0 {
                let wave = left.min(WAVE);
                left -= wave;
                match kind.as_str() {
                    "relink" => {
                        let batch: Vec<RelinkClient> =
                            (0..wave).map(|_| RelinkClient::start(&url)).collect();
                        for client in &batch {
                            client.wait_connected().await;
                        }
                        relinks.extend(batch);
                    }
                    _ => {
                        let mut tasks = Vec::new();
                        for _ in 0..wave {
                            let ws_url = ws_url.clone();
                            tasks.push(tokio::spawn(
                                async move { RawClient::connect(&ws_url).await },
                            ));
                        }
                        for task in tasks {
                            let raw = task.await.expect("raw connect");
                            raws.push(tokio::spawn(raw.idle()));
                        }
                    }
                }
            }
        };
        connect(WARM_UP).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = rss_bytes();
        let started = std::time::Instant::now();
        connect(n).await;
        eprintln!(
            "memory: {n} clients connected in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        tokio::time::sleep(IDLE).await;
        let after = rss_bytes();
        println!(
            "{{\"before\":{before},\"after\":{after},\"per_client\":{}}}",
            (after.saturating_sub(before)) as f64 / n as f64
        );
        // Wait to be killed: the parent stops the server first, so the TIME_WAIT sockets
        // of 10,000 closed connections land on the server's side and do not crowd the
        // ephemeral ports the next run dials from.
        tokio::time::sleep(CHILD_TIMEOUT).await;
        std::process::exit(0);
    });
}

/// Runs one measurement in a child process against a fresh server; bytes per client.
pub fn measure(kind: &str, n: usize) -> Option<f64> {
    let server = ServerProcess::start();
    let exe = std::env::current_exe().ok()?;
    let started = Instant::now();
    let mut child = Command::new(exe)
        .env("RELINK_BENCH_ROLE", "memory")
        .env("RELINK_BENCH_KIND", kind)
        .env("RELINK_BENCH_N", n.to_string())
        .env("RELINK_BENCH_URL", server.url())
        .env("RELINK_BENCH_WS_URL", server.ws_url())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .ok()?;
    // Bounded: a child that hangs is killed and the figure reported as missing.
    let stdout = child.stdout.take()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(CHILD_TIMEOUT).ok();
    drop(server);
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    let Some(text) = line.filter(|l| !l.trim().is_empty()) else {
        eprintln!("memory: {kind} x{n} gave no result within {CHILD_TIMEOUT:?}");
        return None;
    };
    let value: serde_json::Value = serde_json::from_str(text.trim()).ok()?;
    eprintln!(
        "memory: {kind} x{n}: {:.1} KiB per client ({:.1} s)",
        value["per_client"].as_f64()? / 1024.0,
        started.elapsed().as_secs_f64()
    );
    value["per_client"].as_f64()
}
