//! The Rust clients under test, each driven through the same four operations.
//!
//! Every operation uses the client's public API the way an application would: build the
//! arguments from Rust values, emit, read events from wherever the client hands them over.

use crate::server::TOKEN;
use futures_util::{FutureExt, SinkExt, StreamExt};
use relink::{Incoming, Payload};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single wait may take before the figure is abandoned.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// The operations every figure is made of.
pub trait BenchClient {
    /// Emits `count` with `(i, payload)`; may return before the frame is written.
    async fn emit_count(&mut self, i: u64, payload: &str);
    /// The server's total of `count` events, read through an acked `stats` emit (sent after
    /// everything emitted before, so all of those are counted when it answers).
    async fn stats(&mut self) -> u64;
    /// Asks for `n` `flood` events of `size` bytes and returns once the server's
    /// `flood-done` (sent after them) was handed over, with how many of the `n` were not.
    async fn flood(&mut self, n: u64, size: u64) -> u64;
    /// One acked `echo` round trip.
    async fn echo(&mut self, i: u64);
}

// ---------------------------------------------------------------------------------------------
// relink

/// relink with its defaults.
pub struct RelinkClient {
    client: relink::Client,
    events: relink::Events,
}

impl RelinkClient {
    /// Connects and waits for the namespace.
    pub async fn connect(url: &str) -> RelinkClient {
        Self::connect_over(
            url,
            &[relink::Transport::WebSocket, relink::Transport::Polling],
        )
        .await
    }

    /// Connects over these transports (default settings otherwise: nothing received is
    /// dropped) and waits for the namespace.
    pub async fn connect_over(url: &str, transports: &[relink::Transport]) -> RelinkClient {
        let (client, events) = relink::Client::builder(url)
            .token(TOKEN)
            .transports(transports.iter().copied())
            .connect()
            .expect("valid relink configuration");
        client.wait_connected().await.expect("relink connects");
        RelinkClient { client, events }
    }

    /// Connects without waiting (memory figure: many at once).
    pub fn start(url: &str) -> RelinkClient {
        let (client, events) = relink::Client::builder(url)
            .token(TOKEN)
            .connect()
            .expect("valid relink configuration");
        RelinkClient { client, events }
    }

    /// Waits until connected.
    pub async fn wait_connected(&self) {
        self.client.wait_connected().await.expect("relink connects");
    }
}

impl BenchClient for RelinkClient {
    async fn emit_count(&mut self, i: u64, payload: &str) {
        // A tuple is the argument list: written straight into the frame.
        self.client.emit("count", (i, payload)).await.expect("emit");
    }

    async fn stats(&mut self) -> u64 {
        let reply = self
            .client
            .emit_with_ack("stats", Payload::new(), ACK_TIMEOUT)
            .await
            .expect("stats ack");
        let stats: serde_json::Value = reply.first().expect("json").expect("one argument");
        stats["received"].as_u64().expect("received")
    }

    async fn flood(&mut self, n: u64, size: u64) -> u64 {
        let args = Payload::json(&n)
            .and_then(|p| p.with(&size))
            .expect("serializable");
        self.client.emit("flood", args).await.expect("emit");
        let mut got = 0;
        loop {
            match self.events.next().await {
                Some(Incoming::Event(event)) if event.name() == "flood" => got += 1,
                Some(Incoming::Event(event)) if event.name() == "flood-done" => break,
                Some(_) => {}
                None => panic!("relink client ended during the flood"),
            }
        }
        n.saturating_sub(got)
    }

    async fn echo(&mut self, i: u64) {
        let args = Payload::json(&i).expect("serializable");
        self.client
            .emit_with_ack("echo", args, ACK_TIMEOUT)
            .await
            .expect("echo ack");
    }
}

// ---------------------------------------------------------------------------------------------
// raw tokio-tungstenite: the limit

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// tokio-tungstenite with Socket.IO frames written and matched by hand: the least work a
/// correct client on this transport can do (serialize the arguments on the way out, validate
/// the JSON on the way in, nothing else).
pub struct RawClient {
    ws: Ws,
    next_id: u64,
}

