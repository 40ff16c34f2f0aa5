//! The client against a scripted in-process peer (`relink_testkit::peer`): the test plays the
//! server frame by frame, so every wire detail and every failure is exact and deterministic.

#![allow(clippy::unwrap_used, missing_docs)]

use relink::{
    AckError, Client, ClientBuilder, ConnectionState, EmitError, EndReason, Events, Incoming,
    Overflow, Payload, Status, Token,
};
use relink_testkit::peer::{DEFAULT_OPEN, Frame, Peer, PeerConn, PeerError, open_json};
use serde_json::{Value, json};
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::{Instant, timeout};

/// How long any single expectation may take before the test fails.
const WAIT: Duration = Duration::from_secs(10);
/// The window in which a test checks that something does NOT happen.
const QUIET: Duration = Duration::from_millis(300);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A client with token `t` and fast backoff, pointed at `url`.
fn builder(url: String) -> ClientBuilder {
    Client::builder(url)
        .token("t")
        .backoff_initial(ms(10))
        .backoff_max(ms(40))
        .connect_timeout(WAIT)
}

fn json_payload(v: Value) -> Payload {
    Payload::json(&v).unwrap()
}

async fn bind() -> Peer {
    Peer::bind().await.expect("bind the scripted peer")
}

async fn accept(peer: &mut Peer) -> PeerConn {
    peer.accept(WAIT)
        .await
        .expect("the client should have dialled the peer")
}

/// Waits until the state satisfies `pred`.
async fn until(client: &Client, pred: impl Fn(&ConnectionState) -> bool) -> ConnectionState {
    let mut rx = client.watch_state();
    match timeout(WAIT, rx.wait_for(|s| pred(s))).await {
        Ok(Ok(state)) => state.clone(),
        _ => panic!(
            "state not reached within {WAIT:?}; now {:?}",
            client.state()
        ),
    }
}

async fn until_status(client: &Client, status: Status) -> ConnectionState {
    until(client, |s| s.status == status).await
}

/// Reads transitions in order until one satisfies `pred` (skipping the others).
async fn transition(
    rx: &mut broadcast::Receiver<ConnectionState>,
    pred: impl Fn(&ConnectionState) -> bool,
) -> ConnectionState {
    let deadline = Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(state)) if pred(&state) => return state,
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(broadcast::error::RecvError::Closed)) => panic!("transitions closed"),
            Err(_) => panic!("transition not seen within {WAIT:?}"),
        }
    }
}

/// The next item from the client's event stream.
async fn next_incoming(events: &mut Events) -> Incoming {
    timeout(WAIT, events.next())
        .await
        .expect("an incoming item within WAIT")
        .expect("the event stream is open")
}

/// Accepts the next connection and connects the client on it with `open`.
async fn connect_on(peer: &mut Peer, client: &Client, open: &str) -> PeerConn {
    let mut conn = accept(peer).await;
    conn.establish(open).await;
    until_status(client, Status::Connected).await;
    conn
}

/// Connects a client (the test builder, then `configure`) on the next connection of `peer`,
/// and reads its `Connected` item.
async fn connected_reading(
    peer: &mut Peer,
    configure: impl FnOnce(ClientBuilder) -> ClientBuilder,
) -> (Client, Events, PeerConn) {
    let (client, mut events) = configure(builder(peer.url())).connect().unwrap();
    let conn = connect_on(peer, &client, DEFAULT_OPEN).await;
    assert!(matches!(
        next_incoming(&mut events).await,
        Incoming::Connected { .. }
    ));
    (client, events, conn)
}

