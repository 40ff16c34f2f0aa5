//! The reconnect supervisor on real sockets: the Node server behind a fault-injecting gateway.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use relink::{Client, EndReason, Payload, Status};
use relink_testkit::gateway::{Gateway, Mode};
use relink_testkit::node::{NodeOptions, NodeServer};
use std::time::Duration;
use support::{Capture, WAIT, until, until_status};
use tracing::Level;
use tracing_subscriber::layer::SubscriberExt;

const MS: fn(u64) -> Duration = Duration::from_millis;

async fn node_behind_gateway(opts: NodeOptions) -> (NodeServer, Gateway) {
    let server = NodeServer::start(opts)
        .await
        .expect("start Node (npm ci --prefix interop/node)");
    let gateway = Gateway::start(format!("127.0.0.1:{}", server.port()).parse().unwrap())
        .await
        .unwrap();
    (server, gateway)
}

fn fast(url: String) -> relink::ClientBuilder {
    Client::builder(url)
        .token("secret")
        .backoff_initial(MS(10))
        .backoff_max(MS(40))
        .stable_after(MS(100))
        .connect_timeout(Duration::from_secs(5))
}

#[tokio::test]
async fn first_connect_is_retried_through_a_503_outage() {
    let (_server, gateway) = node_behind_gateway(NodeOptions::default()).await;
    gateway.set_mode(Mode::Status {
        code: 503,
        retry_after: None,
    });
    let (client, _events) = fast(gateway.url()).connect().unwrap();
    let state = until(&client, |s| s.attempt >= 3).await;
    assert_eq!(
        state.status,
        Status::Connecting,
        "never connected yet: still connecting"
    );
    assert_eq!(state.reason.map(relink::Reason::as_str), Some("http_5xx"));
    gateway.set_mode(Mode::Forward);
    until_status(&client, Status::Connected).await;
    client.disconnect().await;
}

#[tokio::test]
async fn retry_after_sets_the_floor_of_the_next_delay() {
    let (_server, gateway) = node_behind_gateway(NodeOptions::default()).await;
    gateway.set_mode(Mode::Status {
        code: 503,
        retry_after: Some("1".into()),
    });
    let (client, _events) = fast(gateway.url()).connect().unwrap();
    let state = until(&client, |s| s.next_attempt_in.is_some()).await;
    let delay = state.next_attempt_in.unwrap();
    assert!(
        delay >= MS(1000) && delay <= MS(1200),
        "Retry-After 1 s plus <=20% jitter, got {delay:?}"
    );
    gateway.set_mode(Mode::Forward);
    until_status(&client, Status::Connected).await;
    client.disconnect().await;
}

#[tokio::test]
async fn http_401_on_upgrade_stops_after_one_retry() {
    let (_server, gateway) = node_behind_gateway(NodeOptions::default()).await;
    gateway.set_mode(Mode::Status {
        code: 401,
        retry_after: None,
    });
    let (client, _events) = fast(gateway.url()).connect().unwrap();
    let state = until_status(&client, Status::Failed).await;
    assert_eq!(state.end, Some(EndReason::Unauthorized));
    assert_eq!(gateway.stats().accepted, 2);
}

#[tokio::test]
async fn blackholed_gateway_is_cut_by_the_connect_timeout() {
    let (_server, gateway) = node_behind_gateway(NodeOptions::default()).await;
    gateway.set_mode(Mode::Blackhole);
    let (client, _events) = fast(gateway.url())
        .connect_timeout(MS(200))
        .connect()
        .unwrap();
    let state = until(&client, |s| s.reason.is_some()).await;
    assert_eq!(
        state.reason.map(relink::Reason::as_str),
        Some("connect_timeout")
    );
    gateway.set_mode(Mode::Forward);
    until_status(&client, Status::Connected).await;
    client.disconnect().await;
}

#[tokio::test]
async fn reset_mid_stream_reconnects() {
    let (_server, gateway) = node_behind_gateway(NodeOptions::default()).await;
    let (client, _events) = fast(gateway.url()).connect().unwrap();
    until_status(&client, Status::Connected).await;
    gateway.reset_all();
    let state = until_status(&client, Status::Reconnecting).await;
    assert!(
        matches!(
            state.reason.map(relink::Reason::as_str),
            Some("network" | "transport_close" | "transport_error")
        ),
        "{state:?}"
    );
    until_status(&client, Status::Connected).await;
    assert_eq!(
        client
            .emit_with_ack("echo", Payload::json("after").unwrap(), WAIT)
            .await
            .unwrap()
            .as_json(),
        r#"["after"]"#
    );
    client.disconnect().await;
}

#[tokio::test]
async fn half_open_link_is_detected_by_the_heartbeat() {
    let (_server, gateway) = node_behind_gateway(NodeOptions {
        ping_interval_ms: Some(150),
        ping_timeout_ms: Some(150),
        ..NodeOptions::default()
    })
    .await;
    let (client, _events) = fast(gateway.url()).connect().unwrap();
    until_status(&client, Status::Connected).await;
    // No FIN, no RST: bytes simply stop flowing both ways.
    gateway.freeze_all();
    let state = until_status(&client, Status::Reconnecting).await;
    assert_eq!(
        state.reason.map(relink::Reason::as_str),
        Some("ping_timeout")
    );
    until_status(&client, Status::Connected).await;
    client.disconnect().await;
}

