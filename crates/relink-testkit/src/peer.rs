//! A scripted in-process Socket.IO / WebSocket peer for client tests.
//!
//! In the spirit of h2's `tests/h2-support/src/mock.rs`: instead of a real server that
//! decides for itself, the test plays the server frame by frame. [`Peer`] listens on
//! `127.0.0.1:0`, completes the WebSocket upgrade of every connection in the background
//! (recording the request path, query and headers) and hands each upgraded connection to the
//! test as a [`PeerConn`], which the test drives step by step: send a text or binary frame,
//! receive the next frame (always with a bounded wait), close cleanly or drop the TCP
//! connection abruptly.
//!
//! Nothing happens on a connection unless the test does it: a peer that never sends the
//! Engine.IO OPEN packet is simply a test that never calls [`PeerConn::handshake`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), relink_testkit::peer::PeerError> {
//! use relink_testkit::peer::{DEFAULT_OPEN, Peer, WAIT};
//!
//! let mut peer = Peer::bind().await?;
//! // Point the client at `peer.url()`...
//! let mut conn = peer.accept(WAIT).await.expect("the client dials");
//! assert!(conn.request_uri().starts_with("/socket.io/?"));
//! let connect = conn.handshake(DEFAULT_OPEN).await; // sends `0{...}`, returns `40...`
//! assert_eq!(connect, r#"40{"token":"t"}"#);
//! conn.send_text(r#"40{"sid":"abc"}"#).await?;
//! conn.send_text(r#"421["question",1]"#).await?;
//! conn.expect_text(r#"431["answer"]"#).await;
//! conn.drop_tcp(); // an abrupt outage
//! # Ok(())
//! # }
//! ```
//!
//! The peer never logs frame contents (they may carry the client's token), so tests can
//! capture every log record and search it for secrets.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::{self, Message, http};

/// How long [`PeerConn::recv`] and the other waiting helpers wait by default.
pub const WAIT: Duration = Duration::from_secs(10);

/// An Engine.IO OPEN payload (the JSON after the `0`), with the reference server's defaults:
/// ping every 25 s, 20 s ping timeout, 1 MB `maxPayload`.
pub const DEFAULT_OPEN: &str = r#"{"sid":"peer-engine-sid","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;

/// How long the background WebSocket upgrade of one connection may take.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);
/// Upgraded connections waiting for [`Peer::accept`].
const BACKLOG: usize = 64;
/// How long [`PeerConn::close`] waits for the client's side of the close handshake.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Most frames [`PeerConn::close`] discards while waiting for the client's close reply.
const CLOSE_DRAIN_FRAMES: usize = 1024;

/// An Engine.IO OPEN payload with the given heartbeat and `maxPayload`, for
/// [`PeerConn::handshake`].
pub fn open_json(ping_interval_ms: u64, ping_timeout_ms: u64, max_payload: u64) -> String {
    format!(
        r#"{{"sid":"peer-engine-sid","upgrades":[],"pingInterval":{ping_interval_ms},"pingTimeout":{ping_timeout_ms},"maxPayload":{max_payload}}}"#
    )
}

/// One WebSocket message received from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text frame: one Engine.IO packet.
    Text(String),
    /// A binary frame: one Socket.IO attachment.
    Binary(Vec<u8>),
    /// A WebSocket close frame, with its status code if it had one.
    Close(Option<u16>),
}

impl Frame {
    /// The text, if this is a text frame.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Frame::Text(text) => Some(text),
            _ => None,
        }
    }
}

/// Why a [`PeerConn`] or [`Peer`] operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum PeerError {
    /// Nothing arrived within the wait.
    Timeout(Duration),
    /// The connection is over: the client closed it or the TCP connection ended.
    Closed,
    /// A WebSocket or socket error (e.g. the client reset the connection).
    Ws(String),
    /// Binding the listener failed.
    Io(io::Error),
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerError::Timeout(wait) => write!(f, "nothing received within {wait:?}"),
            PeerError::Closed => f.write_str("connection closed"),
            PeerError::Ws(e) => write!(f, "WebSocket error: {e}"),
            PeerError::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