/// The next frame, which must be text.
async fn text(conn: &mut PeerConn) -> String {
    match conn.recv_timeout(WAIT).await {
        Ok(Frame::Text(text)) => text,
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// Splits an EVENT frame on the main namespace, `42[<id>][...]`, into its ack id and array.
fn event_frame(frame: &str) -> (Option<u64>, Value) {
    let rest = frame
        .strip_prefix("42")
        .unwrap_or_else(|| panic!("not an EVENT frame: {frame}"));
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = (digits > 0).then(|| rest[..digits].parse().unwrap());
    (id, serde_json::from_str(&rest[digits..]).unwrap())
}

/// Asserts that nothing arrives on `conn` within [`QUIET`].
async fn assert_quiet(conn: &mut PeerConn) {
    match conn.recv_timeout(QUIET).await {
        Err(PeerError::Timeout(_)) => {}
        other => panic!("expected nothing, got {other:?}"),
    }
}

// --- the upgrade request and the CONNECT packet ---------------------------------------------

#[tokio::test]
async fn upgrade_request_has_engine_query_and_never_the_token() {
    const TOKEN: &str = "s3cr3t-upgrade-token";
    let mut peer = bind().await;
    let (client, _events) = builder(format!("{}/?room=lobby", peer.url()))
        .token(TOKEN)
        .connect()
        .unwrap();
    let mut conn = accept(&mut peer).await;
    let uri = conn.request_uri().to_owned();
    let (path, query) = uri.split_once('?').expect("a query");
    assert_eq!(path, "/socket.io/");
    let pairs: Vec<(&str, &str)> = query
        .split('&')
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .collect();
    assert!(pairs.contains(&("EIO", "4")), "{uri}");
    assert!(pairs.contains(&("transport", "websocket")), "{uri}");
    assert!(pairs.contains(&("room", "lobby")), "user query kept: {uri}");
    assert!(!uri.contains(TOKEN), "token in the URI: {uri}");
    assert!(!pairs.iter().any(|(k, _)| *k == "token"), "{uri}");
    for (name, value) in conn.request_headers() {
        assert!(!value.contains(TOKEN), "token in header {name}");
    }
    // The token travels in the CONNECT packet, and only there.
    let connect = conn.handshake(DEFAULT_OPEN).await;
    assert_eq!(connect, format!(r#"40{{"token":"{TOKEN}"}}"#));
    client.disconnect().await;
}

#[tokio::test]
async fn connect_frame_is_exactly_the_token() {
    let mut peer = bind().await;
    let (client, mut events) = builder(peer.url()).connect().unwrap();
    let mut conn = accept(&mut peer).await;
    assert_eq!(conn.handshake(DEFAULT_OPEN).await, r#"40{"token":"t"}"#);
    conn.send_text(r#"40{"sid":"abc"}"#).await.unwrap();
    match next_incoming(&mut events).await {
        Incoming::Connected {
            socket_id,
            recovered,
        } => {
            assert_eq!(socket_id, "abc");
            assert!(!recovered);
        }
        other => panic!("expected Connected, got {other:?}"),
    }
    let state = until_status(&client, Status::Connected).await;
    assert_eq!(state.socket_id.as_deref(), Some("abc"));
    client.disconnect().await;
}

#[tokio::test]
async fn connect_frame_names_the_namespace() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url()).namespace("/admin").connect().unwrap();
    let mut conn = accept(&mut peer).await;
    let connect = conn.handshake(DEFAULT_OPEN).await;
    assert_eq!(connect, r#"40/admin,{"token":"t"}"#);
    conn.send_text(r#"40/admin,{"sid":"adm"}"#).await.unwrap();
    until_status(&client, Status::Connected).await;
    client.emit("hi", json_payload(json!(1))).await.unwrap();
    conn.expect_text(r#"42/admin,["hi",1]"#).await;
    client.disconnect().await;
}

#[tokio::test]
async fn auth_fields_are_merged_with_the_token() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url())
        .auth(json!({"room": "a", "n": 2}))
        .connect()
        .unwrap();
    let mut conn = accept(&mut peer).await;
    let connect = conn.handshake(DEFAULT_OPEN).await;
    let body = connect.strip_prefix("40").expect("a CONNECT frame");
    let auth: Value = serde_json::from_str(body).unwrap();
    assert_eq!(auth, json!({"room": "a", "n": 2, "token": "t"}));
    client.disconnect().await;
}

// --- connect timeout --------------------------------------------------------------------------

/// The next failed attempt is a connect timeout, with a retry scheduled.
async fn expect_connect_timeout_retry(
    changes: &mut broadcast::Receiver<ConnectionState>,
) -> ConnectionState {
    let state = transition(changes, |s| s.reason.is_some()).await;
    assert_eq!(state.status, Status::Connecting, "{state:?}");
    assert_eq!(
        state.reason.map(relink::Reason::as_str),
        Some("connect_timeout")
    );
    assert!(state.next_attempt_in.is_some(), "{state:?}");
    state
}

#[tokio::test]
async fn connect_times_out_when_open_never_comes_and_tries_again() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url())
        .connect_timeout(ms(300))
        .connect()
        .unwrap();
    let mut changes = client.state_changes();
    // The upgrade completes, but the peer never sends OPEN.
    let _first = accept(&mut peer).await;
    let state = expect_connect_timeout_retry(&mut changes).await;
    assert!(state.last_error.is_some());
    let second = accept(&mut peer).await;
    assert!(second.index() >= 2);
    assert!(peer.accepted() >= 2);
    client.disconnect().await;
}

#[tokio::test]
async fn connect_times_out_when_connect_is_never_answered() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url())
        .connect_timeout(ms(300))
        .connect()
        .unwrap();
    let mut changes = client.state_changes();
    let mut first = accept(&mut peer).await;
    assert_eq!(first.handshake(DEFAULT_OPEN).await, r#"40{"token":"t"}"#);
    // No CONNECT reply.
    expect_connect_timeout_retry(&mut changes).await;
    let mut second = accept(&mut peer).await;
    assert_eq!(second.handshake(DEFAULT_OPEN).await, r#"40{"token":"t"}"#);
    client.disconnect().await;
}

// --- heartbeat --------------------------------------------------------------------------------

#[tokio::test]
async fn pings_are_answered_and_silence_is_a_ping_timeout() {
    let mut peer = bind().await;
    let (client, mut events) = builder(peer.url()).connect().unwrap();
    let mut changes = client.state_changes();
    let mut conn = connect_on(&mut peer, &client, &open_json(100, 100, 1_000_000)).await;
    conn.send_text("2").await.unwrap();
    conn.expect_text("3").await;
    // Then silence, with the connection left open.
    let state = transition(&mut changes, |s| s.status == Status::Reconnecting).await;
    assert_eq!(
        state.reason.map(relink::Reason::as_str),
        Some("ping_timeout"),
        "{state:?}"
    );
    assert!(state.next_attempt_in.is_some());
    let mut saw_disconnected = false;
    for _ in 0..8 {
        if let Incoming::Disconnected { reason } = next_incoming(&mut events).await {
            assert_eq!(reason, "ping_timeout");
            saw_disconnected = true;
            break;
        }
    }
    assert!(saw_disconnected);
    // And it comes back.
    let _again = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    client.disconnect().await;
}

// --- malformed input --------------------------------------------------------------------------

#[tokio::test]
async fn malformed_frames_reconnect_with_parse_error() {
    enum Bad {
        Text(&'static str),
        Binary(&'static [u8]),
    }
    let cases = [
        Bad::Text("4garbage"),
        Bad::Text("42[1]"),
        Bad::Binary(&[1, 2, 3]),
        Bad::Text(""),
        Bad::Text("9"),
        Bad::Text(r#"42["unterminated""#),
        Bad::Text(DEFAULT_OPEN),
        Bad::Text("43[1]"),
    ];
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url()).connect().unwrap();
    let mut changes = client.state_changes();
    for bad in cases {
        let mut conn = accept(&mut peer).await;
        conn.establish(DEFAULT_OPEN).await;
        transition(&mut changes, |s| s.status == Status::Connected).await;
        let shown = match bad {
            Bad::Text(t) => {
                // A second OPEN after connecting is a protocol violation too.
                let frame = if t == DEFAULT_OPEN {
                    format!("0{t}")
                } else {
                    t.to_owned()
                };
                conn.send_text(&frame).await.unwrap();
                frame
            }
            Bad::Binary(b) => {
                conn.send_binary(b.to_vec()).await.unwrap();
                format!("binary {b:?}")
            }
        };
        let state = transition(&mut changes, |s| s.status != Status::Connected).await;
        assert_eq!(state.status, Status::Reconnecting, "{shown}: {state:?}");
        assert_eq!(
            state.reason.map(relink::Reason::as_str),
            Some("parse_error"),
            "{shown}: {state:?}"
        );
    }
    // Still alive after all of them.
    let _conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    client.disconnect().await;
}

#[tokio::test]
async fn transport_closes_reconnect_with_transport_close() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url()).connect().unwrap();
    let mut changes = client.state_changes();

    // Engine.IO CLOSE packet.
    let mut conn = accept(&mut peer).await;
    conn.establish(DEFAULT_OPEN).await;
    transition(&mut changes, |s| s.status == Status::Connected).await;
    conn.send_text("1").await.unwrap();
    let state = transition(&mut changes, |s| s.status != Status::Connected).await;
    assert_eq!(
        (state.status, state.reason.map(relink::Reason::as_str)),
        (Status::Reconnecting, Some("transport_close"))
    );

    // A clean WebSocket close.
    let mut conn = accept(&mut peer).await;
    conn.establish(DEFAULT_OPEN).await;
    transition(&mut changes, |s| s.status == Status::Connected).await;
    conn.close().await.unwrap();
    let state = transition(&mut changes, |s| s.status != Status::Connected).await;
    assert_eq!(
        (state.status, state.reason.map(relink::Reason::as_str)),
        (Status::Reconnecting, Some("transport_close"))
    );

    // An abrupt TCP reset.
    let mut conn = accept(&mut peer).await;
    conn.establish(DEFAULT_OPEN).await;
    transition(&mut changes, |s| s.status == Status::Connected).await;
    conn.drop_tcp();
    let state = transition(&mut changes, |s| s.status != Status::Connected).await;
    assert_eq!(state.status, Status::Reconnecting);
    assert!(
        matches!(
            state.reason.map(relink::Reason::as_str),
            Some("network" | "transport_close" | "transport_error")
        ),
        "{state:?}"
    );

    let _conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    client.disconnect().await;
}

#[tokio::test]
async fn server_disconnect_is_final() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url()).connect().unwrap();
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    conn.send_text("41").await.unwrap();
    let state = until(&client, |s| s.status.is_terminal()).await;
    assert_eq!(state.status, Status::Disconnected);
    assert_eq!(state.end, Some(EndReason::ServerDisconnect));
    assert!(peer.accept(QUIET).await.is_none(), "no reconnect");
    assert!(matches!(
        client.emit("late", Payload::new()).await,
        Err(EmitError::Closed { .. })
    ));
}

// --- credentials ------------------------------------------------------------------------------

const REJECT: &str = r#"44{"message":"unauthorized","data":{"reason":"x"}}"#;

#[tokio::test]
async fn connect_error_is_retried_once_then_fails() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url()).connect().unwrap();
    for _ in 0..2 {
        let mut conn = accept(&mut peer).await;
        assert_eq!(conn.handshake(DEFAULT_OPEN).await, r#"40{"token":"t"}"#);
        conn.send_text(REJECT).await.unwrap();
    }
    let state = until(&client, |s| s.status.is_terminal()).await;
    assert_eq!(state.status, Status::Failed);
    assert_eq!(state.end, Some(EndReason::Unauthorized));
    assert_eq!(state.reason.map(relink::Reason::as_str), Some("rejected"));
    let last_error = state.last_error.unwrap_or_default();
    assert!(last_error.contains("unauthorized"), "{last_error}");
    assert!(peer.accept(QUIET).await.is_none(), "exactly one retry");
    assert_eq!(peer.accepted(), 2);
}

