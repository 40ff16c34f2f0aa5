//! The transports: bytes in and out, nothing decided.
//!
//! - [`websocket`]: one packet per WebSocket frame.
//! - [`polling`]: HTTP long-polling ([`http`] is its client), and its upgrade to WebSocket.
//!
//! Both look the same to the driver: a [`Wire`] yields text and binary frames and takes
//! them. [`dial`] opens one, trying the next allowed transport when the server or something
//! in between refuses the first (see [`crate::policy::classify::refuses_transport`]).

pub(crate) mod http;
pub(crate) mod polling;
pub(crate) mod websocket;

use crate::error::LinkError;
use crate::net::Net;
use crate::policy::classify::{Class, classify, refuses_transport};
pub(crate) use crate::state::Transport;
use futures_util::{SinkExt, StreamExt};
use polling::Polling;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio_tungstenite::tungstenite::{self, Message};
use websocket::{Ws, map_error};

/// An open link, whatever carries it.
// One per link, inside the link's `Arc<Mutex<_>>`: the WebSocket, the common case and the
// hot path, stays unboxed.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Wire {
    WebSocket(Ws),
    Polling(Box<Polling>),
}

impl Wire {
    /// What carries the session now.
    pub(crate) fn kind(&self) -> Transport {
        match self {
            Wire::WebSocket(_) => Transport::WebSocket,
            Wire::Polling(polling) if polling.upgraded() => Transport::WebSocket,
            Wire::Polling(_) => Transport::Polling,
        }
    }

    /// Once an upgrade is complete and polling's last frames are handed over, the
    /// WebSocket takes polling's place.
    fn settle(&mut self) {
        if let Wire::Polling(polling) = self
            && let Some(ws) = polling.take_upgraded()
        {
            *self = Wire::WebSocket(ws);
        }
    }

    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Message, LinkError>>> {
        self.settle();
        match self {
            Wire::WebSocket(ws) => ws
                .poll_next_unpin(cx)
                .map(|next| next.map(|r| r.map_err(map_error))),
            Wire::Polling(polling) => polling.poll_next(cx),
        }
    }

    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        match self {
            Wire::WebSocket(ws) => ws.poll_ready_unpin(cx).map_err(map_error),
            Wire::Polling(polling) => polling.poll_ready(cx),
        }
    }

    pub(crate) fn start_send(&mut self, message: Message) -> Result<(), LinkError> {
        match self {
            Wire::WebSocket(ws) => ws.start_send_unpin(message).map_err(map_error),
            Wire::Polling(polling) => polling.start_send(message),
        }
    }

    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        match self {
            Wire::WebSocket(ws) => ws.poll_flush_unpin(cx).map_err(map_error),
            Wire::Polling(polling) => polling.poll_flush(cx),
        }
    }

    pub(crate) fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        match self {
            Wire::WebSocket(ws) => ws.poll_close_unpin(cx).map_err(map_error),
            Wire::Polling(polling) => polling.poll_close(cx),
        }
    }
}

/// What dialling needs.
pub(crate) struct DialSettings<'a> {
    /// `ws(s)://host:port/path?EIO=4&transport=websocket[&user query]`.
    pub(crate) ws_url: &'a url::Url,
    pub(crate) net: &'a Arc<Net>,
    pub(crate) http: &'a http::Client,
    pub(crate) max_message_size: usize,
    /// Extra headers (values may be secrets: never logged).
    pub(crate) headers: &'a Arc<
        [(
            tungstenite::http::HeaderName,
            tungstenite::http::HeaderValue,
        )],
    >,
    /// The transports allowed, in the order to try them.
    pub(crate) transports: &'a [Transport],
    /// How long a polling session's upgrade probe may take.
    pub(crate) probe_timeout: Duration,
}

/// How long a transport tried after another was refused may take to open.
const FALLBACK_OPEN: Duration = Duration::from_secs(3);

