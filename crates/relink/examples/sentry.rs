//! Sentry wired for one event per outage: relink logs each failed attempt at WARN and only
//! the outage's first lasting failure at ERROR, so ERROR records become Sentry events and
//! everything from INFO up becomes breadcrumbs (the attempts show as the event's trail).
//!
//! ```text
//! node interop/node/server.mjs --standalone --port 3000
//! SENTRY_DSN=https://KEY@o0.ingest.sentry.io/0 cargo run -p relink --example sentry
//! ```
//!
//! Stop the server for half a minute and start it again: one event, however many attempts.
//! Without a Sentry project, any DSN shows what would be sent, e.g.
//! `SENTRY_DSN=http://key@127.0.0.1:9/1` (nothing listens there; each event is printed).

use relink::Client;
use sentry::integrations::tracing::{BreadcrumbLayer, ErrorLayer};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("RELINK_URL").unwrap_or_else(|_| "http://127.0.0.1:3000".into());
    let token = std::env::var("RELINK_TOKEN").unwrap_or_else(|_| "secret".into());

    // Without SENTRY_DSN, Sentry stays off and only the log lines remain.
    let _sentry = std::env::var("SENTRY_DSN").ok().map(|dsn| {
        let options = sentry::ClientOptions::new()
            .release(sentry::release_name!().unwrap_or_default())
            .before_send(|event| {
                eprintln!(
                    ">>> Sentry event: {}",
                    event.message.as_deref().unwrap_or("(no message)")
                );
                Some(event)
            });
        sentry::init((dsn, options))
    });
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(LevelFilter::INFO),
        )
        .with(ErrorLayer::new().with_filter(LevelFilter::ERROR))
        .with(BreadcrumbLayer::new().with_filter(LevelFilter::INFO))
        .init();

    let (client, _) = Client::builder(url).token(token).connect()?;
    eprintln!("connected or trying; stop the server to see an outage, Ctrl-C to end");
    tokio::signal::ctrl_c().await?;
    client.disconnect().await;
    Ok(())
}
