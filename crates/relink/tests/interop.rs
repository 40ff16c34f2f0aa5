//! relink against the official Node socket.io server (4.8.x from interop/node).
//!
//! Each test starts its own server on a free port and stops it when it ends.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use relink::{Client, Data, EndReason, Incoming, Overflow, Payload, Status};
use relink_testkit::gateway::Gateway;
use relink_testkit::node::{NodeOptions, NodeServer};
use serde_json::{Value, json};
use std::time::Duration;
use support::{next_event, next_whole_event, read_burst};

const WAIT: Duration = Duration::from_secs(10);

async fn node(opts: NodeOptions) -> NodeServer {
    NodeServer::start(opts)
        .await
        .expect("start the Node socket.io server (npm ci --prefix interop/node)")
}

async fn connected(client: &Client) {
    tokio::time::timeout(WAIT, client.wait_connected())
        .await
        .expect("connected in time")
        .expect("connected, not ended");
}

async fn until_terminal(client: &Client) -> relink::ConnectionState {
    let mut rx = client.watch_state();
    tokio::time::timeout(WAIT, rx.wait_for(|s| s.status.is_terminal()))
        .await
        .unwrap_or_else(|_| panic!("not ended within {WAIT:?}; now {:?}", client.state()))
        .expect("state channel open")
        .clone()
}

async fn until_status(client: &Client, status: Status) -> relink::ConnectionState {
    let mut rx = client.watch_state();
    tokio::time::timeout(WAIT, rx.wait_for(|s| s.status == status))
        .await
        .unwrap_or_else(|_| panic!("no {status:?} within {WAIT:?}; now {:?}", client.state()))
        .expect("state channel open")
        .clone()
}

#[tokio::test]
async fn handshake_auth_and_welcome() {
    let server = node(NodeOptions::default()).await;
    let (client, mut events) = Client::builder(server.url())
        .token("secret")
        .connect()
        .unwrap();
    connected(&client).await;
    let state = client.state();
    assert!(state.socket_id.is_some());
    let welcome: Value = next_event(&mut events, "welcome")
        .await
        .first()
        .unwrap()
        .unwrap();
    assert_eq!(welcome["nsp"], "/");
    assert_eq!(welcome["id"], json!(state.socket_id.unwrap()));
    client.disconnect().await;
    assert_eq!(client.state().status, Status::Disconnected);
    assert_eq!(client.state().end, Some(EndReason::ClientDisconnect));
}

#[tokio::test]
async fn rejected_credentials_fail_after_one_retry() {
    let server = node(NodeOptions::default()).await;
    // The gateway only forwards; it counts the TCP connections the client makes.
    let gateway = Gateway::start(format!("127.0.0.1:{}", server.port()).parse().unwrap())
        .await
        .unwrap();
    let (client, _events) = Client::builder(gateway.url())
        .token("wrong")
        .connect()
        .unwrap();
    let state = until_status(&client, Status::Failed).await;
    assert_eq!(state.end, Some(EndReason::Unauthorized));
    assert!(state.last_error.unwrap().contains("unauthorized"));
    assert_eq!(
        state.attempt, 2,
        "one retry with refreshed credentials, then stop"
    );
    assert_eq!(
        gateway.stats().accepted,
        2,
        "exactly two connection attempts"
    );
}

