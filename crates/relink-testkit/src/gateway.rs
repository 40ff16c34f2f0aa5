//! A fault-injecting loopback TCP gateway.
//!
//! [`Gateway`] listens on `127.0.0.1:0` and sits between a Socket.IO client and its server,
//! the way an edge proxy / load balancer does. In [`Mode::Forward`] it copies bytes both ways;
//! the other modes reproduce how such a proxy misbehaves during an outage:
//!
//! - [`Mode::Status`]: answer every new request with an HTTP error (e.g. `503` with
//!   `Retry-After`, `401`, `403`) and close.
//! - [`Mode::Blackhole`]: accept the TCP connection and never answer.
//! - [`Mode::Reset`]: accept and immediately reset the connection.
//! - [`Mode::RefuseWebSocket`]: answer WebSocket upgrades with a bare `400` (as a proxy that
//!   strips `Upgrade` does), forward everything else (HTTP long-polling);
//!   [`Mode::DelayWebSocket`] forwards upgrades late.
//!
//! Live forwarded connections can additionally be cut abruptly ([`Gateway::reset_all`]) or
//! turned half-open ([`Gateway::freeze_all`]).
//!
//! Every task the gateway spawns is owned by it: [`Gateway::shutdown`] stops it and waits for
//! all of them, and dropping the [`Gateway`] aborts them.
//!
//! ```no_run
//! # async fn demo(server: std::net::SocketAddr) -> std::io::Result<()> {
//! use relink_testkit::gateway::{Gateway, Mode};
//!
//! let gw = Gateway::start(server).await?;
//! // Point the client at `gw.url()` instead of the server...
//! gw.set_mode(Mode::Status { code: 503, retry_after: Some("2".into()) });
//! gw.reset_all(); // the live connection drops; reconnects now get 503
//! gw.set_mode(Mode::Forward); // ...and then succeed again
//! gw.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, timeout, timeout_at};

/// Largest HTTP request head read before answering in [`Mode::Status`].
const MAX_HEAD: usize = 16 * 1024;
/// How long to wait for the HTTP request head before answering anyway.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for the upstream TCP connect.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// After answering, how long to keep draining the client's input (lingering close), so
/// that unread request bytes do not turn the close into a reset that loses the response.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
/// How many bytes to drain at most during the lingering close.
const LINGER_MAX_BYTES: usize = 256 * 1024;
/// Forwarding buffer size per direction.
const COPY_BUF: usize = 16 * 1024;

/// What the gateway does with new connections.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Forward bytes both ways to the upstream.
    ///
    /// If the upstream cannot be reached, the client gets `502 Bad Gateway` (counted in
    /// [`GatewayStats::upstream_failures`]), like a real reverse proxy.
    Forward,
    /// Read the HTTP request head, answer with this status and close.
    ///
    /// `retry_after` becomes a `Retry-After` header when set (raw header value, e.g. `"7"` or
    /// an HTTP date; CR/LF are stripped). The body is a small HTML page for 5xx, an engine.io
    /// style JSON error (`{"code":3,"message":"Bad request"}`, `{"code":4,"message":"Forbidden"}`)
    /// for 400/403, and plain text otherwise. The response always carries
    /// `Connection: close` and a correct `Content-Length`.
    Status {
        /// The HTTP status code to answer with.
        code: u16,
        /// Raw value of the `Retry-After` header, if any.
        retry_after: Option<String>,
    },
    /// Accept the TCP connection, read and discard, never answer (a gateway that hangs).
    Blackhole,
    /// Accept and immediately reset (RST via `SO_LINGER` 0) the connection.
    Reset,
    /// Read the request head: a WebSocket upgrade is answered `400 Bad Request` (plain
    /// text, no engine.io code: a gateway's refusal) and counted in
    /// [`GatewayStats::websocket_refusals`]; any other request is forwarded.
    RefuseWebSocket,
    /// Forward everything, but strip `Upgrade` (and `Connection`, `Sec-WebSocket-*`) from
    /// WebSocket upgrade requests, as a proxy that does not know WebSocket does: the
    /// server sees a plain GET for `transport=websocket` (engine.io answers 400,
    /// `Bad request`). Counted like [`Mode::RefuseWebSocket`].
    StripUpgrade,
    /// Forward everything, but hold each WebSocket upgrade this long first (a slow path
    /// for WebSocket: long-polling's upgrade then happens while data flows).
    DelayWebSocket(Duration),
}

