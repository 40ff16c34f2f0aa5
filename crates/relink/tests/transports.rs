//! Long-polling, the upgrade to WebSocket, the fallback when WebSocket is refused, proxies
//! and TLS trust, against the official Node server.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use relink::{Client, EndReason, Incoming, Payload, Reason, Status, Transport};
use relink_testkit::gateway::{Gateway, Mode};
use relink_testkit::node::{NodeOptions, NodeServer};
use relink_testkit::proxy::Proxy;
use relink_testkit::tls::TlsFront;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use support::{WAIT, next_event, next_whole_event, read_burst, until, until_status};

async fn node(opts: NodeOptions) -> NodeServer {
    NodeServer::start(opts)
        .await
        .expect("start the Node socket.io server (npm ci --prefix interop/node)")
}

fn polling_only() -> NodeOptions {
    NodeOptions {
        transports: Some(vec!["polling"]),
        ..NodeOptions::default()
    }
}

#[tokio::test]
async fn a_polling_only_server_carries_events_acks_and_binary_both_ways() {
    let server = node(polling_only()).await;
    // The default transports: WebSocket is refused (HTTP 400), long-polling follows at once.
    let (client, mut events) = Client::builder(server.url())
        .token("secret")
        .connect()
        .unwrap();
    let state = until_status(&client, Status::Connected).await;
    assert_eq!(state.transport, Some(Transport::Polling), "{state:?}");
    assert_eq!(
        state.attempt, 1,
        "the fallback is part of the first attempt"
    );
    let welcome: Value = next_event(&mut events, "welcome")
        .await
        .first()
        .unwrap()
        .unwrap();
    assert_eq!(welcome["id"], json!(state.socket_id.unwrap()));
    // Events both ways.
    client.emit("echo", ("plain", 1)).await.unwrap();
    assert_eq!(
        next_event(&mut events, "echo").await.as_json(),
        r#"["plain",1]"#
    );
    // Acks both ways.
    let ack = client.emit_with_ack("echo", "acked", WAIT).await.unwrap();
    assert_eq!(ack.as_json(), r#"["acked"]"#);
    client.emit("ask", ("question", 42)).await.unwrap();
    let mut question = next_whole_event(&mut events, "question").await;
    assert!(question.ack("answer"));
    let asked: Value = next_event(&mut events, "asked")
        .await
        .first()
        .unwrap()
        .unwrap();
    assert_eq!(asked, json!({"ok": true, "reply": ["answer"]}));
    // Binary both ways (base64 in the payloads), with an ack and as an event.
    let args = Payload::from_data([
        relink::Data::from(vec![0u8, 1, 2, 255]),
        relink::Data::from(json!({"n": 7})),
        relink::Data::from(vec![0xabu8; 3000]),
    ]);
    let ack = client
        .emit_with_ack("echo", args.clone(), WAIT)
        .await
        .unwrap();
    assert_eq!(ack.to_data().unwrap(), args.to_data().unwrap());
    client.emit("echo", args.clone()).await.unwrap();
    let back = next_event(&mut events, "echo").await;
    assert_eq!(back.to_data().unwrap(), args.to_data().unwrap());
    // Many writes at once go out in POSTs, none lost, in order.
    for i in 0..300 {
        client.emit("echo", i).await.unwrap();
    }
    for i in 0..300 {
        let n: (i32,) = next_event(&mut events, "echo").await.deserialize().unwrap();
        assert_eq!(n.0, i);
    }
    client.disconnect().await;
    assert_eq!(client.state().end, Some(EndReason::ClientDisconnect));
}

#[tokio::test]
async fn over_polling_a_lost_session_reconnects_and_recovers_its_state() {
    let mut server = node(NodeOptions {
        recovery: true,
        ..polling_only()
    })
    .await;
    let (client, mut events) = Client::builder(server.url())
        .token("secret")
        .transports([Transport::Polling])
        .backoff_initial(Duration::from_millis(50))
        .backoff_max(Duration::from_millis(100))
        .connect()
        .unwrap();
    client.emit("tick", (30, 40)).await.unwrap();
    let (mut ticks, mut connects, mut dropped) = (Vec::new(), 0, false);
    loop {
        match tokio::time::timeout(WAIT, events.next())
            .await
            .unwrap()
            .unwrap()
        {
            Incoming::Connected { recovered, .. } => {
                connects += 1;
                assert_eq!(recovered, connects > 1, "the second connection recovers");
            }
            Incoming::Event(e) if e.name() == "tick" => {
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
    assert_eq!(connects, 2);
    assert_eq!(
        ticks,
        (1..=30).collect::<Vec<_>>(),
        "every tick once, in order"
    );
    assert_eq!(client.state().transport, Some(Transport::Polling));
    client.disconnect().await;
}

#[tokio::test]
async fn polling_upgrades_to_websocket_with_nothing_lost_or_reordered() {
    // Small frames; then a small maxPayload and frames of 400 bytes, so what is written
    // during the pause outgrows a POST's worth (writes must not wait for a POST then).
    upgrade_while_emitting(None, 0).await;
    upgrade_while_emitting(Some(3_000), 400).await;
}

async fn upgrade_while_emitting(max_payload: Option<u64>, pad: usize) {
    let server = node(NodeOptions {
        max_payload,
        ..NodeOptions::default()
    })
    .await;
    // The upgrade's WebSocket is held back, so the switch happens while emits and echoes
    // flow over long-polling.
    let gateway = Gateway::start(format!("127.0.0.1:{}", server.port()).parse().unwrap())
        .await
        .unwrap();
    gateway.set_mode(Mode::DelayWebSocket(Duration::from_millis(300)));
    // Bounded in count and time; the upgrade comes after ~300 ms.
    const MAX_EMITS: u32 = 40_000;
    let (client, mut events) = Client::builder(gateway.url())
        .token("secret")
        .transports([Transport::Polling, Transport::WebSocket])
        // Read once all is sent: every echo must fit.
        .event_buffer(MAX_EMITS as usize + 10)
        .connect()
        .unwrap();
    let mut changes = client.state_changes();
    let pad = "p".repeat(pad);
    // Emits flow from before the connection, through the switch, until well after it.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut sent = 0u32;
    let mut upgraded_at = None;
    while sent < MAX_EMITS && tokio::time::Instant::now() < deadline {
        client.emit("echo", (sent, &pad)).await.unwrap();
        sent += 1;
        if upgraded_at.is_none() && client.state().transport == Some(Transport::WebSocket) {
            upgraded_at = Some(sent);
        }
        if upgraded_at.is_some_and(|at| sent >= at + 200) {
            break;
        }
        if sent.is_multiple_of(20) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let upgraded_at = upgraded_at.expect("upgraded while emitting");
    assert!(
        upgraded_at > 50,
        "emits flowed over polling first: {upgraded_at}"
    );
    for i in 0..sent {
        let (n, _): (u32, String) = next_event(&mut events, "echo").await.deserialize().unwrap();
        assert_eq!(n, i, "in order, none lost (upgraded after {upgraded_at})");
    }
    // The states said polling, then WebSocket, on the same connection.
    let mut transports = Vec::new();
    while let Ok(state) = changes.try_recv() {
        if state.status == Status::Connected {
            transports.push(state.transport);
        }
    }
    assert_eq!(
        transports,
        vec![Some(Transport::Polling), Some(Transport::WebSocket)]
    );
    let ack = client.emit_with_ack("echo", "after", WAIT).await.unwrap();
    assert_eq!(ack.as_json(), r#"["after"]"#);
    client.disconnect().await;
}

#[tokio::test]
async fn websocket_refused_on_the_way_falls_back_and_the_reconnect_starts_with_polling() {
    // A proxy that strips `Upgrade` (engine.io then answers 400 `Bad request`), and one
    // that answers the upgrade with a bare 400 itself.
    for mode in [Mode::StripUpgrade, Mode::RefuseWebSocket] {
        let mut server = node(NodeOptions::default()).await;
        let gateway = Gateway::start(format!("127.0.0.1:{}", server.port()).parse().unwrap())
            .await
            .unwrap();
        gateway.set_mode(mode.clone());
        let (client, _events) = Client::builder(gateway.url())
            .token("secret")
            .backoff_initial(Duration::from_millis(50))
            .backoff_max(Duration::from_millis(100))
            .connect()
            .unwrap();
        let first = until_status(&client, Status::Connected).await;
        assert_eq!(first.transport, Some(Transport::Polling), "{mode:?}");
        assert_eq!(
            first.attempt, 1,
            "{mode:?}: the fallback is part of the first attempt"
        );
        let ack = client.emit_with_ack("echo", 1, WAIT).await.unwrap();
        assert_eq!(ack.as_json(), "[1]");
        server.disconnect_all().await.unwrap();
        until(&client, |s| {
            s.status == Status::Connected && s.seq > first.seq + 1
        })
        .await;
        let ack = client.emit_with_ack("echo", 2, WAIT).await.unwrap();
        assert_eq!(ack.as_json(), "[2]");
        assert_eq!(client.state().transport, Some(Transport::Polling));
        // Upgrade probes (with a session id) may be tried each time; a first dial over
        // WebSocket only once: the reconnect went straight to long-polling.
        let dials: Vec<String> = gateway
            .refused_upgrades()
            .into_iter()
            .filter(|line| !line.contains("sid="))
            .collect();
        assert_eq!(dials.len(), 1, "{mode:?}: {dials:?}");
        assert!(dials[0].contains("transport=websocket"), "{dials:?}");
        client.disconnect().await;
    }
}

#[tokio::test]
async fn a_transient_failure_never_falls_back() {
    let server = node(NodeOptions::default()).await;
    let gateway = Gateway::start(format!("127.0.0.1:{}", server.port()).parse().unwrap())
        .await
        .unwrap();
    gateway.set_mode(Mode::Status {
        code: 503,
        retry_after: None,
    });
    let (client, _events) = Client::builder(gateway.url())
        .token("secret")
        .backoff_initial(Duration::from_millis(20))
        .backoff_max(Duration::from_millis(40))
        .connect()
        .unwrap();
    until(&client, |s| s.attempt >= 3).await;
    // One request per attempt: a 503 is the server's state, not the transport's.
    let stats = gateway.stats();
    assert!(
        stats.status_answers <= u64::from(client.state().attempt),
        "{stats:?} after {} attempts",
        client.state().attempt
    );
    gateway.set_mode(Mode::Forward);
    let state = until_status(&client, Status::Connected).await;
    assert_eq!(state.transport, Some(Transport::WebSocket));
    client.disconnect().await;
}

#[tokio::test]
async fn both_transports_tunnel_through_an_authenticating_proxy() {
    let server = node(NodeOptions::default()).await;
    let proxy = Proxy::start(Some(("alice", "pa55word"))).await.unwrap();
    for transports in [vec![Transport::WebSocket], vec![Transport::Polling]] {
        let before = proxy.stats().tunnels;
        let (client, _events) = Client::builder(server.url())
            .token("secret")
            .proxy(proxy.url_with("alice", "pa55word"))
            .transports(transports.clone())
            .connect()
            .unwrap();
        let state = until_status(&client, Status::Connected).await;
        assert_eq!(state.transport, Some(transports[0]));
        let ack = client
            .emit_with_ack("echo", "tunnelled", WAIT)
            .await
            .unwrap();
        assert_eq!(ack.as_json(), r#"["tunnelled"]"#);
        assert!(proxy.stats().tunnels > before, "{:?}", proxy.stats());
        client.disconnect().await;
    }
    assert_eq!(proxy.stats().auth_failures, 0);
}

#[tokio::test]
async fn a_proxy_that_refuses_the_credentials_fails_at_once_and_never_shows_them() {
    let server = node(NodeOptions::default()).await;
    let proxy = Proxy::start(Some(("alice", "pa55word"))).await.unwrap();
    for (url, sent) in [
        (proxy.url_with("alice", "wr0ng-s3cret"), true),
        (proxy.url(), false),
    ] {
        let builder = Client::builder(server.url()).token("secret").proxy(&url);
        assert!(!format!("{builder:?}").contains("s3cret"));
        let (client, _events) = builder.connect().unwrap();
        let state = until(&client, |s| s.status.is_terminal()).await;
        assert_eq!(state.status, Status::Failed);
        assert_eq!(state.end, Some(EndReason::Configuration));
        assert_eq!(state.reason, Some(Reason::ProxyAuth));
        assert_eq!(state.attempt, 1, "a 407 is not retried");
        let error = state.last_error.clone().unwrap();
        assert!(
            !error.contains("s3cret") && !error.contains("alice"),
            "{error}"
        );
        if sent {
            assert!(error.contains("refused the credentials"), "{error}");
        } else {
            assert!(error.contains("requires credentials"), "{error}");
        }
        assert!(!format!("{state:?}").contains("s3cret"));
    }
    assert_eq!(proxy.stats().tunnels, 0);
    assert_eq!(proxy.stats().auth_failures, 2);
}

#[tokio::test]
async fn both_transports_go_through_a_socks5_proxy() {
    use relink_testkit::socks::Socks5;
    let server = node(NodeOptions::default()).await;
    let socks = Socks5::start(Some(("carol", "s0cks-pw"))).await.unwrap();
    // socks5h: the proxy resolves the name; socks5: relink does, and sends an address.
    let by_name = format!("http://localhost:{}", server.port());
    for (scheme, url, named) in [
        ("socks5h", by_name.as_str(), true),
        ("socks5", by_name.as_str(), false),
    ] {
        for transports in [vec![Transport::WebSocket], vec![Transport::Polling]] {
            let before = socks.stats();
            let (client, _events) = Client::builder(url)
                .token("secret")
                .proxy(socks.url_with(scheme, "carol", "s0cks-pw"))
                .transports(transports.clone())
                .connect()
                .unwrap();
            until_status(&client, Status::Connected).await;
            let ack = client.emit_with_ack("echo", "socks", WAIT).await.unwrap();
            assert_eq!(ack.as_json(), r#"["socks"]"#);
            let after = socks.stats();
            assert!(after.tunnels > before.tunnels, "{scheme} {transports:?}");
            assert_eq!(
                after.by_name > before.by_name,
                named,
                "{scheme}: by name {named}"
            );
            client.disconnect().await;
        }
    }
    // Wrong credentials: an error naming the proxy, never the password.
    let (client, _events) = Client::builder(server.url())
        .token("secret")
        .proxy(socks.url_with("socks5", "carol", "wr0ng-pw"))
        .connect()
        .unwrap();
    let state = until(&client, |s| s.status.is_terminal()).await;
    assert_eq!(state.reason, Some(Reason::ProxyAuth), "{state:?}");
    assert_eq!(state.end, Some(EndReason::Configuration), "not retried");
    let error = state.last_error.unwrap();
    assert!(error.contains("refused the credentials"), "{error}");
    assert!(
        !error.contains("wr0ng-pw") && !error.contains("carol"),
        "{error}"
    );
    assert_eq!(socks.stats().auth_failures, 1);
    client.disconnect().await;
}

#[tokio::test]
async fn no_proxy_connects_directly() {
    let server = node(NodeOptions::default()).await;
    let proxy = Proxy::start(None).await.unwrap();
    let (client, _events) = Client::builder(server.url())
        .token("secret")
        .proxy(proxy.url())
        .no_proxy()
        .connect()
        .unwrap();
    until_status(&client, Status::Connected).await;
    assert_eq!(proxy.stats().tunnels, 0);
    client.disconnect().await;
}

#[tokio::test]
async fn an_unusable_proxy_url_is_refused_when_building() {
    for url in [
        "https://user:s3cret@proxy:443",
        "ftp://proxy",
        "not a url s3cret",
    ] {
        let error = Client::builder("http://127.0.0.1:9")
            .token("secret")
            .proxy(url)
            .validate()
            .unwrap_err();
        let text = error.to_string();
        assert!(text.contains("proxy"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }
}

#[tokio::test]
async fn a_certificate_from_a_private_ca_is_trusted_only_when_configured() {
    let server = node(NodeOptions::default()).await;
    let front = TlsFront::start(format!("127.0.0.1:{}", server.port()).parse().unwrap())
        .await
        .unwrap();
    // The default trust (the system's store) does not know the private CA.
    let (client, _events) = Client::builder(front.url())
        .token("secret")
        .connect()
        .unwrap();
    let state = until(&client, |s| s.status.is_terminal()).await;
    assert_eq!(state.end, Some(EndReason::Configuration), "{state:?}");
    assert_eq!(state.reason, Some(Reason::Certificate));
    let error = state.last_error.unwrap();
    assert!(
        error.contains("certificate of localhost:") && error.contains("SSL_CERT_FILE"),
        "{error}"
    );
    // Trusted through a configuration that names it, over both transports.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(front.ca_der().clone()).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tls = Arc::new(tls);
    for transports in [vec![Transport::WebSocket], vec![Transport::Polling]] {
        let (client, _events) = Client::builder(front.url())
            .token("secret")
            .tls_config(Arc::clone(&tls))
            .transports(transports)
            .connect()
            .unwrap();
        until_status(&client, Status::Connected).await;
        let ack = client.emit_with_ack("echo", "tls", WAIT).await.unwrap();
        assert_eq!(ack.as_json(), r#"["tls"]"#);
        client.disconnect().await;
    }
}

#[tokio::test]
async fn posts_stay_within_the_servers_max_payload() {
    // engine.io closes a session whose POST is larger than maxHttpBufferSize.
    let server = node(NodeOptions {
        max_payload: Some(4000),
        ..polling_only()
    })
    .await;
    let (client, mut events) = Client::builder(server.url())
        .token("secret")
        .transports([Transport::Polling])
        .event_buffer(1000)
        .connect()
        .unwrap();
    until_status(&client, Status::Connected).await;
    let mut changes = client.state_changes();
    let text = "x".repeat(900);
    // Written while a POST is in flight, so they wait and go out batched.
    for i in 0..60 {
        client.emit("echo", (i, &text)).await.unwrap();
    }
    for i in 0..60 {
        let (n, back): (i32, String) = next_event(&mut events, "echo").await.deserialize().unwrap();
        assert_eq!((n, back.len()), (i, 900));
    }
    assert!(
        changes.try_recv().is_err(),
        "the session never dropped: {:?}",
        client.state()
    );
    client.disconnect().await;
}

#[tokio::test]
async fn a_hostile_polling_server_is_a_protocol_error_not_a_panic_or_a_hog() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Answers every request with 200 and a body: far too large, then garbage.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        // Every attempt meets one of the two (bounded: the test ends it).
        for i in 0usize.. {
            let body = if i == 0 {
                vec![b'4'; 200_000]
            } else {
                b"0{\"sid\":\x1e\xff".to_vec()
            };
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut head = [0u8; 4096];
            let _ = socket.read(&mut head).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.write_all(&body).await;
        }
    });
    let (client, _events) = Client::builder(format!("http://127.0.0.1:{port}"))
        .token("secret")
        .transports([Transport::Polling])
        .max_message_size(64 * 1024)
        .backoff_initial(Duration::from_millis(10))
        .backoff_max(Duration::from_millis(20))
        .connect()
        .unwrap();
    let first = until(&client, |s| s.last_error.is_some()).await;
    assert_eq!(first.reason, Some(Reason::ParseError), "{first:?}");
    assert!(
        first
            .last_error
            .unwrap()
            .contains("larger than max_message_size"),
        "{:?}",
        client.state()
    );
    let second = until(&client, |s| s.attempt >= 3).await;
    assert_eq!(second.reason, Some(Reason::ParseError), "{second:?}");
    client.disconnect().await;
    server.abort();
}

#[tokio::test]
async fn over_polling_emits_queue_behind_a_post_in_flight_within_the_outbox_bounds() {
    let server = node(NodeOptions {
        max_payload: Some(10_000),
        ..polling_only()
    })
    .await;
    let (client, mut events) = Client::builder(server.url())
        .token("secret")
        .transports([Transport::Polling])
        .outbox_limits(4, 1 << 20)
        .event_buffer(1000)
        .connect()
        .unwrap();
    until_status(&client, Status::Connected).await;
    // No await: the connection task cannot run, so the POST started by the first emits
    // cannot be answered. What waits for it is bounded by one POST's worth, then the
    // outbox's 4 packets; past that the emit is refused, not buffered without end.
    let text = "y".repeat(1000);
    let mut accepted = 0;
    let mut refused = 0;
    for i in 0..100 {
        match client.try_emit("echo", (i, &text)) {
            Ok(()) => accepted += 1,
            Err(relink::EmitError::OutboxFull { .. }) => refused += 1,
            Err(other) => panic!("{other}"),
        }
    }
    assert!(refused > 0, "bounded: {accepted} accepted");
    assert!(accepted >= 10, "a POST's worth and the outbox: {accepted}");
    // What was accepted all arrives, in order.
    for i in 0..accepted {
        let (n, _): (i32, String) = next_event(&mut events, "echo").await.deserialize().unwrap();
        assert_eq!(n, i);
    }
    client.disconnect().await;
}

#[tokio::test]
async fn over_polling_an_attachment_is_measured_as_base64_against_max_payload() {
    let server = node(NodeOptions {
        max_payload: Some(4000),
        ..polling_only()
    })
    .await;
    let (client, _events) = Client::builder(server.url())
        .token("secret")
        .transports([Transport::Polling])
        .connect()
        .unwrap();
    until_status(&client, Status::Connected).await;
    // 3,500 bytes fit 4,000, but not as the 4,668 of base64 a polling payload carries:
    // refused here, rather than sent and the session closed by the server.
    let blob = Payload::from_data([relink::Data::from(vec![7u8; 3500])]);
    match client.try_emit("echo", blob) {
        Err(relink::EmitError::TooLarge { limit, .. }) => assert_eq!(limit, 4000),
        other => panic!("{other:?}"),
    }
    let fits = Payload::from_data([relink::Data::from(vec![7u8; 2900])]);
    let ack = client
        .emit_with_ack("echo", fits.clone(), WAIT)
        .await
        .unwrap();
    assert_eq!(ack.to_data().unwrap(), fits.to_data().unwrap());
    client.disconnect().await;
}

#[tokio::test]
async fn disconnect_over_polling_says_goodbye_even_in_the_middle_of_an_upgrade() {
    let mut server = node(NodeOptions::default()).await;
    // Polling only; then polling with an upgrade under way (held back, so the goodbye
    // comes while the probe waits or the pause is on).
    let gateway = Gateway::start(format!("127.0.0.1:{}", server.port()).parse().unwrap())
        .await
        .unwrap();
    gateway.set_mode(Mode::DelayWebSocket(Duration::from_millis(200)));
    for (transports, pause) in [
        (vec![Transport::Polling], 0),
        (vec![Transport::Polling, Transport::WebSocket], 0),
        (vec![Transport::Polling, Transport::WebSocket], 190),
        (vec![Transport::Polling, Transport::WebSocket], 210),
    ] {
        let (client, _events) = Client::builder(gateway.url())
            .token("secret")
            .transports(transports.clone())
            .connect()
            .unwrap();
        until_status(&client, Status::Connected).await;
        client.emit("echo", "last words").await.unwrap();
        tokio::time::sleep(Duration::from_millis(pause)).await;
        client.disconnect().await;
        let expected = "client namespace disconnect";
        let mut reasons = Vec::new();
        for _ in 0..100 {
            let answer = server.command(json!({"cmd": "disconnects"})).await.unwrap();
            reasons = answer["reasons"].as_array().cloned().unwrap_or_default();
            if !reasons.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            reasons.last().and_then(Value::as_str),
            Some(expected),
            "{transports:?} after {pause} ms: {reasons:?}"
        );
        server.restart().await.unwrap();
        gateway.set_upstream(format!("127.0.0.1:{}", server.port()).parse().unwrap());
    }
}

#[tokio::test]
async fn over_long_polling_a_burst_of_50000_events_at_connect_arrives_whole_and_in_order() {
    let server = node(NodeOptions {
        burst_on_connect: 50_000,
        ..polling_only()
    })
    .await;
    let (client, mut events) = Client::builder(server.url())
        .token("secret")
        .transports([Transport::Polling])
        .connect()
        .unwrap();
    // A reader slower than the wire: the budget fills now and then.
    read_burst(&mut events, Duration::from_secs(120), Some(5_000), |_| {})
        .await
        .assert_whole(50_000);
    client.disconnect().await;
}

#[tokio::test]
async fn over_long_polling_a_stalled_reader_loses_nothing_and_a_forgotten_session_says_unread() {
    let server = node(NodeOptions {
        recovery: true,
        ping_interval_ms: Some(300),
        ping_timeout_ms: Some(500),
        ..polling_only()
    })
    .await;
    let (client, mut events) = Client::builder(server.url())
        .token("secret")
        .transports([Transport::Polling])
        .max_message_size(1 << 20)
        .max_buffered_bytes(256 << 10)
        .backoff_initial(Duration::from_millis(100))
        .connect()
        .unwrap();
    next_event(&mut events, "welcome").await;
    client.emit("burst", (20_000, 0)).await.unwrap();
    // Nobody reads for three of the server's heartbeat windows: relink stops polling once
    // the budget is spent, so the server's pings go unheard and it forgets the session.
    tokio::time::sleep(Duration::from_millis(2_400)).await;
    let mut burst = read_burst(&mut events, Duration::from_secs(60), None, |_| {}).await;
    burst.assert_whole(20_000);
    // The server's verdict, read only now.
    burst.read_after(&mut events, Duration::from_secs(2)).await;
    assert!(
        !burst.reasons.is_empty() && burst.reasons.iter().all(|r| *r == Reason::Unread),
        "a session lost while unread says so: {:?}",
        burst.reasons
    );
    assert!(
        burst.connects.iter().all(|r| *r),
        "recovered: {:?}",
        burst.connects
    );
    client.disconnect().await;
}
