//! The WebSocket transport: tokio-tungstenite over a stream from [`crate::net`].
//!
//! HTTP errors on the upgrade keep their status and `Retry-After`: a gateway answering 503
//! says how long it expects to be down, and a browser client never gets to see that.

use crate::error::LinkError;
use crate::net::{Net, Stream, Target};
use std::time::{Duration, SystemTime};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, http};

/// An open WebSocket.
pub(crate) type Ws = WebSocketStream<Stream>;

/// tungstenite's read buffer (its default is 128 KiB).
const READ_BUFFER: usize = 16 << 10;

/// Opens a WebSocket to `url` (`ws(s)://...&transport=websocket[&sid=...]`): TCP or a
/// proxy tunnel, TLS, the upgrade. `headers` may hold secrets: never logged.
pub(crate) async fn dial(
    net: &Net,
    url: &url::Url,
    max_message_size: usize,
    headers: &[(http::HeaderName, http::HeaderValue)],
) -> Result<Ws, LinkError> {
    let mut request = url.as_str().into_client_request().map_err(map_error)?;
    for (name, value) in headers {
        request.headers_mut().append(name.clone(), value.clone());
    }
    let stream = net.connect(&Target::from_url(url)?).await?;
    // tungstenite zero-fills the free part of its read buffer before every read: 128 KiB
    // by default, on every wake-up of a client that keeps up with its server. 16 KiB still
    // takes ~250 small frames per read, and an idle client keeps 112 KiB less resident.
    // The write buffer stays unbounded (tungstenite's default `max_write_buffer_size`):
    // emits written directly by their tasks rely on a ready socket accepting a whole
    // message (see `lane.rs`); the outbox bounds what waits.
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(max_message_size))
        .max_frame_size(Some(max_message_size));
    let (ws, _response) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config))
            .await
            .map_err(|e| {
                let path = || url.path().to_owned();
                match e {
                    tungstenite::Error::Protocol(ProtocolError::HandshakeIncomplete) => {
                        LinkError::NoUpgrade { path: path() }
                    }
                    e => match map_error(e) {
                        LinkError::Http { status: 404, .. } => LinkError::NotFound { path: path() },
                        other => other,
                    },
                }
            })?;
    Ok(ws)
}

/// Maps a tungstenite error to what the policy decides on.
pub(crate) fn map_error(error: tungstenite::Error) -> LinkError {
    use tungstenite::Error as E;
    match error {
        E::Http(response) => http_error(&response),
        // The TLS handshake is over by now (`net` did it, and named its failures): a rustls
        // error here broke an established stream.
        E::Io(io) => match crate::net::trust::rustls_error(&io) {
            Some(tls) => LinkError::Tls(tls.to_string()),
            None => LinkError::Network(io.to_string()),
        },
        E::Tls(tls) => LinkError::Tls(tls.to_string()),
        E::Url(url) => LinkError::InvalidUrl(url.to_string()),
        E::ConnectionClosed | E::AlreadyClosed => LinkError::TransportClose,
        other => LinkError::WebSocket(other.to_string()),
    }
}

fn http_error(response: &http::Response<Option<Vec<u8>>>) -> LinkError {
    status_error(
        response.status().as_u16(),
        response.headers(),
        response.body().as_deref(),
    )
}

/// An HTTP error status from the server or a gateway, with what it says about retrying
/// (`Retry-After`) and engine.io's own error code (a JSON body `{"code":N}`).
pub(crate) fn status_error(
    status: u16,
    headers: &http::HeaderMap,
    body: Option<&[u8]>,
) -> LinkError {
    let retry_after = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let engine_code = body
        .and_then(|body| serde_json::from_slice::<EngineErrorBody>(body).ok())
        .and_then(|b| u8::try_from(b.code).ok());
    LinkError::Http {
        status,
        retry_after,
        engine_code,
    }
}

#[derive(serde::Deserialize)]
struct EngineErrorBody {
    code: u64,
}

/// Parses `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(90))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn http_errors_keep_status_retry_after_and_engine_code() {
        let response = http::Response::builder()
            .status(503)
            .header("Retry-After", "12")
            .body(Some(b"<html>down</html>".to_vec()))
            .expect("valid response");
        assert_eq!(
            map_error(tungstenite::Error::Http(Box::new(response))),
            LinkError::Http {
                status: 503,
                retry_after: Some(Duration::from_secs(12)),
                engine_code: None
            }
        );
        let response = http::Response::builder()
            .status(400)
            .body(Some(
                br#"{"code":5,"message":"Unsupported protocol version"}"#.to_vec(),
            ))
            .expect("valid response");
        assert_eq!(
            map_error(tungstenite::Error::Http(Box::new(response))),
            LinkError::Http {
                status: 400,
                retry_after: None,
                engine_code: Some(5)
            }
        );
    }
}