/// A snapshot of the gateway's counters, see [`Gateway::stats`].
///
/// Every accepted connection ends up in exactly one of `forwarded`, `upstream_failures`,
/// `status_answers`, `blackholed` and `resets` (the treatment is chosen from the mode at
/// accept time; a connection is counted there as soon as its treatment starts, so the sum
/// can briefly lag behind `accepted`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GatewayStats {
    /// TCP connections accepted, in every mode.
    pub accepted: u64,
    /// Connections forwarded to the upstream (upstream connect succeeded).
    pub forwarded: u64,
    /// Connections in [`Mode::Forward`] whose upstream connect failed (answered `502`).
    pub upstream_failures: u64,
    /// Connections answered with an HTTP status in [`Mode::Status`].
    pub status_answers: u64,
    /// Connections swallowed in [`Mode::Blackhole`].
    pub blackholed: u64,
    /// Connections reset on accept in [`Mode::Reset`].
    pub resets: u64,
    /// Forwarded connections currently open (including frozen ones).
    pub active: u64,
    /// WebSocket upgrades refused in [`Mode::RefuseWebSocket`] (also in `status_answers`).
    pub websocket_refusals: u64,
}

/// Commands broadcast to live connections. Generations let each connection tell whether a
/// command was issued after it was accepted.
#[derive(Clone, Copy, Debug, Default)]
struct Control {
    freeze_gen: u64,
    reset_gen: u64,
    shutdown: bool,
}

/// What a live connection must do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Freeze,
    Reset,
    Shutdown,
}

impl Control {
    /// The most severe command issued since `born` (the state when the connection was accepted).
    fn event(&self, born: &Control, include_freeze: bool) -> Option<Event> {
        if self.shutdown {
            Some(Event::Shutdown)
        } else if self.reset_gen > born.reset_gen {
            Some(Event::Reset)
        } else if include_freeze && self.freeze_gen > born.freeze_gen {
            Some(Event::Freeze)
        } else {
            None
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    forwarded: AtomicU64,
    upstream_failures: AtomicU64,
    status_answers: AtomicU64,
    blackholed: AtomicU64,
    resets: AtomicU64,
    active: AtomicU64,
    websocket_refusals: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    /// The request lines of the WebSocket upgrades refused in [`Mode::RefuseWebSocket`].
    refused: Mutex<Vec<String>>,
    mode: Mutex<Mode>,
    upstream: Mutex<SocketAddr>,
    control: watch::Sender<Control>,
    accepted: watch::Sender<u64>,
    counters: Counters,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values are plain data that are always valid; ignore poisoning.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Decrements `active` when a forwarded connection ends, however it ends.
struct ActiveGuard<'a>(&'a AtomicU64);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A fault-injecting loopback TCP gateway, see the [module docs](self).
///
/// The handle is `Send + Sync`; share it behind an `Arc` if several tasks need it. Dropping
/// it stops the gateway and aborts every connection task; [`Gateway::shutdown`] does the
/// same and waits for them.
#[derive(Debug)]
pub struct Gateway {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl Gateway {
    /// Listen on `127.0.0.1:0` and forward to `upstream` (initial mode: [`Mode::Forward`]).
    ///
    /// Must be called within a Tokio runtime.
    pub async fn start(upstream: SocketAddr) -> io::Result<Gateway> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            refused: Mutex::new(Vec::new()),
            mode: Mutex::new(Mode::Forward),
            upstream: Mutex::new(upstream),
            control: watch::Sender::new(Control::default()),
            accepted: watch::Sender::new(0),
            counters: Counters::default(),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        tracing::debug!(%addr, %upstream, "gateway listening");
        Ok(Gateway {
            shared,
            addr,
            task: Some(task),
        })
    }

    /// The address the gateway listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The gateway's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Set what happens to new connections. Connections already accepted keep their treatment
    /// (a forwarded connection keeps forwarding).
    pub fn set_mode(&self, mode: Mode) {
        tracing::debug!(addr = %self.addr, ?mode, "gateway mode");
        *lock(&self.shared.mode) = mode;
    }

    /// The current mode for new connections.
    pub fn mode(&self) -> Mode {
        lock(&self.shared.mode).clone()
    }

    /// Forward new connections to `upstream` from now on (e.g. after a server restart on
    /// another port). Live forwarded connections are not moved.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        tracing::debug!(addr = %self.addr, %upstream, "gateway upstream");
        *lock(&self.shared.upstream) = upstream;
    }

    /// The upstream new connections are forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        *lock(&self.shared.upstream)
    }

