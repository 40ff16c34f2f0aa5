//! Typed errors, one per operation.

use relink_proto::Payload;
use std::time::Duration;
use thiserror::Error;

/// Why a connection attempt failed or a live connection ended.
///
/// Every variant is decided on by [`crate::policy::classify::classify`]; messages never contain
/// the token (it only ever travels inside the CONNECT packet).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LinkError {
    /// TCP-level failure: refused, reset, unreachable, EOF.
    #[error("network error: {0}")]
    Network(String),
    /// The TLS handshake failed.
    #[error("TLS error: {0}")]
    Tls(String),
    /// An `https://` or `wss://` URL, and the server answered in plain text: it does not
    /// speak TLS at this address.
    #[error(
        "the server does not speak TLS at this address (it answered in plain text): use http:// or ws://, or check the port"
    )]
    NotTls,
    /// The server's TLS certificate was refused.
    #[error("the TLS certificate of {server} is not trusted: {problem}")]
    Certificate {
        /// `host:port` of the server.
        server: String,
        /// What is wrong with it, and what to do.
        problem: String,
    },
    /// The proxy could not be reached or would not open a tunnel.
    #[error("proxy {proxy}: {message}")]
    Proxy {
        /// `host:port` of the proxy (never its credentials).
        proxy: String,
        /// What went wrong.
        message: String,
    },
    /// The proxy's scheme cannot be used (from the environment: `https://`, `socks4://`).
    #[error(
        "proxy {proxy}: scheme {scheme} is not supported: use http://, socks5:// or socks5h://"
    )]
    ProxyUnsupported {
        /// `host:port` of the proxy (never its credentials).
        proxy: String,
        /// The scheme.
        scheme: String,
    },
    /// The proxy asked for credentials (HTTP 407, or SOCKS authentication), or refused them.
    #[error("{}", proxy_auth(proxy, *sent_credentials))]
    ProxyAuth {
        /// `host:port` of the proxy (never its credentials).
        proxy: String,
        /// Whether credentials were sent (and refused).
        sent_credentials: bool,
    },
    /// Connecting (TCP, TLS, upgrade and both handshakes) took longer than the connect timeout.
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// The server or a gateway answered the handshake (the WebSocket upgrade or a polling
    /// request) with an HTTP error.
    #[error("HTTP {status} from the server{}", engine_note(*engine_code))]
    Http {
        /// The status code.
        status: u16,
        /// `Retry-After`, converted to a duration from now.
        retry_after: Option<Duration>,
        /// The engine.io error code from a JSON body `{"code":N}`, if any.
        engine_code: Option<u8>,
    },
    /// The upgrade was answered 404: there is no Socket.IO server at this path.
    #[error(
        "HTTP 404 on upgrade at {path}: no Socket.IO server at this path (the default is /socket.io/; set another with the `path` option, `--path` on the command line)"
    )]
    NotFound {
        /// The path that was tried.
        path: String,
    },
    /// The connection closed before the WebSocket upgrade was answered: often a server
    /// that is not Socket.IO at this path.
    #[error(
        "the connection closed before the WebSocket upgrade at {path} was answered: is this a Socket.IO server, and is the path right? (the default is /socket.io/; set another with the `path` option, `--path` on the command line)"
    )]
    NoUpgrade {
        /// The path that was tried.
        path: String,
    },
    /// The server has no such namespace (CONNECT_ERROR "Invalid namespace").
    #[error(
        "the server has no namespace {namespace:?} (it answered \"Invalid namespace\"): check the namespace, or the URL's path, which names it"
    )]
    UnknownNamespace {
        /// The namespace asked for.
        namespace: String,
    },
    /// The namespace refused the connection (CONNECT_ERROR), usually server middleware.
    #[error("connection refused by the server: {message}{}", data_reason(data.as_deref()))]
    Rejected {
        /// The server's message.
        message: String,
        /// The server's `data`, as JSON text.
        data: Option<String>,
    },
    /// The server disconnected this namespace on purpose (`io server disconnect`).
    #[error("disconnected by the server")]
    ServerDisconnect,
    /// The transport closed (`transport close`): WebSocket close, Engine.IO close, EOF.
    #[error("connection closed by the peer")]
    TransportClose,
    /// No packet within pingInterval + pingTimeout (`ping timeout`).
    #[error("heartbeat lost (ping timeout)")]
    PingTimeout,
    /// The link was lost after relink stopped reading it for longer than the server's ping
    /// timeout, because the application did not make room for more events
    /// ([`crate::Overflow::Backpressure`]): the server's pings went unanswered and it
    /// closed the link. Retried; connection state recovery brings back what was missed.
    #[error(
        "connection closed while the application was not reading events ({} ms without room for more): the server's pings went unanswered",
        unread.as_millis()
    )]
    Unread {
        /// How long the link went unread.
        unread: std::time::Duration,
    },
    /// The peer broke the protocol (`parse error`).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Another WebSocket-level failure.
    #[error("WebSocket error: {0}")]
    WebSocket(String),
    /// The URL cannot be dialled (scheme, host).
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// The token to send is empty or whitespace; nothing was dialled.
    #[error("token must not be empty")]
    EmptyToken,
    /// The auth provider failed to produce credentials.
    #[error("auth provider failed: {0}")]
    AuthProvider(String),
}