/// Opens a link, starting with `first` (when allowed), then the other allowed transports
/// in order while each is refused as a transport; any other failure ends the attempt.
pub(crate) async fn dial(settings: &DialSettings<'_>, first: Transport) -> Result<Wire, LinkError> {
    let mut order: Vec<Transport> = Vec::with_capacity(settings.transports.len());
    if settings.transports.contains(&first) {
        order.push(first);
    }
    order.extend(settings.transports.iter().filter(|t| **t != first));
    let mut refused = None;
    for (i, transport) in order.iter().enumerate() {
        let open = async {
            match transport {
                Transport::WebSocket => websocket::dial(
                    settings.net,
                    settings.ws_url,
                    settings.max_message_size,
                    settings.headers,
                )
                .await
                .map(Wire::WebSocket),
                Transport::Polling => polling::open(polling::Open {
                    net: settings.net,
                    http: settings.http,
                    url: url_for(settings.ws_url, Transport::Polling),
                    upgrade_to: settings
                        .transports
                        .contains(&Transport::WebSocket)
                        .then(|| settings.ws_url.clone()),
                    headers: Arc::clone(settings.headers),
                    max_message_size: settings.max_message_size,
                    probe_timeout: settings.probe_timeout,
                })
                .await
                .map(|polling| Wire::Polling(Box::new(polling))),
            }
        };
        // A Socket.IO server answers a handshake at once; a fallback that hangs after a
        // refusal is most often a path without Socket.IO (see `telling` below).
        let opened = match &refused {
            None => open.await,
            Some(_) => tokio::time::timeout(FALLBACK_OPEN, open)
                .await
                .unwrap_or(Err(LinkError::ConnectTimeout(FALLBACK_OPEN))),
        };
        match opened {
            Ok(wire) => return Ok(wire),
            Err(error) if refuses_transport(&error) && i + 1 < order.len() => {
                tracing::debug!(%error, transport = %transport, "transport refused: trying the next");
                refused = Some(error);
            }
            Err(error) => return Err(telling(refused, error)),
        }
    }
    Err(refused.unwrap_or_else(|| LinkError::InvalidUrl("no transport allowed".into())))
}

/// Which error to report when the fallback failed too. One that fails without saying why
/// (closed, timed out, garbage) says less than the refusal before it: a server that is not
/// Socket.IO at this path answers the upgrade 404 and never answers the polling request.
/// But a refusal that would end the client (`Transport unknown` for the first transport)
/// never stands in for a fallback that failed for a reason worth retrying.
fn telling(refused: Option<LinkError>, fallback: LinkError) -> LinkError {
    let vague = matches!(
        fallback,
        LinkError::TransportClose
            | LinkError::Network(_)
            | LinkError::Protocol(_)
            | LinkError::WebSocket(_)
            | LinkError::ConnectTimeout(_)
    );
    match refused {
        Some(first) if vague && classify(&first) != Class::Fatal => first,
        _ => fallback,
    }
}

/// The WebSocket URL turned into `transport`'s: `http(s)` for polling.
pub(crate) fn url_for(ws_url: &url::Url, transport: Transport) -> url::Url {
    let mut url = ws_url.clone();
    if transport == Transport::Polling {
        let scheme = if url.scheme() == "wss" {
            "https"
        } else {
            "http"
        };
        // ws -> http and wss -> https are always allowed between special schemes.
        let _ = url.set_scheme(scheme);
    }
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "transport" {
                transport.as_str().to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_telling_error_is_reported_when_the_fallback_fails_too() {
        let not_found = LinkError::NotFound { path: "/x/".into() };
        let unknown = LinkError::Http {
            status: 400,
            retry_after: None,
            engine_code: Some(0),
        };
        let timeout = LinkError::ConnectTimeout(FALLBACK_OPEN);
        // A path without Socket.IO: the 404 says more than a polling request left hanging.
        assert_eq!(telling(Some(not_found.clone()), timeout.clone()), not_found);
        assert_eq!(
            telling(Some(not_found.clone()), LinkError::TransportClose),
            not_found
        );
        // A fallback that says why is reported as it is.
        let busy = LinkError::Http {
            status: 503,
            retry_after: None,
            engine_code: None,
        };
        assert_eq!(telling(Some(not_found), busy.clone()), busy);
        // `Transport unknown` would end the client: a slow fallback is retried instead.
        assert_eq!(telling(Some(unknown), timeout.clone()), timeout);
        assert_eq!(telling(None, timeout.clone()), timeout);
    }

    #[test]
    fn polling_urls_keep_the_path_and_query() {
        let ws = url::Url::parse("wss://h:8443/io/?EIO=4&transport=websocket&room=a%26b")
            .expect("valid");
        assert_eq!(
            url_for(&ws, Transport::Polling).as_str(),
            "https://h:8443/io/?EIO=4&transport=polling&room=a%26b"
        );
        let ws = url::Url::parse("ws://h/socket.io/?EIO=4&transport=websocket").expect("valid");
        assert_eq!(
            url_for(&ws, Transport::Polling).as_str(),
            "http://h/socket.io/?EIO=4&transport=polling"
        );
        assert_eq!(url_for(&ws, Transport::WebSocket), ws);
    }
}