    /// Cut, now, every connection the gateway has accepted and still holds open — forwarded
    /// ones (frozen or not), blackholed ones and any still being answered — with a TCP reset
    /// on the client side (an abrupt drop). Forwarded connections' upstream sides are closed.
    ///
    /// Connections accepted afterwards are unaffected and follow the mode.
    pub fn reset_all(&self) {
        tracing::debug!(addr = %self.addr, "gateway reset_all");
        self.shared.control.send_modify(|c| c.reset_gen += 1);
    }

    /// Make every live forwarded connection half-open: both sockets stay open but no byte moves
    /// in either direction any more, silently (no FIN, no RST). A frozen connection stays that
    /// way until [`reset_all`](Self::reset_all), [`shutdown`](Self::shutdown) or drop.
    ///
    /// Connections accepted afterwards are unaffected and follow the mode.
    pub fn freeze_all(&self) {
        tracing::debug!(addr = %self.addr, "gateway freeze_all");
        self.shared.control.send_modify(|c| c.freeze_gen += 1);
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> GatewayStats {
        let c = &self.shared.counters;
        GatewayStats {
            accepted: *self.shared.accepted.borrow(),
            forwarded: c.forwarded.load(Ordering::Relaxed),
            upstream_failures: c.upstream_failures.load(Ordering::Relaxed),
            status_answers: c.status_answers.load(Ordering::Relaxed),
            blackholed: c.blackholed.load(Ordering::Relaxed),
            resets: c.resets.load(Ordering::Relaxed),
            active: c.active.load(Ordering::Relaxed),
            websocket_refusals: c.websocket_refusals.load(Ordering::Relaxed),
        }
    }

    /// The request lines (lower-cased) of the WebSocket upgrades refused in
    /// [`Mode::RefuseWebSocket`], in order: an upgrade probe of a polling session carries
    /// `sid=`, a first dial does not.
    pub fn refused_upgrades(&self) -> Vec<String> {
        lock(&self.shared.refused).clone()
    }

    /// Wait until at least `n` connections have been accepted, or `timeout` passes; returns
    /// whether the count was reached.
    pub async fn wait_accepted(&self, n: u64, timeout: Duration) -> bool {
        let mut rx = self.shared.accepted.subscribe();
        matches!(
            tokio::time::timeout(timeout, rx.wait_for(|v| *v >= n)).await,
            Ok(Ok(_))
        )
    }

    /// Stop listening and close every connection, waiting until all of the gateway's tasks
    /// have finished. New connection attempts are refused afterwards.
    pub async fn shutdown(mut self) {
        self.shared.control.send_modify(|c| c.shutdown = true);
        if let Some(task) = self.task.take() {
            // The accept loop closes the listener and then aborts and awaits every connection.
            if let Err(e) = task.await
                && e.is_panic()
            {
                tracing::error!(addr = %self.addr, "gateway accept loop panicked");
            }
        }
        tracing::debug!(addr = %self.addr, "gateway shut down");
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            self.shared.control.send_modify(|c| c.shutdown = true);
            // Aborting the accept loop drops its JoinSet, which aborts every connection task.
            task.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut control = shared.control.subscribe();
    let mut conns: JoinSet<()> = JoinSet::new();
    loop {
        tokio::select! {
            res = listener.accept() => match res {
                Ok((stream, peer)) => {
                    // Snapshot the control state now, so that commands issued after this
                    // accept apply to this connection and earlier ones do not.
                    let rx = shared.control.subscribe();
                    let born = *rx.borrow();
                    if born.shutdown {
                        break;
                    }
                    shared.accepted.send_modify(|v| *v += 1);
                    let mode = lock(&shared.mode).clone();
                    let upstream = *lock(&shared.upstream);
                    tracing::trace!(%peer, ?mode, "gateway accepted");
                    conns.spawn(handle_conn(stream, mode, upstream, Arc::clone(&shared), rx, born));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "gateway accept failed");
                    // Persistent errors (e.g. out of file descriptors) would otherwise spin.
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(50)) => {}
                        () = wait_shutdown(&mut control) => break,
                    }
                }
            },
            Some(res) = conns.join_next(), if !conns.is_empty() => {
                if let Err(e) = res
                    && e.is_panic()
                {
                    tracing::error!("gateway connection task panicked");
                }
            }
            () = wait_shutdown(&mut control) => break,
        }
    }
    drop(listener);
    conns.shutdown().await;
}

