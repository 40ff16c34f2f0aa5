//! Nothing lost: connection state recovery, at-least-once under chaos, a bounded outbox.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use rand::{Rng, SeedableRng};
use relink::{Client, EmitError, Events, Incoming, Payload, Status};
use relink_testkit::gateway::{Gateway, Mode};
use relink_testkit::node::{NodeOptions, NodeServer};
use std::time::Duration;
use support::{WAIT, until_status};

const MS: fn(u64) -> Duration = Duration::from_millis;

async fn recovery_server() -> NodeServer {
    NodeServer::start(NodeOptions {
        recovery: true,
        ..NodeOptions::default()
    })
    .await
    .expect("start Node (npm ci --prefix interop/node)")
}

async fn next(events: &mut Events) -> Incoming {
    tokio::time::timeout(WAIT, events.next())
        .await
        .expect("an item within WAIT")
        .expect("events open")
}

/// A client of the Node server (token `secret`) that reconnects within 100 ms.
fn connect_quick(url: &str) -> (Client, Events) {
    Client::builder(url)
        .token("secret")
        .backoff_initial(MS(50))
        .backoff_max(MS(100))
        .connect()
        .unwrap()
}

#[tokio::test]
async fn recovery_replays_missed_ticks_exactly_once_in_order() {
    let mut server = recovery_server().await;
    let (client, mut events) = connect_quick(&server.url());
    // The welcome event carries the first offset: without one there is nothing to recover.
    let mut ticks = Vec::new();
    let mut recovered_seen = false;
    let mut connects = 0;
    let mut dropped = false;
    client
        .emit("tick", Payload::json(&40).unwrap().with(&50).unwrap())
        .await
        .unwrap();
    loop {
        match next(&mut events).await {
            Incoming::Connected { recovered, .. } => {
                connects += 1;
                if connects > 1 {
                    assert!(recovered, "the second connection restores the session");
                    recovered_seen = true;
                }
            }
            Incoming::Event(e) if e.name() == "tick" => {
                // The offset the server appended is not in the user's arguments.
                let (n,): (u32,) = e.args().deserialize().unwrap();
                ticks.push(n);
                if n == 10 && !dropped {
                    dropped = true;
                    server.disconnect_all().await.unwrap();
                }
            }
            Incoming::Event(e) if e.name() == "tick-done" => break,
            _ => {}
        }
    }
    assert!(recovered_seen, "a recovered reconnect happened");
    assert!(client.state().recovered);
    assert_eq!(
        ticks,
        (1..=40).collect::<Vec<_>>(),
        "every tick once, in order"
    );
    client.disconnect().await;
}

#[tokio::test]
async fn without_server_support_the_client_reconnects_and_says_it_did_not_recover() {
    let mut server = NodeServer::start(NodeOptions::default()).await.unwrap();
    let (client, mut events) = connect_quick(&server.url());
    assert!(matches!(
        next(&mut events).await,
        Incoming::Connected {
            recovered: false,
            ..
        }
    ));
    server.disconnect_all().await.unwrap();
    loop {
        if let Incoming::Connected { recovered, .. } = next(&mut events).await {
            assert!(!recovered);
            break;
        }
    }
    assert!(!client.state().recovered);
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_acked_emits_survive_twenty_random_drops() {
    const N: u32 = 10_000;
    let mut server = NodeServer::start(NodeOptions::default()).await.unwrap();
    let gateway = Gateway::start(format!("127.0.0.1:{}", server.port()).parse().unwrap())
        .await
        .unwrap();
    let (client, _events) = Client::builder(gateway.url())
        .token("secret")
        .backoff_initial(MS(5))
        .backoff_max(MS(20))
        .connect()
        .unwrap();
    until_status(&client, Status::Connected).await;
    let mut changes = client.state_changes();
    let producer = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut acks = Vec::with_capacity(N as usize);
            for id in 0..N {
                let mut payload = Payload::json(&id).unwrap();
                loop {
                    match client.emit_acked("count", payload, MS(2000), 100).await {
                        Ok(ack) => {
                            acks.push(ack);
                            break;
                        }
                        // Disconnected with a full outbox: the payload comes back; wait and retry.
                        Err(EmitError::OutboxFull { payload: back, .. }) => {
                            payload = back;
                            client.wait_connected().await.unwrap();
                        }
                        Err(e) => panic!("emit {id}: {e}"),
                    }
                }
            }
            futures_util::future::join_all(acks).await
        })
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(20);
    for drop in 0..20 {
        tokio::time::sleep(MS(rng.random_range(10..60))).await;
        // Half clean closes by the server, half abrupt resets in the network: acks in flight
        // are lost, so emits are resent and the server may see them twice.
        if drop % 2 == 0 {
            server.disconnect_all().await.unwrap();
        } else {
            gateway.reset_all();
        }
    }
    let results = tokio::time::timeout(Duration::from_secs(120), producer)
        .await
        .expect("all acks within 120 s")
        .unwrap();
    let mut reconnects = 0;
    while let Ok(state) = changes.try_recv() {
        reconnects += usize::from(state.status == Status::Connected);
    }
    assert!(
        reconnects >= 5,
        "the drops hit while emitting: {reconnects} reconnects"
    );
    let failed = results.iter().filter(|r| r.is_err()).count();
    assert_eq!(failed, 0, "every emit acknowledged");
    let stats = server.stats().await.unwrap();
    assert_eq!(
        stats["unique"], N,
        "every id arrived at least once: {stats}"
    );
    println!(
        "chaos: {N} acked emits, 20 drops, {reconnects} reconnects while emitting: received {} ({} duplicates)",
        stats["received"], stats["duplicates"]
    );
    client.disconnect().await;
}