#[tokio::test]
async fn server_disconnect_can_be_configured_to_reconnect() {
    let (_server, gateway) = node_behind_gateway(NodeOptions::default()).await;
    let (client, _events) = fast(gateway.url())
        .reconnect_on_server_disconnect(true)
        .connect()
        .unwrap();
    until_status(&client, Status::Connected).await;
    client.emit("disconnect-me", Payload::new()).await.unwrap();
    let state = until_status(&client, Status::Reconnecting).await;
    assert_eq!(
        state.reason.map(relink::Reason::as_str),
        Some("server_disconnect")
    );
    until_status(&client, Status::Connected).await;
    client.disconnect().await;
}

/// Escalation threshold for the outages below. A blip of 3 failures stays far below it
/// whatever attempts slip in before the gateway forwards again (the gateway is switched as
/// soon as the 4th attempt starts, and 27 more would be needed); 30 failures reach it. The
/// exact boundary is proven in virtual time by the reconnect simulation.
const THRESHOLD: u32 = 30;

/// Runs an outage of at least `failures` failed attempts against a 503 gateway, then lets
/// the client back in and waits until the connection is stable.
async fn outage(failures: u32) {
    let (_server, gateway) = node_behind_gateway(NodeOptions::default()).await;
    gateway.set_mode(Mode::Status {
        code: 503,
        retry_after: None,
    });
    let (client, _events) = Client::builder(gateway.url())
        .token("secret")
        .backoff_initial(MS(1))
        .backoff_max(MS(2))
        .stable_after(MS(50))
        .escalate_after(THRESHOLD)
        .connect()
        .unwrap();
    // `attempt` is the attempt about to be made: failures + 1.
    until(&client, |s| s.attempt > failures).await;
    gateway.set_mode(Mode::Forward);
    until_status(&client, Status::Connected).await;
    // Stable: backoff reset, attempt back to 0, recovery logged.
    until(&client, |s| s.status == Status::Connected && s.attempt == 0).await;
    client.disconnect().await;
}

#[test]
fn one_error_record_per_outage_and_an_info_when_it_recovers() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let _second = support::keep_interest_per_dispatcher();
    tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Well past the threshold: a latch that let every later failure through would
        // show as more than one ERROR.
        rt.block_on(outage(2 * THRESHOLD));
    });
    assert_eq!(
        capture.count(Level::ERROR),
        1,
        "{:?}",
        capture.messages(Level::ERROR)
    );
    let warns = capture.messages(Level::WARN);
    let failed = warns
        .iter()
        .filter(|m| m.contains("connection attempt failed"))
        .count();
    assert!(
        failed >= 2 * THRESHOLD as usize,
        "a WARN per failed attempt: {failed}"
    );
    let recovered = capture
        .messages(Level::INFO)
        .iter()
        .filter(|m| m.contains("connection recovered"))
        .count();
    assert_eq!(recovered, 1);
}

#[test]
fn a_blip_below_the_threshold_logs_no_error() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let _second = support::keep_interest_per_dispatcher();
    tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(outage(3));
    });
    assert_eq!(
        capture.count(Level::ERROR),
        0,
        "{:?}",
        capture.messages(Level::ERROR)
    );
    assert!(capture.count(Level::WARN) >= 3);
}

/// Runs `outage` with Sentry's tracing layers and its test transport; returns captured events.
fn sentry_events(failures: u32) -> Vec<sentry::protocol::Event<'static>> {
    use sentry::integrations::tracing::{BreadcrumbLayer, ErrorLayer};
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::LevelFilter;
    sentry::test::with_captured_events(|| {
        let subscriber = tracing_subscriber::registry()
            .with(ErrorLayer::new().with_filter(LevelFilter::ERROR))
            .with(BreadcrumbLayer::new().with_filter(LevelFilter::INFO));
        let _second = support::keep_interest_per_dispatcher();
        tracing::subscriber::with_default(subscriber, || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(outage(failures));
        });
    })
}

#[test]
fn sentry_sees_one_event_for_a_30_attempt_outage_and_none_for_a_blip() {
    let events = sentry_events(2 * THRESHOLD);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert!(
        events[0]
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("keep failing")
            || format!("{:?}", events[0]).contains("keep failing")
    );
    assert!(sentry_events(3).is_empty());
}

/// A client on a current-thread runtime of its own, sleeping in a long backoff.
fn client_on(runtime: &tokio::runtime::Runtime) -> Client {
    runtime.block_on(async {
        let (client, _events) = Client::builder("http://127.0.0.1:9")
            .token("t")
            .backoff_initial(Duration::from_secs(3600))
            .backoff_max(Duration::from_secs(3600))
            .connect()
            .unwrap();
        client
    })
}

fn assert_ended_by_shutdown(client: &Client) {
    let end = client.state();
    assert_eq!(end.status, Status::Failed, "{end:?}");
    assert_eq!(end.end, Some(EndReason::Internal), "{end:?}");
    assert!(
        end.last_error
            .as_deref()
            .is_some_and(|e| e.contains("runtime shut down")),
        "{end:?}"
    );
}

#[test]
fn a_runtime_shutting_down_ends_the_client_quietly_even_during_another_panic() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let _second = support::keep_interest_per_dispatcher();
    tracing::subscriber::with_default(subscriber, || {
        let current = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        };
        let runtime = current();
        let client = client_on(&runtime);
        drop(runtime);
        assert_ended_by_shutdown(&client);
        // Dropped while a panic that is not relink's unwinds (a failing test, a main
        // that panics): still not relink's panic.
        let runtime = current();
        let client = client_on(&runtime);
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _runtime = runtime;
            panic!("a panic elsewhere in the application");
        }));
        assert!(unwound.is_err());
        assert_ended_by_shutdown(&client);
    });
    assert_eq!(
        capture.count(Level::ERROR),
        0,
        "{:?}",
        capture.messages(Level::ERROR)
    );
}