/// Resolves once shutdown is requested (or the gateway is gone).
async fn wait_shutdown(rx: &mut watch::Receiver<Control>) {
    // An error means the sender is gone, which is a shutdown too.
    let _ = rx.wait_for(|c| c.shutdown).await;
}

async fn handle_conn(
    client: TcpStream,
    mode: Mode,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    rx: watch::Receiver<Control>,
    born: Control,
) {
    let counters = &shared.counters;
    match mode {
        Mode::Forward => forward(client, Vec::new(), upstream, counters, rx, born).await,
        Mode::RefuseWebSocket | Mode::DelayWebSocket(_) | Mode::StripUpgrade => {
            let mut client = client;
            let Some(head) = read_head(&mut client).await else {
                return;
            };
            let lower = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let upgrade = lower.contains("\r\nupgrade: websocket");
            if let (Mode::DelayWebSocket(delay), true) = (&mode, upgrade) {
                tokio::time::sleep(*delay).await;
                forward(client, head, upstream, counters, rx, born).await;
            } else if let (Mode::StripUpgrade, true) = (&mode, upgrade) {
                let line = lower.split("\r\n").next().unwrap_or_default().to_owned();
                lock(&shared.refused).push(line);
                counters.websocket_refusals.fetch_add(1, Ordering::Relaxed);
                forward(client, strip_upgrade(&head), upstream, counters, rx, born).await;
            } else if upgrade {
                let line = lower.split("\r\n").next().unwrap_or_default().to_owned();
                lock(&shared.refused).push(line);
                counters.status_answers.fetch_add(1, Ordering::Relaxed);
                counters.websocket_refusals.fetch_add(1, Ordering::Relaxed);
                let body = "WebSocket is not allowed here\n";
                let response = format!(
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = client.write_all(response.as_bytes()).await;
                let _ = client.shutdown().await;
                linger_drain(&mut client).await;
            } else {
                forward(client, head, upstream, counters, rx, born).await;
            }
        }
        Mode::Status { code, retry_after } => {
            counters.status_answers.fetch_add(1, Ordering::Relaxed);
            answer_status(client, code, retry_after.as_deref(), rx, born).await;
        }
        Mode::Blackhole => {
            counters.blackholed.fetch_add(1, Ordering::Relaxed);
            blackhole(client, rx, born).await;
        }
        Mode::Reset => {
            counters.resets.fetch_add(1, Ordering::Relaxed);
            abort(client);
        }
    }
}

/// The request head without what makes it a WebSocket upgrade, closing after the answer.
fn strip_upgrade(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut out = String::new();
    for (i, line) in head.split("\r\n").enumerate() {
        let name = line
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let websocket =
            name == "upgrade" || name == "connection" || name.starts_with("sec-websocket-");
        if i == 0 || !websocket {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    out.push_str(rest);
    out.into_bytes()
}

/// Close `stream` with a TCP reset.
fn abort(stream: TcpStream) {
    if let Err(e) = stream.set_zero_linger() {
        tracing::debug!(error = %e, "gateway: SO_LINGER 0 failed");
    }
    drop(stream);
}

/// Resolves with the next command for a connection accepted at `born`.
async fn next_event(
    rx: &mut watch::Receiver<Control>,
    born: &Control,
    include_freeze: bool,
) -> Event {
    match rx
        .wait_for(|c| c.event(born, include_freeze).is_some())
        .await
    {
        Ok(c) => c.event(born, include_freeze).unwrap_or(Event::Shutdown),
        // The gateway is gone.
        Err(_) => Event::Shutdown,
    }
}

/// Forwards, writing `prefix` (what was read from the client already) upstream first.
async fn forward(
    mut client: TcpStream,
    prefix: Vec<u8>,
    upstream: SocketAddr,
    counters: &Counters,
    mut rx: watch::Receiver<Control>,
    born: Control,
) {
    let connect = tokio::select! {
        res = timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(upstream)) => match res {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "upstream connect timed out")),
        },
        ev = next_event(&mut rx, &born, false) => {
            if ev == Event::Reset {
                abort(client);
            }
            return;
        }
    };
    let mut server = match connect {
        Ok(mut s) if !prefix.is_empty() => {
            if s.write_all(&prefix).await.is_err() {
                return;
            }
            s
        }
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(%upstream, error = %e, "gateway: upstream unreachable, answering 502");
            counters.upstream_failures.fetch_add(1, Ordering::Relaxed);
            answer_status(client, 502, None, rx, born).await;
            return;
        }
    };
    counters.forwarded.fetch_add(1, Ordering::Relaxed);
    counters.active.fetch_add(1, Ordering::Relaxed);
    let _active = ActiveGuard(&counters.active);
    // Best effort: latency matters more than throughput here.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);

    let event = tokio::select! {
        res = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut server, COPY_BUF, COPY_BUF) => {
            match res {
                // Both directions finished with a FIN: close normally.
                Ok(_) => {}
                Err(e) => {
                    // One side failed (typically a reset): propagate the abruptness.
                    tracing::trace!(error = %e, "gateway: forwarded connection failed");
                    abort(client);
                    abort(server);
                }
            }
            return;
        }
        ev = next_event(&mut rx, &born, true) => ev,
    };
    let event = match event {
        Event::Freeze => {
            tracing::trace!("gateway: connection frozen");
            // Hold both sockets without touching them until a reset or shutdown.
            next_event(&mut rx, &born, false).await
        }
        other => other,
    };
    if event == Event::Reset {
        abort(client);
    }
    drop(server);
}