fn engine_note(code: Option<u8>) -> String {
    match code {
        None => String::new(),
        Some(code) => match relink_proto::engine::EngineError::from_code(code) {
            Some(error) => format!(" (engine.io: {})", error.message()),
            None => format!(" (engine.io code {code})"),
        },
    }
}

impl LinkError {
    /// engine.io's error, when the server answered with one (see [`EngineError`]).
    ///
    /// [`EngineError`]: relink_proto::engine::EngineError
    pub fn engine_error(&self) -> Option<relink_proto::engine::EngineError> {
        match self {
            LinkError::Http {
                engine_code: Some(code),
                ..
            } => relink_proto::engine::EngineError::from_code(*code),
            _ => None,
        }
    }
}

fn proxy_auth(proxy: &str, sent_credentials: bool) -> String {
    if sent_credentials {
        format!("the proxy {proxy} refused the credentials in the proxy URL")
    } else {
        format!(
            "the proxy {proxy} requires credentials: put them in the proxy URL, scheme://user:password@{proxy}"
        )
    }
}

/// Why a [`crate::ClientBuilder`] could not build a client.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The token is empty or only whitespace.
    #[error("token must not be empty")]
    EmptyToken,
    /// The URL does not parse or cannot be used.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// The namespace is malformed, or conflicts with the URL's path.
    #[error("invalid namespace: {0}")]
    InvalidNamespace(String),
    /// The auth payload is not a JSON object.
    #[error("auth must be a JSON object")]
    InvalidAuth,
    /// A numeric or duration setting is out of range.
    #[error("invalid setting {name}: {reason}")]
    InvalidSetting {
        /// The setting.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No tokio runtime is running (the client spawns its supervisor task).
    #[error("no tokio runtime: call connect() from within a tokio runtime")]
    NoRuntime,
}

