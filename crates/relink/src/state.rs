//! The connection state users observe. Only the supervisor writes it.

use serde::Serialize;
use std::time::Duration;

/// Where the client is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Status {
    /// Making the first connection.
    Connecting,
    /// Connected to the namespace.
    Connected,
    /// The link is down; the client is trying again.
    Reconnecting,
    /// Ended without error: `disconnect()` was called or the server disconnected us.
    Disconnected,
    /// Ended for good: the credentials were rejected or the configuration is wrong.
    Failed,
}

impl Status {
    /// Whether the client has stopped and will not connect again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Disconnected | Status::Failed)
    }
}

/// Why the client ended in [`Status::Failed`] or [`Status::Disconnected`]. More reasons
/// may come: match with a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EndReason {
    /// The server rejected the credentials, also after one refresh.
    Unauthorized,
    /// The token to send was empty; nothing was dialled.
    EmptyToken,
    /// The configuration cannot work (URL, protocol version, namespace).
    Configuration,
    /// The server disconnected the namespace on purpose.
    ServerDisconnect,
    /// The user called `disconnect()` or dropped the client.
    ClientDisconnect,
    /// `reconnection_attempts` failed attempts in one outage: the client gave up.
    AttemptsExhausted,
    /// The connection was lost and reconnection is off (`reconnection(false)`).
    ConnectionLost,
    /// The connection task itself ended without deciding to: a panic in relink or in a
    /// callback it runs (the token provider). The last error says so.
    Internal,
}

/// A stable name for why an attempt failed or a connection ended. Prints (and serializes)
/// as the snake-case names logs and the CLI use (`http_5xx`, `ping_timeout`, ...). More
/// may come: match with a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// TCP-level failure: refused, reset, unreachable.
    Network,
    /// The TLS handshake failed.
    Tls,
    /// An `https://` URL to a server without TLS.
    NotTls,
    /// The server's TLS certificate is not trusted.
    Certificate,
    /// The proxy could not be reached or refused the tunnel.
    Proxy,
    /// The proxy asked for credentials, or refused them (HTTP 407).
    ProxyAuth,
    /// The attempt took longer than the connect timeout.
    ConnectTimeout,
    /// 401 or 403 on the upgrade.
    HttpUnauthorized,
    /// 429 on the upgrade.
    #[serde(rename = "http_429")]
    Http429,
    /// A 5xx on the upgrade.
    #[serde(rename = "http_5xx")]
    Http5xx,
    /// Another HTTP status on the upgrade (404 included).
    HttpError,
    /// The namespace refused the connection (CONNECT_ERROR).
    Rejected,
    /// The server has no such namespace.
    InvalidNamespace,
    /// The server disconnected the namespace on purpose.
    ServerDisconnect,
    /// The transport closed.
    TransportClose,
    /// No packet within the heartbeat window.
    PingTimeout,
    /// The link was lost while relink did not read it, waiting for the application to make
    /// room for more events: the server's pings went unanswered.
    Unread,
    /// The peer broke the protocol.
    ParseError,
    /// Another WebSocket-level failure, or the upgrade was never answered.
    TransportError,
    /// The URL cannot be dialled.
    InvalidUrl,
    /// The token to send was empty.
    EmptyToken,
    /// The token provider failed.
    AuthProvider,
    /// The connection task itself ended (a panic, its runtime shutting down).
    Internal,
}

impl Reason {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Network => "network",
            Reason::Tls => "tls",
            Reason::NotTls => "not_tls",
            Reason::Certificate => "certificate",
            Reason::Proxy => "proxy",
            Reason::ProxyAuth => "proxy_auth",
            Reason::ConnectTimeout => "connect_timeout",
            Reason::HttpUnauthorized => "http_unauthorized",
            Reason::Http429 => "http_429",
            Reason::Http5xx => "http_5xx",
            Reason::HttpError => "http_error",
            Reason::Rejected => "rejected",
            Reason::InvalidNamespace => "invalid_namespace",
            Reason::ServerDisconnect => "server_disconnect",
            Reason::TransportClose => "transport_close",
            Reason::PingTimeout => "ping_timeout",
            Reason::Unread => "unread",
            Reason::ParseError => "parse_error",
            Reason::TransportError => "transport_error",
            Reason::InvalidUrl => "invalid_url",
            Reason::EmptyToken => "empty_token",
            Reason::AuthProvider => "auth_provider",
            Reason::Internal => "internal",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// How the client talks to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Transport {
    /// One WebSocket (`transport=websocket`).
    WebSocket,
    /// HTTP long-polling (`transport=polling`), upgraded to WebSocket when the server offers
    /// it and WebSocket is allowed.
    Polling,
}