impl std::error::Error for PeerError {}

impl From<io::Error> for PeerError {
    fn from(e: io::Error) -> Self {
        PeerError::Io(e)
    }
}

fn ws_error(e: tungstenite::Error) -> PeerError {
    match e {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            PeerError::Closed
        }
        other => PeerError::Ws(other.to_string()),
    }
}

/// An HTTP answer to give to WebSocket upgrades instead of accepting them, see
/// [`Peer::reject_upgrades`].
#[derive(Debug, Clone)]
struct Reject {
    status: u16,
    retry_after: Option<String>,
}

#[derive(Debug, Default)]
struct Shared {
    reject: Mutex<Option<Reject>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data, always valid: ignore poisoning.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counters kept by the accept loop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    accepted: u64,
    rejected: u64,
}

/// A scripted Socket.IO server, see the [module docs](self).
///
/// Dropping it stops listening and closes every connection that was not handed out yet;
/// connections already handed out live as long as their [`PeerConn`].
#[derive(Debug)]
pub struct Peer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    conns: mpsc::Receiver<PeerConn>,
    counts: watch::Receiver<Counts>,
    task: JoinHandle<()>,
}

impl Peer {
    /// Listens on `127.0.0.1:0`. Must be called within a Tokio runtime.
    pub async fn bind() -> Result<Peer, PeerError> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let (tx, conns) = mpsc::channel(BACKLOG);
        let (counts_tx, counts) = watch::channel(Counts::default());
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), tx, counts_tx));
        tracing::debug!(%addr, "scripted peer listening");
        Ok(Peer {
            addr,
            shared,
            conns,
            counts,
            task,
        })
    }

    /// The address the peer listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The peer's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next upgraded connection, in the order the upgrades completed; `None` if none
    /// arrives within `wait`.
    pub async fn accept(&mut self, wait: Duration) -> Option<PeerConn> {
        timeout(wait, self.conns.recv()).await.ok().flatten()
    }

    /// TCP connections accepted so far, whatever became of them (upgraded, rejected, failed).
    pub fn accepted(&self) -> u64 {
        self.counts.borrow().accepted
    }

    /// Upgrades answered with an HTTP error so far (see [`Peer::reject_upgrades`]), counted
    /// before the answer is written.
    pub fn rejected(&self) -> u64 {
        self.counts.borrow().rejected
    }

    /// Waits until at least `n` TCP connections have been accepted, or `wait` passes;
    /// returns whether the count was reached.
    pub async fn wait_accepted(&self, n: u64, wait: Duration) -> bool {
        let mut rx = self.counts.clone();
        matches!(
            timeout(wait, rx.wait_for(|c| c.accepted >= n)).await,
            Ok(Ok(_))
        )
    }

    /// From now on, answer WebSocket upgrades with HTTP `status` (and a `Retry-After` header
    /// when given) instead of accepting them. Rejected connections are counted in
    /// [`Peer::rejected`] and never handed out by [`Peer::accept`].
    pub fn reject_upgrades(&self, status: u16, retry_after: Option<&str>) {
        *lock(&self.shared.reject) = Some(Reject {
            status,
            retry_after: retry_after.map(str::to_owned),
        });
    }

    /// From now on, accept WebSocket upgrades again (the default).
    pub fn accept_upgrades(&self) {
        *lock(&self.shared.reject) = None;
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // Dropping the accept loop's JoinSet aborts every upgrade still in progress.
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tx: mpsc::Sender<PeerConn>,
    counts: watch::Sender<Counts>,
) {
    let mut upgrades: JoinSet<()> = JoinSet::new();
    let mut index = 0u64;
    loop {
        tokio::select! {
            res = listener.accept() => match res {
                Ok((stream, remote)) => {
                    index += 1;
                    counts.send_modify(|c| c.accepted += 1);
                    let reject = lock(&shared.reject).clone();
                    upgrades.spawn(upgrade(stream, remote, index, reject, tx.clone(), counts.clone()));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "scripted peer: accept failed");
                    // A persistent error (out of descriptors) must not spin.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = upgrades.join_next(), if !upgrades.is_empty() => {}
        }
    }
}

/// Runs the WebSocket upgrade of one connection and hands it to the test.
async fn upgrade(
    stream: TcpStream,
    remote: SocketAddr,
    index: u64,
    reject: Option<Reject>,
    tx: mpsc::Sender<PeerConn>,
    counts: watch::Sender<Counts>,
) {
    let mut request_uri = String::new();
    let mut request_headers = Vec::new();
    // The signature is tungstenite's `Callback`; the large `Err` is its type, not ours.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        request_uri = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().to_string(), |pq| pq.as_str().to_owned());
        request_headers = req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        match reject {
            None => Ok(resp),
            Some(reject) => {
                // Counted before the answer is written, so a client that saw it sees the count.
                counts.send_modify(|c| c.rejected += 1);
                Err(error_response(&reject))
            }
        }
    };
    let result = timeout(
        UPGRADE_TIMEOUT,
        tokio_tungstenite::accept_hdr_async(stream, callback),
    )
    .await;
    let ws = match result {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(index, error = %e, "scripted peer: upgrade not completed");
            return;
        }
        Err(_) => {
            tracing::debug!(index, "scripted peer: upgrade timed out");
            return;
        }
    };
    tracing::trace!(index, %remote, "scripted peer: connection upgraded");
    let conn = PeerConn {
        ws: Some(ws),
        index,
        remote,
        request_uri,
        request_headers,
        closed: false,
    };
    // The receiver is gone only when the Peer was dropped: the connection just closes.
    let _ = tx.send(conn).await;
}