#[tokio::test]
async fn events_both_ways() {
    let server = node(NodeOptions::default()).await;
    let (client, mut events) = Client::builder(server.url())
        .token("secret")
        .connect()
        .unwrap();
    connected(&client).await;
    client
        .emit(
            "echo",
            Payload::json("plain")
                .unwrap()
                .with(&json!({"n": [1, 2]}))
                .unwrap(),
        )
        .await
        .unwrap();
    let back = next_event(&mut events, "echo").await;
    assert_eq!(back.as_json(), r#"["plain",{"n":[1,2]}]"#);
    client.disconnect().await;
}

#[tokio::test]
async fn acks_both_ways() {
    let server = node(NodeOptions::default()).await;
    let (client, mut events) = Client::builder(server.url())
        .token("secret")
        .connect()
        .unwrap();
    connected(&client).await;
    // Client -> server with ack.
    let ack = client
        .emit_with_ack("echo", Payload::json("plain").unwrap(), WAIT)
        .await
        .unwrap();
    assert_eq!(ack.as_json(), r#"["plain"]"#);
    // Server -> client with ack: the server asks, we answer, it reports what it got.
    client
        .emit("ask", Payload::json("question").unwrap().with(&42).unwrap())
        .await
        .unwrap();
    let mut question = next_whole_event(&mut events, "question").await;
    assert!(question.wants_ack());
    assert_eq!(question.args().as_json(), "[42]");
    assert!(question.ack(Payload::json("answer").unwrap()));
    assert!(!question.ack(Payload::new()), "an ack is sent once");
    let asked: Value = next_event(&mut events, "asked")
        .await
        .first()
        .unwrap()
        .unwrap();
    assert_eq!(asked, json!({"ok": true, "reply": ["answer"]}));
    client.disconnect().await;
}

#[tokio::test]
async fn ack_ids_do_not_collide_under_concurrency() {
    let server = node(NodeOptions::default()).await;
    let (client, _events) = Client::builder(server.url())
        .token("secret")
        .connect()
        .unwrap();
    connected(&client).await;
    let calls = (0..200).map(|i| {
        let client = client.clone();
        async move {
            let ack = client
                .emit_with_ack("echo", Payload::json(&i).unwrap(), WAIT)
                .await
                .unwrap();
            assert_eq!(
                ack.first::<i32>().unwrap(),
                Some(i),
                "each ack answers its own emit"
            );
        }
    });
    futures_util::future::join_all(calls).await;
    client.disconnect().await;
}

#[tokio::test]
async fn binary_attachments_several_and_nested() {
    let server = node(NodeOptions::default()).await;
    let (client, mut events) = Client::builder(server.url())
        .token("secret")
        .connect()
        .unwrap();
    connected(&client).await;
    let mut nested = std::collections::BTreeMap::new();
    nested.insert("label".to_string(), Data::from("inner"));
    nested.insert(
        "blobs".to_string(),
        Data::Array(vec![
            Data::from(vec![1u8, 2, 3]),
            Data::from(vec![0xffu8; 1000]),
        ]),
    );
    let args = Payload::from_data([
        Data::from(b"top".to_vec()),
        Data::Object(nested),
        Data::from(json!(7)),
    ]);
    assert_eq!(args.attachments().len(), 3);
    let ack = client
        .emit_with_ack("echo", args.clone(), WAIT)
        .await
        .unwrap();
    assert_eq!(
        ack.to_data().unwrap(),
        args.to_data().unwrap(),
        "binary comes back in place"
    );
    // And as a server-sent binary event.
    client.emit("echo", args.clone()).await.unwrap();
    let back = next_event(&mut events, "echo").await;
    assert_eq!(back.to_data().unwrap(), args.to_data().unwrap());
    client.disconnect().await;
}

#[tokio::test]
async fn custom_namespace() {
    let server = node(NodeOptions::default()).await;
    let url = format!("{}/admin", server.url());
    let (client, mut events) = Client::builder(url).token("secret").connect().unwrap();
    connected(&client).await;
    let welcome: Value = next_event(&mut events, "welcome")
        .await
        .first()
        .unwrap()
        .unwrap();
    assert_eq!(welcome["nsp"], "/admin");
    let ack = client
        .emit_with_ack("echo", Payload::json("ns").unwrap(), WAIT)
        .await
        .unwrap();
    assert_eq!(ack.as_json(), r#"["ns"]"#);
    client.disconnect().await;
}

#[tokio::test]
async fn server_disconnect_is_final() {
    let server = node(NodeOptions::default()).await;
    let (client, _events) = Client::builder(server.url())
        .token("secret")
        .connect()
        .unwrap();
    connected(&client).await;
    client.emit("disconnect-me", Payload::new()).await.unwrap();
    let state = until_status(&client, Status::Disconnected).await;
    assert_eq!(state.end, Some(EndReason::ServerDisconnect));
}

#[tokio::test]
async fn server_pings_are_answered() {
    // The server waits a whole second for each pong, so a late ping on a loaded machine is
    // no failure; a client that never answered would be closed after 1.2 s.
    let server = node(NodeOptions {
        ping_interval_ms: Some(200),
        ping_timeout_ms: Some(1000),
        ..NodeOptions::default()
    })
    .await;
    let (client, _events) = Client::builder(server.url())
        .token("secret")
        .connect()
        .unwrap();
    connected(&client).await;
    let mut changes = client.state_changes();
    // Twelve ping intervals, twice the time a silent client would have lasted.
    tokio::time::sleep(Duration::from_millis(2400)).await;
    assert!(
        changes.try_recv().is_err(),
        "no state change: {:?}",
        client.state()
    );
    let ack = client
        .emit_with_ack("echo", Payload::json(&1).unwrap(), WAIT)
        .await
        .unwrap();
    assert_eq!(ack.as_json(), "[1]");
    client.disconnect().await;
}

#[tokio::test]
async fn with_the_drop_policy_a_reader_that_stops_reading_keeps_the_connection_and_learns_what_it_missed()
 {
    // A server that closes a client whose pong is 1.2 s late.
    let server = node(NodeOptions {
        ping_interval_ms: Some(200),
        ping_timeout_ms: Some(1000),
        ..NodeOptions::default()
    })
    .await;
    let (client, mut events) = Client::builder(server.url())
        .token("secret")
        .overflow(Overflow::Drop)
        .event_buffer(8)
        .connect()
        .unwrap();
    connected(&client).await;
    let mut changes = client.state_changes();
    let flooded = client
        .emit_with_ack("flood", Payload::json(&500).unwrap(), WAIT)
        .await
        .unwrap();
    assert_eq!(flooded.as_json(), "[500]");
    // Nobody reads for twelve ping intervals, twice what a client that stopped reading the
    // socket would have lasted.
    tokio::time::sleep(Duration::from_millis(2400)).await;
    assert!(
        changes.try_recv().is_err(),
        "no state change: {:?}",
        client.state()
    );
    let (mut floods, mut missed) = (0u64, 0u64);
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(300), events.next()).await
    {
        match item {
            Incoming::Event(e) if e.name() == "flood" => floods += 1,
            Incoming::Lagged { missed: n } => missed += n,
            _ => {}
        }
    }
    assert!(floods <= 8, "at most the buffer waited: {floods}");
    assert!(
        missed > 0 && floods + missed >= 500,
        "every flood event was read or counted: {floods} read, {missed} missed"
    );
    assert_eq!(client.state().status, Status::Connected);
    client.disconnect().await;
}

#[tokio::test]
async fn emits_and_acks_take_any_serialize_arguments() {
    let server = node(NodeOptions::default()).await;
    let (client, mut events) = Client::builder(server.url())
        .token("secret")
        .connect()
        .unwrap();
    connected(&client).await;
    // A tuple is the argument list; any other value is one argument.
    let ack = client
        .emit_with_ack("echo", (1, "two", json!({"three": 3})), WAIT)
        .await
        .unwrap();
    assert_eq!(ack.as_json(), r#"[1,"two",{"three":3}]"#);
    let ack = client
        .emit_with_ack("echo", vec![4, 5], WAIT)
        .await
        .unwrap();
    assert_eq!(ack.as_json(), "[[4,5]]");
    let ack = client.emit_with_ack("echo", (), WAIT).await.unwrap();
    assert_eq!(ack.as_json(), "[]");
    // Arguments that are not JSON are refused, not sent.
    let mut bad = std::collections::HashMap::new();
    bad.insert((1, 2), 3);
    let refused = client.emit("echo", bad).await;
    assert!(
        matches!(refused, Err(relink::EmitError::InvalidArgs { .. })),
        "{refused:?}"
    );
    // An ack with a tuple: the server asks us ("ask" emits "q" with an ack) and reports it.
    client.emit("ask", "q").await.unwrap();
    loop {
        match tokio::time::timeout(WAIT, events.next()).await {
            Ok(Some(Incoming::Event(mut event))) if event.name() == "q" => {
                assert!(event.ack(("ok", 7)));
                break;
            }
            Ok(Some(_)) => {}
            other => panic!("no ask: {other:?}"),
        }
    }
    let asked = next_event(&mut events, "asked").await;
    assert_eq!(asked.as_json(), r#"[{"ok":true,"reply":["ok",7]}]"#);
    client.disconnect().await;
}

#[tokio::test]
async fn handlers_by_name_take_their_events_in_order_and_answer_acks() {
    let server = node(NodeOptions::default()).await;
    let (welcomed_tx, mut welcomed) = tokio::sync::mpsc::unbounded_channel();
    let (ticks_tx, mut ticks) = tokio::sync::mpsc::unbounded_channel();
    let (others_tx, mut others) = tokio::sync::mpsc::unbounded_channel();
    let (client, mut events) = Client::builder(server.url())
        .token("secret")
        // On the builder: in place for the very first event.
        .on("welcome", move |event| {
            let tx = welcomed_tx.clone();
            async move {
                let _ = tx.send(event.name().to_owned());
            }
        })
        .connect()
        .unwrap();
    client.on("tick", move |event| {
        let tx = ticks_tx.clone();
        async move {
            let n: (u64,) = event.args().deserialize().unwrap();
            // A slow handler still gets them in order, one at a time.
            tokio::time::sleep(Duration::from_millis(2)).await;
            let _ = tx.send(n.0);
        }
    });
    // The server asks us with "q"; the handler answers.
    client.on("q", |mut event| async move {
        assert!(event.ack(("ok", 7)));
    });
    client.on_any(move |event| {
        let tx = others_tx.clone();
        async move {
            let _ = tx.send((event.name().to_owned(), event.args().as_json().to_owned()));
        }
    });
    connected(&client).await;
    let first = tokio::time::timeout(WAIT, welcomed.recv()).await.unwrap();
    assert_eq!(first.as_deref(), Some("welcome"));
    client.emit_with_ack("tick", (20, 1), WAIT).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 20 {
        seen.push(
            tokio::time::timeout(WAIT, ticks.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(seen, (1..=20).collect::<Vec<u64>>());
    client.emit("ask", "q").await.unwrap();
    // "asked" (and "tick-done") have no named handler: the catch-all takes them; "asked"
    // carries the answer the "q" handler gave.
    let mut other_names = Vec::new();
    let asked = loop {
        let next = tokio::time::timeout(WAIT, others.recv()).await.unwrap();
        let (name, args) = next.unwrap();
        if name == "asked" {
            break args;
        }
        other_names.push(name);
    };
    assert_eq!(asked, r#"[{"ok":true,"reply":["ok",7]}]"#);
    assert!(
        other_names.iter().any(|n| n == "tick-done"),
        "{other_names:?}"
    );
    // Nothing taken by a handler reached the stream: only notices.
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(200), events.next()).await
    {
        assert!(!matches!(item, Incoming::Event(_)), "{item:?}");
    }
    // Off: "tick" goes to the catch-all again.
    client.off("tick");
    client.emit_with_ack("tick", (1, 1), WAIT).await.unwrap();
    loop {
        let next = tokio::time::timeout(WAIT, others.recv()).await.unwrap();
        if next.unwrap().0 == "tick" {
            break;
        }
    }
    client.disconnect().await;
}

#[tokio::test]
async fn https_to_a_server_without_tls_is_said_so_and_not_retried() {
    let server = node(NodeOptions::default()).await;
    let url = server.url().replace("http://", "https://");
    let (client, _events) = Client::builder(url).token("secret").connect().unwrap();
    let state = until_terminal(&client).await;
    assert_eq!(state.end, Some(EndReason::Configuration), "{state:?}");
    assert_eq!(state.reason, Some(relink::Reason::NotTls), "{state:?}");
    let error = state.last_error.unwrap_or_default();
    assert!(error.contains("does not speak TLS"), "{error}");
}

#[tokio::test]
async fn server_restart_is_survived() {
    let mut server = node(NodeOptions::default()).await;
    let (client, _events) = Client::builder(server.url())
        .token("secret")
        .backoff_initial(Duration::from_millis(50))
        .backoff_max(Duration::from_millis(200))
        .connect()
        .unwrap();
    connected(&client).await;
    let first = client.state().socket_id;
    server.restart().await.unwrap();
    until_status(&client, Status::Reconnecting).await;
    until_status(&client, Status::Connected).await;
    assert_ne!(client.state().socket_id, first);
    client.disconnect().await;
}

#[tokio::test]
async fn state_changes_are_numbered_and_end_after_the_terminal_state() {
    let server = node(NodeOptions::default()).await;
    let (client, _events) = Client::builder(server.url())
        .token("secret")
        .connect()
        .unwrap();
    let mut changes = client.state_changes();
    let snapshot = client.state();
    connected(&client).await;
    client.disconnect().await;
    let mut seqs = vec![snapshot.seq];
    let mut last = snapshot;
    loop {
        match tokio::time::timeout(WAIT, changes.recv())
            .await
            .expect("the stream ends")
        {
            // As documented: changes at or below the snapshot's seq are already in it.
            Ok(state) if state.seq <= seqs[0] => {}
            Ok(state) => {
                seqs.push(state.seq);
                last = state;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(last.status, Status::Disconnected);
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "increasing: {seqs:?}");
}

/// How long a whole burst may take to arrive (a debug build on a shared 2-core machine).
const BURST_WAIT: Duration = Duration::from_secs(120);

/// A little work per event, as an application does: the argument parsed, a checksum.
fn work(event: &relink::Event) -> u64 {
    let (n,): (u64,) = event.args().deserialize().expect("a numbered burst event");
    (0..64u64).fold(n, |acc, i| acc.rotate_left(5) ^ i)
}

#[tokio::test]
async fn a_burst_of_100000_events_at_connect_reaches_a_slow_reader_whole_and_in_order() {
    let server = node(NodeOptions {
        burst_on_connect: 100_000,
        ..NodeOptions::default()
    })
    .await;
    let (client, mut events) = Client::builder(server.url())
        .token("secret")
        .connect()
        .unwrap();
    let mut sum = 0u64;
    let burst = read_burst(&mut events, BURST_WAIT, None, |e| {
        sum = sum.wrapping_add(work(e));
    })
    .await;
    assert_ne!(sum, 1, "the work is not optimised away");
    burst.assert_whole(100_000);
    assert_eq!(
        burst.connects,
        [false],
        "one connection held through the burst"
    );
    client.disconnect().await;
}

#[tokio::test]
async fn a_burst_of_100000_events_at_connect_reaches_a_slow_handler_whole_and_in_order() {
    let server = node(NodeOptions {
        burst_on_connect: 100_000,
        ..NodeOptions::default()
    })
    .await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let done = tx.clone();
    let (client, _events) = Client::builder(server.url())
        .token("secret")
        .on("burst", move |event| {
            let tx = tx.clone();
            async move {
                std::hint::black_box(work(&event));
                let _ = tx.send(event.args().deserialize::<(u64,)>().expect("numbered").0);
                tokio::task::yield_now().await;
            }
        })
        .on("burst-done", move |_| {
            let done = done.clone();
            async move {
                let _ = done.send(0);
            }
        })
        .connect()
        .unwrap();
    let mut got = Vec::new();
    // `burst-done` has a handler of its own, so it may overtake the last `burst` events.
    let mut done_seen = false;
    tokio::time::timeout(BURST_WAIT, async {
        while got.len() < 100_000 || !done_seen {
            match rx.recv().await.expect("handlers alive") {
                0 => done_seen = true,
                n => got.push(n),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not whole within {BURST_WAIT:?}: {} events", got.len()));
    support::Burst {
        got,
        ..Default::default()
    }
    .assert_whole(100_000);
    client.disconnect().await;
}

#[tokio::test]
async fn a_recovery_replay_of_20000_missed_events_arrives_whole_in_order_exactly_once() {
    let mut server = node(NodeOptions {
        recovery: true,
        ..NodeOptions::default()
    })
    .await;
    let (client, mut events) = Client::builder(server.url())
        .token("secret")
        .backoff_initial(Duration::from_millis(200))
        .connect()
        .unwrap();
    next_event(&mut events, "welcome").await;
    // The server closes the link, then sends 20,000 events to the room of the socket that
    // is away: kept for it, and replayed when it comes back.
    server.disconnect_all_then_burst(20_000, 0).await.unwrap();
    let burst = read_burst(&mut events, BURST_WAIT, None, |_| {}).await;
    assert_eq!(burst.connects, [true], "the session was recovered");
    burst.assert_whole(20_000);
    client.disconnect().await;
}