impl Transport {
    /// The name Engine.IO uses (`websocket`, `polling`).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Polling => "polling",
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot of the connection, published on every transition.
///
/// ```
/// use relink::{Client, Status, Transport};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = relink_testkit::node::NodeServer::start(Default::default()).await?;
/// let url = "http://127.0.0.1:3000";
/// # let url = server.url();
/// let (client, _) = Client::builder(url).token("secret").connect()?;
/// let mut states = client.watch_state();
/// // The latest state; `wait_for` checks it, then every change after it.
/// let state = states.wait_for(|s| s.status == Status::Connected).await?.clone();
/// assert_eq!(state.transport, Some(Transport::WebSocket));
/// println!("connected as {}", state.socket_id.as_deref().unwrap_or("?"));
/// client.disconnect().await;
/// assert_eq!(client.state().status, Status::Disconnected);
/// # server.stop().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionState {
    /// Increases by one with every published transition: a listener that pairs a snapshot
    /// with [`crate::Client::state_changes`] skips changes with a `seq` at or below it.
    pub seq: u64,
    /// The lifecycle status.
    pub status: Status,
    /// The Socket.IO socket id while connected.
    pub socket_id: Option<String>,
    /// The attempt number in this outage: the one under way, or, while waiting
    /// (`next_attempt_in` is set), the one to come; `attempt - 1` attempts have failed.
    /// 0 once a connection has held for the stable period.
    pub attempt: u32,
    /// The last failure, described without secrets.
    pub last_error: Option<String>,
    /// The kind of the last failure (prints as `http_5xx`, `ping_timeout`, ...).
    pub reason: Option<Reason>,
    /// The last failure itself, typed (`None` for the end of the connection task, whose
    /// message is in `last_error`).
    #[serde(skip)]
    pub cause: Option<std::sync::Arc<crate::LinkError>>,
    /// How long until the next attempt, as of when this state was published.
    #[serde(serialize_with = "millis")]
    pub next_attempt_in: Option<Duration>,
    /// Whether the current connection restored the previous session (state recovery).
    pub recovered: bool,
    /// What carries the connection while connected (it changes to
    /// [`Transport::WebSocket`] when long-polling upgrades); `None` otherwise.
    pub transport: Option<Transport>,
    /// Why the client ended, once terminal.
    pub end: Option<EndReason>,
}

fn millis<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        None => s.serialize_none(),
    }
}

impl ConnectionState {
    pub(crate) fn initial() -> Self {
        ConnectionState {
            seq: 0,
            status: Status::Connecting,
            socket_id: None,
            attempt: 0,
            last_error: None,
            reason: None,
            cause: None,
            next_attempt_in: None,
            recovered: false,
            transport: None,
            end: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_prints_and_serializes_as_the_names_logs_use() {
        for reason in [
            Reason::Network,
            Reason::Tls,
            Reason::NotTls,
            Reason::Certificate,
            Reason::Proxy,
            Reason::ProxyAuth,
            Reason::ConnectTimeout,
            Reason::HttpUnauthorized,
            Reason::Http429,
            Reason::Http5xx,
            Reason::HttpError,
            Reason::Rejected,
            Reason::InvalidNamespace,
            Reason::ServerDisconnect,
            Reason::TransportClose,
            Reason::PingTimeout,
            Reason::Unread,
            Reason::ParseError,
            Reason::TransportError,
            Reason::InvalidUrl,
            Reason::EmptyToken,
            Reason::AuthProvider,
            Reason::Internal,
        ] {
            let json = serde_json::to_string(&reason).expect("serializes");
            assert_eq!(json, format!("\"{reason}\""));
            assert_eq!(reason, reason.as_str());
        }
        assert_eq!(Reason::Http5xx.to_string(), "http_5xx");
    }
}