async fn blackhole(mut client: TcpStream, mut rx: watch::Receiver<Control>, born: Control) {
    let mut buf = vec![0u8; 8 * 1024];
    let discard = async {
        loop {
            match client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let event = tokio::select! {
        () = discard => None,
        ev = next_event(&mut rx, &born, false) => Some(ev),
    };
    if event == Some(Event::Reset) {
        abort(client);
    }
}

/// Read the request head (bounded), answer with `code`, then close gracefully.
async fn answer_status(
    mut client: TcpStream,
    code: u16,
    retry_after: Option<&str>,
    mut rx: watch::Receiver<Control>,
    born: Control,
) {
    let work = async {
        let _ = client.set_nodelay(true);
        if read_head(&mut client).await.is_none() {
            return;
        }
        let response = status_response(code, retry_after);
        if client.write_all(&response).await.is_err() || client.flush().await.is_err() {
            return;
        }
        let _ = client.shutdown().await;
        linger_drain(&mut client).await;
    };
    let event = tokio::select! {
        () = work => None,
        ev = next_event(&mut rx, &born, false) => Some(ev),
    };
    if event == Some(Event::Reset) {
        abort(client);
    }
}

/// Read up to the end of the HTTP request head (`\r\n\r\n`), at most [`MAX_HEAD`] bytes and
/// [`HEAD_TIMEOUT`]: what was read. `None` if the client went away before sending anything
/// useful (there is then nobody to answer); on timeout or an oversized head, what came so
/// the client still gets the answer.
async fn read_head(client: &mut TcpStream) -> Option<Vec<u8>> {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    loop {
        match timeout_at(deadline, client.read(&mut buf)).await {
            Err(_) => return Some(head),
            Ok(Err(_)) => return None,
            Ok(Ok(0)) => return (!head.is_empty()).then_some(head),
            Ok(Ok(n)) => {
                // Only the new bytes plus the 3 before them can complete the terminator.
                let from = head.len().saturating_sub(3);
                head.extend_from_slice(&buf[..n]);
                if head[from..].windows(4).any(|w| w == b"\r\n\r\n") || head.len() >= MAX_HEAD {
                    return Some(head);
                }
            }
        }
    }
}

/// Lingering close: after our FIN, read and discard what the client still sends (bounded in
/// time and bytes) so that unread input does not make the kernel reset the connection and
/// destroy the response before the client has read it.
async fn linger_drain(client: &mut TcpStream) {
    let deadline = Instant::now() + LINGER_TIMEOUT;
    let mut buf = [0u8; 4096];
    let mut total = 0usize;
    while total < LINGER_MAX_BYTES {
        match timeout_at(deadline, client.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => total += n,
            _ => break,
        }
    }
}

fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        520 => "Web Server Returned an Unknown Error",
        521 => "Web Server Is Down",
        522 => "Connection Timed Out",
        523 => "Origin Is Unreachable",
        524 => "A Timeout Occurred",
        _ => match code / 100 {
            1 => "Informational",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Unknown",
        },
    }
}

