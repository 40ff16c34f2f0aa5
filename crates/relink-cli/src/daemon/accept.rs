//! The daemon's front door: accepts TCP connections and serves each with hyper (HTTP/1.1,
//! upgrades to WebSocket allowed), bounded so that a local process cannot exhaust the
//! daemon's descriptors with connections that never finish a request:
//!
//! - a client has [`Limits::header_timeout`] to send a request's headers, on a new
//!   connection and between requests on a kept-alive one; then the connection is closed;
//! - at most [`Limits::awaiting_headers`] connections may be waiting for their first
//!   request's headers at once; a connection beyond that is closed as soon as it is
//!   accepted, with one WARN per episode (not one per connection: that would let a flood
//!   fill the logs instead).
//!
//! Once upgraded to WebSocket, a connection belongs to jsonrpsee, which pings it.

use jsonrpsee::core::BoxError;
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse, StopHandle};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower::Service;

/// Bounds on connections that have not sent a request yet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) header_timeout: Duration,
    pub(crate) awaiting_headers: usize,
}

/// Serves connections from `listener` with a service `make_service` builds for each one
/// (jsonrpsee numbers connections, and counts them against its own limit, per build),
/// until `stop` says so; then lets open connections finish what they are doing (the caller
/// bounds how long it waits for that).
pub(crate) async fn serve<S>(
    listener: TcpListener,
    make_service: impl Fn() -> S,
    stop: StopHandle,
    limits: Limits,
) where
    S: Service<HttpRequest, Response = HttpResponse, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let awaiting = Arc::new(Semaphore::new(limits.awaiting_headers));
    let mut connections = JoinSet::new();
    let mut saturated = false;
    let stopped = stop.clone().shutdown();
    tokio::pin!(stopped);
    loop {
        let accepted = tokio::select! {
            () = &mut stopped => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let socket = match accepted {
            Ok((socket, _)) => socket,
            Err(e) => {
                // Out of descriptors, or the peer gave up before the accept: either way,
                // a pause keeps a persistent error from spinning the loop.
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&awaiting).try_acquire_owned() else {
            if !saturated {
                saturated = true;
                tracing::warn!(
                    limit = limits.awaiting_headers,
                    "too many connections waiting to send a request: refusing new ones"
                );
            }
            drop(socket);
            continue;
        };
        saturated = false;
        let _ = socket.set_nodelay(true);
        // Released when the first request's headers are in: the connection is no longer
        // waiting (and hyper's header timeout still covers its later requests).
        let permit = Arc::new(Mutex::new(Some(permit)));
        let service = make_service();
        let handler = hyper::service::service_fn(move |request: hyper::Request<_>| {
            permit.lock().unwrap_or_else(PoisonError::into_inner).take();
            let mut service = service.clone();
            service.call(request.map(HttpBody::new))
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(hyper_util::rt::TokioIo::new(socket), handler)
            .with_upgrades();
        let stop = stop.clone();
        connections.spawn(async move {
            tokio::pin!(connection);
            let served = tokio::select! {
                served = &mut connection => served,
                () = stop.shutdown() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
    while connections.join_next().await.is_some() {}
}
