//! The HTTP client long-polling speaks through: hyper's pooled HTTP/1.1 client over
//! connections from [`crate::net`] (the same proxy, trust and errors as the WebSocket).

use crate::error::LinkError;
use crate::net::{Net, Stream, Target};
use crate::transport::websocket::status_error;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// A pooled client; cheap to clone.
pub(crate) type Client = hyper_util::client::legacy::Client<Connector, Full<Bytes>>;

/// A client whose connections come from `net`.
pub(crate) fn client(net: Arc<Net>) -> Client {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        // A long-poll holds one connection and the writes another; more only while a
        // dead one is being replaced.
        .pool_max_idle_per_host(2)
        .pool_idle_timeout(Duration::from_secs(30))
        .build(Connector(net))
}

/// One HTTP exchange: `body` is sent when given (a POST), the answer's body is read up to
/// `limit` bytes. A status other than 200 is the error it means.
pub(crate) async fn exchange(
    client: &Client,
    url: &url::Url,
    headers: &[(http::HeaderName, http::HeaderValue)],
    body: Option<Bytes>,
    limit: usize,
) -> Result<Bytes, LinkError> {
    let mut request = http::Request::builder()
        .method(if body.is_some() {
            http::Method::POST
        } else {
            http::Method::GET
        })
        .uri(url.as_str());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    if body.is_some() {
        request = request.header(http::header::CONTENT_TYPE, "text/plain;charset=UTF-8");
    }
    let request = request
        .body(Full::new(body.unwrap_or_default()))
        .map_err(|e| LinkError::InvalidUrl(e.to_string()))?;
    let response = client.request(request).await.map_err(client_error)?;
    let (parts, body) = response.into_parts();
    if parts.status != http::StatusCode::OK {
        // An error page says nothing we need past its first bytes (engine.io's JSON is
        // short); a gateway's large one is not worth waiting for.
        let mut head = Vec::new();
        let mut body = std::pin::pin!(body);
        while head.len() < ERROR_BODY
            && let Some(Ok(frame)) = body.frame().await
        {
            if let Ok(data) = frame.into_data() {
                head.extend_from_slice(&data);
            }
        }
        return Err(status_error(
            parts.status.as_u16(),
            &parts.headers,
            Some(&head),
        ));
    }
    let body = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                LinkError::Protocol(format!(
                    "a response body was larger than max_message_size ({limit} bytes)"
                ))
            } else {
                LinkError::Network(e.to_string())
            }
        })?
        .to_bytes();
    Ok(body)
}

/// How much of an error response's body is read.
const ERROR_BODY: usize = 4096;

/// What hyper's error was: a dial failure is ours, classified already.
fn client_error(error: hyper_util::client::legacy::Error) -> LinkError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(cause) = source {
        if let Some(DialError(link)) = cause.downcast_ref::<DialError>() {
            return link.clone();
        }
        source = cause.source();
    }
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    if error.is_connect() {
        LinkError::Network(message)
    } else {
        LinkError::TransportClose
    }
}

/// Connections for hyper, from [`Net`].
#[derive(Clone)]
pub(crate) struct Connector(Arc<Net>);

/// A failed dial, carried through hyper to [`client_error`].
#[derive(Debug)]
pub(crate) struct DialError(LinkError);

impl std::fmt::Display for DialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for DialError {}

impl tower_service::Service<http::Uri> for Connector {
    type Response = Conn;
    type Error = DialError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, DialError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), DialError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let net = Arc::clone(&self.0);
        Box::pin(async move {
            let target = Target::from_uri(&uri).map_err(DialError)?;
            let stream = net.connect(&target).await.map_err(DialError)?;
            Ok(Conn(TokioIo::new(stream)))
        })
    }
}

/// A connection hyper can pool.
pub(crate) struct Conn(TokioIo<Stream>);

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
