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

/// Engine.IO error codes that mean "this client is configured wrong".
const ENGINE_TRANSPORT_UNKNOWN: u8 = 0;
const ENGINE_UNSUPPORTED_PROTOCOL: u8 = 5;

/// Classifies a failure.
pub fn classify(error: &LinkError) -> Class {
    let transient = Class::Transient { retry_after: None };
    match error {
        LinkError::Network(_)
        | LinkError::Tls(_)
        | LinkError::ConnectTimeout(_)
        | LinkError::TransportClose
        | LinkError::PingTimeout
        | LinkError::Protocol(_)
        | LinkError::WebSocket(_) => transient,
        LinkError::Http {
            status,
            retry_after,
            engine_code,
        } => match (*status, *engine_code) {
            (401 | 403, _) => Class::Unauthorized,
            (_, Some(ENGINE_TRANSPORT_UNKNOWN | ENGINE_UNSUPPORTED_PROTOCOL)) => Class::Fatal,
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
        | LinkError::UnknownNamespace { .. } => Class::Fatal,
        // A gateway mid-deploy may answer 404 for a moment; if it goes on, the outage's
        // ERROR says where.
        LinkError::NotFound { .. } | LinkError::NoUpgrade { .. } => transient,
        LinkError::AuthProvider(_) => transient,
    }
}

/// A short stable name for the failure, used as the `reason` field in logs and state.
pub fn reason(error: &LinkError) -> Reason {
    match error {
        LinkError::Network(_) => Reason::Network,
        LinkError::Tls(_) => Reason::Tls,
        LinkError::NotTls => Reason::NotTls,
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
