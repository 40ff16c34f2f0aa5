//! A reader that stops reading while the server keeps sending: the client holds no more than
//! its budget, and nothing is missing once it reads again. Its own test binary, so that the
//! process's memory is this test's alone.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use relink::{Client, Reason};
use relink_testkit::node::{NodeOptions, NodeServer};
use std::time::Duration;
use support::read_burst;

const EVENTS: u64 = 20_000;
const EVENT_BYTES: u64 = 2_000;
const BUDGET: usize = 1 << 20;
/// What the process may grow by on top of the budget: tungstenite's read buffer and one
/// message, the allocator's slack, the runtime's own growth. A client that kept what the
/// server sent would grow by the burst's 40 MB and more.
const SLACK: u64 = 12 << 20;
const PING_INTERVAL: Duration = Duration::from_millis(300);
const PING_TIMEOUT: Duration = Duration::from_millis(500);

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number of kB");
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_stalled_for_three_heartbeats_costs_its_budget_and_loses_nothing() {
    let server = NodeServer::start(NodeOptions {
        recovery: true,
        ping_interval_ms: Some(PING_INTERVAL.as_millis() as u64),
        ping_timeout_ms: Some(PING_TIMEOUT.as_millis() as u64),
        ..NodeOptions::default()
    })
    .await
    .expect("start the Node socket.io server (npm ci --prefix interop/node)");
    let (client, mut events) = Client::builder(server.url())
        .token("secret")
        .max_message_size(64 << 10)
        .max_buffered_bytes(BUDGET)
        .backoff_initial(Duration::from_millis(100))
        .connect()
        .unwrap();
    support::next_event(&mut events, "welcome").await;
    let before = rss_bytes();
    client
        .emit("burst", (EVENTS, EVENT_BYTES))
        .await
        .expect("burst asked for");
    // Nobody reads for three of the server's heartbeat windows (ping interval + timeout)
    // while the server sends 40 MB: it closes the link for the pings it sent unanswered.
    let mut peak = before;
    let stall_end = tokio::time::Instant::now() + (PING_INTERVAL + PING_TIMEOUT) * 3;
    while tokio::time::Instant::now() < stall_end {
        tokio::time::sleep(Duration::from_millis(25)).await;
        peak = peak.max(rss_bytes());
    }
    let grew = peak.saturating_sub(before);
    assert!(
        grew <= BUDGET as u64 + SLACK,
        "grew by {grew} bytes while stalled (budget {BUDGET}, slack {SLACK})"
    );
    // Reading again: every event once and in order, through the same link or a recovered
    // one; then what came after the burst (the server's close, read only now, and the way
    // back). The link the server closed for its unanswered pings says so.
    let mut burst = read_burst(&mut events, Duration::from_secs(120), None, |_| {}).await;
    burst.assert_whole(EVENTS);
    burst.read_after(&mut events, Duration::from_secs(2)).await;
    let reasons = burst.reasons;
    assert!(
        !reasons.is_empty() && reasons.iter().all(|r| *r == Reason::Unread),
        "a link lost while unread says so: {reasons:?}"
    );
    assert!(
        burst.connects.iter().all(|r| *r),
        "the session was recovered, nothing lost: {:?}",
        burst.connects
    );
    eprintln!(
        "grew by {} KiB while stalled; links lost: {reasons:?}",
        grew >> 10
    );
    client.disconnect().await;
    server.stop().await;
}