fn error_response(reject: &Reject) -> ErrorResponse {
    let mut builder = http::Response::builder().status(reject.status);
    if let Some(retry_after) = &reject.retry_after {
        builder = builder.header(http::header::RETRY_AFTER, retry_after.as_str());
    }
    let body = Some(format!("scripted peer rejects with {}", reject.status));
    builder.body(body.clone()).unwrap_or_else(|_| {
        // An out-of-range status: answer 500 rather than fail the upgrade task.
        let mut fallback = http::Response::new(body);
        *fallback.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        fallback
    })
}

/// One upgraded WebSocket connection, driven by the test, see the [module docs](self).
///
/// Dropping it drops the TCP connection without a close frame.
pub struct PeerConn {
    /// `None` once the TCP connection was dropped.
    ws: Option<WebSocketStream<TcpStream>>,
    index: u64,
    remote: SocketAddr,
    request_uri: String,
    request_headers: Vec<(String, String)>,
    /// Whether the stream ended (close frame received, EOF or error).
    closed: bool,
}

impl fmt::Debug for PeerConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerConn")
            .field("index", &self.index)
            .field("remote", &self.remote)
            .field("request_uri", &self.request_uri)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl PeerConn {
    /// The request target of the upgrade: path and query, e.g.
    /// `/socket.io/?EIO=4&transport=websocket`.
    pub fn request_uri(&self) -> &str {
        &self.request_uri
    }

    /// The upgrade request's headers as `(lowercase name, value)` pairs.
    pub fn request_headers(&self) -> &[(String, String)] {
        &self.request_headers
    }

    /// This connection's number: the `n`-th TCP connection the peer accepted (1-based).
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The client's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote
    }

    fn ws(&mut self) -> Result<&mut WebSocketStream<TcpStream>, PeerError> {
        self.ws.as_mut().ok_or(PeerError::Closed)
    }

    /// Sends one text frame (one Engine.IO packet, e.g. `42["ev",1]`).
    pub async fn send_text(&mut self, text: &str) -> Result<(), PeerError> {
        self.ws()?.send(Message::text(text)).await.map_err(ws_error)
    }

    /// Sends one binary frame (one Socket.IO attachment).
    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> Result<(), PeerError> {
        self.ws()?
            .send(Message::binary(bytes))
            .await
            .map_err(ws_error)
    }

    /// The next frame from the client, waiting at most [`WAIT`]; `None` on timeout or once
    /// the connection is over. WebSocket pings and pongs are skipped.
    pub async fn recv(&mut self) -> Option<Frame> {
        self.recv_timeout(WAIT).await.ok()
    }

    /// The next frame from the client, waiting at most `wait`.
    ///
    /// A close frame is returned as [`Frame::Close`]; after it, or after EOF or an error,
    /// this returns [`PeerError::Closed`]. WebSocket pings and pongs are skipped.
    pub async fn recv_timeout(&mut self, wait: Duration) -> Result<Frame, PeerError> {
        if self.closed {
            return Err(PeerError::Closed);
        }
        let ws = self.ws()?;
        let next = async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(text))) => {
                        return Ok(Frame::Text(text.as_str().to_owned()));
                    }
                    Some(Ok(Message::Binary(bytes))) => return Ok(Frame::Binary(bytes.to_vec())),
                    Some(Ok(Message::Close(frame))) => {
                        return Ok(Frame::Close(frame.map(|f| u16::from(f.code))));
                    }
                    // Pings are answered by tungstenite itself; raw frames are never read.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Err(e)) => return Err(ws_error(e)),
                    None => return Err(PeerError::Closed),
                }
            }
        };
        match timeout(wait, next).await {
            Err(_) => Err(PeerError::Timeout(wait)),
            Ok(Ok(frame)) => {
                if matches!(frame, Frame::Close(_)) {
                    self.closed = true;
                }
                Ok(frame)
            }
            Ok(Err(e)) => {
                self.closed = true;
                Err(e)
            }
        }
    }

    /// The next frame if it is a text frame, waiting at most [`WAIT`]; `None` on timeout,
    /// when the connection is over, or when the next frame is not text (it is consumed).
    pub async fn recv_text(&mut self) -> Option<String> {
        match self.recv().await {
            Some(Frame::Text(text)) => Some(text),
            _ => None,
        }
    }

    /// Receives the next frame and panics unless it is the text frame `expected`.
    ///
    /// For tests: the panic message shows what arrived instead.
    pub async fn expect_text(&mut self, expected: &str) {
        match self.recv_timeout(WAIT).await {
            Ok(Frame::Text(text)) if text == expected => {}
            other => panic!(
                "connection #{}: expected text frame {expected:?}, got {other:?}",
                self.index
            ),
        }
    }

    /// Receives the next frame, panics unless it is a text frame starting with `prefix`, and
    /// returns it (e.g. `expect_text_prefix("42")` for an event whose ack id is not known).
    pub async fn expect_text_prefix(&mut self, prefix: &str) -> String {
        match self.recv_timeout(WAIT).await {
            Ok(Frame::Text(text)) if text.starts_with(prefix) => text,
            other => panic!(
                "connection #{}: expected a text frame starting with {prefix:?}, got {other:?}",
                self.index
            ),
        }
    }

    /// Sends the Engine.IO OPEN packet `0{open_json}` and returns the text frame the client
    /// answers with (its Socket.IO CONNECT, e.g. `40{"token":"t"}`).
    ///
    /// Panics (failing the test) if sending fails or no text frame arrives within [`WAIT`];
    /// see [`PeerConn::try_handshake`] for a non-panicking version.
    pub async fn handshake(&mut self, open_json: &str) -> String {
        match self.try_handshake(open_json).await {
            Ok(connect) => connect,
            Err(e) => panic!("connection #{}: handshake failed: {e}", self.index),
        }
    }

    /// Like [`PeerConn::handshake`], returning an error instead of panicking (a non-text
    /// answer is [`PeerError::Ws`]).
    pub async fn try_handshake(&mut self, open_json: &str) -> Result<String, PeerError> {
        self.send_text(&format!("0{open_json}")).await?;
        match self.recv_timeout(WAIT).await? {
            Frame::Text(text) => Ok(text),
            other => Err(PeerError::Ws(format!(
                "expected the CONNECT text frame, got {other:?}"
            ))),
        }
    }

    /// Accepts the namespace the CONNECT frame `connect` asked for: sends
    /// `40{"sid":"<sid>"}` (`40/ns,{...}` for a custom namespace).
    pub async fn accept_namespace(&mut self, connect: &str, sid: &str) -> Result<(), PeerError> {
        let reply = format!(
            "40{}{}",
            namespace_prefix(connect),
            serde_json::json!({ "sid": sid })
        );
        self.send_text(&reply).await
    }

    /// [`PeerConn::handshake`] then [`PeerConn::accept_namespace`] with the socket id
    /// `sid-<index>`: the client ends up connected. Returns the CONNECT frame it sent.
    ///
    /// Panics (failing the test) if any step fails.
    pub async fn establish(&mut self, open_json: &str) -> String {
        let connect = self.handshake(open_json).await;
        let sid = self.sid();
        if let Err(e) = self.accept_namespace(&connect, &sid).await {
            panic!("connection #{}: CONNECT reply failed: {e}", self.index);
        }
        connect
    }

    /// The socket id [`PeerConn::establish`] hands out on this connection: `sid-<index>`.
    pub fn sid(&self) -> String {
        format!("sid-{}", self.index)
    }

    /// Closes cleanly: sends a WebSocket close frame and waits (bounded) for the client's
    /// side of the close handshake, discarding frames that arrive meanwhile.
    pub async fn close(mut self) -> Result<(), PeerError> {
        let Some(mut ws) = self.ws.take() else {
            return Err(PeerError::Closed);
        };
        match ws.close(None).await {
            Ok(()) => {}
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return Ok(());
            }
            Err(e) => return Err(ws_error(e)),
        }
        let drain = async {
            for _ in 0..CLOSE_DRAIN_FRAMES {
                match ws.next().await {
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return,
                }
            }
        };
        // The client may never answer; the connection is dropped either way.
        let _ = timeout(CLOSE_WAIT, drain).await;
        Ok(())
    }

    /// Drops the TCP connection abruptly: no close frame, a TCP reset (`SO_LINGER` 0).
    pub fn drop_tcp(mut self) {
        if let Some(ws) = self.ws.take() {
            if let Err(e) = ws.get_ref().set_zero_linger() {
                tracing::debug!(error = %e, "scripted peer: SO_LINGER 0 failed");
            }
            drop(ws);
        }
    }
}

/// `"/admin,"` for a CONNECT frame `40/admin,{...}`, `""` for the main namespace.
fn namespace_prefix(connect: &str) -> String {
    let rest = connect.strip_prefix("40").unwrap_or("");
    if !rest.starts_with('/') {
        return String::new();
    }
    let ns = rest.split(',').next().unwrap_or(rest);
    format!("{ns},")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_prefix_follows_the_connect_frame() {
        assert_eq!(namespace_prefix(r#"40{"token":"t"}"#), "");
        assert_eq!(namespace_prefix("40"), "");
        assert_eq!(namespace_prefix(r#"40/admin,{"token":"t"}"#), "/admin,");
        assert_eq!(namespace_prefix("40/admin"), "/admin,");
    }

    #[test]
    fn open_json_is_valid_json() {
        for open in [DEFAULT_OPEN.to_owned(), open_json(100, 200, 300)] {
            let v: serde_json::Value = serde_json::from_str(&open).expect("valid JSON");
            assert!(
                v["pingInterval"].is_u64() && v["maxPayload"].is_u64(),
                "{open}"
            );
        }
    }
}
