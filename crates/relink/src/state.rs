//! The connection state users observe. Only the supervisor writes it.

use serde::Serialize;
use std::time::Duration;

/// Where the client is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
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

/// A snapshot of the connection, published on every transition.
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
    /// A stable name for the last failure's kind (`http_5xx`, `ping_timeout`, ...).
    pub reason: Option<&'static str>,
    /// How long until the next attempt, as of when this state was published.
    #[serde(serialize_with = "millis")]
    pub next_attempt_in: Option<Duration>,
    /// Whether the current connection restored the previous session (state recovery).
    pub recovered: bool,
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
            next_attempt_in: None,
            recovered: false,
            end: None,
        }
    }
}