#[tokio::test]
async fn token_provider_is_asked_before_each_attempt() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let mut peer = bind().await;
    let (client, _events) = Client::builder(peer.url())
        .backoff_initial(ms(10))
        .backoff_max(ms(40))
        .token_provider(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            async move { Ok::<_, std::convert::Infallible>(Token::new(format!("tok-{n}"))) }
        })
        .connect()
        .unwrap();
    let mut first = accept(&mut peer).await;
    assert_eq!(
        first.handshake(DEFAULT_OPEN).await,
        r#"40{"token":"tok-1"}"#
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    first.send_text(REJECT).await.unwrap();
    let mut second = accept(&mut peer).await;
    assert_eq!(
        second.handshake(DEFAULT_OPEN).await,
        r#"40{"token":"tok-2"}"#,
        "the retry carries the refreshed token"
    );
    second.send_text(REJECT).await.unwrap();
    let state = until(&client, |s| s.status.is_terminal()).await;
    assert_eq!(state.end, Some(EndReason::Unauthorized));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

// --- events and acks from the server ----------------------------------------------------------

#[tokio::test]
async fn server_event_with_ack_id_is_acked_by_the_user() {
    let mut peer = bind().await;
    let (client, mut events) = builder(peer.url()).connect().unwrap();
    let mut conn = accept(&mut peer).await;
    conn.handshake(DEFAULT_OPEN).await;
    conn.send_text(r#"40{"sid":"s1"}"#).await.unwrap();
    assert!(matches!(
        next_incoming(&mut events).await,
        Incoming::Connected { .. }
    ));
    conn.send_text(r#"421["q",1]"#).await.unwrap();
    let mut event = match next_incoming(&mut events).await {
        Incoming::Event(event) => event,
        other => panic!("expected an event, got {other:?}"),
    };
    assert_eq!(event.name(), "q");
    assert_eq!(event.args().as_json(), "[1]");
    assert!(event.wants_ack());
    assert!(event.ack(json_payload(json!({"answer": 42}))));
    assert!(!event.ack(Payload::new()), "only one answer");
    conn.expect_text(r#"431[{"answer":42}]"#).await;
    client.disconnect().await;
}

#[tokio::test]
async fn binary_attachments_both_ways() {
    let mut peer = bind().await;
    let (client, mut events, mut conn) = connected_reading(&mut peer, |b| b).await;
    conn.send_text(r#"451-["bin",{"_placeholder":true,"num":0}]"#)
        .await
        .unwrap();
    conn.send_binary(vec![1, 2, 3]).await.unwrap();
    match next_incoming(&mut events).await {
        Incoming::Event(event) => {
            assert_eq!(event.name(), "bin");
            assert_eq!(event.args().attachments().len(), 1);
            assert_eq!(&event.args().attachments()[0][..], &[1, 2, 3]);
        }
        other => panic!("expected an event, got {other:?}"),
    }
    let mut payload = Payload::new();
    payload.push_binary(vec![9u8, 8, 7]);
    client.emit("up", payload).await.unwrap();
    conn.expect_text(r#"451-["up",{"_placeholder":true,"num":0}]"#)
        .await;
    assert_eq!(
        conn.recv_timeout(WAIT).await.unwrap(),
        Frame::Binary(vec![9, 8, 7])
    );
    client.disconnect().await;
}

// --- emits while disconnected -----------------------------------------------------------------

#[tokio::test]
async fn emits_while_disconnected_are_flushed_first_in_order() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url()).connect().unwrap();
    // Not connected yet: nothing was handshaken.
    client.emit("a", json_payload(json!(1))).await.unwrap();
    assert!(
        !client
            .emit_volatile("v", json_payload(json!(0)))
            .await
            .unwrap(),
        "volatile while disconnected is dropped"
    );
    client.try_emit("b", json_payload(json!(2))).unwrap();
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    client.emit("c", json_payload(json!(3))).await.unwrap();
    assert!(
        client
            .emit_volatile("w", json_payload(json!(4)))
            .await
            .unwrap(),
        "volatile while connected is sent"
    );
    conn.expect_text(r#"42["a",1]"#).await;
    conn.expect_text(r#"42["b",2]"#).await;
    conn.expect_text(r#"42["c",3]"#).await;
    conn.expect_text(r#"42["w",4]"#).await;
    assert_quiet(&mut conn).await;
    client.disconnect().await;
}

/// A client with an outbox of `packets`, whose first attempt dialled `peer` and waits for
/// an OPEN that only the test can send: disconnected for as long as the test likes.
async fn waiting_client(peer: &mut Peer, packets: usize) -> (Client, Events, PeerConn) {
    let (client, events) = builder(peer.url())
        .outbox_limits(packets, 1 << 20)
        .connect()
        .unwrap();
    let conn = accept(peer).await;
    (client, events, conn)
}

#[tokio::test]
async fn outbox_bound_hands_the_payload_back() {
    let mut peer = bind().await;
    let (client, _events, mut conn) = waiting_client(&mut peer, 2).await;
    client.try_emit("a", json_payload(json!(1))).unwrap();
    client.try_emit("b", json_payload(json!(2))).unwrap();
    let third = json_payload(json!({"third": true}));
    match client.try_emit("c", third.clone()) {
        Err(e @ EmitError::OutboxFull { packets: 2, .. }) => {
            assert_eq!(e.into_payload(), Some(third.clone()));
        }
        other => panic!("expected OutboxFull, got {other:?}"),
    }
    match timeout(WAIT, client.emit("d", third.clone())).await {
        Ok(Err(e @ EmitError::OutboxFull { .. })) => {
            assert_eq!(e.into_payload(), Some(third.clone()));
        }
        Ok(other) => panic!("expected OutboxFull, got {other:?}"),
        Err(_) => panic!("emit while disconnected with a full outbox must not wait"),
    }
    match timeout(WAIT, client.emit_with_ack("e", third.clone(), WAIT)).await {
        Ok(Err(AckError::Emit(EmitError::OutboxFull { .. }))) => {}
        Ok(other) => panic!("expected OutboxFull, got {other:?}"),
        Err(_) => panic!("emit_with_ack with a full outbox must not wait"),
    }
    // Once connected, exactly the two accepted emits go out.
    conn.establish(DEFAULT_OPEN).await;
    conn.expect_text(r#"42["a",1]"#).await;
    conn.expect_text(r#"42["b",2]"#).await;
    assert_quiet(&mut conn).await;
    client.disconnect().await;
}

#[tokio::test]
async fn outbox_bound_with_nothing_listening() {
    // A port that was bound and closed: every attempt is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (client, _events) = builder(format!("http://127.0.0.1:{port}"))
        .outbox_limits(2, 1 << 20)
        .connect()
        .unwrap();
    client.try_emit("a", Payload::new()).unwrap();
    client.emit("b", Payload::new()).await.unwrap();
    let payload = json_payload(json!("keep me"));
    let err = client.try_emit("c", payload.clone()).unwrap_err();
    assert!(matches!(err, EmitError::OutboxFull { .. }), "{err:?}");
    assert_eq!(err.into_payload(), Some(payload.clone()));
    let err = timeout(WAIT, client.emit("c", payload.clone()))
        .await
        .expect("does not hang")
        .unwrap_err();
    assert!(matches!(err, EmitError::OutboxFull { .. }), "{err:?}");
    until(&client, |s| s.reason == Some(relink::Reason::Network)).await;
    client.disconnect().await;
}

// --- maxPayload -------------------------------------------------------------------------------

#[tokio::test]
async fn max_payload_refuses_large_emits_and_keeps_the_connection() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url()).connect().unwrap();
    let mut conn = connect_on(&mut peer, &client, &open_json(25_000, 20_000, 100)).await;
    let big = json_payload(json!("x".repeat(500)));
    match client.emit("big", big.clone()).await {
        Err(e @ EmitError::TooLarge { limit: 100, .. }) => {
            assert_eq!(e.into_payload(), Some(big.clone()));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    match client.try_emit("big", big.clone()) {
        Err(e @ EmitError::TooLarge { .. }) => assert_eq!(e.into_payload(), Some(big.clone())),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    match client.emit_with_ack("big", big.clone(), WAIT).await {
        Err(AckError::Emit(EmitError::TooLarge { .. })) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    client.emit("small", json_payload(json!(1))).await.unwrap();
    conn.expect_text(r#"42["small",1]"#).await;
    assert_eq!(client.state().status, Status::Connected);
    assert_eq!(peer.accepted(), 1, "the connection stayed up");
    client.disconnect().await;
}

#[tokio::test]
async fn max_payload_counts_the_namespace() {
    let mut peer = bind().await;
    let ns = format!("/{}", "n".repeat(60));
    let (client, _events) = builder(format!("{}{ns}", peer.url())).connect().unwrap();
    let mut conn = accept(&mut peer).await;
    conn.handshake(&open_json(25_000, 20_000, 100)).await;
    conn.accept_namespace(&format!("40{ns},"), "s1")
        .await
        .unwrap();
    until_status(&client, Status::Connected).await;
    // `42` + namespace (61) + `,` + `["e",` + 31 + `]`: 101 bytes, over the limit only
    // with the namespace counted.
    let args = json_payload(json!("x".repeat(29)));
    match client.emit("e", args.clone()).await {
        Err(e @ EmitError::TooLarge { limit: 100, .. }) => {
            assert_eq!(e.into_payload(), Some(args));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    client.emit("e", json_payload(json!(1))).await.unwrap();
    conn.expect_text(&format!(r#"42{ns},["e",1]"#)).await;
    client.disconnect().await;
}

#[tokio::test]
async fn emits_in_quick_succession_are_all_flushed() {
    let mut peer = bind().await;
    // Nothing else may wake the client within WAIT (no stable-period timer, no ping), so
    // only the coalesced flush can deliver the later emits.
    let (client, _events) = builder(peer.url())
        .stable_after(WAIT * 2)
        .connect()
        .unwrap();
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    // The first is flushed at once; the ones right after that flush wait for the coalesced
    // flush, which must come by itself (nothing else happens on this connection).
    client.emit("e", json_payload(json!(0))).await.unwrap();
    conn.expect_text(r#"42["e",0]"#).await;
    for i in 1..3 {
        client.emit("e", json_payload(json!(i))).await.unwrap();
    }
    for i in 1..3 {
        conn.expect_text(&format!(r#"42["e",{i}]"#)).await;
    }
    client.disconnect().await;
}

#[tokio::test]
async fn emits_keep_their_order_when_the_socket_is_full() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url()).connect().unwrap();
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    const N: u64 = 2_000;
    let chunk = "y".repeat(8 << 10);
    let emitter = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..N {
                let args = Payload::json(&i).unwrap().with(&chunk).unwrap();
                // Acked emits always go through the outbox; plain ones are written by this
                // task unless something waits before them or the socket is full.
                if i % 10 == 0 {
                    acks.push(client.emit_acked("seq", args, WAIT, 0).await.unwrap());
                } else {
                    client.emit("seq", args).await.unwrap();
                }
            }
            acks.len()
        })
    };
    // Not reading for a while fills the socket (16 MiB queued; the outbox holds 4 MiB), so
    // emits fall back to the outbox and later ones must not overtake them.
    tokio::time::sleep(ms(300)).await;
    let mut last = None;
    let mut received = 0;
    while received < N {
        let frame = text(&mut conn).await;
        let (id, array) = event_frame(&frame);
        let seq = array[1].as_u64().unwrap();
        assert_eq!(
            id.is_some(),
            seq % 10 == 0,
            "frame {seq}: ack id only on acked emits"
        );
        assert_eq!(
            last.map_or(0, |l: u64| l + 1),
            seq,
            "in order, none missing"
        );
        last = Some(seq);
        received += 1;
    }
    assert_eq!(
        timeout(WAIT, emitter).await.unwrap().unwrap(),
        (N / 10) as usize
    );
    client.disconnect().await;
}

#[tokio::test]
async fn an_emit_after_an_ack_goes_out_after_it() {
    let mut peer = bind().await;
    let (client, mut events, mut conn) = connected_reading(&mut peer, |b| b).await;
    for i in 0..20u64 {
        conn.send_text(&format!(r#"42{i}["q",1]"#)).await.unwrap();
        let Incoming::Event(mut event) = next_incoming(&mut events).await else {
            panic!("an event")
        };
        // Answered first, in the same task: the ack is queued, the emit could be written
        // at once; it must still go second.
        assert!(event.ack(json_payload(json!("a"))));
        client.emit("after", Payload::new()).await.unwrap();
        conn.expect_text(&format!(r#"43{i}["a"]"#)).await;
        conn.expect_text(r#"42["after"]"#).await;
    }
    client.disconnect().await;
}

/// Tasks emitting as fast as they can, each write made directly when the client allows it.
struct DirectEmitters {
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl DirectEmitters {
    fn start(client: &Client) -> DirectEmitters {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks = (0..3)
            .map(|_| {
                let (client, stop) = (client.clone(), Arc::clone(&stop));
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let _ = client.try_emit("other", Payload::new());
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        DirectEmitters { stop, tasks }
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
    }
}

/// Reads until `n` packets starting with `header` (each with 3 attachments) and at least
/// one emit of the [`DirectEmitters`] arrived, and fails if any text frame comes between
/// one of those packets and its attachments.
async fn expect_whole_packets(conn: &mut PeerConn, header: &str, n: usize) {
    let (mut attachments_due, mut seen, mut others) = (0, 0, 0);
    while seen < n || others == 0 {
        match conn.recv_timeout(WAIT).await.unwrap() {
            Frame::Text(text) => {
                assert_eq!(
                    attachments_due, 0,
                    "{text} between a packet and its attachments"
                );
                if text.starts_with(header) {
                    attachments_due = 3;
                    seen += 1;
                } else if text == r#"42["other"]"# {
                    others += 1;
                }
            }
            Frame::Binary(_) => attachments_due -= 1,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn emits_never_land_between_a_packet_and_its_attachments() {
    const N: u64 = 300;
    let mut peer = bind().await;
    let (client, mut events, mut conn) =
        connected_reading(&mut peer, |b| b.event_buffer(4096)).await;
    for i in 0..N {
        conn.send_text(&format!(r#"42{i}["q",1]"#)).await.unwrap();
    }
    let emitters = DirectEmitters::start(&client);
    // The server's events answered with three attachments each: BINARY_ACK frames written by
    // the supervisor while other tasks write their emits directly.
    let acker = tokio::spawn(async move {
        for _ in 0..N {
            let Incoming::Event(mut event) = next_incoming(&mut events).await else {
                panic!("an event")
            };
            let mut args = Payload::new();
            for b in 1..=3u8 {
                args.push_binary(vec![b; 10]);
            }
            assert!(event.ack(args));
            tokio::task::yield_now().await;
        }
        events
    });
    expect_whole_packets(&mut conn, "463-", N as usize).await;
    emitters.stop().await;
    drop(acker.await.unwrap());
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn emits_never_land_inside_a_resent_packet() {
    const RESENDS: usize = 300;
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url()).connect().unwrap();
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    // Never acked: each is resent by the supervisor after every timeout, while other tasks
    // write their emits directly.
    let mut pending = Vec::new();
    for i in 0..20u64 {
        let mut args = Payload::json(&i).unwrap();
        for b in 1..=3u8 {
            args.push_binary(vec![b; 10]);
        }
        pending.push(
            client
                .emit_acked("binary", args, ms(5), 1_000)
                .await
                .unwrap(),
        );
    }
    let emitters = DirectEmitters::start(&client);
    expect_whole_packets(&mut conn, "453-", RESENDS).await;
    emitters.stop().await;
    drop(pending);
    client.disconnect().await;
}

#[tokio::test]
async fn a_reader_that_stops_reading_stops_the_reads_not_the_emits_and_loses_nothing() {
    let mut peer = bind().await;
    let (client, mut events) = builder(peer.url())
        .event_buffer(2)
        .outbox_limits(2, 1 << 20)
        .connect()
        .unwrap();
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    // Nobody reads: `Connected` and e0 fill the budget of 2, and the client stops reading
    // the socket; e1..e4 and the ping wait in it (TCP pushes back on a server that sends
    // more).
    for i in 0..5 {
        conn.send_text(&format!(r#"42["e",{i}]"#)).await.unwrap();
    }
    conn.send_text("2").await.unwrap();
    // Emits go on meanwhile, more than the outbox holds.
    for i in 0..5 {
        timeout(WAIT, client.emit("c", json_payload(json!(i))))
            .await
            .expect("emit while the reader does not read")
            .unwrap();
        conn.expect_text(&format!(r#"42["c",{i}]"#)).await;
    }
    assert_quiet(&mut conn).await;
    // The reader reads: every event, in order, no notice of anything dropped; the ping
    // is read and answered once there is room.
    assert!(matches!(
        next_incoming(&mut events).await,
        Incoming::Connected { .. }
    ));
    for i in 0..5 {
        let item = next_incoming(&mut events).await;
        assert!(
            matches!(&item, Incoming::Event(e) if e.args().as_json() == format!("[{i}]")),
            "event {i}: {item:?}"
        );
    }
    conn.expect_text("3").await;
    assert_eq!(client.state().status, Status::Connected);
    client.disconnect().await;
}

#[tokio::test]
async fn a_client_whose_reader_holds_a_full_budget_reconnects_once_it_reads() {
    let mut peer = bind().await;
    let (client, mut events) = builder(peer.url())
        .event_buffer(2)
        .backoff_initial(ms(10))
        .backoff_max(ms(10))
        .connect()
        .unwrap();
    let conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    // `Connected` and one event fill the budget; nobody reads. The link goes.
    let mut conn = conn;
    conn.send_text(r#"42["e",0]"#).await.unwrap();
    assert_quiet(&mut conn).await;
    conn.drop_tcp();
    // Unread, the socket's end is not seen; a write to it is (the emits keep going).
    timeout(WAIT, async {
        while client.state().status == Status::Connected {
            let _ = client.try_emit("x", json_payload(json!(1)));
            tokio::time::sleep(ms(20)).await;
        }
    })
    .await
    .expect("the lost link noticed through a write");
    // A new link would only be left unread: no dial while the application holds all it may.
    assert!(
        peer.accept(QUIET * 3).await.is_none(),
        "dialled with the budget spent"
    );
    // The reader reads what it holds; the client dials at once.
    for _ in 0..3 {
        next_incoming(&mut events).await;
    }
    let _conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    assert!(matches!(
        next_incoming(&mut events).await,
        Incoming::Connected { .. }
    ));
    client.disconnect().await;
}

#[tokio::test]
async fn with_the_drop_policy_a_reader_that_stops_reading_does_not_stop_the_connection() {
    let mut peer = bind().await;
    let (client, mut events) = builder(peer.url())
        .overflow(Overflow::Drop)
        .event_buffer(2)
        .outbox_limits(2, 1 << 20)
        .connect()
        .unwrap();
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    // Nobody reads: `Connected` and e0 fill the buffer of 2; e1..e4 are dropped.
    for i in 0..5 {
        conn.send_text(&format!(r#"42["e",{i}]"#)).await.unwrap();
    }
    // The heartbeat goes on, and so do emits, more than the outbox holds.
    conn.send_text("2").await.unwrap();
    conn.expect_text("3").await;
    for i in 0..5 {
        timeout(WAIT, client.emit("c", json_payload(json!(i))))
            .await
            .expect("emit while the reader does not read")
            .unwrap();
        conn.expect_text(&format!(r#"42["c",{i}]"#)).await;
    }
    assert!(matches!(
        next_incoming(&mut events).await,
        Incoming::Connected { .. }
    ));
    assert!(
        matches!(next_incoming(&mut events).await, Incoming::Event(e) if e.args().as_json() == "[0]")
    );
    // Room again: the reader learns how much it missed before what comes next.
    conn.send_text(r#"42["e",5]"#).await.unwrap();
    assert!(matches!(
        next_incoming(&mut events).await,
        Incoming::Lagged { missed: 4 }
    ));
    assert!(
        matches!(next_incoming(&mut events).await, Incoming::Event(e) if e.args().as_json() == "[5]")
    );
    assert_eq!(client.state().status, Status::Connected);
    client.disconnect().await;
}

// --- acks of our emits ------------------------------------------------------------------------

#[tokio::test]
async fn acked_emit_fails_with_disconnected_when_the_link_drops() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url()).connect().unwrap();
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    let c = client.clone();
    let pending =
        tokio::spawn(async move { c.emit_with_ack("job", json_payload(json!(7)), WAIT).await });
    let (id, args) = event_frame(&text(&mut conn).await);
    assert!(id.is_some(), "an ack id was asked for");
    assert_eq!(args, json!(["job", 7]));
    conn.drop_tcp();
    let result = timeout(WAIT, pending).await.unwrap().unwrap();
    assert!(matches!(result, Err(AckError::Disconnected)), "{result:?}");
    // Not resent: no retries were asked for.
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    assert_quiet(&mut conn).await;
    client.disconnect().await;
}

#[tokio::test]
async fn ack_timeouts_beyond_any_clock_mean_no_deadline() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url()).connect().unwrap();
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    for retries in [0, 2] {
        let c = client.clone();
        let pending = tokio::spawn(async move {
            c.emit_with_retries("job", Payload::new(), Duration::MAX, retries)
                .await
        });
        let (id, _) = event_frame(&text(&mut conn).await);
        let id = id.expect("acked");
        conn.send_text(&format!(r#"43{id}["ok"]"#)).await.unwrap();
        let result = timeout(WAIT, pending).await.unwrap();
        let ack = result
            .expect("no panic in the emitting task")
            .expect("acked");
        assert_eq!(ack.as_json(), r#"["ok"]"#, "retries {retries}");
    }
    assert_eq!(client.state().status, Status::Connected);
    client.disconnect().await;
}

#[tokio::test]
async fn an_ack_that_timed_out_while_disconnected_is_dropped_and_frees_its_room() {
    let mut peer = bind().await;
    let (client, _events, mut conn) = waiting_client(&mut peer, 1).await;
    let late = client.emit_with_ack("late", Payload::new(), ms(100)).await;
    assert!(matches!(late, Err(AckError::Timeout(_))), "{late:?}");
    // Its room is free again: the outbox holds one packet.
    client
        .try_emit("next", Payload::new())
        .expect("the timed-out emit no longer takes the outbox's room");
    conn.establish(DEFAULT_OPEN).await;
    until_status(&client, Status::Connected).await;
    let (_, args) = event_frame(&text(&mut conn).await);
    assert_eq!(args, json!(["next"]), "the timed-out emit is never sent");
    assert_quiet(&mut conn).await;
    client.disconnect().await;
}

#[tokio::test]
async fn emit_with_retries_is_resent_on_the_next_connection() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url()).connect().unwrap();
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    let c = client.clone();
    let pending = tokio::spawn(async move {
        c.emit_with_retries("job", json_payload(json!({"n": 1})), WAIT, 2)
            .await
    });
    let (id, args) = event_frame(&text(&mut conn).await);
    assert!(id.is_some());
    assert_eq!(args, json!(["job", {"n": 1}]));
    conn.drop_tcp();

    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    let (id, args) = event_frame(&text(&mut conn).await);
    assert_eq!(args, json!(["job", {"n": 1}]), "the same event, again");
    let id = id.expect("still acked");
    conn.send_text(&format!(r#"43{id}["done"]"#)).await.unwrap();
    let result = timeout(WAIT, pending).await.unwrap().unwrap();
    assert_eq!(result.unwrap().as_json(), r#"["done"]"#);
    client.disconnect().await;
}

#[tokio::test]
async fn ack_timeout() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url()).connect().unwrap();
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    let c = client.clone();
    let pending =
        tokio::spawn(async move { c.emit_with_ack("never", Payload::new(), ms(200)).await });
    let (id, _) = event_frame(&text(&mut conn).await);
    assert!(id.is_some());
    let result = timeout(WAIT, pending).await.unwrap().unwrap();
    match result {
        Err(AckError::Timeout(d)) => assert_eq!(d, ms(200)),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert_eq!(client.state().status, Status::Connected);
    client.disconnect().await;
}

// --- disconnect() -----------------------------------------------------------------------------

fn assert_client_disconnected(state: &ConnectionState) {
    assert_eq!(state.status, Status::Disconnected, "{state:?}");
    assert_eq!(state.end, Some(EndReason::ClientDisconnect), "{state:?}");
}

#[tokio::test]
async fn disconnect_while_connected_says_goodbye() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url()).connect().unwrap();
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    client.disconnect().await;
    // `disconnect()` stops waiting after about 100 ms; a loaded machine may need longer.
    assert_client_disconnected(&until(&client, |s| s.status.is_terminal()).await);
    conn.expect_text("41").await;
    match conn.recv_timeout(WAIT).await {
        Ok(Frame::Close(_)) => {}
        other => panic!("expected a WebSocket close, got {other:?}"),
    }
    assert!(peer.accept(QUIET).await.is_none(), "no reconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_says_goodbye_while_emitters_keep_emitting() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url()).connect().unwrap();
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    // Emitters that keep the outbox full of large emits: a goodbye that waited for an
    // empty outbox would never get to its DISCONNECT.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let big = Payload::json(&"x".repeat(32 * 1024)).unwrap();
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let (client, stop, big) = (client.clone(), Arc::clone(&stop), big.clone());
            tokio::spawn(async move {
                // Until the client refuses (closed by `disconnect()`).
                while !stop.load(Ordering::Relaxed) {
                    if client.emit("flood", big.clone()).await.is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    // The server reads all along: whatever of the flood the client wrote comes first, and
    // then the DISCONNECT must come.
    let reader = tokio::spawn(async move {
        loop {
            match conn.recv().await {
                Some(Frame::Text(text)) if text == "41" => return true,
                Some(Frame::Text(_)) => {}
                _ => return false,
            }
        }
    });
    tokio::time::sleep(ms(20)).await;
    client.disconnect().await;
    let goodbye = tokio::time::timeout(WAIT, reader).await.map(Result::unwrap);
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(goodbye, Ok(true), "the DISCONNECT never came");
    assert_client_disconnected(&until(&client, |s| s.status.is_terminal()).await);
}

#[tokio::test]
async fn disconnect_while_sleeping_in_backoff() {
    let peer = bind().await;
    // 503 with Retry-After: 60 puts the client to sleep for at least a minute.
    peer.reject_upgrades(503, Some("60"));
    let (client, _events) = builder(peer.url()).connect().unwrap();
    let state = until(&client, |s| s.next_attempt_in.is_some()).await;
    assert_eq!(state.reason.map(relink::Reason::as_str), Some("http_5xx"));
    assert!(state.next_attempt_in.unwrap() >= Duration::from_secs(60));
    assert_eq!(peer.rejected(), 1);
    client.disconnect().await;
    // `disconnect()` stops waiting after about 100 ms; a loaded machine may need longer.
    assert_client_disconnected(&until(&client, |s| s.status.is_terminal()).await);
}

#[tokio::test]
async fn disconnect_while_stuck_mid_handshake() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url()).connect().unwrap();
    // The upgrade completed; OPEN never comes.
    let mut conn = accept(&mut peer).await;
    client.disconnect().await;
    // `disconnect()` stops waiting after about 100 ms; a loaded machine may need longer.
    assert_client_disconnected(&until(&client, |s| s.status.is_terminal()).await);
    // The client let go of the connection.
    let mut ended = false;
    for _ in 0..4 {
        match conn.recv_timeout(WAIT).await {
            Ok(Frame::Close(_)) | Err(PeerError::Closed | PeerError::Ws(_)) => {
                ended = true;
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(ended);
}

// --- secrets ----------------------------------------------------------------------------------

/// A `MakeWriter` that appends everything to a shared buffer.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

// current_thread runtime: the supervisor task runs on this thread, under the default subscriber.
#[tokio::test(flavor = "current_thread")]
async fn token_never_appears_in_debug_state_or_logs() {
    const TOKEN: &str = "sup3r-s3cret-t0ken-4711";
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(logs.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // tracing caches each callsite's interest globally. While only one dispatcher exists, a
    // callsite first hit on another test's thread (where there is no subscriber) is cached as
    // "never" and this thread would miss its records. With a second live dispatcher, tracing
    // asks every dispatcher, and the capturing one keeps every callsite enabled here.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());

    let mut peer = bind().await;
    let (client, mut events) = builder(peer.url()).token(TOKEN).connect().unwrap();
    let mut changes = client.state_changes();
    let mut seen = Vec::new();

    // Connected, then an abrupt drop, then rejected twice.
    let mut conn = accept(&mut peer).await;
    let connect = conn.establish(DEFAULT_OPEN).await;
    assert!(
        connect.contains(TOKEN),
        "the token is sent where it belongs"
    );
    seen.push(transition(&mut changes, |s| s.status == Status::Connected).await);
    seen.push(client.state());
    let client_debug = format!("{client:?} {client:#?}");
    assert!(!client_debug.contains(TOKEN), "{client_debug}");
    conn.drop_tcp();
    for _ in 0..2 {
        let mut conn = accept(&mut peer).await;
        assert!(conn.handshake(DEFAULT_OPEN).await.contains(TOKEN));
        conn.send_text(REJECT).await.unwrap();
    }
    let last = transition(&mut changes, |s| s.status.is_terminal()).await;
    assert_eq!(last.end, Some(EndReason::Unauthorized));
    seen.push(last);
    while let Ok(state) = changes.try_recv() {
        seen.push(state);
    }
    seen.push(client.state());
    let client_debug = format!("{client:?} {client:#?}");
    assert!(!client_debug.contains(TOKEN), "{client_debug}");

    for state in &seen {
        let debug = format!("{state:?} {state:#?}");
        assert!(!debug.contains(TOKEN), "{debug}");
        let json = serde_json::to_string(state).unwrap();
        assert!(!json.contains(TOKEN), "{json}");
    }
    for _ in 0..1000 {
        let Ok(Some(item)) = timeout(ms(50), events.next()).await else {
            break;
        };
        let debug = format!("{item:?}");
        assert!(!debug.contains(TOKEN), "{debug}");
    }

    let captured = logs.text();
    assert!(
        captured.lines().count() >= 3,
        "some log lines were captured:\n{captured}"
    );
    assert!(
        captured.contains("credentials rejected"),
        "the rejection was logged:\n{captured}"
    );
    assert!(!captured.contains(TOKEN), "token in the logs:\n{captured}");
}

// --- more edges -------------------------------------------------------------------------------

#[tokio::test]
async fn invalid_namespace_is_fatal_without_retry() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url()).namespace("/nope").connect().unwrap();
    let mut conn = accept(&mut peer).await;
    assert_eq!(
        conn.handshake(DEFAULT_OPEN).await,
        r#"40/nope,{"token":"t"}"#
    );
    conn.send_text(r#"44/nope,{"message":"Invalid namespace"}"#)
        .await
        .unwrap();
    let state = until(&client, |s| s.status.is_terminal()).await;
    assert_eq!(state.status, Status::Failed);
    assert_eq!(state.end, Some(EndReason::Configuration));
    assert_eq!(state.reason, Some(relink::Reason::InvalidNamespace));
    assert!(matches!(
        state.cause.as_deref(),
        Some(relink::LinkError::UnknownNamespace { namespace }) if namespace == "/nope"
    ));
    let error = state.last_error.unwrap_or_default();
    assert!(error.contains(r#"no namespace "/nope""#), "{error}");
    assert!(peer.accept(QUIET).await.is_none(), "no retry");
}

#[tokio::test]
async fn a_client_that_ended_connects_again_with_reconnect() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url()).connect().unwrap();
    assert_eq!(
        client.reconnect().err(),
        Some(relink::ReconnectError::StillRunning)
    );
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    let mut old_changes = client.state_changes();
    client.disconnect().await;
    conn.expect_text("41").await;
    let ended = until(&client, |s| s.status.is_terminal()).await;
    // The old run's listeners see its end.
    loop {
        match timeout(WAIT, old_changes.recv()).await.expect("in time") {
            Ok(_) => {}
            Err(broadcast::error::RecvError::Closed) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    // Emits are refused while ended, accepted again after reconnect().
    assert!(client.try_emit("late", ()).is_err());
    let mut events = client.reconnect().expect("ended: may start again");
    let mut changes = client.state_changes();
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    assert!(matches!(
        next_incoming(&mut events).await,
        Incoming::Connected { .. }
    ));
    let connected = client.state();
    assert_eq!(connected.status, Status::Connected);
    assert!(
        connected.seq > ended.seq,
        "{} after {}",
        connected.seq,
        ended.seq
    );
    assert!(timeout(WAIT, changes.recv()).await.is_ok(), "a new stream");
    client.emit("again", 1).await.unwrap();
    conn.expect_text(r#"42["again",1]"#).await;
    client.disconnect().await;
}

#[tokio::test]
async fn a_weak_handle_does_not_keep_the_client_alive() {
    let peer = bind().await;
    let (client, events) = builder(peer.url()).connect().unwrap();
    let weak = client.downgrade();
    assert!(weak.upgrade().is_some());
    drop((client, events));
    assert!(weak.upgrade().is_none());
}

#[tokio::test]
async fn extra_headers_go_with_the_handshake() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url())
        .header("X-Api-Key", "k1")
        .header("X-Tenant", "acme")
        .connect()
        .unwrap();
    let conn = accept(&mut peer).await;
    let headers = conn.request_headers();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("x-api-key"), Some("k1"));
    assert_eq!(get("x-tenant"), Some("acme"));
    client.disconnect().await;
}

#[tokio::test]
async fn the_client_gives_up_after_its_reconnection_attempts() {
    let peer = bind().await;
    peer.reject_upgrades(503, None);
    let (client, _events) = builder(peer.url())
        .reconnection_attempts(2)
        .connect()
        .unwrap();
    let state = until(&client, |s| s.status.is_terminal()).await;
    assert_eq!(state.status, Status::Failed);
    assert_eq!(state.end, Some(EndReason::AttemptsExhausted));
    // Two failed attempts, the first included; none after.
    tokio::time::sleep(QUIET).await;
    assert_eq!(peer.rejected(), 2, "attempts made");
}

#[tokio::test]
async fn with_reconnection_off_a_lost_connection_ends_the_client() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url())
        .reconnection(false)
        .stable_after(ms(1))
        .connect()
        .unwrap();
    let conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    // Held past the stable period, then lost.
    tokio::time::sleep(ms(50)).await;
    conn.drop_tcp();
    let state = until(&client, |s| s.status.is_terminal()).await;
    assert_eq!(state.status, Status::Disconnected);
    assert_eq!(state.end, Some(EndReason::ConnectionLost));
    assert!(peer.accept(QUIET).await.is_none(), "no reconnect");
}

#[tokio::test]
async fn an_upgrade_answered_404_names_the_path_tried() {
    let peer = bind().await;
    peer.reject_upgrades(404, None);
    let (client, _events) = builder(peer.url()).path("/wrong/").connect().unwrap();
    let state = until(&client, |s| s.last_error.is_some()).await;
    let error = state.last_error.unwrap_or_default();
    assert!(
        error.contains("HTTP 404") && error.contains("/wrong/") && error.contains("--path"),
        "{error}"
    );
    client.disconnect().await;
}

#[tokio::test]
async fn a_connect_error_shows_the_reason_the_server_gave() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url()).connect().unwrap();
    for _ in 0..2 {
        let mut conn = accept(&mut peer).await;
        conn.handshake(DEFAULT_OPEN).await;
        conn.send_text(r#"44{"message":"unauthorized","data":{"reason":"token expired"}}"#)
            .await
            .unwrap();
    }
    let state = until(&client, |s| s.status.is_terminal()).await;
    let error = state.last_error.unwrap_or_default();
    assert!(
        error.contains("unauthorized") && error.contains("reason: token expired"),
        "{error}"
    );
}

#[tokio::test]
async fn a_rejection_after_a_good_connection_is_retried_again() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url()).connect().unwrap();
    // Rejected once, then accepted: the streak of rejections ends.
    let mut conn = accept(&mut peer).await;
    conn.handshake(DEFAULT_OPEN).await;
    conn.send_text(REJECT).await.unwrap();
    let conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    conn.drop_tcp();
    // A new rejection is again retried once, not final at once.
    let mut conn = accept(&mut peer).await;
    conn.handshake(DEFAULT_OPEN).await;
    conn.send_text(REJECT).await.unwrap();
    let _conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    client.disconnect().await;
}

#[tokio::test]
async fn ping_before_the_connect_reply_is_answered() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url()).connect().unwrap();
    let mut conn = accept(&mut peer).await;
    let connect = conn.handshake(DEFAULT_OPEN).await;
    conn.send_text("2").await.unwrap();
    conn.expect_text("3").await;
    conn.accept_namespace(&connect, "late").await.unwrap();
    let state = until_status(&client, Status::Connected).await;
    assert_eq!(state.socket_id.as_deref(), Some("late"));
    client.disconnect().await;
}

#[tokio::test]
async fn emits_accepted_before_disconnect_go_out_before_the_goodbye() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url()).connect().unwrap();
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    client.try_emit("a", json_payload(json!(1))).unwrap();
    client.try_emit("b", json_payload(json!(2))).unwrap();
    client.disconnect().await;
    conn.expect_text(r#"42["a",1]"#).await;
    conn.expect_text(r#"42["b",2]"#).await;
    conn.expect_text("41").await;
    assert!(matches!(conn.recv_timeout(WAIT).await, Ok(Frame::Close(_))));
    let payload = json_payload(json!("after"));
    match client.emit("late", payload.clone()).await {
        Err(e @ EmitError::Closed { .. }) => assert_eq!(e.into_payload(), Some(payload)),
        other => panic!("expected Closed, got {other:?}"),
    }
    // Arguments written straight into a frame come back as the arguments they were.
    match client.try_emit("late", ("after", 2, [3])) {
        Err(e @ EmitError::Closed { .. }) => assert_eq!(
            e.into_payload().map(|p| p.as_json().to_owned()),
            Some(r#"["after",2,[3]]"#.to_owned())
        ),
        other => panic!("expected Closed, got {other:?}"),
    }
}

#[tokio::test]
async fn dropping_the_last_handle_says_goodbye_and_ends_the_stream() {
    let mut peer = bind().await;
    let (client, mut events) = builder(peer.url()).connect().unwrap();
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    drop(client);
    conn.expect_text("41").await;
    assert!(matches!(conn.recv_timeout(WAIT).await, Ok(Frame::Close(_))));
    let mut ended = false;
    for _ in 0..16 {
        if timeout(WAIT, events.next()).await.unwrap().is_none() {
            ended = true;
            break;
        }
    }
    assert!(ended, "the event stream ends with the client");
}

#[tokio::test]
async fn ack_to_an_event_of_a_dropped_connection_is_discarded() {
    let mut peer = bind().await;
    let (client, mut events) = builder(peer.url()).connect().unwrap();
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    conn.send_text(r#"425["q"]"#).await.unwrap();
    let mut event = loop {
        if let Incoming::Event(event) = next_incoming(&mut events).await {
            break event;
        }
    };
    conn.drop_tcp();
    until_status(&client, Status::Reconnecting).await;
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    assert!(event.ack(Payload::new()));
    // The new connection's server never asked: nothing arrives; new emits still do.
    client.emit("next", Payload::new()).await.unwrap();
    conn.expect_text(r#"42["next"]"#).await;
    assert_quiet(&mut conn).await;
    client.disconnect().await;
}

#[tokio::test]
async fn emit_with_retries_resends_after_a_timeout_on_the_same_connection() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url()).connect().unwrap();
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    let c = client.clone();
    let pending = tokio::spawn(async move {
        c.emit_with_retries("job", json_payload(json!(1)), ms(200), 1)
            .await
    });
    let (first, args) = event_frame(&text(&mut conn).await);
    assert_eq!(args, json!(["job", 1]));
    let (second, args) = event_frame(&text(&mut conn).await);
    assert_eq!(args, json!(["job", 1]), "resent after the ack timeout");
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_ne!(first, second, "each try has its own ack id");
    conn.send_text(&format!(r#"43{second}["second"]"#))
        .await
        .unwrap();
    let result = timeout(WAIT, pending).await.unwrap().unwrap().unwrap();
    assert_eq!(result.as_json(), r#"["second"]"#);
    client.disconnect().await;
}

#[tokio::test]
async fn emit_with_retries_gives_up_after_its_retries() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url()).connect().unwrap();
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    let c = client.clone();
    let pending =
        tokio::spawn(async move { c.emit_with_retries("job", Payload::new(), ms(100), 1).await });
    conn.expect_text_prefix("42").await;
    conn.expect_text_prefix("42").await;
    let result = timeout(WAIT, pending).await.unwrap().unwrap();
    assert!(matches!(result, Err(AckError::Timeout(_))), "{result:?}");
    assert_quiet(&mut conn).await;
    client.disconnect().await;
}

#[tokio::test]
async fn emit_with_retries_fails_disconnected_once_drops_use_up_the_retries() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url()).connect().unwrap();
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    let c = client.clone();
    let pending =
        tokio::spawn(async move { c.emit_with_retries("job", Payload::new(), WAIT, 1).await });
    assert_eq!(event_frame(&text(&mut conn).await).1, json!(["job"]));
    conn.drop_tcp();
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    assert_eq!(event_frame(&text(&mut conn).await).1, json!(["job"]));
    conn.drop_tcp();
    let result = timeout(WAIT, pending).await.unwrap().unwrap();
    assert!(matches!(result, Err(AckError::Disconnected)), "{result:?}");
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    assert_quiet(&mut conn).await;
    client.disconnect().await;
}

#[tokio::test]
async fn recovery_sends_pid_and_offset_and_strips_the_offset() {
    let mut peer = bind().await;
    let (client, mut events) = builder(peer.url()).connect().unwrap();
    let mut conn = accept(&mut peer).await;
    assert_eq!(conn.handshake(DEFAULT_OPEN).await, r#"40{"token":"t"}"#);
    conn.send_text(r#"40{"sid":"s1","pid":"p1"}"#)
        .await
        .unwrap();
    conn.send_text(r#"42["tick",5,"off-1"]"#).await.unwrap();
    let event = loop {
        if let Incoming::Event(event) = next_incoming(&mut events).await {
            break event;
        }
    };
    assert_eq!(event.name(), "tick");
    assert_eq!(
        event.args().as_json(),
        "[5]",
        "the offset is not the user's"
    );
    conn.drop_tcp();
    let mut conn = accept(&mut peer).await;
    let connect = conn.handshake(DEFAULT_OPEN).await;
    let auth: Value = serde_json::from_str(connect.strip_prefix("40").unwrap()).unwrap();
    assert_eq!(auth, json!({"pid": "p1", "offset": "off-1", "token": "t"}));
    // The server replays what was missed before its CONNECT reply, keeping the pid.
    conn.send_text(r#"42["tick",6,"off-2"]"#).await.unwrap();
    conn.send_text(r#"40{"sid":"s2","pid":"p1"}"#)
        .await
        .unwrap();
    let state = until_status(&client, Status::Connected).await;
    assert!(state.recovered, "{state:?}");
    let mut replayed = None;
    for _ in 0..8 {
        match next_incoming(&mut events).await {
            Incoming::Connected { recovered, .. } => assert!(recovered),
            Incoming::Event(event) => {
                replayed = Some(event);
                break;
            }
            Incoming::Disconnected { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let replayed = replayed.expect("the replayed event");
    assert_eq!(replayed.args().as_json(), "[6]");
    client.disconnect().await;
}

#[tokio::test]
async fn oversized_binary_attachment_is_refused_not_dropped() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url()).connect().unwrap();
    let mut conn = connect_on(&mut peer, &client, &open_json(25_000, 20_000, 100)).await;
    let mut big = Payload::new();
    big.push_binary(vec![7u8; 500]);
    match client.emit("blob", big.clone()).await {
        Err(e @ EmitError::TooLarge { .. }) => assert_eq!(e.into_payload(), Some(big)),
        other => {
            panic!("an attachment over maxPayload must be handed back with TooLarge, got {other:?}")
        }
    }
    client.emit("small", Payload::new()).await.unwrap();
    conn.expect_text(r#"42["small"]"#).await;
    client.disconnect().await;
}

#[tokio::test]
async fn inbound_message_size_is_bounded() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url())
        .max_message_size(1024)
        .connect()
        .unwrap();
    let mut changes = client.state_changes();
    let mut conn = accept(&mut peer).await;
    conn.establish(DEFAULT_OPEN).await;
    transition(&mut changes, |s| s.status == Status::Connected).await;
    conn.send_text(&format!(r#"42["big","{}"]"#, "x".repeat(4096)))
        .await
        .unwrap();
    let state = transition(&mut changes, |s| s.status != Status::Connected).await;
    assert_eq!(state.status, Status::Reconnecting, "{state:?}");
    assert!(
        matches!(
            state.reason.map(relink::Reason::as_str),
            Some("transport_error" | "parse_error")
        ),
        "{state:?}"
    );
    let _conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    client.disconnect().await;
}

#[tokio::test]
async fn a_packets_attachments_together_are_bounded_like_one_message() {
    let mut peer = bind().await;
    let (client, mut events) = builder(peer.url())
        .max_message_size(2048)
        .connect()
        .unwrap();
    let mut changes = client.state_changes();
    let mut conn = accept(&mut peer).await;
    conn.establish(DEFAULT_OPEN).await;
    transition(&mut changes, |s| s.status == Status::Connected).await;
    // Three attachments of 1,000 bytes: each frame fits, the packet does not.
    conn.send_text(
        r#"453-["big",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1},{"_placeholder":true,"num":2}]"#,
    )
    .await
    .unwrap();
    for _ in 0..3 {
        if conn.send_binary(vec![7u8; 1000]).await.is_err() {
            break; // the client already closed the link
        }
    }
    let state = transition(&mut changes, |s| s.status != Status::Connected).await;
    assert_eq!(state.status, Status::Reconnecting, "{state:?}");
    assert_eq!(
        state.reason.map(relink::Reason::as_str),
        Some("parse_error"),
        "{state:?}"
    );
    assert!(
        state
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("exceeds the limit of 2048")),
        "{state:?}"
    );
    let _conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    // The packet never reached the application.
    while let Ok(Some(item)) = timeout(QUIET, events.next()).await {
        assert!(!matches!(item, Incoming::Event(_)), "{item:?}");
    }
    client.disconnect().await;
}

#[tokio::test]
async fn attachment_count_is_bounded() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url()).max_attachments(2).connect().unwrap();
    let mut changes = client.state_changes();
    let mut conn = accept(&mut peer).await;
    conn.establish(DEFAULT_OPEN).await;
    transition(&mut changes, |s| s.status == Status::Connected).await;
    conn.send_text(r#"453-["x",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1},{"_placeholder":true,"num":2}]"#)
        .await
        .unwrap();
    let state = transition(&mut changes, |s| s.status != Status::Connected).await;
    assert_eq!(
        (state.status, state.reason.map(relink::Reason::as_str)),
        (Status::Reconnecting, Some("parse_error"))
    );
    client.disconnect().await;
}

#[tokio::test]
async fn disconnect_while_the_event_buffer_is_full_still_says_goodbye() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url()).event_buffer(1).connect().unwrap();
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    // Nobody reads the events: `Connected` fills the buffer, and the client stops reading
    // the socket (the ping waits unread).
    conn.send_text(r#"42["a"]"#).await.unwrap();
    conn.send_text("2").await.unwrap();
    assert_quiet(&mut conn).await;
    client.disconnect().await;
    // `disconnect()` stops waiting after about 100 ms; a loaded machine may need longer.
    assert_client_disconnected(&until(&client, |s| s.status.is_terminal()).await);
    conn.expect_text("41").await;
    assert!(matches!(conn.recv_timeout(WAIT).await, Ok(Frame::Close(_))));
}

#[tokio::test]
async fn disconnect_ends_promptly_when_the_reader_and_the_server_both_stall() {
    let mut peer = bind().await;
    let (client, _events) = builder(peer.url())
        .event_buffer(1)
        .outbox_limits(1_000, 64 << 20)
        .connect()
        .unwrap();
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    // Nobody reads the events: `Connected` fills the buffer, this one waits for room, and
    // the client writes emits from where it waits for the reader.
    conn.send_text(r#"42["a"]"#).await.unwrap();
    assert_quiet(&mut conn).await;
    // The server stops reading too (this test never reads `conn` again): the emits fill the
    // socket's buffers and the client's write blocks.
    let big = Payload::json(&"x".repeat(900_000)).unwrap();
    for _ in 0..40 {
        if client.try_emit("big", big.clone()).is_err() {
            break;
        }
        tokio::time::sleep(ms(5)).await;
    }
    client.disconnect().await;
    // Not at the heartbeat's end (45 s with this OPEN): the blocked write gives way.
    assert_client_disconnected(&until(&client, |s| s.status.is_terminal()).await);
    drop(conn);
}

#[tokio::test]
async fn a_slow_reader_learns_of_a_lost_link_and_of_what_it_missed() {
    let mut peer = bind().await;
    let (client, mut events) = builder(peer.url())
        .overflow(Overflow::Drop)
        .event_buffer(2)
        .connect()
        .unwrap();
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    // Nobody reads yet: `Connected` and "kept" fill the buffer, "dropped" is dropped.
    conn.send_text(r#"42["kept",1]"#).await.unwrap();
    conn.send_text(r#"42["dropped",2]"#).await.unwrap();
    conn.send_text("2").await.unwrap();
    conn.expect_text("3").await;
    // The link goes (the notice of it is dropped too: the buffer is still full).
    conn.drop_tcp();
    until(&client, |s| s.status != Status::Connected).await;
    let _conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    // Now the reader reads: what fitted, in order, then how much was missed, then what came
    // once there was room; the state said all along where the client was.
    let mut seen = Vec::new();
    while let Ok(Some(item)) = timeout(QUIET, events.next()).await {
        seen.push(match item {
            Incoming::Connected { .. } => "connected".to_owned(),
            Incoming::Event(event) => format!("event {}", event.name()),
            Incoming::Disconnected { .. } => "disconnected".to_owned(),
            Incoming::Lagged { missed } => format!("lagged {missed}"),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(
        seen,
        ["connected", "event kept", "lagged 3"],
        "what the reader sees (dropped: an event, the loss, the new connection)"
    );
    client.disconnect().await;
}

#[tokio::test]
async fn with_the_drop_policy_events_waiting_for_the_reader_are_bounded_in_bytes_too() {
    let mut peer = bind().await;
    let (client, mut events) = builder(peer.url())
        .overflow(Overflow::Drop)
        .max_message_size(2048)
        .max_buffered_bytes(4096)
        .connect()
        .unwrap();
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    // Nobody reads. Events of about 1 KB each: with `Connected`, three fit under 4 KiB and
    // the fourth passes the bound (any item does while it is not reached); the fifth is
    // dropped; the heartbeat goes on.
    let event = |i: usize| format!(r#"42["big{i}","{}"]"#, "x".repeat(1000));
    for i in 0..5 {
        conn.send_text(&event(i)).await.unwrap();
    }
    conn.send_text("2").await.unwrap();
    conn.expect_text("3").await;
    // Having made room, the reader is told what it missed.
    let mut seen = Vec::new();
    while let Ok(Some(item)) = timeout(QUIET, events.next()).await {
        match item {
            Incoming::Event(e) => seen.push(e.name().to_owned()),
            Incoming::Lagged { missed } => seen.push(format!("lagged {missed}")),
            _ => {}
        }
    }
    assert_eq!(seen, ["big0", "big1", "big2", "big3", "lagged 1"]);
    client.disconnect().await;
}

#[tokio::test]
async fn with_the_drop_policy_the_event_buffer_counts_events_not_hand_overs() {
    let mut peer = bind().await;
    let (client, mut events) = builder(peer.url())
        .overflow(Overflow::Drop)
        .event_buffer(8)
        .connect()
        .unwrap();
    let mut conn = connect_on(&mut peer, &client, DEFAULT_OPEN).await;
    // Nobody reads. Each event arrives on its own (answered ping in between), so each is
    // handed over alone: `Connected` and 7 events are 8 items, the bound; 2 more are
    // dropped.
    for i in 0..9 {
        conn.send_text(&format!(r#"42["e",{i}]"#)).await.unwrap();
        conn.send_text("2").await.unwrap();
        conn.expect_text("3").await;
    }
    let mut count = 0;
    let mut missed = 0;
    while let Ok(Some(item)) = timeout(QUIET, events.next()).await {
        count += 1;
        if let Incoming::Lagged { missed: n } = item {
            missed = n;
        }
    }
    assert_eq!(missed, 2);
    // Connected, 7 events, and (once the reader made room) the notice of the 2 dropped.
    assert_eq!(count, 9);
    client.disconnect().await;
}

#[tokio::test]
async fn url_path_names_the_namespace_and_path_sets_the_engine_path() {
    let mut peer = bind().await;
    let (client, _events) = builder(format!("{}/chat", peer.url()))
        .path("/engine/")
        .connect()
        .unwrap();
    let mut conn = accept(&mut peer).await;
    assert!(
        conn.request_uri().starts_with("/engine/?"),
        "{}",
        conn.request_uri()
    );
    assert_eq!(
        conn.handshake(DEFAULT_OPEN).await,
        r#"40/chat,{"token":"t"}"#
    );
    client.disconnect().await;
}

#[tokio::test]
async fn recovery_off_never_sends_the_pid() {
    let mut peer = bind().await;
    let (client, mut events) = builder(peer.url()).recovery(false).connect().unwrap();
    let mut conn = accept(&mut peer).await;
    conn.handshake(DEFAULT_OPEN).await;
    conn.send_text(r#"40{"sid":"s1","pid":"p1"}"#)
        .await
        .unwrap();
    conn.send_text(r#"42["tick",5,"off-1"]"#).await.unwrap();
    let event = loop {
        if let Incoming::Event(event) = next_incoming(&mut events).await {
            break event;
        }
    };
    assert_eq!(
        event.args().as_json(),
        "[5]",
        "the server's offset is still removed"
    );
    conn.drop_tcp();
    let mut conn = accept(&mut peer).await;
    assert_eq!(conn.handshake(DEFAULT_OPEN).await, r#"40{"token":"t"}"#);
    client.disconnect().await;
}

#[tokio::test]
async fn a_panic_in_the_connection_task_ends_the_client_and_fails_what_waits() {
    // The token provider runs in the connection task: a bug there is a panic there.
    let go = Arc::new(tokio::sync::Notify::new());
    let provider_go = Arc::clone(&go);
    let (client, mut events) = Client::builder("http://127.0.0.1:9")
        .token_provider(move || {
            let go = Arc::clone(&provider_go);
            async move {
                go.notified().await;
                if true {
                    panic!("a bug in the token provider");
                }
                Ok::<_, String>(Token::new("never"))
            }
        })
        .connect()
        .unwrap();
    // Queued while the first attempt waits for its token; with retries it has no deadline
    // of its own, so only the end of the client can resolve it.
    let ack = client
        .emit_acked("queued", Payload::new(), Duration::from_secs(3600), 3)
        .await
        .unwrap();
    go.notify_one();

    let end = until(&client, |s| s.status.is_terminal()).await;
    assert_eq!(end.status, Status::Failed, "{end:?}");
    assert_eq!(end.end, Some(EndReason::Internal), "{end:?}");
    assert!(
        end.last_error
            .as_deref()
            .is_some_and(|e| e.contains("panicked")),
        "{end:?}"
    );
    let acked = timeout(WAIT, ack)
        .await
        .expect("the queued emit is resolved");
    assert!(matches!(acked, Err(AckError::Closed)), "{acked:?}");
    let emitted = client.emit("after", Payload::new()).await;
    assert!(
        matches!(emitted, Err(EmitError::Closed { .. })),
        "{emitted:?}"
    );
    let next = timeout(WAIT, events.next()).await.expect("events end");
    assert!(next.is_none(), "{next:?}");
}
