//! `--metrics ADDR`: relink's numbers (see `relink::metrics`) in the Prometheus text format
//! at `http://ADDR/metrics`, for scraping. Served through the daemon's front door
//! (`daemon/accept.rs`), so a scraper that never finishes its request is closed in time.

use crate::daemon::accept;
use crate::exit::CliError;
use jsonrpsee::core::BoxError;
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse, ServerHandle};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often histograms' old samples are let go (the exporter's upkeep).
const UPKEEP: Duration = Duration::from_secs(5);

/// Scrapers waiting for their first request at once; more are closed when accepted.
const AWAITING_HEADERS: usize = 16;

/// `--metrics`: a port alone means loopback (`9184` is `127.0.0.1:9184`); an address with
/// a port serves there (`0.0.0.0:9184` for every interface, which scrapers on other hosts
/// need).
pub(crate) fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    text.parse().map_err(|_| {
        "expected a port (9184: loopback) or an address with a port (127.0.0.1:9184, [::1]:9184)"
            .to_owned()
    })
}

/// The endpoint, served until dropped.
pub(crate) struct Serving {
    server: ServerHandle,
    upkeep: JoinHandle<()>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.server.stop();
        self.upkeep.abort();
    }
}

/// Installs the Prometheus recorder for this process and serves it on `addr`.
pub(crate) async fn serve(addr: SocketAddr) -> Result<Serving, CliError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| CliError::Usage(format!("cannot serve metrics on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::Other(format!("cannot read the metrics address: {e}")))?;
    let mut builder = PrometheusBuilder::new();
    for name in relink::metrics::HISTOGRAMS {
        builder = builder
            .set_buckets_for_metric(
                Matcher::Full(name.to_owned()),
                &relink::metrics::SECONDS_BUCKETS,
            )
            .map_err(|e| CliError::Other(format!("cannot set up the metrics: {e}")))?;
    }
    let handle = builder
        .install_recorder()
        .map_err(|e| CliError::Other(format!("cannot set up the metrics: {e}")))?;
    relink::metrics::describe();

    let (stop, server) = jsonrpsee::server::stop_channel();
    let make_service = {
        let handle = handle.clone();
        move || {
            let handle = handle.clone();
            tower::service_fn(move |request: HttpRequest| {
                let response = respond(&handle, &request);
                async move { Ok::<_, BoxError>(response) }
            })
        }
    };
    let limits = accept::Limits {
        header_timeout: Duration::from_secs(5),
        awaiting_headers: AWAITING_HEADERS,
    };
    tokio::spawn(accept::serve(listener, make_service, stop, limits));
    let upkeep = tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP);
        loop {
            every.tick().await;
            handle.run_upkeep();
        }
    });
    tracing::info!(url = %format!("http://{local}/metrics"), "serving metrics");
    Ok(Serving { server, upkeep })
}

/// `GET /metrics`: the text format; anything else: 404 or 405.
fn respond(handle: &PrometheusHandle, request: &HttpRequest) -> HttpResponse {
    let reply = |status: u16, content_type: &str, body: String| {
        let mut response = HttpResponse::new(HttpBody::from(body));
        *response.status_mut() =
            hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
        if let Ok(value) = content_type.parse() {
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_TYPE, value);
        }
        response
    };
    if request.uri().path() != "/metrics" {
        return reply(
            404,
            "text/plain",
            "not found: try GET /metrics\n".to_owned(),
        );
    }
    if request.method() != hyper::Method::GET {
        return reply(405, "text/plain", "only GET\n".to_owned());
    }
    reply(
        200,
        "text/plain; version=0.0.4; charset=utf-8",
        handle.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_alone_means_loopback() {
        assert_eq!(
            parse_addr("9184"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 9184)))
        );
        assert_eq!(
            parse_addr("0.0.0.0:9"),
            Ok(SocketAddr::from(([0, 0, 0, 0], 9)))
        );
        assert_eq!(parse_addr("[::1]:9").map(|a| a.is_ipv6()), Ok(true));
        assert!(parse_addr("localhost").is_err());
        assert!(parse_addr("99999").is_err());
    }
}