impl RawClient {
    /// Dials, and runs the Engine.IO and Socket.IO handshakes by hand.
    pub async fn connect(ws_url: &str) -> RawClient {
        // Nagle off, as relink does.
        let (ws, _) = tokio_tungstenite::connect_async_with_config(ws_url, None, true)
            .await
            .expect("raw dial");
        let mut raw = RawClient { ws, next_id: 0 };
        let open = raw.next_text().await;
        assert!(open.starts_with("0{"), "OPEN expected, got {open}");
        raw.send(format!(r#"40{{"token":"{TOKEN}"}}"#)).await;
        loop {
            let frame = raw.next_text().await;
            if frame.starts_with("40") {
                break;
            }
            assert!(!frame.starts_with("44"), "CONNECT refused: {frame}");
        }
        raw
    }

    async fn send(&mut self, frame: String) {
        self.ws.send(Message::text(frame)).await.expect("raw send");
    }

    /// The next text frame that is not a ping (pings are answered).
    async fn next_text(&mut self) -> String {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    if text.as_str() == "2" {
                        self.send("3".into()).await;
                        continue;
                    }
                    return text.as_str().to_owned();
                }
                Some(Ok(Message::Close(_))) | None => panic!("raw: server closed"),
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("raw: {e}"),
            }
        }
    }

    /// Sends `42<id>[...]` and waits for `43<id>`; returns the ack's JSON array.
    async fn call(&mut self, event_body: &str) -> String {
        self.next_id += 1;
        let id = self.next_id;
        self.send(format!("42{id}{event_body}")).await;
        let prefix = format!("43{id}");
        loop {
            let frame = self.next_text().await;
            if let Some(args) = frame.strip_prefix(&prefix) {
                return args.to_owned();
            }
        }
    }
}

impl BenchClient for RawClient {
    async fn emit_count(&mut self, i: u64, payload: &str) {
        // The least a correct client does: serialize the arguments (escaping the string)
        // straight into the frame, and write it.
        let mut frame = Vec::with_capacity(payload.len() + 24);
        frame.extend_from_slice(b"42");
        serde_json::to_writer(&mut frame, &("count", i, payload)).expect("serializable");
        let frame = String::from_utf8(frame).expect("serde_json writes UTF-8");
        // Buffered: tungstenite writes when its buffer fills; `stats` flushes the rest.
        self.ws.feed(Message::text(frame)).await.expect("raw feed");
    }