/// Why an emit was not accepted. The payload comes back so nothing is silently lost.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EmitError {
    /// Disconnected and the outbox is at its bound (packets or bytes).
    #[error("outbox full ({packets} packets, {bytes} bytes buffered while disconnected)")]
    OutboxFull {
        /// The event name.
        event: String,
        /// The payload, handed back.
        payload: Payload,
        /// Packets buffered.
        packets: usize,
        /// Bytes buffered.
        bytes: usize,
    },
    /// The arguments could not be serialized to JSON (a map with non-string keys, a
    /// `Serialize` impl that fails).
    #[error("the arguments of {event:?} are not JSON: {reason}")]
    InvalidArgs {
        /// The event name.
        event: String,
        /// Why.
        reason: String,
    },
    /// The client has been shut down (or failed for good) and will not connect again.
    #[error("client is closed")]
    Closed {
        /// The event name.
        event: String,
        /// The payload, handed back.
        payload: Payload,
    },
    /// The payload is larger than the server accepts (`maxPayload`) or than the outbox holds.
    #[error("payload too large: {size} bytes, limit {limit}")]
    TooLarge {
        /// The event name.
        event: String,
        /// The payload, handed back.
        payload: Payload,
        /// Its encoded size.
        size: usize,
        /// The limit it exceeds.
        limit: u64,
    },
}

impl EmitError {
    /// The payload that was not sent, handed back.
    pub fn into_payload(self) -> Option<Payload> {
        match self {
            EmitError::OutboxFull { payload, .. }
            | EmitError::Closed { payload, .. }
            | EmitError::TooLarge { payload, .. } => Some(payload),
            EmitError::InvalidArgs { .. } => None,
        }
    }
}

/// Why [`crate::Client::reconnect`] did not start the client again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ReconnectError {
    /// The client has not ended: it is connected or trying to connect.
    #[error("the client is still running: reconnect() is for a client that ended")]
    StillRunning,
}

/// Why an acknowledgement did not arrive.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AckError {
    /// The emit was not accepted.
    #[error(transparent)]
    Emit(#[from] EmitError),
    /// No ack within the timeout (after every retry, if retries were asked for).
    #[error("no acknowledgement within {0:?}")]
    Timeout(Duration),
    /// The link dropped after the emit was sent, and it was not being retried.
    #[error("disconnected before the acknowledgement arrived")]
    Disconnected,
    /// The client was shut down.
    #[error("client is closed")]
    Closed,
}

/// The `reason` a server put in a CONNECT_ERROR's `data` (`{"reason": "..."}`, or a plain
/// string), as a suffix for the message.
fn data_reason(data: Option<&str>) -> String {
    let Some(value) = data.and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok()) else {
        return String::new();
    };
    let reason = match &value {
        serde_json::Value::String(s) => Some(s.as_str()),
        serde_json::Value::Object(map) => map.get("reason").and_then(|r| r.as_str()),
        _ => None,
    };
    match reason {
        Some(r) if !r.is_empty() => format!(" (reason: {r})"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_io_errors_are_named() {
        let http = |engine_code| LinkError::Http {
            status: 400,
            retry_after: None,
            engine_code,
        };
        assert_eq!(
            http(Some(1)).to_string(),
            "HTTP 400 from the server (engine.io: Session ID unknown)"
        );
        assert_eq!(
            http(Some(1)).engine_error(),
            Some(relink_proto::engine::EngineError::SessionIdUnknown)
        );
        assert_eq!(
            http(Some(9)).to_string(),
            "HTTP 400 from the server (engine.io code 9)"
        );
        assert_eq!(http(None).to_string(), "HTTP 400 from the server");
        assert_eq!(http(None).engine_error(), None);
    }

    fn rejected(data: Option<&str>) -> String {
        LinkError::Rejected {
            message: "unauthorized".into(),
            data: data.map(str::to_owned),
        }
        .to_string()
    }

    #[test]
    fn a_rejection_shows_the_reason_the_server_gave() {
        assert_eq!(
            rejected(Some(r#"{"reason":"token expired"}"#)),
            "connection refused by the server: unauthorized (reason: token expired)"
        );
        assert_eq!(
            rejected(Some(r#""banned""#)),
            "connection refused by the server: unauthorized (reason: banned)"
        );
        for data in [None, Some("{}"), Some("not json"), Some(r#"{"reason":""}"#)] {
            assert_eq!(
                rejected(data),
                "connection refused by the server: unauthorized"
            );
        }
    }
}
