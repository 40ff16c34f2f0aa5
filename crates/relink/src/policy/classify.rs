//! How a failure is handled: one exhaustive `match`, so a new error kind forces a decision.

use crate::error::LinkError;
use crate::state::Reason;
use std::time::Duration;

/// What a failure means for the reconnect loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Worth retrying with backoff; the server may have said how long to wait.
    Transient {
        /// `Retry-After` from a 503 or 429.
        retry_after: Option<Duration>,
    },
    /// The credentials were refused: refresh once, then stop.
    Unauthorized,
    /// Retrying cannot help (bad URL, unsupported protocol): stop now.
    Fatal,
    /// The server ended the session on purpose: stop unless configured otherwise.
    ServerDisconnect,
}

use relink_proto::engine::EngineError;

/// Classifies a failure.
pub fn classify(error: &LinkError) -> Class {
    let transient = Class::Transient { retry_after: None };
    match error {
        LinkError::Network(_)
        | LinkError::Proxy { .. }
        | LinkError::Tls(_)
        | LinkError::ConnectTimeout(_)
        | LinkError::TransportClose
        | LinkError::PingTimeout
        | LinkError::Unread { .. }
        | LinkError::Protocol(_)
        | LinkError::WebSocket(_) => transient,
        LinkError::Http {
            status,
            retry_after,
            ..
        } => match (*status, error.engine_error()) {
            (401 | 403, _) => Class::Unauthorized,
            // This client is configured wrong: retrying cannot help.
            (_, Some(EngineError::TransportUnknown | EngineError::UnsupportedProtocolVersion)) => {
                Class::Fatal
            }
            (429 | 503, _) => Class::Transient {
                retry_after: *retry_after,
            },
            // Any other status (5xx, 404 from a gateway mid-deploy, 400) may pass; if it does
            // not, the escalation's single ERROR tells a person to look.
            _ => transient,
        },
        LinkError::Rejected { message, .. } => {
            if message == "Invalid namespace" {
                Class::Fatal
            } else {
                Class::Unauthorized
            }
        }
        LinkError::ServerDisconnect => Class::ServerDisconnect,
        LinkError::InvalidUrl(_)
        | LinkError::EmptyToken
        | LinkError::NotTls
        | LinkError::Certificate { .. }
        | LinkError::ProxyAuth { .. }
        | LinkError::ProxyUnsupported { .. }
        | LinkError::UnknownNamespace { .. } => Class::Fatal,
        // A gateway mid-deploy may answer 404 for a moment; if it goes on, the outage's
        // ERROR says where.
        LinkError::NotFound { .. } | LinkError::NoUpgrade { .. } => transient,
        LinkError::AuthProvider(_) => transient,
    }
}

/// Whether a failed dial means "not this transport" rather than "not now": a 400 (engine.io
/// answers `Transport unknown` for a transport it does not allow, often as a bare 400 on the
/// raw socket, and `Bad request` for a WebSocket request whose `Upgrade` a proxy stripped;
/// a gateway that refuses WebSocket answers 400 too), an upgrade answered with a plain 200
/// or a 404, or the connection closed before the upgrade was answered. The next allowed transport is tried at once. A transient failure (503,
/// refused, a timeout) never is: the server is down for every transport alike.
pub fn refuses_transport(error: &LinkError) -> bool {
    match error {
        LinkError::Http { status, .. } => matches!(status, 200 | 400),
        LinkError::NotFound { .. } | LinkError::NoUpgrade { .. } => true,
        _ => false,
    }
}