#[tokio::test]
async fn outbox_stays_bounded_through_a_long_outage() {
    let server = NodeServer::start(NodeOptions::default()).await.unwrap();
    let gateway = Gateway::start(format!("127.0.0.1:{}", server.port()).parse().unwrap())
        .await
        .unwrap();
    gateway.set_mode(Mode::Status {
        code: 503,
        retry_after: None,
    });
    let (client, mut events) = Client::builder(gateway.url())
        .token("secret")
        .backoff_initial(MS(5))
        .backoff_max(MS(10))
        .outbox_limits(1024, 4 << 20)
        .connect()
        .unwrap();
    // 100,000 small emits during the outage: the first 1,024 are kept, the rest handed back.
    let mut accepted = 0u32;
    let mut handed_back = 0u32;
    for i in 0..100_000u32 {
        match client.try_emit("count", Payload::json(&i).unwrap()) {
            Ok(()) => accepted += 1,
            Err(e) => {
                assert!(matches!(e, EmitError::OutboxFull { .. }), "{e}");
                assert_eq!(e.into_payload().unwrap().first::<u32>().unwrap(), Some(i));
                handed_back += 1;
            }
        }
    }
    assert_eq!((accepted, handed_back), (1024, 100_000 - 1024));
    // The byte bound holds too: 64 KiB payloads, 4 MiB of room.
    let big = "x".repeat(64 << 10);
    let (big_client, _big_events) = Client::builder(gateway.url())
        .token("secret")
        .backoff_initial(MS(5))
        .backoff_max(MS(10))
        .outbox_limits(1024, 4 << 20)
        .connect()
        .unwrap();
    let kept = (0..200)
        .filter(|_| {
            big_client
                .try_emit("big", Payload::json(&big).unwrap())
                .is_ok()
        })
        .count();
    assert_eq!(
        kept,
        (4 << 20) / (64 * 1024 + "big".len() + 2),
        "bounded by bytes"
    );
    big_client.disconnect().await;
    // When the outage ends, the kept emits are delivered in order, before newer ones.
    gateway.set_mode(Mode::Forward);
    until_status(&client, Status::Connected).await;
    client.emit("stats", Payload::new()).await.unwrap();
    loop {
        if let Incoming::Event(e) = tokio::time::timeout(WAIT, events.next())
            .await
            .unwrap()
            .unwrap()
            && e.name() == "stats"
        {
            let stats: serde_json::Value = e.args().first().unwrap().unwrap();
            assert_eq!(stats["unique"], 1024, "{stats}");
            assert_eq!(stats["duplicates"], 0, "{stats}");
            break;
        }
    }
    client.disconnect().await;
}
