//! relink's metrics exported for Prometheus: connection attempts by class, outages and how
//! long they lasted, reconnect delays, outbox depth, acks pending, events and bytes (see
//! `relink::metrics` for the list). Any recorder of the `metrics` facade works the same way
//! (StatsD, OpenTelemetry, ...); this one serves the Prometheus text format.
//!
//! ```text
//! node interop/node/server.mjs --standalone --port 3000
//! cargo run -p relink --features metrics --example metrics
//! curl -s http://127.0.0.1:9184/metrics
//! ```
//!
//! Stop the server for a while and start it again, then scrape: one outage, its duration,
//! the failed attempts and the waits between them. `RELINK_METRICS` (default
//! `127.0.0.1:9184`) moves the endpoint.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use relink::Client;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("RELINK_URL").unwrap_or_else(|_| "http://127.0.0.1:3000".into());
    let token = std::env::var("RELINK_TOKEN").unwrap_or_else(|_| "secret".into());
    let listen: std::net::SocketAddr = std::env::var("RELINK_METRICS")
        .unwrap_or_else(|_| "127.0.0.1:9184".into())
        .parse()?;

    // Histograms with buckets (Prometheus would otherwise get summaries), then the recorder
    // and its HTTP listener, before any client reports.
    let mut exporter = PrometheusBuilder::new().with_http_listener(listen);
    for name in relink::metrics::HISTOGRAMS {
        exporter = exporter.set_buckets_for_metric(
            Matcher::Full(name.to_owned()),
            &relink::metrics::SECONDS_BUCKETS,
        )?;
    }
    exporter.install()?;
    relink::metrics::describe();
    eprintln!("metrics on http://{listen}/metrics; Ctrl-C to end");

    let (client, _) = Client::builder(url).token(token).connect()?;
    // Some traffic to count: an echo every second.
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = every.tick() => {
                // Queued while disconnected (the outbox gauges show it), sent once back.
                let _ = client.try_emit("echo", "tick");
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    client.disconnect().await;
    Ok(())
}