/// Build the complete HTTP/1.1 response for [`Mode::Status`].
fn status_response(code: u16, retry_after: Option<&str>) -> Vec<u8> {
    let reason = reason_phrase(code);
    let bodyless = (100..200).contains(&code) || code == 204 || code == 304;
    let (content_type, body) = if bodyless {
        ("text/plain; charset=utf-8", String::new())
    } else if (500..600).contains(&code) {
        (
            "text/html; charset=utf-8",
            format!(
                "<!DOCTYPE html>\n<html>\n<head><title>{code} {reason}</title></head>\n<body>\n\
                 <center><h1>{code} {reason}</h1></center>\n<hr><center>relink-gateway</center>\n\
                 </body>\n</html>\n"
            ),
        )
    } else if code == 400 {
        (
            "application/json",
            r#"{"code":3,"message":"Bad request"}"#.to_owned(),
        )
    } else if code == 403 {
        (
            "application/json",
            r#"{"code":4,"message":"Forbidden"}"#.to_owned(),
        )
    } else {
        ("text/plain; charset=utf-8", format!("{code} {reason}\n"))
    };
    let mut head = format!(
        "HTTP/1.1 {code} {reason}\r\nServer: relink-gateway\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(value) = retry_after {
        // A raw header value; drop CR/LF so it cannot break the response framing.
        let value: String = value.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        head.push_str("Retry-After: ");
        head.push_str(value.trim());
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_503_has_retry_after_and_length() {
        let r = String::from_utf8(status_response(503, Some("7\r\nX-Evil: 1"))).expect("utf8");
        assert!(r.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(r.contains("\r\nRetry-After: 7X-Evil: 1\r\n"));
        let (head, body) = r.split_once("\r\n\r\n").expect("head");
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(body.contains("<h1>503 Service Unavailable</h1>"));
    }

    #[test]
    fn response_403_is_engine_io_json() {
        let r = String::from_utf8(status_response(403, None)).expect("utf8");
        assert!(r.ends_with("\r\n\r\n{\"code\":4,\"message\":\"Forbidden\"}"));
        assert!(!r.contains("Retry-After"));
    }

    #[test]
    fn response_204_has_no_body() {
        let r = String::from_utf8(status_response(204, None)).expect("utf8");
        assert!(r.ends_with(
            "Content-Length: 0\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
        ));
    }
}