/// A short stable name for the failure, used as the `reason` field in logs and state.
pub fn reason(error: &LinkError) -> Reason {
    match error {
        LinkError::Network(_) => Reason::Network,
        LinkError::Tls(_) => Reason::Tls,
        LinkError::NotTls => Reason::NotTls,
        LinkError::Certificate { .. } => Reason::Certificate,
        LinkError::Proxy { .. } => Reason::Proxy,
        LinkError::ProxyAuth { .. } => Reason::ProxyAuth,
        LinkError::ProxyUnsupported { .. } => Reason::Proxy,
        LinkError::NotFound { .. } => Reason::HttpError,
        LinkError::NoUpgrade { .. } => Reason::TransportError,
        LinkError::UnknownNamespace { .. } => Reason::InvalidNamespace,
        LinkError::ConnectTimeout(_) => Reason::ConnectTimeout,
        LinkError::Http { status, .. } => match status {
            401 | 403 => Reason::HttpUnauthorized,
            429 => Reason::Http429,
            500..=599 => Reason::Http5xx,
            _ => Reason::HttpError,
        },
        LinkError::Rejected { .. } => Reason::Rejected,
        LinkError::ServerDisconnect => Reason::ServerDisconnect,
        LinkError::TransportClose => Reason::TransportClose,
        LinkError::PingTimeout => Reason::PingTimeout,
        LinkError::Unread { .. } => Reason::Unread,
        LinkError::Protocol(_) => Reason::ParseError,
        LinkError::WebSocket(_) => Reason::TransportError,
        LinkError::InvalidUrl(_) => Reason::InvalidUrl,
        LinkError::EmptyToken => Reason::EmptyToken,
        LinkError::AuthProvider(_) => Reason::AuthProvider,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, retry_after: Option<u64>, engine_code: Option<u8>) -> LinkError {
        LinkError::Http {
            status,
            retry_after: retry_after.map(Duration::from_secs),
            engine_code,
        }
    }

    #[test]
    fn only_a_refused_transport_falls_back() {
        for e in [
            http(400, None, Some(0)),
            http(400, None, Some(3)),
            http(400, None, None),
            http(200, None, None),
            LinkError::NotFound {
                path: "/socket.io/".into(),
            },
            LinkError::NoUpgrade {
                path: "/socket.io/".into(),
            },
        ] {
            assert!(refuses_transport(&e), "{e:?}");
        }
        for e in [
            http(503, Some(3), None),
            http(429, None, None),
            http(401, None, None),
            http(403, None, Some(4)),
            http(502, None, None),
            LinkError::Network("refused".into()),
            LinkError::ConnectTimeout(Duration::from_secs(20)),
            LinkError::TransportClose,
            LinkError::NotTls,
            LinkError::ProxyAuth {
                proxy: "p:3128".into(),
                sent_credentials: false,
            },
        ] {
            assert!(!refuses_transport(&e), "{e:?}");
        }
    }

    #[test]
    fn transient_failures_are_retried() {
        for e in [
            LinkError::Network("refused".into()),
            LinkError::Tls("bad cert".into()),
            LinkError::ConnectTimeout(Duration::from_secs(20)),
            LinkError::TransportClose,
            LinkError::PingTimeout,
            LinkError::Protocol("x".into()),
            LinkError::WebSocket("x".into()),
            http(500, None, None),
            http(502, None, None),
            http(404, None, None),
            http(400, None, Some(3)),
            LinkError::AuthProvider("offline".into()),
            LinkError::Proxy {
                proxy: "p:3128".into(),
                message: "refused".into(),
            },
            LinkError::NotFound { path: "/x/".into() },
            LinkError::NoUpgrade { path: "/x/".into() },
        ] {
            assert_eq!(
                classify(&e),
                Class::Transient { retry_after: None },
                "{e:?}"
            );
        }
    }

    #[test]
    fn a_server_without_tls_and_an_unknown_namespace_are_configuration() {
        for e in [
            LinkError::NotTls,
            LinkError::Certificate {
                server: "h:443".into(),
                problem: "unknown issuer".into(),
            },
            LinkError::ProxyAuth {
                proxy: "p:3128".into(),
                sent_credentials: true,
            },
            LinkError::UnknownNamespace {
                namespace: "/x".into(),
            },
        ] {
            assert_eq!(classify(&e), Class::Fatal, "{e:?}");
        }
    }

    #[test]
    fn retry_after_is_kept_for_503_and_429_only() {
        assert_eq!(
            classify(&http(503, Some(7), None)),
            Class::Transient {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(
            classify(&http(429, Some(2), None)),
            Class::Transient {
                retry_after: Some(Duration::from_secs(2))
            }
        );
        assert_eq!(
            classify(&http(500, Some(7), None)),
            Class::Transient { retry_after: None }
        );
    }

    #[test]
    fn credentials_rejections() {
        assert_eq!(classify(&http(401, None, None)), Class::Unauthorized);
        assert_eq!(classify(&http(403, None, Some(4))), Class::Unauthorized);
        let rejected = LinkError::Rejected {
            message: "unauthorized".into(),
            data: None,
        };
        assert_eq!(classify(&rejected), Class::Unauthorized);
    }

    #[test]
    fn configuration_errors_are_fatal() {
        assert_eq!(classify(&http(400, None, Some(5))), Class::Fatal);
        assert_eq!(classify(&http(400, None, Some(0))), Class::Fatal);
        assert_eq!(classify(&LinkError::InvalidUrl("x".into())), Class::Fatal);
        assert_eq!(classify(&LinkError::EmptyToken), Class::Fatal);
        let bad_ns = LinkError::Rejected {
            message: "Invalid namespace".into(),
            data: None,
        };
        assert_eq!(classify(&bad_ns), Class::Fatal);
    }

    #[test]
    fn server_disconnect_is_its_own_class() {
        assert_eq!(
            classify(&LinkError::ServerDisconnect),
            Class::ServerDisconnect
        );
    }

    #[test]
    fn reasons_are_stable_names() {
        assert_eq!(reason(&http(503, None, None)), "http_5xx");
        assert_eq!(reason(&LinkError::PingTimeout), "ping_timeout");
        assert_eq!(reason(&http(401, None, None)), "http_unauthorized");
    }
}