    async fn stats(&mut self) -> u64 {
        let args = self.call(r#"["stats"]"#).await;
        let stats: serde_json::Value = serde_json::from_str(&args).expect("stats json");
        stats[0]["received"].as_u64().expect("received")
    }

    async fn flood(&mut self, n: u64, size: u64) -> u64 {
        self.send(format!(r#"42["flood",{n},{size}]"#)).await;
        let mut got = 0;
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    let text = text.as_str();
                    // The least a correct client does: check the JSON before handing it on.
                    if let Some(json) = text.strip_prefix("42")
                        && json.starts_with(r#"["flood","#)
                        && serde_json::from_str::<serde::de::IgnoredAny>(json).is_ok()
                    {
                        got += 1;
                    } else if text.starts_with(r#"42["flood-done","#) {
                        return n.saturating_sub(got);
                    } else if text == "2" {
                        self.send("3".into()).await;
                    }
                }
                Some(Ok(Message::Close(_))) | None => panic!("raw: server closed"),
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("raw: {e}"),
            }
        }
    }

    async fn echo(&mut self, i: u64) {
        let body = format!(r#"["echo",{i}]"#);
        let args = self.call(&body).await;
        debug_assert_eq!(args, format!("[{i}]"));
    }
}

impl RawClient {
    /// Stays connected and idle, answering pings (memory figure).
    pub async fn idle(mut self) {
        while let Some(Ok(message)) = self.ws.next().await {
            if let Message::Text(text) = message
                && text.as_str() == "2"
                && self.ws.send(Message::text("3")).await.is_err()
            {
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// rust_socketio 0.6, async client

/// rust_socketio's async client over one transport (no handshake over another first).
pub struct RsioClient {
    client: rust_socketio::asynchronous::Client,
    flood_count: Arc<AtomicU64>,
    flood_done: Arc<Notify>,
    acks_tx: mpsc::UnboundedSender<rust_socketio::Payload>,
    acks: mpsc::UnboundedReceiver<rust_socketio::Payload>,
}

impl RsioClient {
    /// Connects over WebSocket and waits for the namespace (rust_socketio refuses emits
    /// before that).
    pub async fn connect(url: &str) -> RsioClient {
        Self::connect_over(url, rust_socketio::TransportType::Websocket).await
    }

    /// Connects over `transport` and waits for the namespace.
    pub async fn connect_over(url: &str, transport: rust_socketio::TransportType) -> RsioClient {
        use rust_socketio::asynchronous::ClientBuilder;
        let connected = Arc::new(Notify::new());
        let flood_count = Arc::new(AtomicU64::new(0));
        let flood_done = Arc::new(Notify::new());
        let on_connect = {
            let connected = Arc::clone(&connected);
            move |_payload, _client| {
                connected.notify_one();
                async {}.boxed()
            }
        };
        let on_flood = {
            let count = Arc::clone(&flood_count);
            move |_payload, _client| {
                count.fetch_add(1, Ordering::Relaxed);
                async {}.boxed()
            }
        };
        let on_flood_done = {
            let done = Arc::clone(&flood_done);
            move |_payload, _client| {
                done.notify_one();
                async {}.boxed()
            }
        };
        let client = ClientBuilder::new(url)
            .transport_type(transport)
            .auth(serde_json::json!({ "token": TOKEN }))
            .reconnect(false)
            .on(rust_socketio::Event::Connect, on_connect)
            .on("flood", on_flood)
            .on("flood-done", on_flood_done)
            .connect()
            .await
            .expect("rust_socketio connects");
        tokio::time::timeout(STEP_TIMEOUT, connected.notified())
            .await
            .expect("rust_socketio: CONNECT reply");
        let (acks_tx, acks) = mpsc::unbounded_channel();
        RsioClient {
            client,
            flood_count,
            flood_done,
            acks_tx,
            acks,
        }
    }

    async fn call(&mut self, event: &str, args: Vec<serde_json::Value>) -> rust_socketio::Payload {
        let tx = self.acks_tx.clone();
        let callback = move |payload, _client| {
            let _ = tx.send(payload);
            async {}.boxed()
        };
        self.client
            .emit_with_ack(event, args, ACK_TIMEOUT, callback)
            .await
            .expect("rust_socketio emit_with_ack");
        self.acks.recv().await.expect("ack")
    }

    /// Leaves the namespace and closes the socket.
    pub async fn close(self) {
        let _ = self.client.disconnect().await;
    }
}

impl BenchClient for RsioClient {
    async fn emit_count(&mut self, i: u64, payload: &str) {
        let args = vec![serde_json::json!(i), serde_json::json!(payload)];
        self.client
            .emit("count", args)
            .await
            .expect("rust_socketio emit");
    }

    async fn stats(&mut self) -> u64 {
        match self.call("stats", Vec::new()).await {
            #[allow(deprecated)]
            rust_socketio::Payload::Text(values) => {
                // The ack's JSON array arrives as one value: [ {stats} ].
                let stats = match values.first() {
                    Some(serde_json::Value::Array(items)) => items.first().cloned(),
                    other => other.cloned(),
                };
                stats
                    .and_then(|s| s["received"].as_u64())
                    .expect("received")
            }
            other => panic!("unexpected stats ack {other:?}"),
        }
    }

    async fn flood(&mut self, n: u64, size: u64) -> u64 {
        self.flood_count.store(0, Ordering::Relaxed);
        let done = self.flood_done.notified();
        tokio::pin!(done);
        done.as_mut().enable();
        let args = vec![serde_json::json!(n), serde_json::json!(size)];
        self.client
            .emit("flood", args)
            .await
            .expect("rust_socketio emit");
        // `flood-done` comes after the flood, and its callback after theirs.
        done.await;
        n.saturating_sub(self.flood_count.load(Ordering::Relaxed))
    }

    async fn echo(&mut self, i: u64) {
        let _ = self.call("echo", vec![serde_json::json!(i)]).await;
    }
}
